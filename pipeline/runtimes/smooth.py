"""SmoothQuant for the dynamic int8 recipes: move the activations' outlier channels into the weights before quantizing.

Dynamic int8 quantizes each MatMul input with one scale for the whole tensor, so a few channels far larger than the
rest (transformers have them: the residual stream's outlier dimensions, GELU's long tail) leave the other channels a
handful of int8 steps. SmoothQuant (Xiao et al. 2023, arXiv:2211.10438) divides input channel j by
s_j = max|X_j|^alpha / max|W_j,:|^(1 - alpha) and multiplies the weight's row j by it: the product is unchanged in
exact arithmetic, the activations' channels come closer in range and the weights (one int8 scale per output column)
take the difference. The maxima are measured on the calibration sentences. One alpha does not suit every tensor:
the fine-tuned e5's outliers are a few channels of a few tokens (special tokens' massive activations), and moving a
GELU output's outlier into the FFN's second weight made that MatMul worse at alpha 0.5 (docs/serving.md). So each
input tensor gets the alpha (or none) whose simulated int8 error (sensitivity.py) over its MatMuls is lowest. Each
smoothed tensor gets one Mul node (the MatMuls that share it, e.g. a layer's query, key and value, share the scales),
so the rewritten graph is still fp32 and scores like the original to float rounding; quantize_dynamic then quantizes
its MatMuls as usual.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SMOOTHING_ALPHAS = (0.25, 0.5, 0.75)  # tried per input tensor beside no smoothing; the paper's default is 0.5
SMOOTHED_SUFFIX = "_smoothed"


@dataclass(frozen=True)
class SmoothingPlan:
    """What smoothing a graph's weight-MatMul inputs should get, measured on calibration batches: per input tensor the
    alpha (None: not smoothed) whose simulated dynamic int8 error over the MatMuls that read it was lowest, its scales,
    and each MatMul's simulated relative error under that choice and unsmoothed (what the smooth and the plain
    sensitive recipes rank by: the unsmoothed option is sensitivity.matmul_errors, so one pass serves both families)."""

    alphas: dict[str, float | None]
    scales: dict[str, np.ndarray]  # only the smoothed inputs
    errors: dict[str, float]  # MatMul node name -> relative error under the chosen smoothing
    unsmoothed_errors: dict[str, float]  # MatMul node name -> relative error with no smoothing


def activation_maxima(model, batches: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """{MatMul input name: max |value| of each input channel} over the batches, for the onnx model's weight MatMuls."""
    from pipeline.runtimes.sensitivity import matmul_inputs

    maxima: dict[str, np.ndarray] = {}
    for activations in matmul_inputs(model, batches):
        for name, rows in activations.items():
            batch_max = np.abs(rows).max(axis=0)
            maxima[name] = np.maximum(maxima[name], batch_max) if name in maxima else batch_max
    return maxima


def smoothing_scales(activation_max: np.ndarray, weight_max: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = activation_max_j^alpha / weight_max_j^(1 - alpha); 1 for a channel that is zero on either side."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the smoothing alpha must lie in [0, 1], not {alpha}")
    live = (activation_max > 0) & (weight_max > 0)
    scales = np.ones_like(activation_max, dtype=np.float64)
    scales[live] = activation_max[live].astype(np.float64) ** alpha / weight_max[live].astype(np.float64) ** (1 - alpha)
    return scales.astype(np.float32)


def smoothing_plan(source: Path, batches: Sequence[dict[str, np.ndarray]], alphas=SMOOTHING_ALPHAS) -> SmoothingPlan:
    """Per weight-MatMul input of the graph at source, the alpha of `alphas` or no smoothing whose simulated dynamic
    int8 (sensitivity.squared_errors) loses least over the MatMuls that read it; two passes over the batches."""
    import onnx

    from pipeline.runtimes.sensitivity import relative_error, weight_matmuls

    model = onnx.load(str(source))
    nodes, weights = weight_matmuls(model)
    readers = readers_by_input(nodes)
    options = smoothing_options(activation_maxima(model, batches), weights, readers, alphas)
    squared = simulated_errors(model, batches, readers, weights, options)

    def loss(name: str, alpha: float | None) -> float:
        return sum(relative_error(squared[name, alpha, node.name]) for node in readers[name])

    chosen = {name: min(options[name], key=lambda alpha, name=name: loss(name, alpha)) for name in readers}

    def errors(choice: dict[str, float | None]) -> dict[str, float]:
        return {node.name: relative_error(squared[name, choice[name], node.name]) for name in readers for node in readers[name]}

    scales = {name: options[name][alpha] for name, alpha in chosen.items() if alpha is not None}
    return SmoothingPlan(chosen, scales, errors(chosen), errors(dict.fromkeys(readers)))


