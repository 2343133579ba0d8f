"""Pairs -> similarity scores for a saved pair model on the torch runtime: the model's head in PyTorch, used by evaluate,
the registry pyfunc and train; serving.runtime.load_scorer picks it (or an ONNX graph) by runtime. The shared steps
(normalize, prefix, length-sorted batches, calibration) are serving.scorer's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.calibration import Calibration
from pipeline.heads import LoadedModel, head_named
from pipeline.models import ModelSettings
from serving.scorer import PairScorer as RuntimeScorer


def pick_device(preferred: str | None = None) -> str:
    """`preferred` if given, else CUDA when present, else CPU."""
    import torch

    if preferred:
        return preferred
    return "cuda" if torch.cuda.is_available() else "cpu"


class PairScorer(RuntimeScorer):
    """A pair model on the torch runtime: the model's head (pipeline.heads) does the forward pass on `device`."""

    def __init__(self, loaded: LoadedModel, settings: ModelSettings, device: str = "cpu", calibration: Calibration | None = None):
        super().__init__(loaded.model.to(device).eval(), settings, calibration)
        self.tokenizer = loaded.tokenizer
        self.head = head_named(settings.head)
        self.device = device

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        device: str | None = None,
        threads: int | None = None,
        cache_size: int = 0,
    ) -> PairScorer:
        """Load a model folder written by the train stage (any head) on `device` (None: CUDA when present). threads:
        torch's intra-op threads for the process (None: unchanged); cache_size > 0 puts the head's cache of repeated
        work in front of the model (bi: sentence embeddings)."""
        if threads:
            import torch

            torch.set_num_threads(threads)
        settings = ModelSettings.load(folder)
        head = head_named(settings.head)
        loaded = head.with_cache(head.load(folder), cache_size)
        return cls(loaded, settings, pick_device(device), Calibration.load(folder))

    @classmethod
    def from_registry(cls, model_uri: str, device: str | None = None) -> PairScorer:
        """Load a registered model, e.g. `models:/korean-sts-similarity@champion` (downloads its folder)."""
        import tempfile

        from pipeline.registry import download_pair_model

        return cls.from_folder(download_pair_model(model_uri, Path(tempfile.mkdtemp(prefix="pair-model-"))), device)

    def forward(self, first: list[str], second: list[str]) -> np.ndarray:
        return self.head.forward(LoadedModel(self.model, self.tokenizer), first, second, self.device)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]]
