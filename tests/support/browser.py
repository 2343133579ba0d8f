"""Headless Chromium through chromedriver's W3C WebDriver HTTP API (httpx; no selenium needed).

Needs the Debian packages chromium and chromium-driver; without them a test fails and says so (no skip). The browser
resolves no host name but localhost (`--host-resolver-rules`), so a page that needs the network shows it, even on a
machine that has one.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.ports import free_local_port

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element key
CHROMIUM_BINARIES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
INSTALL = "apt-get install -y chromium chromium-driver"


class WebDriver:
    """The few WebDriver commands the tests need."""

    def __init__(self, base: str, browser: str, window: tuple[int, int] = (1000, 900)) -> None:
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
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",  # no network: only loopback and file://
            f"--window-size={window[0]},{window[1]}",
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

    def open(self, url: str) -> None:
        self.session_command("POST", "/url", {"url": url})

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

    def script(self, source: str, *args):
        return self.session_command("POST", "/execute/sync", {"script": source, "args": list(args)})

    def wait_for(self, source: str, timeout: float = 30, message: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not self.script(source):
            assert time.monotonic() < deadline, message or f"timed out waiting for: {source}"
            time.sleep(0.1)

    def page_text(self) -> str:
        return self.script("return document.body ? document.body.innerText : ''")

    def wait_for_text(self, wanted: list[str], timeout: float = 60, what: str = "the page") -> str:
        """Poll the page's visible text until it holds every wanted string (a single-page app renders late)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.page_text()
            missing = [item for item in wanted if item not in text]
            if not missing:
                return text
            assert time.monotonic() < deadline, f"{what}: {missing} not shown after {timeout:.0f} s; it shows:\n{text[:3000]}"
            time.sleep(0.25)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.session_command("GET", "/screenshot")))
        return path

    def quit(self) -> None:
        try:
            self.command("DELETE", f"/session/{self.session}")
        finally:
            self.http.close()


@contextlib.contextmanager
def headless_chromium(log_dir: Path, window: tuple[int, int] = (1000, 900)) -> Iterator[WebDriver]:
    """chromedriver on a free loopback port driving headless Chromium; stopped by PID."""
    binary = next((path for path in CHROMIUM_BINARIES if os.access(path, os.X_OK)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail(f"headless Chromium is needed for this test: {INSTALL} (found browser={binary}, driver={driver})")
    port = free_local_port()
    log = log_dir / "chromedriver.log"
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
        web = WebDriver(f"http://127.0.0.1:{port}", binary, window)
        yield web
    finally:
        if web is not None:
            web.quit()
        process.terminate()
        process.wait(timeout=20)


def keep_screenshot(web: WebDriver, folder: Path, name: str) -> Path:
    """A screenshot in the test's folder, copied to $KSTS_SCREENSHOTS_DIR when set (to look at after the run)."""
    path = web.screenshot(folder / name)
    if os.environ.get("KSTS_SCREENSHOTS_DIR"):
        keep = Path(os.environ["KSTS_SCREENSHOTS_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, keep / name)
    return path
