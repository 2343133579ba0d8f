"""Per-token int8 (token_scale.py): the rewritten MatMul computes exactly what the simulation says, at both ReduceMax
forms (opset 17 and 18), an all-zero token scores 0, and the -token- recipes serve a graph whose most hurt MatMuls run
in per-token int8, none left fp32."""

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.paths import ONNX_DIR
from pipeline.runtimes import RUNTIMES
from pipeline.runtimes.int8 import INT8_RECIPES, TOKEN_FRACTIONS
from pipeline.runtimes.selection import calibration_batches
from pipeline.runtimes.sensitivity import weight_matmuls
from pipeline.runtimes.token_scale import TOKEN_SCALE_SUFFIX, per_token_int8, token_scaled_graph, weight_codes
from tests.support.toy_models import bi_pair_model
from tests.test_int8_search import SENTENCES


def one_matmul_graph(path, weight: np.ndarray, opset: int):
    """A graph of one MatMul, input [batch, tokens, in] by the constant weight [in, out]."""
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="dense")
    graph = helper.make_graph(
        [node],
        "one_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "tokens", weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def run(path, values: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": values})[0]


def test_each_token_gets_its_own_scale_and_values_on_its_grid_come_back_exactly():
    rows = np.array([[127, -64, 0, 1], [0, 0, 0, 0], [1270, 5, 640, -1270]], dtype=np.float32)
    on_grid = rows[:1] * np.float32(0.01)  # max 1.27: steps of 0.01
    np.testing.assert_allclose(per_token_int8(on_grid), on_grid, rtol=1e-6)
    np.testing.assert_array_equal(per_token_int8(rows[1:2]), 0)  # an all-zero token: no division by zero
    # its own steps of 10 (not the first row's 0.01): 5 is half a step, rounded to even (0)
    np.testing.assert_allclose(per_token_int8(rows)[2], [1270, 0, 640, -1270], rtol=1e-6)
    np.testing.assert_allclose(per_token_int8(rows)[0], on_grid[0] * 100, rtol=1e-6)
    weight = np.array([[1.0, -0.02], [-64 / 127, 0.02 * 50 / 127]], dtype=np.float32)
    codes, scale = weight_codes(weight)
    assert codes.dtype == np.int8 and codes.tolist() == [[127, -127], [-64, 50]]
    np.testing.assert_allclose(codes * scale, weight, rtol=1e-6)


@pytest.mark.parametrize("opset", [17, 18])
def test_the_rewritten_matmul_computes_the_simulation_exactly(tmp_path, opset):
    generator = np.random.default_rng(7)
    weight = generator.normal(size=(48, 16)).astype(np.float32)
    values = generator.normal(size=(2, 5, 48)).astype(np.float32) * np.linspace(0.1, 8, 48, dtype=np.float32)
    values[1, 3] = 0.0  # one all-zero token (a padded position)
    source = one_matmul_graph(tmp_path / "fp32.onnx", weight, opset)
    scaled = token_scaled_graph(source, tmp_path / "token.onnx", ["dense"])
    onnx.checker.check_model(onnx.load(str(scaled)))
    assert {node.op_type for node in onnx.load(str(scaled)).graph.node} >= {"MatMulInteger", "ReduceMax", "Round"}
    codes, scale = weight_codes(weight)
    expected = per_token_int8(values.reshape(-1, 48)) @ (codes.astype(np.float32) * scale)
    got = run(scaled, values)
    np.testing.assert_allclose(got.reshape(-1, 16), expected, rtol=1e-5, atol=1e-5)
    assert np.all(got[1, 3] == 0)
    exact = values @ weight
    assert 0 < np.linalg.norm(got - exact) / np.linalg.norm(exact) < 0.02  # int8: close, not equal
    with pytest.raises(ValueError, match=r"not weight MatMuls of fp32.onnx: \['attention'\]"):
        token_scaled_graph(source, tmp_path / "never.onnx", ["dense", "attention"])
    assert not (tmp_path / "never.onnx").exists()


def test_a_token_recipe_runs_its_most_hurt_matmuls_in_per_token_int8_and_none_in_fp32(tiny_bert, tmp_path):
    folder = bi_pair_model(tiny_bert, tmp_path / "model")
    batches = calibration_batches(folder, SENTENCES)
    fp32 = onnx.load(str(folder / ONNX_DIR / "model.onnx"))
    weight_count = len(weight_matmuls(fp32)[0])
    fraction = TOKEN_FRACTIONS[0]
    recipe = next(r for r in INT8_RECIPES if r.name == f"smooth-dynamic-matmul-token-{round(fraction * 100)}")
    RUNTIMES["onnx-int8"].build(folder, recipe, batches)
    graph = onnx.load(str(folder / ONNX_DIR / "model_int8.onnx"))
    onnx.checker.check_model(graph)
    assert weight_matmuls(graph)[0] == []  # every MatMul with a constant weight is int8 one way or the other
    per_token = [node for node in graph.graph.node if node.op_type == "MatMulInteger" and TOKEN_SCALE_SUFFIX in node.name]
    dynamic = [node for node in graph.graph.node if node.op_type == "DynamicQuantizeLinear"]
    assert len(per_token) == int(np.ceil(fraction * weight_count)) and len(dynamic) > 0
    fp32_scores = run_batches(folder / ONNX_DIR / "model.onnx", batches)
    int8_scores = run_batches(folder / ONNX_DIR / "model_int8.onnx", batches)
    assert np.abs(int8_scores - fp32_scores).max() < 0.1 * np.abs(fp32_scores).max()


def run_batches(path, batches) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, batch)[0] for batch in batches])
