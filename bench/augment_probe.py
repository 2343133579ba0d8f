"""Augmented SBERT beside the pipeline (Thakur et al. 2021; pipeline/silver.py): a cross-encoder (the `cross` head)
trained on the gold pairs labels silver pairs recombined from in-domain NLI sentences and picked by the base
bi-encoder's similarity; the bi-encoder then trains on gold + silver (+ the NLI triplets, as the refit does).

    python bench/augment_probe.py NAME [--silver-pairs 3000] [--per-sentence 2] [--silver-sources klue-nli]
                                       [--set key=value ...] [--cross-set key=value ...]

--set: the bi-encoder's train.<KEY> overrides (default: the refit's budget, all pairs and all NLI triplets);
--cross-set: the cross-encoder's. --gold-pairs N: teacher and student see the same seeded N gold pairs (as a trial's
budget does), the student all silver pairs beside them. On the pipeline's data/clean, data/tokenized and models/base (after
`dvc repro tokenize`). Writes bench/results/train_probe/NAME.json (as bench/train_probe.py, plus the teacher's
figures, the silver labels' spread and each phase's seconds) and NAME-silver.jsonl (the labelled pairs).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_probe import RESULTS, probe_settings, split_scores, write_probe
from pipeline.config import load_params
from pipeline.finetune import finetune, select_train_pairs
from pipeline.heads import check_head_params, head_named, save_pair_model
from pipeline.heads.bi import load_bi_encoder
from pipeline.metrics import similarity_metrics
from pipeline.nli import NLI, from_sources
from pipeline.paths import BASE_DIR, CLEAN_DIR
from pipeline.scoring import PairScorer
from pipeline.silver import pick_pairs, silver_rows, silver_sentences
from pipeline.study.runner import nli_triplets
from pipeline.tables import read_jsonl, split_path

REFIT_BUDGET = {"max_train_pairs": None, "nli_triplets": None}
CROSS_DEFAULTS = {"max_train_pairs": None, "nli_triplets": 0, "learning_rate": 5.0e-05, "batch_size": 16}


def overridden(train, overrides: list[str], base: dict):
    """train params with base, then KEY=VALUE (YAML) overrides."""
    values = {**base, **{key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in overrides)}}
    return train.model_validate({**train.model_dump(), **values}), values


def train_teacher(params, cross_train, folder: Path) -> tuple[PairScorer, dict, float]:
    """The cross head trained on the gold pairs, saved in folder; its scorer, validation and test figures, seconds."""
    model_params = params.model.model_copy(update={"head": "cross"})
    pairs = head_named("cross").training_pairs(model_params, params.model.name)
    model, result = finetune(str(BASE_DIR), model_params, pairs, cross_train, params.evaluate.threshold, quiet=True)
    save_pair_model(model, pairs.tokenizer, probe_settings(params, "cross"), folder)
    scorer = PairScorer.from_folder(folder)
    figures = {}
    for split in ("validation", "test"):
        raw, gold = split_scores(scorer, split)
        figures[split] = similarity_metrics(gold, raw, params.evaluate.threshold)
    return scorer, figures, result.train_seconds


def label_silver(params, scorer: PairScorer, sources: list[str], per_sentence: int, max_pairs: int) -> list[dict]:
    """Silver rows: the sources' clean NLI sentences (no test sentence), each paired with its nearest others by the
    base bi-encoder, labelled by the teacher."""
    test_sentences = {r[c] for r in read_jsonl(split_path(CLEAN_DIR, "test")) for c in ("sentence1", "sentence2")}
    triplets = [t for t in read_jsonl(split_path(CLEAN_DIR, NLI)) if from_sources(t["source"], sources)]
    sentences = silver_sentences(triplets, test_sentences)
    encoder = load_bi_encoder(str(BASE_DIR), params.model.max_length, params.model.pooling, params.model.lowercase)
    embeddings = encoder.encode([params.model.prefix + s for s in sentences], batch_size=64, convert_to_tensor=True)
    pairs = pick_pairs(embeddings, per_sentence, max_pairs, params.train.seed)
    labels = scorer.raw_scores([(sentences[first], sentences[second]) for first, second in pairs])
    return silver_rows(sentences, pairs, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--silver-pairs", type=int, default=3000)
    parser.add_argument("--per-sentence", type=int, default=2)
    parser.add_argument("--silver-sources", nargs="*", default=["klue-nli"])
    parser.add_argument("--gold-pairs", type=int, default=None, help="a seeded subset of the gold pairs (default: all)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cross-set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    params = load_params()
    train, overrides = overridden(params.train, args.set, REFIT_BUDGET)
    if train.max_train_pairs is not None:
        parser.error("--set max_train_pairs: the student trains on all gold (--gold-pairs) and silver pairs")
    gold_budget = {"max_train_pairs": args.gold_pairs}
    cross_train, cross_overrides = overridden(params.train, args.cross_set, CROSS_DEFAULTS | gold_budget)
    params = params.model_copy(update={"train": train, "refit": params.refit.model_copy(update={"enabled": False})})
    seconds = {}

    with tempfile.TemporaryDirectory(prefix="teacher-") as folder:
        started = time.perf_counter()
        teacher, teacher_figures, teacher_seconds = train_teacher(params, cross_train, Path(folder) / "model")
        seconds["teacher"] = time.perf_counter() - started
        print(f"teacher (cross head): {teacher_figures} in {seconds['teacher']:.0f} s")
        started = time.perf_counter()
        rows = label_silver(params, teacher, args.silver_sources, args.per_sentence, args.silver_pairs)
        seconds["silver"] = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}-silver.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    labels = np.array([row["score"] for row in rows])
    spread = {"pairs": len(rows), "mean": float(labels.mean()),
              "similar_share": float(np.mean(labels >= params.evaluate.threshold))}  # fmt: skip
    print(f"silver: {spread} in {seconds['silver']:.0f} s")

    import datasets

    head = check_head_params(params.model, train)
    gold = head.training_pairs(params.model, params.model.name)
    columns = ["guid", "source", "sentence1", "sentence2", "score"]
    gold_rows = select_train_pairs(gold.train, args.gold_pairs, train.seed).select_columns(columns)  # the teacher's
    augmented = datasets.concatenate_datasets([gold_rows, datasets.Dataset.from_list(rows)])
    started = time.perf_counter()
    model, result = finetune(
        str(BASE_DIR), params.model, gold._replace(train=augmented), train, params.evaluate.threshold,
        quiet=True, nli=nli_triplets(params),
    )  # fmt: skip
    seconds["student"] = time.perf_counter() - started
    extra = {
        "overrides": overrides, "cross_overrides": cross_overrides, "silver": spread, "teacher": teacher_figures,
        "teacher_train_seconds": round(teacher_seconds, 1),
        "seconds": {phase: round(value, 1) for phase, value in seconds.items()},
    }  # fmt: skip
    write_probe(args.name, params, model, result, seconds["student"], extra)


if __name__ == "__main__":
    main()
