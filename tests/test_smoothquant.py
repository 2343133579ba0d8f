"""SmoothQuant's graph rewrite on a tiny bi-encoder: the smoothed graph scores like the original, each smoothed input's
channels end at sqrt(activation max x weight max), and the recipe serves a dynamic int8 graph of it."""

import numpy as np
import onnx
import onnxruntime
import pytest

from pipeline.paths import ONNX_DIR
from pipeline.runtimes import RUNTIMES
from pipeline.runtimes.int8 import INT8_RECIPES
from pipeline.runtimes.selection import calibration_batches
from pipeline.runtimes.sensitivity import matmul_errors, most_sensitive, weight_matmuls
from pipeline.runtimes.smooth import (
    SMOOTHED_SUFFIX,
    activation_maxima,
    readers_by_input,
    row_max,
    smooth_graph,
    smoothing_plan,
    smoothing_scales,
)
from tests.support.toy_models import bi_pair_model
from tests.test_int8_search import SENTENCES


@pytest.fixture()
def bi_folder(tiny_bert, tmp_path):
    return bi_pair_model(tiny_bert, tmp_path / "model")


def outputs(graph, batches) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, batch)[0] for batch in batches])


def test_the_scales_split_the_range_between_activations_and_weights():
    activation, weight = np.array([16.0, 1.0, 0.0, 4.0]), np.array([1.0, 4.0, 2.0, 0.0])
    np.testing.assert_allclose(smoothing_scales(activation, weight, 0.5), [4.0, 0.5, 1.0, 1.0])  # dead channels: 1
    np.testing.assert_allclose(smoothing_scales(activation, weight, 1.0), [16.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(smoothing_scales(activation, weight, 0.0), [1.0, 0.25, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\], not 1.5"):
        smoothing_scales(activation, weight, 1.5)


def test_the_smoothed_graph_scores_like_the_original_with_its_input_channels_divided(bi_folder, tmp_path):
    batches = calibration_batches(bi_folder, SENTENCES)
    fp32 = bi_folder / ONNX_DIR / "model.onnx"
    nodes, weights = weight_matmuls(onnx.load(str(fp32)))
    maxima = activation_maxima(onnx.load(str(fp32)), batches)
    assert len(maxima) == 8  # 2 layers x (the q/k/v input, the attention output's, the two FFN MatMuls' inputs)
    readers = readers_by_input(nodes)
    scales = {name: smoothing_scales(maxima[name], row_max(weights, readers[name]), 0.5) for name in list(maxima)[:5]}
    smoothed = smooth_graph(fp32, tmp_path / "smoothed.onnx", scales)
    np.testing.assert_allclose(outputs(smoothed, batches), outputs(fp32, batches), rtol=1e-4, atol=1e-5)
    graph = onnx.load(str(smoothed))
    onnx.checker.check_model(graph)
    muls = [node for node in graph.graph.node if node.name.endswith(SMOOTHED_SUFFIX)]
    assert sorted(node.input[0] for node in muls) == sorted(scales)  # one Mul per smoothed input, shared by its MatMuls
    after = activation_maxima(graph, batches)  # the smoothed MatMuls read the Muls' outputs
    for name, before in maxima.items():
        expected = np.sqrt(before * row_max(weights, readers[name])) if name in scales else before  # alpha 0.5
        np.testing.assert_allclose(after[name + SMOOTHED_SUFFIX if name in scales else name], expected, rtol=1e-3, atol=1e-6)


def test_the_plan_smooths_a_tensor_only_where_the_simulated_int8_error_drops(bi_folder):
    batches = calibration_batches(bi_folder, SENTENCES)
    fp32 = bi_folder / ONNX_DIR / "model.onnx"
    plain = matmul_errors(fp32, batches)
    unsmoothed = smoothing_plan(fp32, batches, alphas=())
    assert set(unsmoothed.alphas.values()) == {None} and not unsmoothed.scales and unsmoothed.errors == pytest.approx(plain)
    plan = smoothing_plan(fp32, batches)
    assert set(plan.alphas) == set(activation_maxima(onnx.load(str(fp32)), batches)) and set(plan.errors) == set(plain)
    assert set(plan.scales) == {name for name, alpha in plan.alphas.items() if alpha is not None}
    assert plan.unsmoothed_errors == pytest.approx(plain)  # what the plain sensitive recipes rank by
    readers = readers_by_input(weight_matmuls(onnx.load(str(fp32)))[0])
    for name, alpha in plan.alphas.items():  # each tensor's choice loses no more than leaving it alone
        names = [node.name for node in readers[name]]
        assert sum(plan.errors[n] for n in names) <= sum(plain[n] for n in names) + 1e-9
        if alpha is None:
            assert [plan.errors[n] for n in names] == pytest.approx([plain[n] for n in names])


def test_the_smooth_recipes_serve_dynamic_int8_of_the_smoothed_graph_and_leave_no_scratch_file(bi_folder):
    batches = calibration_batches(bi_folder, SENTENCES)
    plan = batches.smoothing_plan(bi_folder / ONNX_DIR / "model.onnx")
    for recipe in (recipe for recipe in INT8_RECIPES if recipe.name.startswith("smooth-")):
        assert recipe.calibrated
        RUNTIMES["onnx-int8"].build(bi_folder, recipe, batches)
        graph = onnx.load(str(bi_folder / ONNX_DIR / "model_int8.onnx")).graph
        assert sum(node.name.endswith(SMOOTHED_SUFFIX) for node in graph.node) == len(plan.scales)
        percent = int(recipe.name.rsplit("-", 1)[1]) if "sensitive" in recipe.name else 0
        float_matmuls = {node.name for node in graph.node if node.op_type == "MatMul" and node.name in plan.errors}
        assert float_matmuls == set(most_sensitive(plan.errors, percent / 100))  # the MatMuls kept fp32
        assert sorted(path.name for path in (bi_folder / ONNX_DIR).iterdir()) == ["model.onnx", "model_int8.onnx"]
        (bi_folder / ONNX_DIR / "model_int8.onnx").unlink()
    assert list(batches.plans) == [str(bi_folder / ONNX_DIR / "model.onnx")]  # one plan for the family
