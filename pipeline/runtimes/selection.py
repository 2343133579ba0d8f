"""Choosing the served runtime (register, once per version): each candidate is built into the model folder and gated
against fp32 torch, with F1 counted at the model's own threshold (its settings.threshold, from evaluate.threshold)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.models import ModelSettings
from pipeline.paths import ONNX_DIR
from pipeline.runtimes import RUNTIMES, candidates
from pipeline.runtimes.gate import GateResult, GateRule, at_pass_sizes, judge
from pipeline.runtimes.int8 import (
    CALIBRATION_BATCH,
    CALIBRATION_SENTENCES,
    INT8_RECIPES,
    CalibrationSet,
    Int8Recipe,
    spread_sample,
)
from serving.runtime import load_scorer
from serving.scorer import PairScorer

EXAMPLE_PAIRS = [  # what the latency is measured on (and the registered model's input example)
    ("오늘 날씨가 정말 좋네요.", "오늘은 날씨가 매우 좋습니다."),
    ("숙소 위치가 역에서 가까워요.", "이 정책은 내년부터 시행됩니다."),
]


@dataclass
class RuntimeChoice:
    """The runtime a Bento serves, why, every candidate's gate figures, and the int8 recipe that made its graph."""

    runtime: str
    reason: str
    gate: list[dict[str, Any]] = field(default_factory=list)
    recipe: str | None = None  # onnx-int8: which of INT8_RECIPES passed; None for the other runtimes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_pairs(split: str) -> tuple[list[tuple[str, str]], np.ndarray]:
    """A clean split's pairs and gold scores."""
    from pipeline.paths import CLEAN_DIR
    from pipeline.tables import read_jsonl, split_path

    records = read_jsonl(split_path(CLEAN_DIR, split))
    return [(r["sentence1"], r["sentence2"]) for r in records], np.array([r["score"] for r in records], dtype=np.float64)


def served_metrics(folder: Path, runtime: str, torch_test: dict[str, Any], pairs_per_pass: int) -> dict[str, dict[str, Any]]:
    """The test split's metrics (F1 at the model's threshold) as fp32 torch scores it, which the evaluate stage measured
    (torch_test: reports/metrics.json's `test`), and as the chosen runtime does (what the Bento answers, pairs_per_pass
    to a forward pass: serve.forward_batch_size)."""
    if runtime == "torch":
        return {"torch": torch_test}
    from pipeline.metrics import similarity_metrics

    pairs, gold = split_pairs("test")
    scores = load_scorer(folder, runtime).score(pairs, batch_size=pairs_per_pass)
    served = similarity_metrics(gold, scores, ModelSettings.load(folder).threshold)
    return {"torch": torch_test, runtime: served}


def training_sentences(pairs: Sequence[tuple[str, str]], count: int = CALIBRATION_SENTENCES) -> list[str]:
    """Up to count distinct sentences of the training split's pairs, evenly spaced: what static int8 calibrates on."""
    return spread_sample([sentence for pair in pairs for sentence in pair], count)


def calibration_batches(folder: Path, sentences: Sequence[str], training_pairs: Sequence[tuple[str, str]] = ()) -> CalibrationSet:
    """The fp32 graph's inputs for sentences as the served model reads them (normalized, prefixed, tokenized,
    truncated), in batches of CALIBRATION_BATCH all padded to the longest sentence: onnxruntime's histogram
    calibrators stack every batch's activations into one array, which needs one shape. training_pairs go along
    for the recipes that train (Int8Recipe.trains)."""
    from serving.onnx_scorer import OnnxPairScorer

    RUNTIMES["onnx"].build(folder)
    scorer = OnnxPairScorer.from_folder(folder, runtime="onnx")
    inputs, _ = scorer.encoder.model_inputs(scorer.model_inputs(sentences))
    batches = (
        {name: rows[start : start + CALIBRATION_BATCH] for name, rows in inputs.items()}
        for start in range(0, len(sentences), CALIBRATION_BATCH)
    )
    return CalibrationSet(batches, training_pairs)


@dataclass
class GateTrial:
    """One search's inputs: gates a runtime (and int8 recipe) built into folder against fp32 torch's scores of the pairs:
    `reference` if given, else scored once, when first needed, by `torch_scorer` (a torch scorer of the same trained
    weights) or else the folder's own torch model; the calibration batches are made once when first needed too."""

    folder: Path
    pairs: list[tuple[str, str]]
    gold: np.ndarray
    rule: GateRule
    threshold: float
    calibration: Sequence[str]
    torch_scorer: PairScorer | None = None
    reference: np.ndarray | None = None
    batches: CalibrationSet | None = None
    training_pairs: Sequence[tuple[str, str]] = ()  # for the recipes that train (Int8Recipe.trains)

    def gate(self, name: str, recipe: Int8Recipe | None) -> GateResult:
        """Build runtime `name` (by recipe), score the pairs with it at each of the rule's pass sizes, judge each: the
        first refusal is the result, else the largest pass's figures; a refused int8 graph is removed again."""
        if recipe is not None and recipe.calibrated and self.batches is None:
            self.batches = calibration_batches(self.folder, self.calibration, self.training_pairs)
        RUNTIMES[name].build(self.folder, recipe, self.batches if recipe is not None and recipe.calibrated else None)
        scorer, reference = load_scorer(self.folder, name), self.reference_scores()
        for size in self.rule.pass_sizes:
            scores = scorer.score(self.pairs, batch_size=size)
            result = judge(name, reference, scores, self.gold, self.threshold, self.rule, recipe and recipe.name, size)
            if not result.passed:
                break
        if result.passed:
            result = replace(result, reason="within tolerance " + at_pass_sizes(self.rule.pass_sizes))
        elif recipe is not None:
            (self.folder / ONNX_DIR / str(RUNTIMES[name].graph)).unlink()
        return result

    def reference_scores(self) -> np.ndarray:
        """fp32 torch's scores of the pairs, scored at most once."""
        if self.reference is None:
            self.reference = (self.torch_scorer or load_scorer(self.folder, "torch")).score(self.pairs)
        return self.reference


