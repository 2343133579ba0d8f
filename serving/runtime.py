"""The one dispatch on a model's serving runtime (serve.runtime, the Bento model's label `runtime`): which scorer
loads a saved pair model. The service, the runtime gate, the container check and the bench scripts load through it.

An ONNX runtime gets serving.onnx_scorer (torch-free); torch gets pipeline.scoring, imported by name and only then:
a lean Bento ships no pipeline code and its worker must never import torch (tests/test_lean_worker.py), while a torch
Bento ships /pipeline/ (bentofile.yaml; dvc.yaml counts it in the package stage's deps: tests/test_architecture.py).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from serving.pair_model import ONNX_GRAPHS
from serving.scorer import PairScorer

TORCH_SCORER_MODULE = "pipeline.scoring"  # the torch runtime: the model's head in PyTorch (needs the training stack)


def load_scorer(
    folder: str | Path,
    runtime: str = "torch",
    threads: int | None = None,
    cache_size: int = 0,
    device: str | None = None,
) -> PairScorer:
    """The pair model in folder on `runtime`: an ONNX graph the package stage built into it, else torch on `device`
    (None: CUDA when present). threads: intra-op threads (ONNX Runtime's, or torch's for the process); cache_size > 0
    puts the head's cache of repeated work in front of the model (bi: sentence embeddings)."""
    if runtime in ONNX_GRAPHS:
        from serving.onnx_scorer import OnnxPairScorer

        return OnnxPairScorer.from_folder(folder, runtime, threads, cache_size)
    torch_scoring = importlib.import_module(TORCH_SCORER_MODULE)  # by name: a lean worker's import graph never holds it
    return torch_scoring.PairScorer.from_folder(folder, device, threads, cache_size)
