"""Per-token int8 for the MatMuls that one scale per tensor hurts most: the `-token-N` int8 recipes (int8.py).

Dynamic int8 (DynamicQuantizeLinear) quantizes a MatMul's whole input with one scale, set by its largest value. On
the fine-tuned e5 the feed-forward second MatMuls' inputs (GELU's output) have a long tail spread over ordinary
tokens, so that one scale leaves most tokens a handful of int8 steps, and SmoothQuant cannot move it (docs/serving.md).
Here each row (token) of the input gets its own scale: s_r = max|x_r| / 127, codes round(x / s_r) + 128 as uint8 with
zero point 128 (symmetric: MatMulInteger takes one zero point for its input, and ONNX Runtime's fast kernel is uint8
by int8), the weight int8 with one scale per output column as quantize_dynamic makes it, and
y = MatMulInteger(codes, weight) x s_r x s_w. Standard ONNX ops only (nine instead of one fused
DynamicQuantizeMatMul): slower than dynamic int8, faster than the fp32 MatMul it replaces (bench/int8_recipes.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

TOKEN_SCALE_SUFFIX = "_token_int8"
ZERO_POINT = 128  # the uint8 code of 0: symmetric codes -127..127 shifted into 1..255
PER_STEP = np.float32(1 / 127)  # a row's scale per unit of its largest |value|


def per_token_int8(values: np.ndarray) -> np.ndarray:
    """[rows, in] values after the per-token quantization of token_scaled_nodes and back: one scale per row, computed
    in float32 as the graph does (so both round the same values the same way)."""
    values = values.astype(np.float32)
    row_max = np.maximum(np.abs(values).max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    scale = row_max * PER_STEP
    return np.rint(values / scale) * scale


def weight_codes(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A [in, out] weight as int8 codes with one symmetric scale per output column (as sensitivity.per_channel_int8)."""
    scale = np.abs(weight).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.rint(weight / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


def token_scaled_nodes(node, weight: np.ndarray, opset: int) -> tuple[list, list]:
    """The nodes and initializers that compute MatMul `node` (input [..., in], constant weight [in, out]) in per-token
    int8, writing the node's own output."""
    from onnx import TensorProto, helper, numpy_helper

    name = node.name + TOKEN_SCALE_SUFFIX
    codes, scale = weight_codes(weight)
    initializers = [
        numpy_helper.from_array(codes, name + "_weight"),
        numpy_helper.from_array(scale, name + "_weight_scale"),
        numpy_helper.from_array(np.array(PER_STEP), name + "_per_step"),
        numpy_helper.from_array(np.array(np.finfo(np.float32).tiny, np.float32), name + "_tiny"),
        numpy_helper.from_array(np.array(ZERO_POINT, np.float32), name + "_zero"),
        numpy_helper.from_array(np.array(ZERO_POINT, np.uint8), name + "_zero_point"),
    ]
    # ReduceMax takes its axes as an attribute before opset 18, as an input from 18 on
    reduce_axes: dict = {"axes": [-1]} if opset < 18 else {}
    axes_input = [] if opset < 18 else [name + "_axes"]
    if opset >= 18:
        initializers.append(numpy_helper.from_array(np.array([-1], np.int64), name + "_axes"))
    source, inner = node.input[0], lambda label: f"{name}_{label}"
    steps = [  # (op, inputs, output, attributes); inner tensors and constants are named after the node
        ("Abs", [source], inner("abs"), {}),
        ("ReduceMax", [inner("abs"), *axes_input], inner("row_max"), {"keepdims": 1, **reduce_axes}),
        ("Max", [inner("row_max"), inner("tiny")], inner("live_max"), {}),  # an all-zero row: a tiny scale, codes 0
        ("Mul", [inner("live_max"), inner("per_step")], inner("row_scale"), {}),
        ("Div", [source, inner("row_scale")], inner("steps"), {}),
        ("Round", [inner("steps")], inner("rounded"), {}),
        ("Add", [inner("rounded"), inner("zero")], inner("shifted"), {}),
        ("Cast", [inner("shifted")], inner("codes"), {"to": TensorProto.UINT8}),
        ("MatMulInteger", [inner("codes"), inner("weight"), inner("zero_point")], inner("products"), {}),
        ("Cast", [inner("products")], inner("float_products"), {"to": TensorProto.FLOAT}),
        # two Muls, not one by the product of the scales: ONNX Runtime would fuse that into MatMulIntegerToFloat,
        # which takes one scale for the input
        ("Mul", [inner("float_products"), inner("row_scale")], inner("row_scaled"), {}),
        ("Mul", [inner("row_scaled"), inner("weight_scale")], node.output[0], {}),
    ]
    nodes = [
        helper.make_node(op, inputs, [output], name=f"{name}_{index}_{op}", **attributes)
        for index, (op, inputs, output, attributes) in enumerate(steps)
    ]
    return nodes, initializers


def token_scaled_graph(source: Path, target: Path, names: Sequence[str]) -> Path:
    """Write to target the graph at source with each MatMul named in names (fp32, constant 2-D weight) computed in
    per-token int8 (token_scaled_nodes), in its place in the node order; weights no other node reads are dropped."""
    import onnx

    from pipeline.runtimes.sensitivity import weight_matmuls

    model = onnx.load(str(source))
    opset = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    nodes, weights = weight_matmuls(model)
    chosen = [node for node in nodes if node.name in set(names)]
    if len(chosen) != len(set(names)):
        raise ValueError(f"not weight MatMuls of {source.name}: {sorted(set(names) - {node.name for node in chosen})}")
    for node in chosen:
        replacement, initializers = token_scaled_nodes(node, weights[node.input[1]], opset)
        index = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        for offset, new in enumerate(replacement):
            model.graph.node.insert(index + offset, new)
        model.graph.initializer.extend(initializers)
    used = {name for node in model.graph.node for name in node.input}
    for tensor in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(tensor)
    onnx.save(model, str(target))
    return target
