"""The word-embedding table stored compactly (pipeline/runtimes/embedding_table.py), on a tiny exported bi-encoder.

A table of exact 4-bit blocks becomes GatherBlockQuantized with outputs equal to the fp32 graph's; a trained table
stays fp32; dynamic int8 quantization still runs after it.
"""

from __future__ import annotations

import filecmp
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from pipeline.heads.bi import load_bi_encoder
from pipeline.heads.bi_export import export_sentence_encoder
from pipeline.runtimes.block4 import BLOCK_SIZE, dequantize_block4, find_block4
from pipeline.runtimes.embedding_table import compact_embedding_table
from pipeline.runtimes.onnx import quantize_int8, quantize_static_int8
from pipeline.sources.packed_e5 import dequantize_q4_0
from tests.conftest import mirror_sentences
from tests.support.packed_e5_writer import quantize_q4_0
from tests.support.toy_models import build_tiny_bert

MAX_TOKENS = 64
LONG = " ".join(["고양이가 소파 위에서 자고 있고 개는 공원에서 뛰어놀며 아이들은 노래를 부른다."] * 12)  # past MAX_TOKENS
PAIRS = [
    ("한 남자가 플루트를 연주하고 있다.", "남자가 피리를 불고 있다."),
    ("남자가 피자에 치즈를 뿌리고 있다.", "한 남자가 요리를 하고 있다."),
    ("고양이가 소파 위에서 자고 있다.", "개가 공원에서 뛰고 있다."),
    ("오늘 날씨가 정말 좋네요.", "오늘은 날씨가 매우 좋습니다."),
    (LONG, "고양이가 소파 위에서 자고 있다."),
    (LONG, LONG[: len(LONG) // 2]),
    ("가", "나"),
]
SENTENCES = [sentence for pair in PAIRS for sentence in pair]
INT8_SHIFT = 0.15  # params.yaml serve.gate_max_shift: the most a validation pair's score may move under int8


def q4_table(rows: int, hidden: int, seed: int = 0) -> np.ndarray:
    """Random exact 4-bit blocks: (n - 8) x d, n uniform in 0..15, d fp16 of either sign (one block of zeros)."""
    rng = np.random.default_rng(seed)
    nibbles = rng.integers(0, 16, size=(rows, hidden)).astype(np.float32)
    scales = rng.choice([-1.0, 1.0], size=(rows, hidden // BLOCK_SIZE)) * rng.uniform(1e-3, 2e-2, (rows, hidden // BLOCK_SIZE))
    scales = scales.astype(np.float16).astype(np.float32)
    table = (nibbles - 8) * np.repeat(scales, BLOCK_SIZE, axis=1)
    table[1, :BLOCK_SIZE] = 0.0
    return table.astype(np.float32)


def tokenized(model, sentences: list[str], batch: int = 4) -> list[dict[str, np.ndarray]]:
    """The graph's inputs for sentences, in batches padded to their longest, truncated at MAX_TOKENS."""
    batches = []
    for start in range(0, len(sentences), batch):
        encoded = model.tokenizer(
            sentences[start : start + batch], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np"
        )
        batches.append({name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask")})
    return batches


def embeddings(graph: Path, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["sentence_embedding"], batch)[0] for batch in batches])


def pair_scores(vectors: np.ndarray) -> np.ndarray:
    """5 x cosine of consecutive rows (SENTENCES lists each pair's two sentences in turn), clipped to [0, 5]."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.clip(5 * (unit[0::2] * unit[1::2]).sum(axis=1), 0, 5)


def op_counts(graph: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(graph)).graph.node)


def float_tables(graph: Path) -> list[tuple[int, ...]]:
    return [
        tuple(t.dims)
        for t in onnx.load(str(graph)).graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 2
    ]


def exported(tiny_bert: Path, target: Path, table: np.ndarray | None = None):
    """The tiny bi-encoder (its word embeddings replaced by table, if given) and its fp32 graph at target."""
    import torch

    model = load_bi_encoder(str(tiny_bert), MAX_TOKENS)
    if table is not None:
        with torch.no_grad():
            model[0].auto_model.embeddings.word_embeddings.weight.copy_(torch.from_numpy(table))
    export_sentence_encoder(model, target)
    return model


@pytest.fixture(scope="module")
def wide_bert(mirror, tmp_path_factory) -> Path:
    """A tiny BERT 96 wide: three 4-bit blocks a row, so each row's scales are read block by block (e5: 12)."""
    return build_tiny_bert(tmp_path_factory.mktemp("wide-bert"), mirror_sentences(mirror), vocab_size=800, hidden_size=96)


@pytest.fixture(scope="module")
def q4_graphs(wide_bert, tmp_path_factory):
    """(model, fp32 graph, compacted graph, report) for the tiny bi-encoder with an exact 4-bit table."""
    folder = tmp_path_factory.mktemp("q4-graphs")
    rows, hidden = load_bi_encoder(str(wide_bert))[0].auto_model.embeddings.word_embeddings.weight.shape
    assert hidden // BLOCK_SIZE == 3
    model = exported(wide_bert, folder / "model.onnx", q4_table(rows, hidden))
    report = compact_embedding_table(folder / "model.onnx", folder / "compact.onnx")
    return model, folder / "model.onnx", folder / "compact.onnx", report


def test_find_block4_rebuilds_exact_4bit_tables_bit_for_bit_and_refuses_any_other():
    table = q4_table(50, 64)
    table[2, 32:] = -0.0  # a block of negative zeros keeps its sign bits
    found = find_block4(table)
    assert found is not None and found.packed.shape == (50, 32) and found.scales.shape == (50, 2)
    assert np.array_equal(dequantize_block4(found).view(np.uint32), table.view(np.uint32))
    # the packed file's own blocks (the test writer's scale rule, d = fp16(max / 7)) are found too
    e5_like = dequantize_q4_0(quantize_q4_0(np.random.default_rng(1).normal(0, 0.05, 40 * 64)), 40 * 64).reshape(40, 64)
    assert find_block4(e5_like) is not None
    off_by_one_ulp = table.copy()
    off_by_one_ulp[7, 3] = np.nextafter(off_by_one_ulp[7, 3], np.float32(1))
    assert find_block4(off_by_one_ulp) is None
    assert find_block4(np.random.default_rng(2).normal(0, 0.02, (20, 64)).astype(np.float32)) is None  # a trained table
    assert find_block4(table[:, :48]) is None  # not a whole number of blocks


def test_a_4bit_table_becomes_gather_block_quantized_with_the_fp32_graphs_outputs(q4_graphs, tmp_path):
    model, fp32, compact, report = q4_graphs
    rows, hidden = report.shape
    assert report.kind == "block4"
    assert report.bytes_before == rows * hidden * 4 and report.bytes_after == rows * hidden // 2 + rows * hidden // BLOCK_SIZE * 4
    saved = fp32.stat().st_size - compact.stat().st_size
    assert saved >= report.bytes_before - report.bytes_after - 2048  # the file shrinks by what the table does
    assert op_counts(compact)["GatherBlockQuantized"] == 1 and op_counts(compact)["Gather"] == op_counts(fp32)["Gather"] - 1
    assert (rows, hidden) not in float_tables(compact)
    assert compact.stat().st_mode & 0o777 == fp32.stat().st_mode & 0o777  # readable as the export is
    batches = tokenized(model, SENTENCES)
    assert max(batch["input_ids"].shape[1] for batch in batches) == MAX_TOKENS  # the long sentences fill the positions
    assert np.array_equal(embeddings(compact, batches), embeddings(fp32, batches))
    # in place (target = source) too, and a second pass finds nothing more to do
    in_place = tmp_path / "model.onnx"
    in_place.write_bytes(fp32.read_bytes())
    assert compact_embedding_table(in_place, in_place).kind == "block4"
    assert filecmp.cmp(in_place, compact, shallow=False)
    again = compact_embedding_table(in_place, tmp_path / "again.onnx")
    assert again.kind == "fp32" and "no float32 table" in again.reason and filecmp.cmp(in_place, tmp_path / "again.onnx")


def test_a_trained_table_stays_fp32(tiny_bert, tmp_path):
    fp32 = tmp_path / "model.onnx"
    exported(tiny_bert, fp32)  # the random initialisation: a trained-like table, not 4-bit blocks
    kept = compact_embedding_table(fp32, tmp_path / "kept.onnx")
    assert kept.kind == "fp32" and kept.bytes_after == kept.bytes_before and "trained embeddings" in kept.reason
    assert filecmp.cmp(fp32, tmp_path / "kept.onnx", shallow=False)


def test_int8_quantization_of_the_compacted_graph_keeps_the_4bit_table_and_the_scores(q4_graphs, tmp_path):
    model, fp32, compact, _ = q4_graphs
    quantize_int8(fp32, tmp_path / "fp32_int8.onnx")
    quantize_int8(compact, tmp_path / "compact_int8.onnx")
    counts = op_counts(tmp_path / "compact_int8.onnx")
    assert (
        counts["GatherBlockQuantized"] == 1 and counts["MatMulInteger"] == op_counts(tmp_path / "fp32_int8.onnx")["MatMulInteger"]
    )
    graph = onnx.load(str(tmp_path / "compact_int8.onnx")).graph
    node = next(node for node in graph.node if node.op_type == "GatherBlockQuantized")
    tables = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    original = {tensor.name: numpy_helper.to_array(tensor) for tensor in onnx.load(str(compact)).graph.initializer}
    assert all(np.array_equal(tables[name], original[name]) for name in (node.input[0], node.input[2]))  # left alone
    assert (tmp_path / "compact_int8.onnx").stat().st_size < (tmp_path / "fp32_int8.onnx").stat().st_size

    batches = tokenized(model, SENTENCES)
    reference = pair_scores(embeddings(fp32, batches))
    compact_int8 = pair_scores(embeddings(tmp_path / "compact_int8.onnx", batches))
    fp32_int8 = pair_scores(embeddings(tmp_path / "fp32_int8.onnx", batches))
    assert np.abs(compact_int8 - reference).max() <= INT8_SHIFT
    assert not np.array_equal(compact_int8, reference)  # the int8 weights do move the scores a little
    # the MatMuls are quantized alike; only the table differs (exact rows instead of one int8 scale for the table)
    assert np.abs(compact_int8 - fp32_int8).max() <= INT8_SHIFT


def test_static_int8_calibrates_through_the_compacted_graph_and_leaves_the_4bit_table_alone(q4_graphs, tmp_path):
    """static-qdq (pipeline/runtimes/int8.py) on e5's graph: the calibration runs the com.microsoft op, whose output
    type the compaction declared; only the MatMuls are quantized."""
    model, fp32, compact, _ = q4_graphs
    batches = tokenized(model, SENTENCES, batch=len(SENTENCES))  # the calibrator stacks batches: one shape
    quantize_static_int8(compact, tmp_path / "compact_qdq.onnx", batches)
    counts = op_counts(tmp_path / "compact_qdq.onnx")
    assert counts["GatherBlockQuantized"] == 1 and counts["QuantizeLinear"] > 0 and counts["DynamicQuantizeLinear"] == 0
    left = float_tables(tmp_path / "compact_qdq.onnx")  # positions, token types, the 4-bit scales; MatMul weights int8
    assert len(left) == 3 and set(left) < set(float_tables(compact))
    reference = pair_scores(embeddings(fp32, batches))
    static = pair_scores(embeddings(tmp_path / "compact_qdq.onnx", batches))
    assert np.abs(static - reference).max() <= INT8_SHIFT and not np.array_equal(static, reference)
