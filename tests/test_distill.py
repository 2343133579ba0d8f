"""The distilled int8 recipe on a tiny bi-encoder: the student rounds exactly the Linears the graph runs as weight
MatMuls (found by their weights), distillation lowers its loss against the fp32 model, the graph it makes has every
weight MatMul in int8 and scores nearer fp32 than the same recipe without the distillation; the search skips it
without training pairs; the student rounds inputs and weights as the numpy simulation and onnxruntime itself do."""

import numpy as np
import onnx
import pytest
import torch

from pipeline.heads import head_named
from pipeline.paths import ONNX_DIR
from pipeline.runtimes import RUNTIMES
from pipeline.runtimes.distill import (
    Phase,
    cpu_model,
    distill,
    distilled_graph,
    fake_int8_per_channel,
    fake_quantized,
    fake_uint8,
    input_scales,
    unit_embeddings,
)
from pipeline.runtimes.gate import GateRule
from pipeline.runtimes.int8 import INT8_RECIPES
from pipeline.runtimes.selection import calibration_batches, choose_runtime
from tests.conftest import mirror_sentences
from tests.support.toy_models import bi_pair_model, build_tiny_bert
from tests.test_int8_search import GOLD, SENTENCES
from tests.test_runtimes import PAIRS

TRAINING_PAIRS = PAIRS[:4]
PHASES = (Phase(steps=40, pairs_per_pass=4, learning_rate=1e-5, pairs=False), Phase(10, 2, 3e-6, 2, 1.0))


@pytest.fixture(scope="module")
def spread_bert(mirror, tmp_path_factory):
    """A tiny BERT drawn with weights of standard deviation 0.3: its sentences' embeddings differ (cosines 0.87-0.96,
    not ~1 as at BERT's 0.02), so int8 moves them measurably (mean 1 - cosine ~1.6e-4 against ~2e-8)."""
    return build_tiny_bert(tmp_path_factory.mktemp("spread-bert"), mirror_sentences(mirror), 800, initializer_range=0.3)


@pytest.fixture()
def bi_folder(spread_bert, tmp_path):
    return bi_pair_model(spread_bert, tmp_path / "model")


def test_the_student_rounds_each_linear_the_graph_runs_and_is_restored_unchanged(bi_folder):
    fp32 = bi_folder / ONNX_DIR / "model.onnx"
    plan = calibration_batches(bi_folder, SENTENCES).smoothing_plan(fp32)
    scales = input_scales(fp32, plan.scales)
    assert len(scales) == 12  # 2 layers x (q, k, v, attention out, 2 FFN), each found by its weight
    model = cpu_model(head_named("bi"), bi_folder)
    sentences = SENTENCES[:4]
    with torch.no_grad():
        exact = unit_embeddings(model, sentences)
        restore = fake_quantized(model[0].auto_model, scales)
        rounded = unit_embeddings(model, sentences)
        restore()
        again = unit_embeddings(model, sentences)
    assert not torch.allclose(exact, rounded, atol=1e-4) and torch.equal(exact, again)
    with pytest.raises(ValueError, match="Linears of the model found"):  # a graph that is not this model's
        fake_quantized(model[0].auto_model, {**scales, "0" * 64: np.ones(32, dtype=np.float32)})


def test_distillation_lowers_the_students_loss_against_the_fp32_model(bi_folder):
    fp32 = bi_folder / ONNX_DIR / "model.onnx"
    plan = calibration_batches(bi_folder, SENTENCES).smoothing_plan(fp32)
    head = head_named("bi")
    teacher, student = cpu_model(head, bi_folder), cpu_model(head, bi_folder)
    fake_quantized(student[0].auto_model, input_scales(fp32, plan.scales))
    record = distill(student, teacher, TRAINING_PAIRS, PHASES, seed=0)
    assert [len(losses) for losses in record] == [40, 10]
    assert np.mean(record[0][-10:]) < 0.8 * np.mean(record[0][:10])  # noisy step to step: one scale a pass


def embeddings(graph, batch: dict) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    embedded = session.run(["sentence_embedding"], batch)[0]
    return embedded / np.linalg.norm(embedded, axis=1, keepdims=True)


