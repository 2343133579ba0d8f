"""The accuracy gate: an optimized runtime is packaged only if it scores like the fp32 model.

Three figures decide (GateRule, from params.yaml's serve section): F1 at the model's threshold and Pearson, each
within metric_tolerance of fp32; and the shift_percentile-th percentile of the per-pair score shift |candidate -
fp32| at most max_shift. A percentile, not the largest shift: over ~1,500 validation pairs the maximum is one pair
(and grows with the number of pairs); p99.5 is the shift that all but 1 request in 200 stay under (docs/serving.md).
shift_percentile 100 is the maximum. Dynamic int8 quantizes each forward pass's activations with one scale, so a
pair's int8 score depends on the pairs it shares a pass with: the candidate is scored at each of the rule's pass sizes,
the ones a worker runs (served_pass_sizes), and must pass at every one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.metrics import similarity_metrics


@dataclass(frozen=True)
class GateRule:
    """How close to fp32 a runtime must score (serve.gate_tolerance, serve.gate_max_shift, serve.gate_shift_percentile)."""

    metric_tolerance: float  # |F1 delta| and |Pearson delta| at most this
    max_shift: float  # the shift_percentile-th percentile of |score shift| over the pairs at most this
    shift_percentile: float = 99.5  # in (0, 100]; 100: no pair may move by more than max_shift
    pass_sizes: tuple[int, ...] = (1,)  # pairs per forward pass the candidate is scored at; it must pass at each

    @classmethod
    def from_settings(cls, settings) -> GateRule:
        """The rule of ServeSettings `settings`, at the pass sizes its workers run."""
        sizes = served_pass_sizes(settings.forward_batch_size)
        return cls(settings.gate_tolerance, settings.gate_max_shift, settings.gate_shift_percentile, sizes)


def served_pass_sizes(forward_batch_size: int) -> tuple[int, ...]:
    """The pairs per forward pass a worker runs, at both ends: 1 (a request alone in its batch) and
    serve.forward_batch_size (a full pass under load)."""
    return tuple(sorted({1, forward_batch_size}))


def at_pass_sizes(sizes: Sequence[int]) -> str:
    """How a gate reason names the pass sizes it was scored at: "at 1 pair a pass", "at 1 and 4 pairs a pass"."""
    return f"at {' and '.join(map(str, sizes))} {'pair' if list(sizes) == [1] else 'pairs'} a pass"


@dataclass(frozen=True)
class GateResult:
    """The figures that decided, and the decision."""

    runtime: str
    recipe: str | None  # the int8 recipe that made the graph (pipeline/runtimes/int8.py); None for the others
    passed: bool
    reason: str
    threshold: float  # the F1 was counted at score >= threshold (the model's own)
    f1_delta: float
    pearson_delta: float
    shift_percentile: float  # which percentile of the shifts the rule reads
    percentile_score_shift: float  # that percentile of |candidate - reference| over the pairs
    max_score_shift: float
    mean_score_shift: float
    pairs_per_pass: int | None = None  # the figures were scored this many pairs to a forward pass (None: not said)


def shift_figures(reference: np.ndarray, candidate: np.ndarray, percentile: float) -> dict[str, float]:
    """The per-pair |candidate - reference| summarized: its `percentile`-th percentile (linear interpolation between
    the two nearest shifts, numpy's default), maximum and mean; zeros for no pairs."""
    shifts = np.abs(np.asarray(candidate, dtype=np.float64) - np.asarray(reference, dtype=np.float64))
    if not shifts.size:
        return {"percentile_score_shift": 0.0, "max_score_shift": 0.0, "mean_score_shift": 0.0}
    return {
        "percentile_score_shift": float(np.percentile(shifts, percentile)),
        "max_score_shift": float(shifts.max()),
        "mean_score_shift": float(shifts.mean()),
    }


def judge(
    runtime: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    gold: np.ndarray,
    threshold: float,
    rule: GateRule,
    recipe: str | None = None,
    pairs_per_pass: int | None = None,
) -> GateResult:
    """Pass when F1@threshold and Pearson are each within rule.metric_tolerance of the reference (fp32 torch) and the
    rule.shift_percentile-th percentile of the pairs' score shifts is at most rule.max_shift."""
    ours, theirs = similarity_metrics(gold, candidate, threshold), similarity_metrics(gold, reference, threshold)
    measured = {
        "f1_delta": abs((ours["f1"] or 0.0) - (theirs["f1"] or 0.0)),
        "pearson_delta": abs((ours["pearson"] or 0.0) - (theirs["pearson"] or 0.0)),
        **shift_figures(reference, candidate, rule.shift_percentile),
    }
    limits = {"f1_delta": rule.metric_tolerance, "pearson_delta": rule.metric_tolerance}
    limits["percentile_score_shift"] = rule.max_shift
    names = {"f1_delta": "f1 delta", "pearson_delta": "pearson delta"}
    names["percentile_score_shift"] = f"p{rule.shift_percentile:g} score shift"
    figures = {key: round(float(value), 5) for key, value in measured.items()}
    failures = [f"{names[key]} {figures[key]} > {limit}" for key, limit in limits.items() if measured[key] > limit]
    reason = "within tolerance" if not failures else "refused: " + ", ".join(failures)
    if pairs_per_pass is not None:
        reason += " " + at_pass_sizes([pairs_per_pass])
    figures.update(shift_percentile=rule.shift_percentile, pairs_per_pass=pairs_per_pass)
    return GateResult(runtime, recipe, not failures, reason, threshold, **figures)
