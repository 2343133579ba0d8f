"""The service's ASGI middleware: body-size limit and read deadline before parsing, a clear 503 body, optional
API-key authentication, model and security headers on every response; and the demo page's Content-Security-Policy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import json
import re

from serving.logs import log_client_error, log_client_errors_in_one_line, request_id

OPENAPI_PATH = "/docs.json"  # where BentoML serves it (Swagger UI at / reads it)
FORM_TYPES = (b"multipart/", b"application/x-www-form-urlencoded")
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
LINGER_SECONDS = 1.0  # how long a refused connection is still read before it is closed (lingering_close)


def content_security_policy(html: str) -> str:
    """A CSP for a self-contained page: its own inline <script> and <style> blocks by hash, fetches to itself only."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'" for block in blocks)

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


async def lingering_close(receive, send) -> None:
    """End a response whose request body was not read in full: read and drop what the client still sends for up to
    LINGER_SECONDS, then close. Closing a socket with unread bytes sends a reset instead of a FIN, which a client
    can meet before or while it reads the answer (RFC 9112, 9.6: a server SHOULD close lingering)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LINGER_SECONDS):
            while (await receive()).get("more_body"):  # until the body ends or the client goes away
                pass
    await send({"type": "http.response.body", "body": b""})


class RequestGuard:
    """ASGI middleware around the APIs.

    - reads an API's body itself before anything parses it: over max_bytes is 413; not complete within
      body_timeout_seconds of the request's start (a stalled or very slow client) is 408 and the connection is
      closed after a lingering read, counted by on_stalled (uvicorn has no body or header read timeout of its own);
    - replaces BentoML's generic body of a 503 from an API (the batch queue refused a request that would
      exceed max_latency_ms) with a clear one, and adds Retry-After;
    - with an API key, answers 401 to an API request without `Authorization: Bearer <key>` (compared in
      constant time); health, readiness, metrics and the demo page stay open;
    - refuses form bodies (multipart, urlencoded) on the APIs with 415: they take JSON only;
    - serves the OpenAPI document (/docs.json) that openapi_document() builds, once, on first request;
    - adds the model headers the service fills (X-Model-Name / -Version / -Runtime / -Threshold /
      -Registry-Version), X-Content-Type-Options and Referrer-Policy to every response;
    - logs each of its refusals in one line with BentoML's request id (also its X-BentoML-Request-ID header, as
      on BentoML's own answers), and makes BentoML log its client errors in one line too (serving/logs.py).
    """

    def __init__(
        self,
        app,
        max_bytes: int,
        api_paths: tuple[str, ...],
        openapi_document,
        model_headers: dict[str, str],
        overloaded_body: bytes,
        body_timeout_seconds: float,
        on_stalled=lambda: None,
        api_key: str | None = None,
        retry_after_seconds: int = 1,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.api_paths = api_paths
        self.openapi_document = functools.cache(openapi_document)
        self.model_headers = model_headers  # filled by the service once its model is loaded
        self.overloaded = overloaded_body
        self.body_timeout = body_timeout_seconds
        self.on_stalled = on_stalled
        self.bearer = f"Bearer {api_key}".encode() if api_key else None  # None: the APIs are open (bound to 127.0.0.1)
        self.retry_after = str(retry_after_seconds).encode()
        log_client_errors_in_one_line()  # in the worker that serves: the guard is built there

    def _model_headers(self) -> list[tuple[bytes, bytes]]:
        return [(key.lower().encode(), value.encode()) for key, value in self.model_headers.items()] + SECURITY_HEADERS

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        return self.bearer is None or hmac.compare_digest(headers.get(b"authorization", b""), self.bearer)

    def _json_start(self, status: int, body: bytes, extra: list[tuple[bytes, bytes]] = ()) -> dict:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
        return {"type": "http.response.start", "status": status, "headers": headers + self._model_headers()}

    async def _refuse(self, scope, send, status: int, message: str, extra: list[tuple[bytes, bytes]] = (), linger=None) -> None:
        """Answer a client error with {"error": message}, logged in one line (the message never quotes the input);
        with `linger` (the request's receive), the answer goes out whole before the connection ends
        (lingering_close)."""
        log_client_error(status, scope["method"], scope["path"], message)
        body = json.dumps({"error": message}).encode()
        known = request_id()
        extra = [*extra, (b"x-bentoml-request-id", known.encode())] if known != "-" else extra
        await send(self._json_start(status, body, extra))
        await send({"type": "http.response.body", "body": body, "more_body": linger is not None})
        if linger is not None:
            await lingering_close(linger, send)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        overloaded = False
        is_api = scope.get("path") in self.api_paths

        async def send_with_headers(message) -> None:
            nonlocal overloaded
            if message["type"] == "http.response.start":
                if is_api and message["status"] == 503:
                    overloaded = True
                    await send(self._json_start(503, self.overloaded, [(b"retry-after", self.retry_after)]))
                    return
                message = {**message, "headers": [*message.get("headers", []), *self._model_headers()]}
            elif overloaded:  # the replacement body went out with the start message's length: send it once
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": self.overloaded})
                return
            await send(message)

        headers = dict(scope.get("headers", []))
        if is_api and not self._authorized(headers):
            await self._refuse(scope, send, 401, "missing or wrong API key: send the header Authorization: Bearer <key>")
            return
        if scope.get("path") == OPENAPI_PATH and scope["method"] in ("GET", "HEAD"):
            document = self.openapi_document()
            await send(self._json_start(200, document))
            await send({"type": "http.response.body", "body": document if scope["method"] == "GET" else b""})
            return
        if is_api and headers.get(b"content-type", b"").lower().startswith(FORM_TYPES):
            # The APIs take JSON only; BentoML's multipart parser answered 500 to a broken part.
            await self._refuse(scope, send, 415, "the APIs take a JSON body (content-type: application/json), not a form")
            return
        length = headers.get(b"content-length")
        if not is_api:
            await self.app(scope, receive, send_with_headers)
            return
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, send, 413, f"request body is {length.decode()} bytes; the limit is {self.max_bytes}")
            return
        replay = await self._read_body(scope, receive, send)
        if replay is not None:
            await self.app(scope, replay, send_with_headers)

    async def _read_body(self, scope, receive, send):
        """The whole body, within the size limit and the deadline: a receive() that replays it, or None once refused."""
        chunks, size, more = [], 0, True
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        while more:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                self.on_stalled()
                message = f"request body not received within {self.body_timeout:g} s"
                await self._refuse(scope, send, 408, message, [(b"connection", b"close")], linger=receive)
                return None
            if message["type"] != "http.request":
                return None  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                message = f"request body is more than {self.max_bytes} bytes; the limit is {self.max_bytes}"
                await self._refuse(scope, send, 413, message)
                return None
        replayed = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return replayed
            return await receive()

        return replay
