"""Serving runtimes on a tiny bi-encoder: ONNX fp32 scores like torch, int8 runs, the gate refuses what drifts,
the embedding cache evicts and counts, and the latency budget keeps a slow model from the alias."""

import shutil
import typing

import numpy as np
import pytest

from pipeline.config import ServeSettings
from pipeline.heads import HEADS, LoadedModel
from pipeline.heads.bi import load_bi_encoder
from pipeline.models import ModelSettings
from pipeline.paths import ONNX_DIR
from pipeline.promotion import ChampionDecision, within_latency_budget
from pipeline.runtimes import RUNTIMES, candidates
from pipeline.runtimes.gate import GateRule, judge
from pipeline.runtimes.latency import measure_latency
from pipeline.runtimes.selection import GateTrial, choose_runtime
from pipeline.scoring import PairScorer
from serving.embedding_cache import EmbeddingCache
from serving.onnx_scorer import inference_session
from serving.runtime import load_scorer
from tests.support.toy_models import bi_pair_model

PAIRS = [
    ("한 남자가 플루트를 연주하고 있다.", "남자가 피리를 불고 있다."),
    ("남자가 피자에 치즈를 뿌리고 있다.", "한 남자가 요리를 하고 있다."),
    ("고양이가 소파 위에서 자고 있다.", "개가 공원에서 뛰고 있다."),
    ("오늘 날씨가 정말 좋네요.", "오늘은 날씨가 매우 좋습니다."),
] * 6


@pytest.fixture()
def bi_folder(tiny_bert, tmp_path):
    return bi_pair_model(tiny_bert, tmp_path / "model")


def test_config_accepts_exactly_the_registered_runtimes():
    allowed = typing.get_args(ServeSettings.model_fields["runtime"].annotation)
    assert set(allowed) == {"auto", *RUNTIMES}


def test_onnx_scores_like_torch_and_int8_stays_on_the_scale(bi_folder):
    torch_scores = PairScorer.from_folder(bi_folder).score(PAIRS)
    for name in ("onnx", "onnx-int8"):
        RUNTIMES[name].build(bi_folder)
    assert sorted(path.name for path in (bi_folder / ONNX_DIR).iterdir()) == ["model.onnx", "model_int8.onnx"]
    onnx = load_scorer(bi_folder, "onnx", threads=1).score(PAIRS)
    np.testing.assert_allclose(onnx, torch_scores, atol=1e-4)
    int8 = load_scorer(bi_folder, "onnx-int8", threads=1).score(PAIRS)
    assert np.isfinite(int8).all() and int8.min() >= 0 and int8.max() <= 5
    assert not np.array_equal(int8, torch_scores)  # quantized weights: close, not equal


def test_the_worker_session_leaves_the_skip_layer_norm_fusion_off(bi_folder, tmp_path):
    """ONNX Runtime fuses each residual Add + LayerNormalization of the int8 graph into a SkipLayerNormalization kernel,
    slower on our CPUs (serving/onnx_scorer.py DISABLED_OPTIMIZERS); the session a worker and the gate score through
    keeps them apart."""
    import onnx
    import onnxruntime

    RUNTIMES["onnx-int8"].build(bi_folder)
    graph, served, default = bi_folder / ONNX_DIR / "model_int8.onnx", tmp_path / "served.onnx", tmp_path / "default.onnx"
    inference_session(graph, 1, optimized_model_filepath=str(served))
    options = onnxruntime.SessionOptions()  # ONNX Runtime's defaults, on the worker's one thread
    options.intra_op_num_threads, options.inter_op_num_threads, options.optimized_model_filepath = 1, 1, str(default)
    default_session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def operators(path) -> set[str]:
        return {node.op_type for node in onnx.load(str(path)).graph.node}

    assert "SkipLayerNormalization" in operators(default)  # the fusion applies to this graph by default
    assert "SkipLayerNormalization" not in operators(served) and "LayerNormalization" in operators(served)
    scorer = load_scorer(bi_folder, "onnx-int8", threads=1)
    unfused = scorer.score(PAIRS)
    scorer.encoder.session = default_session
    fused = scorer.score(PAIRS)  # the sums in another order: int8 rounding flips downstream
    assert not np.array_equal(unfused, fused)
    scorer.encoder.session = inference_session(graph, 1)
    np.testing.assert_array_equal(scorer.score(PAIRS), unfused)  # what load_scorer gave: the unfused session


