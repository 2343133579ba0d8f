"""The demo page in a real headless Chromium: type two sentences, click, read the verdict.

Drives Debian's chromium through chromedriver's W3C WebDriver HTTP API (tests/support/browser.py).
Needs `apt-get install -y chromium chromium-driver`; without them the test fails and says so (no skip).
The server is tests/test_service.py's session fixture.
"""

from __future__ import annotations

import pytest

from tests.support.browser import headless_chromium

# The service fixtures (shared with tests/test_service.py: one server per session).
from tests.test_service import PAIRS, bento_store, champion_folder, offline_scores, served  # noqa: F401


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium for this module (tests/support/browser.py)."""
    with headless_chromium(tmp_path_factory.mktemp("chromedriver")) as web:
        yield web


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
    assert "threshold 3.0" in browser.text("#score")  # the served model's own (X-Model-Threshold), not the page's
    assert browser.text("#model").startswith("model korean-sts-similarity:")


def test_the_page_shows_the_services_message_for_bad_input(browser, served):  # noqa: F811
    browser.session_command("POST", "/url", {"url": f"{served}/demo/"})
    browser.type_into("#sentence1", "가" * 1001)
    browser.type_into("#sentence2", "나")
    browser.click("#compare")
    browser.wait_for("return document.getElementById('result').dataset.state === 'done'")
    assert browser.text("#verdict") == "오류 · Error 400"
    assert "at most 1000 characters" in browser.text("#score")
