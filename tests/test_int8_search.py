"""The int8 search on a tiny bi-encoder: each recipe makes its kind of graph, a refused recipe is skipped and its
graph removed, the first (fastest) recipe that passes is kept and named, none passing falls back to fp32 ONNX and
then torch; and the gate's percentile rule."""

import math

import numpy as np
import onnx
import pytest

from pipeline.paths import ONNX_DIR
from pipeline.runtimes import RUNTIMES
from pipeline.runtimes.gate import GateRule, at_pass_sizes, judge, served_pass_sizes
from pipeline.runtimes.int8 import INT8_RECIPES, SENSITIVE_FRACTIONS, spread_sample
from pipeline.runtimes.selection import calibration_batches, choose_runtime
from pipeline.runtimes.sensitivity import dynamic_uint8, matmul_errors, most_sensitive, per_channel_int8
from pipeline.scoring import PairScorer
from serving.runtime import load_scorer
from tests.support.toy_models import bi_pair_model
from tests.test_runtimes import PAIRS

GOLD = np.array([4.0, 2.5, 0.5, 4.5] * 6)
SENTENCES = [sentence for pair in PAIRS[:4] for sentence in pair]  # calibration text (register: training sentences)
LOOSE = GateRule(1.0, 5.0)  # anything on the 0-5 scale passes
UNTRAINED = [recipe for recipe in INT8_RECIPES if not recipe.trains]


@pytest.fixture()
def bi_folder(tiny_bert, tmp_path):
    return bi_pair_model(tiny_bert, tmp_path / "model")


def graphs(folder) -> list[str]:
    return sorted(path.name for path in (folder / ONNX_DIR).glob("*.onnx"))


def test_each_recipe_makes_its_kind_of_int8_graph(bi_folder):
    batches = calibration_batches(bi_folder, SENTENCES)
    assert [batch["input_ids"].shape[0] for batch in batches] == [len(SENTENCES)]  # one batch of the 8 sentences
    assert calibration_batches(bi_folder, SENTENCES * 5)[1]["input_ids"].shape == (8, batches[0]["input_ids"].shape[1])
    ops, float_tables, float_matmuls = {}, {}, {}
    for recipe in UNTRAINED:  # the distilled recipe's graph: test_distill.py
        RUNTIMES["onnx-int8"].build(bi_folder, recipe, batches)
        graph = onnx.load(str(bi_folder / ONNX_DIR / "model_int8.onnx")).graph
        ops[recipe.name] = {node.op_type for node in graph.node}
        float_tables[recipe.name] = sum(len(t.dims) == 2 and t.data_type == onnx.TensorProto.FLOAT for t in graph.initializer)
        float_matmuls[recipe.name] = sum(node.op_type == "MatMul" for node in graph.node)
        (bi_folder / ONNX_DIR / "model_int8.onnx").unlink()
    assert list(batches.plans) == [str(bi_folder / ONNX_DIR / "model.onnx")]  # one sensitivity pass for the family
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops["dynamic-matmul"] & ops["dynamic-all"]
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops["static-qdq"] and "DynamicQuantizeLinear" not in ops["static-qdq"]
    # the embedding tables (word, position, token type) stay float but under dynamic-all, which quantizes their Gathers
    assert float_tables["dynamic-all"] == 0 < float_tables["dynamic-matmul"] == float_tables["static-qdq"]
    weight_matmuls = sum(node.op_type == "MatMul" for node in onnx.load(str(bi_folder / ONNX_DIR / "model.onnx")).graph.node)
    weight_matmuls -= float_matmuls["dynamic-matmul"]  # the attention's two MatMuls a layer have no weight: float
    for fraction in SENSITIVE_FRACTIONS:  # each recipe of the family keeps its share of the weight MatMuls fp32
        kept = math.ceil(fraction * weight_matmuls)
        assert float_matmuls[f"dynamic-matmul-sensitive-{round(fraction * 100)}"] == float_matmuls["dynamic-matmul"] + kept


