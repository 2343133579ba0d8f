"""The int8 recipes of the onnx-int8 runtime: ways to quantize the fp32 graph, tried behind the gate in speed order.

The onnx-int8 runtime is one graph file (serving.pair_model.ONNX_GRAPHS), whichever recipe made it; the register
stage (selection.py) builds the recipes in INT8_RECIPES' order, gates each against fp32 torch, removes a refused
one's graph and keeps the first that passes. The gate list and the runtime choice name the recipe.

    dynamic-matmul            quantize_dynamic of the MatMuls only, QInt8 weights, one scale per output channel
    dynamic-all               quantize_dynamic of every op type it knows (MatMul, the small tables' Gathers, ...)
    smooth-dynamic-matmul[-sensitive-N]  SmoothQuant first (smooth.py: each MatMul input's outlier channels moved into
                              its weights, an alpha per tensor chosen by simulated int8 error), then dynamic-matmul with
                              the N % of MatMuls still most hurt kept fp32; N = 0, 10, 15, 20
    distilled-smooth-dynamic-matmul  smooth-dynamic-matmul of a copy of the model first trained, fake-quantized, to
                              score like it (distill.py: quantization-aware distillation on training pairs); tried
                              after smooth-dynamic-matmul (the same speed, minutes of training), before -sensitive-10
    dynamic-matmul-sensitive-N  dynamic-matmul, but the N % of the MatMuls that dynamic int8 hurts most (measured on
                              the calibration sentences: sensitivity.py) kept fp32; N = 25, 35, 50
    static-qdq                quantize_static, QDQ: MatMul weights per channel, their inputs' ranges calibrated on
                              training sentences (percentile); no scale computed per request

The order is the speed measured on the fine-tuned e5 default (bench/int8_recipes.py, docs/serving.md): fewer fp32
MatMuls first; static-qdq last (no faster than dynamic and farther from fp32 there). A recipe is chosen by measurement
(the gate), never by a list of nodes fitted to one model's weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.runtimes.smooth import SmoothingPlan


class CalibrationSet(list):
    """The fp32 graph's inputs for the calibration sentences (input_ids, attention_mask; one dict per batch), and what
    is measured on them, once per graph: the smooth and the sensitive recipes of one search share one smoothing plan
    (smooth.py), which holds the MatMuls' int8 errors with and without smoothing."""

    def __init__(self, batches: Sequence[dict[str, np.ndarray]] = (), training_pairs: Sequence[tuple[str, str]] = ()):
        super().__init__(batches)
        self.training_pairs = list(training_pairs)  # what a training recipe (Int8Recipe.trains) learns from
        self.plans: dict[str, SmoothingPlan] = {}  # fp32 graph path -> smooth.smoothing_plan on these batches

    def smoothing_plan(self, source: Path) -> SmoothingPlan:
        """smooth.smoothing_plan of the graph at source on these batches (measured on first use)."""
        from pipeline.runtimes.smooth import smoothing_plan

        if str(source) not in self.plans:
            self.plans[str(source)] = smoothing_plan(source, self)
        return self.plans[str(source)]


# Training sentences whose activations calibrate: onnxruntime keeps every MatMul input and output of every batch in
# memory, then stacks them (estimated for e5-small: ~80k floats a token; 128 sentences padded to ~70 tokens ~3 GB,
# twice that while stacked; not measured yet), so a hundred or so, not thousands.
CALIBRATION_SENTENCES = 128
CALIBRATION_BATCH = 32


@dataclass(frozen=True)
class Int8Recipe:
    """One way to make the int8 graph from the fp32 one."""

    name: str
    summary: str
    quantize: Callable[[Path, Path, CalibrationSet], Path]  # (fp32 graph, int8 graph to write, calibration batches)
    calibrated: bool = False  # needs calibration batches (activations' ranges measured beforehand)
    trains: bool = False  # needs the training pairs too (CalibrationSet.training_pairs): changes a copy of the weights


def dynamic_matmul(source: Path, target: Path, _batches: CalibrationSet) -> Path:
    from pipeline.runtimes.onnx import quantize_int8

    return quantize_int8(source, target, op_types=("MatMul",))


def dynamic_all(source: Path, target: Path, _batches: CalibrationSet) -> Path:
    from pipeline.runtimes.onnx import quantize_int8

    return quantize_int8(source, target)


# dynamic-matmul-sensitive-N: of the weight MatMuls, the N % most hurt kept fp32 (each fewer int8 MatMuls, slower,
# closer to fp32). On the fine-tuned e5 default (2026-12-02, validation): 25 % kept gave a p99.5 shift of 0.166, 35 %
# 0.103 and 50 % 0.065 (docs/serving.md); the search takes the first that passes.
SENSITIVE_FRACTIONS = (0.25, 0.35, 0.5)


