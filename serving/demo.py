"""The demo page (/demo/): two sentences in, the score and the verdict out, no external assets; and the packaged
model's card (/demo/model-card), which the service puts in MODEL_CARD once its model is loaded."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from serving.guard import content_security_policy

DEMO_PAGE = (Path(__file__).resolve().parent / "demo.html").read_text(encoding="utf-8")
DEMO_CSP = content_security_policy(DEMO_PAGE)  # its inline script and style by hash; no other source
MODEL_CARD: dict[str, str] = {}  # the packaged model's card (text), once loaded


async def demo_page(_request) -> HTMLResponse:
    """The demo page: two sentences in, the score and the verdict out (no external assets)."""
    return HTMLResponse(DEMO_PAGE, headers={"Content-Security-Policy": DEMO_CSP})


async def model_card(_request) -> PlainTextResponse:
    """The packaged model's card (Markdown, written by the register stage)."""
    if "text" not in MODEL_CARD:
        return PlainTextResponse("this model was packaged without a model card", status_code=404)
    return PlainTextResponse(MODEL_CARD["text"], media_type="text/markdown; charset=utf-8")


demo_app = Starlette(routes=[Route("/", demo_page), Route("/model-card", model_card)])
