"""What changes on a CUDA GPU (GPU runners, docs/scale-out.md; skipped where torch sees none): training in mixed
precision with TF32 and pinned memory, weights saved in fp32 all the same, scoring on the GPU by default as the CPU
scores, and the ONNX runtime (served on CPUs) exported from such a model on the CPU."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from pipeline.heads import HEADS, TrainingJob
from pipeline.heads.base import training_arguments
from pipeline.runtimes import RUNTIMES
from pipeline.scoring import PairScorer
from serving.runtime import load_scorer
from tests.test_heads import TINY_THRESHOLD, TINY_TRAIN, model_params, small_splits, train_head, workdir  # noqa: F401

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (GPU runners)")


def safetensors_dtypes(path) -> set[str]:
    """The dtypes a safetensors file stores, read from its JSON header."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return {entry["dtype"] for name, entry in header.items() if name != "__metadata__"}


def test_a_gpu_trains_in_mixed_precision_with_tf32_and_pinned_memory(tiny_bert, tmp_path):
    job = TrainingJob(str(tiny_bert), model_params("bi"), None, TINY_TRAIN, str(tmp_path), "pearson", TINY_THRESHOLD)
    arguments = training_arguments(job)
    bf16 = torch.cuda.is_bf16_supported()
    assert (arguments.bf16, arguments.fp16) == (bf16, not bf16)  # train.precision auto
    assert arguments.device.type == "cuda" and arguments.dataloader_pin_memory
    assert torch.backends.cuda.matmul.allow_tf32


@pytest.fixture(scope="module")
def trained_on_gpu(tiny_bert, workdir, tmp_path_factory) -> dict:  # noqa: F811
    """{head: (its model folder, the training result)}, each head trained on the GPU."""
    trained = {}
    for head in HEADS:
        folder = tmp_path_factory.mktemp(head) / "model"
        trained[head] = (folder, train_head(tiny_bert, head, workdir, folder)[1])
    return trained


def held_out_pairs(splits) -> list[tuple[str, str]]:
    """The test split's sentence pairs."""
    return [(row["sentence1"], row["sentence2"]) for row in splits["test"]]


@pytest.mark.parametrize("head", sorted(HEADS))
def test_each_head_trains_on_the_gpu_saves_fp32_and_scores_there_as_on_the_cpu(head, trained_on_gpu, small_splits):  # noqa: F811
    folder, result = trained_on_gpu[head]
    assert len(result.history) == 2 and np.isfinite(result.best_metrics["pearson"])
    assert safetensors_dtypes(folder / "model.safetensors") == {"F32"}  # mixed precision keeps fp32 weights
    on_gpu, served = PairScorer.from_folder(folder), load_scorer(folder, "torch")  # device None: CUDA when present
    assert on_gpu.device == served.device == "cuda"
    assert next(on_gpu.model.parameters()).device.type == "cuda"
    gpu_scores = on_gpu.score(held_out_pairs(small_splits))
    assert np.ptp(gpu_scores) > 0
    # TF32 matmuls (on after training) round to 10 mantissa bits: close to the CPU's fp32, not equal
    np.testing.assert_allclose(
        gpu_scores, PairScorer.from_folder(folder, device="cpu").score(held_out_pairs(small_splits)), atol=0.02
    )


def test_the_onnx_runtime_is_exported_on_the_cpu_from_a_model_trained_on_the_gpu(trained_on_gpu, small_splits):  # noqa: F811
    folder, _ = trained_on_gpu["bi"]
    RUNTIMES["onnx"].build(folder)  # the head loads the model onto CUDA; the export moves it to the CPU
    pairs = held_out_pairs(small_splits)
    onnx = load_scorer(folder, "onnx", threads=1).score(pairs)
    np.testing.assert_allclose(onnx, PairScorer.from_folder(folder, device="cpu").score(pairs), atol=1e-4)