def test_the_gate_judges_f1_pearson_and_the_shift_percentile():
    gold = np.array([0.5, 1.5, 2.5, 3.5, 4.5, 4.0])
    reference = np.array([0.6, 1.4, 2.6, 3.4, 4.4, 4.1])
    every_pair = GateRule(0.005, 0.15, shift_percentile=100.0)  # over 6 pairs: the largest shift
    assert judge("onnx", reference, reference + 0.01, gold, 3.0, every_pair).passed
    moved = reference.copy()
    moved[2] += 0.6  # crosses 3.0: F1 changes, and the shift is too big
    result = judge("onnx-int8", reference, moved, gold, 3.0, every_pair, recipe="dynamic-matmul")
    assert not result.passed and result.max_score_shift == pytest.approx(0.6) and result.recipe == "dynamic-matmul"
    assert "f1 delta" in result.reason and "p100 score shift 0.6 > 0.15" in result.reason
    # at 3.5 the moved pair (2.6 -> 3.2) stays dissimilar: F1 unchanged, only the shift refuses it
    at_threshold = judge("onnx-int8", reference, moved, gold, 3.5, every_pair)
    assert at_threshold.f1_delta == 0.0 and at_threshold.threshold == 3.5 and "f1 delta" not in at_threshold.reason


class CountingTokenizer:
    """The `tokenizers` Tokenizer, counting the sentences it encodes."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.sentences = tokenizer, 0

    def encode_batch(self, sentences, **options):
        self.sentences += len(sentences)
        return self.tokenizer.encode_batch(sentences, **options)

    def __getattr__(self, name: str):
        return getattr(self.tokenizer, name)


def test_an_onnx_batch_is_tokenized_once_for_its_scores_and_its_token_counts(bi_folder):
    """What the service does per batch: score the pairs, then count each sentence's tokens for /metrics."""
    RUNTIMES["onnx"].build(bi_folder)
    scorer, fresh = load_scorer(bi_folder, "onnx", threads=1, cache_size=100), load_scorer(bi_folder, "onnx", threads=1)
    scorer.encoder.tokenizer = counting = CountingTokenizer(scorer.encoder.tokenizer)
    sentences = [sentence for pair in PAIRS[:4] for sentence in pair]
    for _ in range(2):  # the second batch from the embedding cache: its sentences are tokenized for the counts only
        scorer.score(PAIRS[:4])
        assert scorer.sentence_tokens(sentences) == fresh.sentence_tokens(sentences)
    assert counting.sentences == 2 * len(sentences) and not scorer.encoder.read_counts


def test_the_gate_counts_f1_at_the_models_threshold(tiny_bert, tmp_path):
    """choose_runtime reads the threshold from the model's similarity.json (evaluate.threshold), not KLUE's 3.0."""
    folder = bi_pair_model(tiny_bert, tmp_path / "model", threshold=3.5)
    gold = np.array([4.0, 2.5, 0.5, 4.5] * 6)
    choice = choose_runtime(folder, "onnx", PAIRS, gold, GateRule(1.0, 1.0))
    assert choice.runtime == "onnx" and [entry["threshold"] for entry in choice.gate] == [3.5]


