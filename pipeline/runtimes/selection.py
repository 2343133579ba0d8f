"""Choosing the served runtime (register, once per version): each candidate is built into the model folder and gated
against fp32 torch, with F1 counted at the model's own threshold (its settings.threshold, from evaluate.threshold)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.models import ModelSettings
from pipeline.paths import ONNX_DIR
from pipeline.runtimes import RUNTIMES, candidates
from pipeline.runtimes.gate import judge

EXAMPLE_PAIRS = [  # what the latency is measured on (and the registered model's input example)
    ("오늘 날씨가 정말 좋네요.", "오늘은 날씨가 매우 좋습니다."),
    ("숙소 위치가 역에서 가까워요.", "이 정책은 내년부터 시행됩니다."),
]


@dataclass
class RuntimeChoice:
    """The runtime a Bento serves, why, and every candidate's gate figures."""

    runtime: str
    reason: str
    gate: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_pairs(split: str) -> tuple[list[tuple[str, str]], np.ndarray]:
    """A clean split's pairs and gold scores."""
    from pipeline.paths import CLEAN_DIR
    from pipeline.tables import read_jsonl, split_path

    records = read_jsonl(split_path(CLEAN_DIR, split))
    return [(r["sentence1"], r["sentence2"]) for r in records], np.array([r["score"] for r in records], dtype=np.float64)


def served_metrics(folder: Path, runtime: str, split: str = "test") -> dict[str, dict[str, Any]]:
    """A split's metrics (F1 at the model's threshold) as fp32 torch scores it and as the chosen runtime does (what the
    Bento answers)."""
    from pipeline.metrics import similarity_metrics
    from pipeline.scoring import PairScorer

    pairs, gold = split_pairs(split)
    threshold = ModelSettings.load(folder).threshold
    names = dict.fromkeys(["torch", runtime])
    return {
        name: similarity_metrics(gold, PairScorer.from_folder(folder, runtime=name).score(pairs), threshold) for name in names
    }


def choose_for_serving(folder: Path, settings) -> RuntimeChoice:
    """What the package stage serves for ServeSettings `settings`: the runtime gated on the validation split."""
    import torch

    pairs, gold = split_pairs("validation")
    gpu = (settings.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    return choose_runtime(folder, settings.runtime, pairs, gold, settings.gate_tolerance, settings.gate_max_shift, gpu)


def choose_runtime(
    folder: Path,
    choice: str,
    pairs: list[tuple[str, str]],
    gold: np.ndarray,
    metric_tolerance: float,
    max_shift: float,
    gpu: bool = False,
) -> RuntimeChoice:
    """serve.runtime `choice` -> the first candidate the model supports that passes the gate on (pairs, gold); else torch.

    The candidates' files are built into folder; those of runtimes not chosen are removed again.
    """
    from pipeline.scoring import PairScorer

    settings = ModelSettings.load(folder)
    results, chosen, reasons = [], None, []
    reference = None
    for name in candidates(choice, gpu):
        runtime = RUNTIMES[name]
        if not runtime.supports(settings):
            reasons.append(f"{name}: not available for the {settings.head} head")
            continue
        runtime.build(folder)
        if reference is None:
            reference = PairScorer.from_folder(folder, runtime="torch").score(pairs)
        scores = PairScorer.from_folder(folder, runtime=name).score(pairs)
        result = judge(name, reference, scores, gold, settings.threshold, metric_tolerance, max_shift)
        results.append(asdict(result))
        reasons.append(f"{name}: {result.reason}")
        if result.passed:
            chosen = name
            break
    keep = RUNTIMES[chosen].graph if chosen else None
    for graph in (Path(folder) / ONNX_DIR).glob("*.onnx"):
        if graph.name != keep:
            graph.unlink()
    if chosen is None:
        why = "; ".join(reasons) or (f"serve.runtime {choice}" + (" on a GPU" if gpu and choice == "auto" else ""))
        return RuntimeChoice("torch", f"torch: {why}", results)
    return RuntimeChoice(chosen, "; ".join(reasons), results)


def served_latency(folder: Path, runtime: str, settings) -> dict[str, Any]:
    """The latency of the model in folder on `runtime` as a worker serves it: in-process, with one worker's threads."""
    import torch

    from pipeline.runtimes.latency import measure_latency
    from pipeline.scoring import PairScorer

    torch.set_num_threads(settings.torch_threads)
    scorer = PairScorer.from_folder(folder, runtime=runtime, threads=settings.torch_threads)
    return {"runtime": runtime, **measure_latency(scorer, EXAMPLE_PAIRS * 16, forward_batch_size=settings.forward_batch_size)}


def prepare_for_serving(folder: Path, settings) -> dict[str, Any]:
    """Build into folder the runtime that ServeSettings `settings` choose behind the gate, and say what it measured: the
    choice with every candidate's gate figures, the test split's metrics as served, the latency as a worker serves it."""
    choice = choose_for_serving(folder, settings)
    return {
        "runtime": choice.as_dict(),
        "test": served_metrics(folder, choice.runtime),
        "latency": served_latency(folder, choice.runtime, settings),
    }
