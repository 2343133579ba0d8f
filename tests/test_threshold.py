"""evaluate.threshold end to end: the train stage saves it with the model, and the served model's `similar` flips there.

One tiny study (one trial) at threshold 3.5 through the train stage, its model imported into a BentoML store and
served by a real `bentoml serve` on 127.0.0.1 (the helpers of tests/test_service.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import yaml

from pipeline.models import ModelSettings
from pipeline.paths import CLEAN_DIR, MODEL_DIR, TRAIN_METRICS
from pipeline.tables import read_jsonl, split_path
from tests.test_service import MODEL_NAME, SERVER_ENV, bentoml_server, pair_body, post, run_python

THRESHOLD = 3.5  # not KLUE's 3.0, so a pair scored in [3.0, 3.5) tells the two apart


def set_param(work: Path, section: str, **values) -> None:
    params = yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8"))
    params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def served_answers(url: str, pairs: list[tuple[str, str]], batch: int = 64) -> list[dict]:
    answers = []
    for start in range(0, len(pairs), batch):
        response = post(url, "/similarity_batch", {"pairs": [pair_body(pair) for pair in pairs[start : start + batch]]})
        assert response.status_code == 200, response.text
        assert response.headers["X-Model-Threshold"] == str(THRESHOLD)
        answers += response.json()
    return answers


def test_a_model_trained_at_3_5_is_served_as_similar_from_3_5_on(stage_repo, tmp_path):
    set_param(stage_repo, "evaluate", threshold=THRESHOLD)
    set_param(stage_repo, "study", n_trials=1)
    from pipeline.stages import train

    train.main()
    folder = (stage_repo / MODEL_DIR).resolve()
    assert ModelSettings.load(folder).threshold == THRESHOLD
    calibration = json.loads((stage_repo / TRAIN_METRICS).read_text(encoding="utf-8"))["calibration"]
    assert calibration["threshold"] == THRESHOLD  # auto judged the map at the model's threshold

    home = tmp_path / "bentoml_home"
    code = f"from pipeline.stages.package import import_pair_model\nprint(import_pair_model({str(folder)!r}, {MODEL_NAME!r}))\n"
    tag = run_python(code, home).split()[-1]
    records = [row for split in ("test", "validation", "train") for row in read_jsonl(stage_repo / split_path(CLEAN_DIR, split))]
    pairs = [(row["sentence1"], row["sentence2"]) for row in records]
    with bentoml_server("service:KoreanSimilarity", home, {**SERVER_ENV, "KSTS_SERVE_MODEL_NAME": tag}) as url:
        answers = served_answers(url, pairs)
        schema = httpx.get(f"{url}/docs.json", timeout=30).json()["components"]["schemas"]["Similarity"]
    assert "3.0" not in schema["properties"]["similar"]["description"]

    assert [answer["similar"] for answer in answers] == [answer["score"] >= THRESHOLD for answer in answers]
    between = [answer["score"] for answer in answers if 3.0 <= answer["score"] < THRESHOLD]
    above = [answer["score"] for answer in answers if answer["score"] >= THRESHOLD]
    scores = sorted(round(answer["score"], 2) for answer in answers)
    assert between and above, f"the tiny model must score pairs on both sides of {THRESHOLD} above 3.0: {scores}"