def test_the_gate_scores_its_reference_once_with_the_torch_scorer_it_is_given(bi_folder, tmp_path):
    """register gates a staging copy of models/model against its torch scorer of models/model (the same weights)."""
    given = PairScorer.from_folder(shutil.copytree(bi_folder, tmp_path / "copy"), cache_size=100)  # its cache counts
    gold, rule, distinct = np.array([4.0, 2.5, 0.5, 4.5] * 6), GateRule(0.005, 0.15), len({s for pair in PAIRS for s in pair})
    assert choose_runtime(bi_folder, "onnx", PAIRS, gold, rule, torch_scorer=given).runtime == "onnx"
    assert (given.model.misses, given.model.hits) == (distinct, 2 * len(PAIRS) - distinct)  # it scored the pairs, once
    trial = GateTrial(bi_folder, PAIRS, gold, rule, 3.0, (), torch_scorer=given)
    assert trial.gate("onnx", None).passed and trial.gate("onnx", None).passed
    assert given.model.hits == 4 * len(PAIRS) - distinct  # two gates of one trial: one more scoring of the reference


def test_a_head_without_an_export_and_a_gpu_stay_on_torch(bi_folder, tmp_path):
    cross = tmp_path / "cross"
    cross.mkdir()
    ModelSettings(head="cross", base_model="tiny", hangul_only=False).save(cross)
    choice = choose_runtime(cross, "onnx-int8", PAIRS, np.zeros(len(PAIRS)), GateRule(0.005, 0.15))
    assert choice.runtime == "torch" and "not available for the cross head" in choice.reason
    assert candidates("auto", gpu=True) == [] and candidates("torch", gpu=False) == []


def test_the_embedding_cache_evicts_the_least_recent_and_counts(bi_folder):
    model = load_bi_encoder(str(bi_folder))
    cache = EmbeddingCache(model, size=3)
    sentences = ["가", "나", "다", "가"]
    np.testing.assert_allclose(cache.encode(sentences), model.encode(sentences), atol=1e-5)
    assert (cache.hits, cache.misses) == (1, 3) and list(cache.entries) == ["가", "나", "다"]  # the repeat is encoded once
    cache.encode(["라"])  # a fourth sentence evicts 가, the least recently used
    assert list(cache.entries) == ["나", "다", "라"] and cache.misses == 4
    cache.encode(["가", "다"])  # 가 again: a miss; 다: a hit, now the most recent but one
    assert (cache.hits, cache.misses) == (2, 5) and list(cache.entries) == ["라", "다", "가"]


def test_the_embedding_cache_keeps_copies_of_rows_not_views_of_the_batch_array(bi_folder):
    cache = EmbeddingCache(load_bi_encoder(str(bi_folder)), size=10)
    cache.encode(["가", "나", "다"])
    assert all(vector.base is None for vector in cache.entries.values())  # a view would keep the whole batch alive


def test_a_scorer_with_a_cache_scores_like_one_without(bi_folder):
    plain = PairScorer.from_folder(bi_folder).score(PAIRS)
    cached = PairScorer.from_folder(bi_folder, cache_size=100)
    np.testing.assert_allclose(cached.score(PAIRS), plain, atol=1e-5)
    np.testing.assert_allclose(cached.score(PAIRS), plain, atol=1e-5)
    assert cached.model.misses == len({s for pair in PAIRS for s in pair}) and cached.model.hits > 0
    assert HEADS["cross"].with_cache(LoadedModel("model", "tokenizer"), 100) == LoadedModel("model", "tokenizer")


def test_latency_is_measured_and_a_model_over_budget_keeps_the_alias_where_it_was(bi_folder):
    figures = measure_latency(PairScorer.from_folder(bi_folder), PAIRS, repeats=8)
    assert 0 < figures["p50_ms_one_pair"] <= figures["p95_ms_one_pair"] and figures["p95_ms_batch_32"] > 0
    wins = ChampionDecision(True, "beats champion v1", 0.8, "1")
    assert within_latency_budget(wins, 120.0, None) is wins and within_latency_budget(wins, 120.0, 200) is wins
    refused = within_latency_budget(wins, 120.0, 50)
    assert not refused.promote and refused.reason.startswith("over the latency budget: p95 120.0 ms for one pair > ")
