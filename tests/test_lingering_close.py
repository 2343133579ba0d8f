"""A 408 to a client that is still sending its body goes out whole, and the connection ends only after the guard has
read what the client still sends (a lingering close): closing a socket with unread bytes sends a reset, which a
client meets while it reads the 408. Driven through RequestGuard's ASGI interface with the messages uvicorn gives;
the end-to-end 408 is tested against the real service in test_service_hardening.py."""

import asyncio
import time

from serving.guard import LINGER_SECONDS, RequestGuard

HEAD = {"type": "http", "method": "POST", "path": "/similarity"}
HEAD["headers"] = [(b"content-type", b"application/json"), (b"content-length", b"64")]


async def never_called(scope, receive, send) -> None:
    raise AssertionError("a refused request never reaches the app")


def refuse_a_slow_body(parts_after_the_408: list[dict]) -> tuple[list[dict], int, float]:
    """Run the guard (body deadline 0.2 s) on a client that sends nothing in time and then, once the 408 is out,
    sends `parts_after_the_408`: what the guard sent, how many of those parts it read, and how long it took."""
    sent, read = [], 0

    async def run() -> None:
        nonlocal read
        body = asyncio.Queue()

        async def receive() -> dict:
            nonlocal read
            message = await body.get()
            read += 1
            return message

        async def send(message: dict) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and message.get("more_body"):  # the 408 is out
                for part in parts_after_the_408:
                    body.put_nowait(part)

        guard = RequestGuard(never_called, 1024, ("/similarity",), lambda: b"{}", {}, b"", body_timeout_seconds=0.2)
        await guard(HEAD, receive, send)

    started = time.monotonic()
    asyncio.run(run())
    return sent, read, time.monotonic() - started


def test_a_408_goes_out_whole_and_the_rest_of_the_body_is_read_before_the_connection_ends():
    rest = [{"type": "http.request", "body": b"x", "more_body": more} for more in (True, True, False)]
    sent, read, seconds = refuse_a_slow_body(rest)
    start, answer, end = sent
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
    assert b"not received within 0.2 s" in answer["body"] and answer["more_body"] is True
    assert read == len(rest) and end == {"type": "http.response.body", "body": b""}  # closes once the body ended
    assert seconds < 0.2 + LINGER_SECONDS


def test_a_client_that_keeps_the_body_open_is_closed_after_the_linger():
    sent, read, seconds = refuse_a_slow_body([{"type": "http.request", "body": b"x", "more_body": True}])
    assert [message.get("more_body", False) for message in sent[1:]] == [True, False] and read == 1
    assert 0.2 + LINGER_SECONDS <= seconds < 0.2 + LINGER_SECONDS + 1
