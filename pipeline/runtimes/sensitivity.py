"""How much each weight MatMul of an fp32 graph suffers from dynamic int8, measured on real inputs: what the
`dynamic-matmul-sensitive-N` recipes (int8.py) read, through smooth.smoothing_plan, to keep the worst MatMuls fp32.

Each MatMul with a constant 2-D weight is fed the activations the fp32 graph computes for the calibration batches;
its output is recomputed with the input quantized as DynamicQuantizeLinear does (uint8, one scale and zero point per
tensor, range stretched to hold 0) and the weight as quantize_dynamic's per-channel QInt8 (symmetric, one scale per
output column), and compared with the fp32 output: relative error ||int8 - fp32|| / ||fp32||. Pure numpy beside one
ONNX Runtime session that exposes the MatMuls' inputs; measured per model, never a node list fitted to one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


def dynamic_uint8(values: np.ndarray) -> np.ndarray:
    """values after DynamicQuantizeLinear and back: uint8, range [min(x, 0), max(x, 0)], zero point rounded."""
    low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    scale = (high - low) / 255.0 or 1.0
    zero = np.clip(np.rint(-low / scale), 0, 255)
    return ((np.clip(np.rint(values / scale) + zero, 0, 255) - zero) * scale).astype(np.float32)


def per_channel_int8(weight: np.ndarray) -> np.ndarray:
    """A [in, out] weight after symmetric int8 with one scale per output column, and back."""
    scale = np.abs(weight).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    return (np.clip(np.rint(weight / scale), -127, 127) * scale).astype(np.float32)


def weight_matmuls(model) -> tuple[list, dict[str, np.ndarray]]:
    """The MatMul nodes of an onnx model whose second input is a constant 2-D weight ([in, out]), and those weights."""
    from onnx import numpy_helper

    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if len(t.dims) == 2}
    return [node for node in model.graph.node if node.op_type == "MatMul" and node.input[1] in weights], weights


def matmul_inputs(model, batches: Sequence[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """Per batch, {input name: activations as [rows, in]} of every weight MatMul of the model (one session that
    exposes them as extra outputs; the model itself is not changed)."""
    import onnx
    import onnxruntime
    from onnx import helper

    nodes, weights = weight_matmuls(model)
    widths = {node.input[0]: weights[node.input[1]].shape[0] for node in nodes}
    exposing = onnx.ModelProto()
    exposing.CopyFrom(model)
    known = {output.name for output in exposing.graph.output}
    exposing.graph.output.extend(
        helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in widths if name not in known
    )
    session = onnxruntime.InferenceSession(exposing.SerializeToString(), providers=["CPUExecutionProvider"])
    names = list(widths)
    for batch in batches:
        yield {name: rows.reshape(-1, widths[name]) for name, rows in zip(names, session.run(names, batch), strict=True)}


def squared_errors(inputs: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """[sum of squared error of the simulated dynamic int8 product, sum of squared exact product] of inputs @ weight."""
    exact = inputs @ weight
    error = dynamic_uint8(inputs) @ per_channel_int8(weight) - exact
    return np.array([(error.astype(np.float64) ** 2).sum(), (exact.astype(np.float64) ** 2).sum()])


def relative_error(squared: np.ndarray) -> float:
    """||int8 - fp32|| / ||fp32|| from squared_errors' sums (0 for an all-zero output)."""
    return float((squared[0] / squared[1]) ** 0.5) if squared[1] else 0.0


def matmul_errors(source: Path, batches: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """{MatMul node name: relative output error under dynamic int8} for every MatMul of the graph whose second input
    is a constant 2-D weight, over all batches: this measurement alone. A search reads it from smooth.smoothing_plan
    (its unsmoothed option, measured in the same pass as the smoothed ones), which the tests check against this."""
    import onnx

    model = onnx.load(str(source))
    nodes, weights = weight_matmuls(model)
    squared = {node.name: np.zeros(2) for node in nodes}
    for activations in matmul_inputs(model, batches):
        for node in nodes:
            squared[node.name] += squared_errors(activations[node.input[0]], weights[node.input[1]])
    return {name: relative_error(sums) for name, sums in squared.items()}


def most_sensitive(errors: dict[str, float], fraction: float) -> list[str]:
    """The ceil(fraction x count) names of largest error, largest first (ties by name: deterministic)."""
    count = int(np.ceil(fraction * len(errors)))
    return sorted(errors, key=lambda name: (-errors[name], name))[:count]