def test_the_distilled_graph_is_all_int8_and_embeds_nearer_fp32_than_without_distillation(bi_folder):
    batches = calibration_batches(bi_folder, SENTENCES, TRAINING_PAIRS)
    fp32, target = bi_folder / ONNX_DIR / "model.onnx", bi_folder / ONNX_DIR / "model_int8.onnx"
    exact, distance = embeddings(fp32, batches[0]), {}
    for name, phases in (("plain", ()), ("distilled", PHASES)):
        distilled_graph(fp32, target, batches, phases)
        distance[name] = float(np.mean(1 - np.sum(embeddings(target, batches[0]) * exact, axis=1)))
        graph = onnx.load(str(target)).graph
        target.unlink()
    float_matmuls = [node for node in graph.node if node.op_type == "MatMul"]
    assert len(float_matmuls) == 4  # the attention's two a layer, which have no weight; every weight MatMul is int8
    assert sum(node.op_type == "MatMulInteger" for node in graph.node) == 12
    assert distance["distilled"] < 0.5 * distance["plain"], distance
    assert sorted(path.name for path in (bi_folder / ONNX_DIR).iterdir()) == ["model.onnx"]  # no scratch file left


def test_the_search_skips_the_recipe_that_trains_without_training_pairs(bi_folder):
    distilled = next(recipe for recipe in INT8_RECIPES if recipe.trains)
    assert distilled.name == "distilled-smooth-dynamic-matmul" and distilled.calibrated
    names = [recipe.name for recipe in INT8_RECIPES]
    assert names.index("smooth-dynamic-matmul") + 1 == names.index(distilled.name)  # the same speed, tried next
    skipped = choose_runtime(bi_folder, "onnx-int8", PAIRS, GOLD, GateRule(1.0, 0.0), calibration=SENTENCES, recipes=(distilled,))
    assert skipped.runtime == "torch" and "distilled-smooth-dynamic-matmul): skipped: no training pairs" in skipped.reason
    assert not (bi_folder / ONNX_DIR / RUNTIMES["onnx-int8"].graph).exists()  # never built


def onnx_file(folder, name: str, nodes: list, inputs: dict[str, tuple], weight: np.ndarray | None = None):
    """A one-purpose ONNX graph saved as folder/name.onnx: nodes over float inputs {name: shape}, output the last
    node's first output; weight, if given, a constant named "w"."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(key, TensorProto.FLOAT, list(shape)) for key, shape in inputs.items()],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w")] if weight is not None else [],
    )
    path = folder / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def onnxruntime_rounding(values: np.ndarray, weight: np.ndarray, folder) -> tuple[np.ndarray, np.ndarray]:
    """values through DynamicQuantizeLinear and back, and weight ([in, out]) as quantize_dynamic stores it (QInt8, per
    channel) and back: what onnxruntime itself does to a MatMul's input and its weight."""
    import onnxruntime
    from onnx import helper, numpy_helper

    from pipeline.runtimes.onnx import quantize_int8

    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "scale", "zero"]),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["rounded"]),
    ]
    rounding = onnx_file(folder, "rounding", nodes, {"x": values.shape})
    rounded = onnxruntime.InferenceSession(str(rounding), providers=["CPUExecutionProvider"]).run(None, {"x": values})[0]
    matmul = onnx_file(folder, "matmul", [helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": values.shape}, weight)
    quantized = onnx.load(str(quantize_int8(matmul, folder / "matmul_int8.onnx", ["MatMul"])))
    stored = [numpy_helper.to_array(tensor) for tensor in quantized.graph.initializer]
    integers = next(array for array in stored if array.dtype == np.int8 and array.shape == weight.shape)
    scale = next(array for array in stored if array.dtype == np.float32 and array.shape == (weight.shape[1],))
    return rounded, integers.astype(np.float32) * scale


def test_the_students_rounding_is_the_simulations_and_onnxruntimes(tmp_path):
    from pipeline.runtimes.sensitivity import dynamic_uint8, per_channel_int8

    generator = np.random.default_rng(0)
    values = (generator.standard_normal((8, 16)) * 3 + 0.5).astype(np.float32)
    weight = (generator.standard_normal((16, 6)) * 0.05).astype(np.float32)
    weight[:, 2] = 0.0  # a column of zeros: its scale is 1, not a division by zero
    ort_values, ort_weight = onnxruntime_rounding(values, weight, tmp_path)
    with torch.no_grad():
        student_values = fake_uint8(torch.from_numpy(values)).numpy()
        student_weight = fake_int8_per_channel(torch.from_numpy(weight).T).T.numpy()  # a torch Linear's: [out, in]
    for exact, original, student, simulated in (
        (ort_values, values, student_values, dynamic_uint8(values)),
        (ort_weight, weight, student_weight, per_channel_int8(weight)),
    ):
        assert np.abs(exact - original).max() > 1e-3 * np.abs(original).max()  # onnxruntime did round
        np.testing.assert_allclose(student, exact, rtol=0, atol=1e-6 * np.abs(original).max())
        np.testing.assert_allclose(simulated, exact, rtol=0, atol=1e-6 * np.abs(original).max())
