"""The demo page in a real headless Chromium: type two sentences, click, read the verdict.

Drives Debian's chromium through chromedriver's W3C WebDriver HTTP API (httpx; no selenium needed).
Needs `apt-get install -y chromium chromium-driver`; without them the test fails and says so (no skip).
The server is tests/test_service.py's session fixture.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

# The service fixtures (shared with tests/test_service.py: one server per session).
from serving.ports import free_local_port
from tests.test_service import PAIRS, bento_store, champion_folder, offline_scores, served  # noqa: F401

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element key
CHROMIUM_BINARIES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
INSTALL = "apt-get install -y chromium chromium-driver"


class WebDriver:
    """The few WebDriver commands the test needs."""

    def __init__(self, base: str, browser: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=60)
        arguments = [
            "--headless=new",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,900",
        ]
        capabilities = {"browserName": "chrome", "goog:chromeOptions": {"binary": browser, "args": arguments}}
        self.session = self.command("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})["sessionId"]

    def command(self, method: str, path: str, body: dict | None = None):
        response = self.http.request(method, path, json=body)
        value = response.json().get("value")
        assert response.status_code == 200, f"WebDriver {method} {path}: {response.status_code} {value}"
        return value

    def session_command(self, method: str, path: str, body: dict | None = None):
        return self.command(method, f"/session/{self.session}{path}", body)

    def find(self, css: str) -> str:
        return self.session_command("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def type_into(self, css: str, text: str) -> None:
        element = self.find(css)
        self.session_command("POST", f"/element/{element}/clear", {})
        self.session_command("POST", f"/element/{element}/value", {"text": text})

    def click(self, css: str) -> None:
        self.session_command("POST", f"/element/{self.find(css)}/click", {})

    def text(self, css: str) -> str:
        return self.session_command("GET", f"/element/{self.find(css)}/text")

    def script(self, source: str):
        return self.session_command("POST", "/execute/sync", {"script": source, "args": []})

    def wait_for(self, source: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.script(source):
            assert time.monotonic() < deadline, f"timed out waiting for: {source}"
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.session_command("GET", "/screenshot")))

    def quit(self) -> None:
        try:
            self.command("DELETE", f"/session/{self.session}")
        finally:
            self.http.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """chromedriver on a free loopback port driving headless Chromium; stopped by PID."""
    binary = next((path for path in CHROMIUM_BINARIES if os.access(path, os.X_OK)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail(f"headless Chromium is needed for the demo page test: {INSTALL} (found browser={binary}, driver={driver})")
    port = free_local_port()
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    command = [driver, f"--port={port}", f"--log-path={log}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    web = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/status", timeout=2).json()["value"]["ready"]:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            assert time.monotonic() < deadline and process.poll() is None, f"chromedriver did not start; see {log}"
            time.sleep(0.2)
        web = WebDriver(f"http://127.0.0.1:{port}", binary)
        yield web
    finally:
        if web is not None:
            web.quit()
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.parametrize("index", [0, 1])
def test_a_person_types_two_sentences_and_sees_the_verdict(browser, served, offline_scores, index, tmp_path):  # noqa: F811
    first, second = PAIRS[index]
    expected = offline_scores[index]
    browser.session_command("POST", "/url", {"url": f"{served}/demo/"})
    browser.type_into("#sentence1", first)
    browser.type_into("#sentence2", second)
    assert browser.script("return document.getElementById('sentence1').value") == first  # Hangul typed as is
    browser.click("#compare")
    browser.wait_for("return document.getElementById('result').dataset.state === 'done'")
    browser.screenshot(tmp_path / "demo.png")
    verdict = browser.text("#verdict")
    assert verdict == ("유사함 · similar" if expected >= 3.0 else "유사하지 않음 · not similar"), verdict
    assert f"{expected:.2f} / 5" in browser.text("#score")
    assert browser.text("#model").startswith("model korean-sts-similarity:")


def test_the_page_shows_the_services_message_for_bad_input(browser, served):  # noqa: F811
    browser.session_command("POST", "/url", {"url": f"{served}/demo/"})
    browser.type_into("#sentence1", "가" * 1001)
    browser.type_into("#sentence2", "나")
    browser.click("#compare")
    browser.wait_for("return document.getElementById('result').dataset.state === 'done'")
    assert browser.text("#verdict") == "오류 · Error 400"
    assert "at most 1000 characters" in browser.text("#score")