def keep_only(folder: Path, graph: str | None) -> None:
    """Remove every ONNX graph of the folder but `graph` (None: all of them)."""
    for path in (Path(folder) / ONNX_DIR).glob("*.onnx"):
        if path.name != graph:
            path.unlink()


def recipe_needs(recipe: Int8Recipe, calibration: Sequence[str], training_pairs: Sequence[tuple[str, str]]) -> str:
    """What the recipe needs and was not given ("" when nothing)."""
    if recipe.calibrated and not calibration:
        return "calibration sentences"
    return "training pairs" if recipe.trains and not training_pairs else ""


def choose_for_serving(folder: Path, settings, torch_scorer: PairScorer | None = None) -> RuntimeChoice:
    """What the package stage serves for ServeSettings `settings`: the runtime gated on the validation split against
    torch_scorer (None: the folder's torch model), int8 recipes calibrated on training sentences."""
    import torch

    pairs, gold = split_pairs("validation")
    gpu = (settings.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    rule = GateRule.from_settings(settings)
    training_pairs, _ = split_pairs("train")
    sentences = training_sentences(training_pairs)
    return choose_runtime(
        folder, settings.runtime, pairs, gold, rule, gpu, sentences, torch_scorer=torch_scorer, training_pairs=training_pairs
    )


def choose_runtime(
    folder: Path,
    choice: str,
    pairs: list[tuple[str, str]],
    gold: np.ndarray,
    rule: GateRule,
    gpu: bool = False,
    calibration: Sequence[str] = (),
    recipes: Sequence[Int8Recipe] = INT8_RECIPES,
    torch_scorer: PairScorer | None = None,
    training_pairs: Sequence[tuple[str, str]] = (),
) -> RuntimeChoice:
    """serve.runtime `choice` -> the first candidate the model supports that passes the gate on (pairs, gold); else torch.

    onnx-int8 is tried with each of `recipes` in turn (fastest first; a calibrated one needs calibration sentences, one
    that trains training_pairs too).
    The candidates' files are built into folder; those of runtimes and recipes not chosen are removed again. The gate's
    reference is fp32 torch: torch_scorer if given (the same trained weights, already loaded), else the folder's.
    """
    settings = ModelSettings.load(folder)
    trial = GateTrial(
        Path(folder), list(pairs), gold, rule, settings.threshold, calibration, torch_scorer, training_pairs=training_pairs
    )
    results, reasons = [], []
    for name in candidates(choice, gpu):
        if not RUNTIMES[name].supports(settings):
            reasons.append(f"{name}: not available for the {settings.head} head")
            continue
        for recipe in recipes if RUNTIMES[name].quantized else (None,):
            label = f"{name} ({recipe.name})" if recipe is not None else name
            missing = recipe and recipe_needs(recipe, calibration, training_pairs)
            if missing:
                reasons.append(f"{label}: skipped: no {missing}")
                continue
            result = trial.gate(name, recipe)
            results.append(asdict(result))
            reasons.append(f"{label}: {result.reason}")
            if result.passed:
                keep_only(folder, RUNTIMES[name].graph)
                return RuntimeChoice(name, "; ".join(reasons), results, result.recipe)
    keep_only(folder, None)
    why = "; ".join(reasons) or (f"serve.runtime {choice}" + (" on a GPU" if gpu and choice == "auto" else ""))
    return RuntimeChoice("torch", f"torch: {why}", results)


def served_latency(folder: Path, runtime: str, settings) -> dict[str, Any]:
    """The latency of the model in folder on `runtime` as a worker serves it: in-process, with one worker's threads."""
    from pipeline.runtimes.latency import measure_latency

    scorer = load_scorer(folder, runtime, threads=settings.torch_threads)
    return {"runtime": runtime, **measure_latency(scorer, EXAMPLE_PAIRS * 16, forward_batch_size=settings.forward_batch_size)}


def prepare_for_serving(folder: Path, settings, torch_scorer: PairScorer, torch_test: dict[str, Any]) -> dict[str, Any]:
    """Build into folder the runtime that ServeSettings `settings` choose behind the gate, and say what it measured: the
    choice with every candidate's gate figures, the test split's metrics as served, the latency as a worker serves it.
    torch_scorer and torch_test: fp32 torch of the same trained weights and its test metrics (the evaluate stage's),
    which register already holds: neither is loaded nor scored again."""
    choice = choose_for_serving(folder, settings, torch_scorer)
    return {
        "runtime": choice.as_dict(),
        "test": served_metrics(folder, choice.runtime, torch_test, settings.forward_batch_size),
        "latency": served_latency(folder, choice.runtime, settings),
    }
