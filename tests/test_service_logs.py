"""The service's log under bad requests: a client error (4xx) is one line with its status and request id, no
traceback and no echo of the input; a server error (5xx) keeps its traceback (serving/logs.py).

The real service is tests/test_service.py's session server (the tiny champion, 1 worker), whose output goes to a
log file beside its BENTOML_HOME; the server error comes from a test-only service (tests/support/faulty_service.py).
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from urllib.parse import urlparse

import httpx

# The service fixtures (shared with tests/test_service.py: one server per session).
from tests.test_service import SETTINGS, bento_store, bentoml_server, champion_folder, served  # noqa: F401

MARKER = "LEAK-7c1e"
BAD_REQUESTS = [
    # (path, raw body, content type, status)
    ("/similarity", f'{{"sentence1": "{MARKER}",'.encode(), "application/json", 400),
    ("/similarity", json.dumps({"sentence1": {"x": MARKER}, "sentence2": "나"}).encode(), "application/json", 400),
    ("/similarity", json.dumps({"sentence1": MARKER * 200, "sentence2": "나"}).encode(), "application/json", 400),
    ("/similarity", f"sentence1={MARKER}&sentence2=x".encode(), "application/x-www-form-urlencoded", 415),
    ("/similarity_batch", json.dumps({"pairs": [{MARKER: MARKER}]}).encode(), "application/json", 400),
    ("/similarity", MARKER.encode(), "text/plain", 400),
    ("/similarity_batch", json.dumps({"pairs": MARKER}).encode(), "application/json", 400),
]
OVERSIZED = ("/similarity", MARKER.encode() * (SETTINGS.max_request_bytes // len(MARKER) + 1), "application/json", 413)
FLOOD = 500
MAX_FLOOD_LOG_BYTES = 100_000
REQUEST_ID_HEADER = "x-bentoml-request-id"


def server_log(url: str, home: Path) -> Path:
    """The log file tests/test_service.py's bentoml_server writes the server's output to."""
    return home / f"serve-{urlparse(url).port}.log"


def send(client: httpx.Client, url: str, request: tuple[str, bytes, str, int]) -> httpx.Response:
    path, body, content_type, status = request
    response = client.post(f"{url}{path}", content=body, headers={"content-type": content_type})
    assert response.status_code == status, f"{path} {content_type}: {response.status_code} {response.text[:300]}"
    return response


def test_a_flood_of_bad_requests_logs_one_short_line_each_without_the_input(served, bento_store):  # noqa: F811
    log = server_log(served, Path(bento_store["home"]))
    start = log.stat().st_size
    kinds = itertools.cycle(BAD_REQUESTS)
    requests = [OVERSIZED if number % 50 == 0 else next(kinds) for number in range(FLOOD)]
    request_ids = []
    with httpx.Client(timeout=60) as client:
        for request in requests:
            response = send(client, served, request)
            request_ids.append((response.headers.get(REQUEST_ID_HEADER), response.status_code))
    added_bytes = log.read_bytes()[start:]
    added, size = added_bytes.decode("utf-8", errors="replace"), len(added_bytes)
    print(f"\n{FLOOD} bad requests added {size} bytes of log ({size / FLOOD:.0f} per request)")
    assert size < MAX_FLOOD_LOG_BYTES, f"{size} bytes of log for {FLOOD} bad requests:\n{added[-3000:]}"
    assert MARKER not in added, "the log echoes the input"
    assert "Traceback" not in added and "[ERROR]" not in added, added[-3000:]
    lines = added.splitlines()
    for request_id, status in request_ids:
        assert request_id, f"no request id on a {status}"
        mentions = [line for line in lines if request_id in line]
        assert len(mentions) == 1 and f"client error {status} " in mentions[0], (request_id, status, mentions)
    assert len(lines) <= FLOOD, f"{len(lines)} lines for {FLOOD} requests"


def test_a_server_error_keeps_its_traceback_while_a_client_error_stays_one_line(tmp_path):
    from tests.support.faulty_service import FAULT

    with bentoml_server("tests.support.faulty_service:Faulty", tmp_path, {}) as url:
        log = server_log(url, tmp_path)
        start = log.stat().st_size
        with httpx.Client(timeout=60) as client:
            fault = client.post(f"{url}/fail", json={"text": MARKER})
            bad = client.post(f"{url}/fail", json={"text": {"x": MARKER}})
            refused = client.post(f"{url}/fail", content=b"x" * 2048, headers={"content-type": "application/json"})
        added = log.read_bytes()[start:].decode("utf-8", errors="replace")
    assert (fault.status_code, bad.status_code, refused.status_code) == (500, 400, 413)
    assert re.search(rf"\[ERROR\].*Exception on /fail \[POST\].*\n(.*\n)*Traceback.*\n(.*\n)*RuntimeError: {FAULT}", added), added
    for client_error in (bad, refused):
        request_id = client_error.headers[REQUEST_ID_HEADER]
        mentions = [line for line in added.splitlines() if request_id in line]
        assert len(mentions) == 1 and f"client error {client_error.status_code} " in mentions[0], mentions
    assert added.count("Traceback") == 1 and MARKER not in added, added
