"""The service's ASGI middleware: body-size limit before parsing, a clear 503 body, model headers on every response."""

from __future__ import annotations

import json


class RequestGuard:
    """ASGI middleware around the APIs.

    - refuses bodies over max_bytes with 413 before anything parses them;
    - replaces BentoML's generic body of a 503 from an API (the batch queue refused a request that would
      exceed max_latency_ms) with a clear one, and adds Retry-After;
    - adds X-Model-Name / X-Model-Version / X-Model-Registry-Version to every response.
    """

    def __init__(
        self,
        app,
        max_bytes: int,
        api_paths: tuple[str, ...],
        model_headers: dict[str, str],
        overloaded_body: bytes,
        retry_after_seconds: int = 1,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.api_paths = api_paths
        self.model_headers = model_headers  # filled by the service once its model is loaded
        self.overloaded = overloaded_body
        self.retry_after = str(retry_after_seconds).encode()

    def _model_headers(self) -> list[tuple[bytes, bytes]]:
        return [(key.lower().encode(), value.encode()) for key, value in self.model_headers.items()]

    def _json_start(self, status: int, body: bytes, extra: list[tuple[bytes, bytes]] = ()) -> dict:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
        return {"type": "http.response.start", "status": status, "headers": headers + self._model_headers()}

    async def _refuse(self, send, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send(self._json_start(status, body))
        await send({"type": "http.response.body", "body": body})

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
        if is_api and headers.get(b"content-type", b"").lower().startswith(b"multipart/"):
            # The APIs take JSON only; BentoML's multipart parser answered 500 to a broken part.
            await self._refuse(send, 415, "the APIs take a JSON body (content-type: application/json), not multipart")
            return
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_bytes:
                await self._refuse(send, 413, f"request body is {length.decode()} bytes; the limit is {self.max_bytes}")
                return
            await self.app(scope, receive, send_with_headers)
            return
        replay = await self._read_limited(receive, send)  # no Content-Length (chunked upload)
        if replay is not None:
            await self.app(scope, replay, send_with_headers)

    async def _read_limited(self, receive, send):
        """Read a body of unknown length up to the limit: a receive() that replays it, or None once refused with 413."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._refuse(send, 413, f"request body is more than {self.max_bytes} bytes; the limit is {self.max_bytes}")
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
