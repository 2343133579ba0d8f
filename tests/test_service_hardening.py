"""The service against clients that misbehave: a schema fuzzer (schemathesis) on every API, stalled and slow
request bodies, and error bodies that must not echo traces, paths or the input.

The server is tests/test_service.py's session fixture (the tiny champion, 1 worker). `make fuzz` runs the fuzzer
with many more examples (KSTS_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

import httpx
import pytest

# The service fixtures (shared with tests/test_service.py: one server per session).
from tests.test_service import PAIRS, SETTINGS, bento_store, champion_folder, pair_body, served  # noqa: F401

FUZZ_EXAMPLES = int(os.environ.get("KSTS_FUZZ_EXAMPLES", "25"))  # per API operation and phase; `make fuzz`: more


def run_schemathesis(url: str, examples: int) -> subprocess.CompletedProcess:
    """Schemathesis' CLI over the live OpenAPI document: every phase (examples, coverage, fuzzing) and every
    check (no 5xx, documented statuses, bodies and headers as documented, valid data accepted, invalid refused)."""
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/docs.json", "--max-examples", str(examples)]
    return subprocess.run([*command, "--no-color"], capture_output=True, text=True, timeout=120 + 3 * examples)


def test_every_api_survives_schema_fuzzing(served):  # noqa: F811
    done = run_schemathesis(served, FUZZ_EXAMPLES)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    operations = sum(len(item) for item in httpx.get(f"{served}/docs.json", timeout=30).json()["paths"].values())
    assert "No issues found" in done.stdout and f"Tested: {operations}" in done.stdout, done.stdout[-3000:]


def test_the_openapi_document_lists_every_status_the_apis_answer(served):  # noqa: F811
    document = httpx.get(f"{served}/docs.json", timeout=30).json()
    for path in ("/similarity", "/similarity_batch"):
        operation = document["paths"][path]["post"]
        assert set(operation["responses"]) == {"200", "400", "401", "408", "413", "415", "500", "503", "504"}
        assert operation["requestBody"]["required"] is True
        assert "security" not in operation, "no API key set: the document must not ask for one"


def raw_request(url: str, head: bytes, body_parts: list[bytes], pause: float) -> tuple[bytes, float]:
    """Send the head, then each body part `pause` seconds apart, never finishing; the server's answer and when it came."""
    address = urlparse(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        started = time.monotonic()
        connection.sendall(head)
        answer = b""
        connection.settimeout(pause if pause else 30)
        for part in body_parts:
            connection.sendall(part)
            try:
                answer += connection.recv(65536)
                break
            except TimeoutError:
                continue
        connection.settimeout(30)
        while chunk := connection.recv(65536):  # until the server closes the connection
            answer += chunk
        return answer, time.monotonic() - started


def stalled_head(length: int) -> bytes:
    return (
        f"POST /similarity HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("drip", [False, True], ids=["stalled", "slow drip"])
def test_a_stalled_or_dripping_body_gets_408_and_is_counted_while_others_are_served(served, drip):  # noqa: F811
    body = json.dumps(pair_body(PAIRS[0])).encode()
    deadline = SETTINGS.body_timeout_seconds
    parts = [body[i : i + 1] for i in range(len(body) - 1)] if drip else [body[:10]]
    before = stalled_count(served)
    with httpx.Client(timeout=30) as client:
        answer, seconds = raw_request(served, stalled_head(len(body)), parts, pause=deadline / 8 if drip else 0)
        assert client.post(f"{served}/similarity", json=pair_body(PAIRS[1])).status_code == 200
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 408 " in status_line, answer[:300]
    assert b"connection: close" in rest.lower() and b"not received within" in rest
    assert deadline - 0.5 <= seconds <= deadline + 5, seconds
    assert stalled_count(served) == before + 1


def stalled_count(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("stalled_requests_total"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


MARKER = "LEAK-f3a9"
LEAKY_INPUTS = [
    # (name, path, raw body or JSON, content type)
    ("broken JSON", "/similarity", f'{{"sentence1": "{MARKER} /etc/passwd",'.encode(), "application/json"),
    ("wrong type", "/similarity", {"sentence1": {"x": MARKER}, "sentence2": "나"}, "application/json"),
    ("too long", "/similarity", {"sentence1": MARKER * 200, "sentence2": "나"}, "application/json"),
    ("unknown field only", "/similarity_batch", {"pairs": [{MARKER: MARKER}]}, "application/json"),
    ("form", "/similarity", f"sentence1={MARKER}".encode(), "application/x-www-form-urlencoded"),
    ("text", "/similarity", MARKER.encode(), "text/plain"),
]


@pytest.mark.parametrize(("name", "path", "body", "content_type"), LEAKY_INPUTS, ids=[row[0] for row in LEAKY_INPUTS])
def test_error_bodies_echo_no_input_trace_or_path(served, name, path, body, content_type):  # noqa: F811
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(f"{served}{path}", content=raw, headers={"content-type": content_type}, timeout=30)
    assert 400 <= response.status_code < 500, f"{name}: {response.status_code} {response.text[:300]}"
    assert MARKER not in response.text, f"{name} echoed the input: {response.text[:300]}"
    for leak in ("Traceback", 'File "', "/tmp/", "/home/", "site-packages", str(os.getcwd())):
        assert leak not in response.text, f"{name}: {leak!r} in {response.text[:300]}"
    assert response.json()["error"]
