"""How much each weight MatMul of an fp32 graph suffers from dynamic int8, measured on real inputs: what the
`dynamic-matmul-sensitive-N` recipes (int8.py) read to keep the worst MatMuls in fp32.

Each MatMul with a constant 2-D weight is fed the activations the fp32 graph computes for the calibration batches;
its output is recomputed with the input quantized as DynamicQuantizeLinear does (uint8, one scale and zero point per
tensor, range stretched to hold 0) and the weight as quantize_dynamic's per-channel QInt8 (symmetric, one scale per
output column), and compared with the fp32 output: relative error ||int8 - fp32|| / ||fp32||. Pure numpy beside one
ONNX Runtime session that exposes the MatMuls' inputs; measured per model, never a node list fitted to one.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def matmul_errors(source: Path, batches: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """{MatMul node name: relative output error under dynamic int8} for every MatMul of the graph whose second input
    is a constant 2-D weight, over all batches."""
    import onnx
    import onnxruntime
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if len(t.dims) == 2}
    nodes = [node for node in model.graph.node if node.op_type == "MatMul" and node.input[1] in weights]
    exposed = list(dict.fromkeys(node.input[0] for node in nodes))
    known = {output.name for output in model.graph.output}
    model.graph.output.extend(
        helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in exposed if name not in known
    )
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    squared = {node.name: [0.0, 0.0] for node in nodes}  # sum of squared error, sum of squared fp32 output
    quantized = {node.name: per_channel_int8(weights[node.input[1]]) for node in nodes}
    for batch in batches:
        activations = dict(zip(exposed, session.run(exposed, batch), strict=True))
        for node in nodes:
            inputs = activations[node.input[0]].reshape(-1, weights[node.input[1]].shape[0])
            exact = inputs @ weights[node.input[1]]
            error = dynamic_uint8(inputs) @ quantized[node.name] - exact
            squared[node.name][0] += float((error.astype(np.float64) ** 2).sum())
            squared[node.name][1] += float((exact.astype(np.float64) ** 2).sum())
    return {name: (err / total) ** 0.5 if total else 0.0 for name, (err, total) in squared.items()}


def most_sensitive(errors: dict[str, float], fraction: float) -> list[str]:
    """The ceil(fraction x count) names of largest error, largest first (ties by name: deterministic)."""
    count = int(np.ceil(fraction * len(errors)))
    return sorted(errors, key=lambda name: (-errors[name], name))[:count]
