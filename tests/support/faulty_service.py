"""A BentoML service for the tests only: one API that fails with a genuine server error (500), behind the same
request guard as the real service, so a test can show that a server error keeps its traceback in the log while
a client error is one line (tests/test_service_logs.py)."""

from __future__ import annotations

import bentoml

from serving.guard import RequestGuard

FAULT = "a server fault raised on purpose by the test service"


@bentoml.service(name="faulty", workers=1, threads=1, logging={"access": {"enabled": False}})
class Faulty:
    """`/fail` raises RuntimeError for any valid input; invalid input is BentoML's 400."""

    @bentoml.api
    def fail(self, text: str) -> str:
        raise RuntimeError(f"{FAULT} ({len(text)} characters)")


Faulty.add_asgi_middleware(
    RequestGuard,
    max_bytes=1024,
    api_paths=("/fail",),
    openapi_document=lambda: b"{}",
    model_headers={},
    overloaded_body=b'{"error": "over capacity"}',
    body_timeout_seconds=5,
)
