"""The seed's serving style, as the baseline of bench/serve_load.py: FastAPI on uvicorn, one forward per request.

A plain sync endpoint (FastAPI runs it in its thread pool, so concurrent requests run concurrent forward
passes), torch's default thread count, uvicorn's defaults (one process, access log on). It scores through
pipeline.scoring like the service, so answers are the same; only the serving differs.

    python bench/naive_fastapi.py --model-dir PAIR_MODEL_FOLDER [--port 3200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.scoring import PairScorer


class PairIn(BaseModel):
    sentence1: str
    sentence2: str


def make_app(model_dir: str) -> FastAPI:
    """The app: the model loaded once, one forward per request."""
    scorer = PairScorer.from_folder(model_dir)
    app = FastAPI()

    @app.get("/readyz")
    def readyz() -> str:
        return "ok"

    @app.post("/similarity")
    def similarity(pair: PairIn) -> dict:
        score = float(scorer.score([(pair.sentence1, pair.sentence2)])[0])
        return {"score": score, "similar": score >= scorer.settings.threshold, "probability": score / 5.0}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a saved pair-model folder (similarity.json beside the weights)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3200)
    args = parser.parse_args()
    uvicorn.run(make_app(args.model_dir), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
