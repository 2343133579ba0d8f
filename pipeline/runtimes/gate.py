"""The accuracy gate: an optimized runtime is packaged only if it scores like the fp32 model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.metrics import similarity_metrics


@dataclass(frozen=True)
class GateResult:
    """The figures that decided, and the decision."""

    runtime: str
    passed: bool
    reason: str
    threshold: float  # the F1 was counted at score >= threshold (the model's own)
    f1_delta: float
    pearson_delta: float
    max_score_shift: float
    mean_score_shift: float


def judge(
    runtime: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    gold: np.ndarray,
    threshold: float,
    metric_tolerance: float,
    max_shift: float,
) -> GateResult:
    """Pass when F1@threshold and Pearson are each within metric_tolerance of the reference (fp32 torch) and
    no pair's score moves by more than max_shift."""
    ours, theirs = similarity_metrics(gold, candidate, threshold), similarity_metrics(gold, reference, threshold)
    f1_delta = abs((ours["f1"] or 0.0) - (theirs["f1"] or 0.0))
    pearson_delta = abs((ours["pearson"] or 0.0) - (theirs["pearson"] or 0.0))
    shifts = np.abs(np.asarray(candidate) - np.asarray(reference))
    measured = {
        "f1_delta": float(f1_delta),
        "pearson_delta": float(pearson_delta),
        "max_score_shift": float(shifts.max(initial=0.0)),
        "mean_score_shift": float(shifts.mean()) if shifts.size else 0.0,
    }
    limits = {"f1_delta": metric_tolerance, "pearson_delta": metric_tolerance, "max_score_shift": max_shift}
    figures = {key: round(value, 5) for key, value in measured.items()}
    failures = [f"{key.replace('_', ' ')} {figures[key]} > {limit}" for key, limit in limits.items() if measured[key] > limit]
    reason = "within tolerance" if not failures else "refused: " + ", ".join(failures)
    return GateResult(runtime, not failures, reason, threshold, **figures)