def smoothing_options(maxima, weights, readers, alphas) -> dict[str, dict[float | None, np.ndarray]]:
    """Per input tensor, {alpha: its scales} for each of alphas, and {None: ones} (not smoothed)."""
    options = {}
    for name, matmuls in readers.items():
        weight_max = row_max(weights, matmuls)
        options[name] = {None: np.ones_like(maxima[name])}
        options[name].update({alpha: smoothing_scales(maxima[name], weight_max, alpha) for alpha in alphas})
    return options


def simulated_errors(model, batches, readers, weights, options) -> dict[tuple, np.ndarray]:
    """{(input, alpha, MatMul name): sensitivity.squared_errors sums} of every option on every batch."""
    from pipeline.runtimes.sensitivity import matmul_inputs, squared_errors

    squared: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(2))
    for activations in matmul_inputs(model, batches):
        for name, matmuls in readers.items():
            for alpha, scales in options[name].items():
                smoothed = activations[name] / scales
                for node in matmuls:
                    squared[name, alpha, node.name] += squared_errors(smoothed, weights[node.input[1]] * scales[:, None])
    return squared


def readers_by_input(nodes: list) -> dict[str, list]:
    """The MatMul nodes grouped by the input tensor they read (a layer's query, key and value share one), in order."""
    readers: dict[str, list] = {}
    for node in nodes:
        readers.setdefault(node.input[0], []).append(node)
    return readers


def row_max(weights: dict[str, np.ndarray], matmuls: list) -> np.ndarray:
    """max |weight| of each input row over the weights of the MatMuls (which share one input)."""
    return np.max([np.abs(weights[node.input[1]]).max(axis=1) for node in matmuls], axis=0)


def smooth_graph(source: Path, target: Path, scales: dict[str, np.ndarray]) -> Path:
    """Write to target the graph at source with every weight-MatMul input named in scales smoothed: one Mul by 1 / s
    before the MatMuls that read it, and their weights' rows multiplied by s (each weight copied: no other node sees it)."""
    import onnx
    from onnx import helper, numpy_helper

    from pipeline.runtimes.sensitivity import weight_matmuls

    model = onnx.load(str(source))
    nodes, weights = weight_matmuls(model)
    readers = {name: matmuls for name, matmuls in readers_by_input(nodes).items() if name in scales}
    position = {id(node): index for index, node in enumerate(model.graph.node)}
    inserts = []
    for name, matmuls in readers.items():
        smoothed = name + SMOOTHED_SUFFIX
        # not "<input>_scale": quantize_dynamic names its DynamicQuantizeLinear outputs that way
        model.graph.initializer.append(numpy_helper.from_array((1.0 / scales[name]).astype(np.float32), smoothed + "_divisor"))
        for node in matmuls:
            weight = weights[node.input[1]] * scales[name][:, None]
            model.graph.initializer.append(numpy_helper.from_array(weight.astype(np.float32), node.name + SMOOTHED_SUFFIX))
            node.input[0], node.input[1] = smoothed, node.name + SMOOTHED_SUFFIX
        first = min(position[id(node)] for node in matmuls)  # the Mul goes right before its first reader: sorted graph
        inserts.append((first, helper.make_node("Mul", [name, smoothed + "_divisor"], [smoothed], name=smoothed)))
    for index, mul in sorted(inserts, key=lambda insert: insert[0], reverse=True):
        model.graph.node.insert(index, mul)
    used = {name for node in model.graph.node for name in node.input}
    unused = [t for t in model.graph.initializer if t.name not in used]
    for tensor in unused:
        model.graph.initializer.remove(tensor)
    onnx.save(model, str(target))
    return target