def test_the_sensitive_recipe_keeps_the_matmuls_int8_hurts_most(bi_folder):
    batches = calibration_batches(bi_folder, SENTENCES)
    fp32 = bi_folder / ONNX_DIR / "model.onnx"
    errors = matmul_errors(fp32, batches)
    assert len(errors) == 12 and all(0 < error < 0.5 for error in errors.values())  # 2 layers x (q, k, v, out, 2 FFN)
    RUNTIMES["onnx-int8"].build(bi_folder, next(r for r in INT8_RECIPES if r.name == "dynamic-matmul-sensitive-35"), batches)
    graph = onnx.load(str(bi_folder / ONNX_DIR / "model_int8.onnx")).graph
    float_weight_matmuls = {node.name for node in graph.node if node.op_type == "MatMul" and node.name in errors}
    assert float_weight_matmuls == set(most_sensitive(errors, 0.35))
    assert most_sensitive({"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.3}, 0.5) == ["b", "d"]


def test_the_simulated_int8_keeps_values_on_its_grid_and_rounds_the_rest_to_it():
    on_grid = np.array([-51, 0, 25, 204], dtype=np.float32) * 0.01  # range 2.55: steps of 0.01, zero point 51
    np.testing.assert_allclose(dynamic_uint8(on_grid), on_grid, atol=1e-6)
    assert abs(dynamic_uint8(np.array([-0.51, 0.2549, 2.04], dtype=np.float32))[1] - 0.25) < 1e-6  # rounded to 25 steps
    weight = np.array([[1.0, -0.02], [-64 / 127, 0.02 * 50 / 127]], dtype=np.float32)  # scales 1/127 and 0.02/127
    np.testing.assert_allclose(per_channel_int8(weight), weight, rtol=1e-6)


def test_a_refused_recipe_is_skipped_and_the_first_that_passes_is_served(bi_folder):
    measured = choose_runtime(bi_folder, "onnx-int8", PAIRS, GOLD, GateRule(1.0, 0.0), calibration=SENTENCES)
    shift = {entry["recipe"]: entry["percentile_score_shift"] for entry in measured.gate}
    assert set(shift) == {recipe.name for recipe in UNTRAINED} and measured.runtime == "torch"  # no training pairs given
    worse, better = (max(UNTRAINED, key=lambda r: shift[r.name]), min(UNTRAINED, key=lambda r: shift[r.name]))
    assert shift[worse.name] > shift[better.name]
    between = GateRule(1.0, (shift[worse.name] + shift[better.name]) / 2)
    chosen = choose_runtime(bi_folder, "auto", PAIRS, GOLD, between, calibration=SENTENCES, recipes=(worse, better))
    assert (chosen.runtime, chosen.recipe) == ("onnx-int8", better.name) and graphs(bi_folder) == ["model_int8.onnx"]
    assert [(entry["recipe"], entry["passed"]) for entry in chosen.gate] == [(worse.name, False), (better.name, True)]
    served = load_scorer(bi_folder, "onnx-int8").score(PAIRS, batch_size=1)  # the graph left is the passing one's
    reference = PairScorer.from_folder(bi_folder).score(PAIRS)
    assert judge("onnx-int8", reference, served, GOLD, 3.0, between).percentile_score_shift == shift[better.name]
    first = choose_runtime(bi_folder, "auto", PAIRS, GOLD, LOOSE, calibration=SENTENCES, recipes=(better, worse))
    assert first.recipe == better.name and len(first.gate) == 1  # the faster passes: the slower is never built
    default = choose_runtime(bi_folder, "auto", PAIRS, GOLD, LOOSE, calibration=SENTENCES)
    assert default.recipe == INT8_RECIPES[0].name == "dynamic-matmul"


def test_the_gate_scores_int8_at_each_pass_size_a_worker_runs_and_refuses_at_the_first_that_fails(bi_folder):
    RUNTIMES["onnx-int8"].build(bi_folder, INT8_RECIPES[0])
    reference, int8 = PairScorer.from_folder(bi_folder).score(PAIRS), load_scorer(bi_folder, "onnx-int8")
    sizes = (1, len(PAIRS))  # a request alone in its pass; all 24 pairs in one
    shift = {size: judge("onnx-int8", reference, int8.score(PAIRS, batch_size=size), GOLD, 3.0, LOOSE) for size in sizes}
    shift = {size: result.percentile_score_shift for size, result in shift.items()}
    assert shift[1] != shift[len(PAIRS)]  # one activation scale per pass: a pair's int8 score moves with its batchmates
    (worse, better), limit = sorted(shift, key=shift.get, reverse=True), sum(shift.values()) / 2
    int8_only = {"recipes": INT8_RECIPES[:1]}
    refused = choose_runtime(bi_folder, "onnx-int8", PAIRS, GOLD, GateRule(1.0, limit, 99.5, sizes), **int8_only)
    assert refused.runtime == "torch" and [entry["pairs_per_pass"] for entry in refused.gate] == [worse]
    assert refused.gate[0]["percentile_score_shift"] == shift[worse] and refused.gate[0]["reason"].endswith("a pass")
    served = choose_runtime(bi_folder, "onnx-int8", PAIRS, GOLD, GateRule(1.0, limit, 99.5, (better,)), **int8_only)
    assert (served.runtime, served.gate[0]["pairs_per_pass"]) == ("onnx-int8", better)
    assert served.gate[0]["reason"] == "within tolerance " + at_pass_sizes([better])
    assert served_pass_sizes(4) == (1, 4) and served_pass_sizes(1) == (1,)
    assert (at_pass_sizes([1]), at_pass_sizes((1, 4))) == ("at 1 pair a pass", "at 1 and 4 pairs a pass")


def test_the_shift_rule_reads_a_percentile_not_the_one_largest_pair():
    reference = np.linspace(0.5, 4.5, 1001)
    moved = reference + np.where(np.arange(1001) % 2, 0.01, -0.01)
    moved[501] += 0.6  # one pair in 1,001 moves far: 0.61
    rule = GateRule(1.0, 0.15, shift_percentile=99.5)
    result = judge("onnx-int8", reference, moved, reference, 3.0, rule)
    assert result.passed and result.percentile_score_shift == pytest.approx(0.01)
    assert result.max_score_shift == pytest.approx(0.61)
    largest = judge("onnx-int8", reference, moved, reference, 3.0, GateRule(1.0, 0.15, shift_percentile=100.0))
    assert not largest.passed and largest.reason == "refused: p100 score shift 0.61 > 0.15"
    # shifts 0, 0.001, ..., 0.2: p99.5 sits at position 0.995 x 200 = 199 of the sorted shifts, 0.199
    ramp = judge("onnx", np.zeros(201), np.arange(201) / 1000, np.linspace(0, 5, 201), 3.0, GateRule(1.0, 0.1995))
    assert ramp.percentile_score_shift == pytest.approx(0.199) and ramp.passed


def test_calibration_sentences_are_distinct_and_spread_over_the_split():
    assert spread_sample(["a", "b", "a", "c", "d", "e", "f"], 3) == ["a", "c", "e"]
    assert spread_sample(["a", "b"], 5) == ["a", "b"]