def dynamic_matmul_sensitive(fraction: float) -> Callable[[Path, Path, CalibrationSet], Path]:
    """dynamic-matmul with the `fraction` of the weight MatMuls that dynamic int8 hurts most kept fp32."""

    def quantize(source: Path, target: Path, batches: CalibrationSet) -> Path:
        from pipeline.runtimes.onnx import quantize_int8
        from pipeline.runtimes.sensitivity import most_sensitive

        kept = most_sensitive(batches.smoothing_plan(source).unsmoothed_errors, fraction)
        return quantize_int8(source, target, op_types=("MatMul",), exclude=kept)

    return quantize


def sensitive_recipe(fraction: float) -> Int8Recipe:
    percent = round(fraction * 100)
    summary = f"dynamic int8, MatMul only, the {percent} % most hurt (measured on training sentences) kept fp32"
    return Int8Recipe(f"dynamic-matmul-sensitive-{percent}", summary, dynamic_matmul_sensitive(fraction), True)


# smooth-dynamic-matmul[-sensitive-N]: SmoothQuant with an alpha per input tensor (smooth.py), then dynamic-matmul with
# the N % of the MatMuls still most hurt (simulated on the smoothed inputs) kept fp32. On the fine-tuned e5 default
# (2026-12-02, validation, p99.5 shift): 0.235 with none kept, 0.159 with 10 %, 0.138 with 15 %, 0.130 with 20 %.
SMOOTH_SENSITIVE_FRACTIONS = (0.0, 0.1, 0.15, 0.2)


def smooth_dynamic_matmul(fraction: float) -> Callable[[Path, Path, CalibrationSet], Path]:
    """dynamic-matmul of the graph smoothed first, with the `fraction` of its MatMuls most hurt kept fp32."""

    def quantize(source: Path, target: Path, batches: CalibrationSet) -> Path:
        from pipeline.runtimes.onnx import quantize_int8
        from pipeline.runtimes.sensitivity import most_sensitive
        from pipeline.runtimes.smooth import smooth_graph

        plan = batches.smoothing_plan(source)
        smoothed = target.with_name(target.stem + "_smoothed.fp32")  # not *.onnx: never taken for a runtime's graph
        try:
            smooth_graph(source, smoothed, plan.scales)
            return quantize_int8(smoothed, target, op_types=("MatMul",), exclude=most_sensitive(plan.errors, fraction))
        finally:
            smoothed.unlink(missing_ok=True)

    return quantize


def smooth_recipe(fraction: float) -> Int8Recipe:
    percent = round(fraction * 100)
    name = "smooth-dynamic-matmul" + (f"-sensitive-{percent}" if percent else "")
    kept = f", the {percent} % most hurt kept fp32" if percent else ""
    summary = f"SmoothQuant (alpha per tensor), then dynamic-matmul{kept}"
    return Int8Recipe(name, summary, smooth_dynamic_matmul(fraction), True)


def distilled_smooth_dynamic_matmul(source: Path, target: Path, batches: CalibrationSet) -> Path:
    from pipeline.runtimes.distill import DISTILL_PHASES, distilled_graph

    return distilled_graph(source, target, batches, DISTILL_PHASES)


def distilled_recipe() -> Int8Recipe:
    summary = "smooth-dynamic-matmul of a copy of the model distilled for int8 (fake-quantized) on training pairs"
    return Int8Recipe("distilled-smooth-dynamic-matmul", summary, distilled_smooth_dynamic_matmul, True, True)


def static_qdq(source: Path, target: Path, batches: CalibrationSet) -> Path:
    from pipeline.runtimes.onnx import quantize_static_int8

    return quantize_static_int8(source, target, batches)


INT8_RECIPES: tuple[Int8Recipe, ...] = (  # fastest first
    Int8Recipe("dynamic-matmul", "dynamic int8, MatMul only, per-channel weights", dynamic_matmul),
    Int8Recipe("dynamic-all", "dynamic int8, every op type, per-channel weights", dynamic_all),
    smooth_recipe(SMOOTH_SENSITIVE_FRACTIONS[0]),
    distilled_recipe(),
    *(smooth_recipe(fraction) for fraction in SMOOTH_SENSITIVE_FRACTIONS[1:]),
    *(sensitive_recipe(fraction) for fraction in SENSITIVE_FRACTIONS),
    Int8Recipe("static-qdq", "static int8 QDQ, MatMul, per-channel weights, percentile-calibrated", static_qdq, True),
)


def spread_sample(items: Sequence[str], count: int) -> list[str]:
    """Up to count distinct items, evenly spaced over the sequence (deterministic, no random state)."""
    distinct = list(dict.fromkeys(items))
    step = max(1, len(distinct) // count) if count > 0 else 1
    return distinct[::step][:count]
