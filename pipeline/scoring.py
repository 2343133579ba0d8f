"""Pairs -> similarity scores for a saved pair model. The one path used by evaluate, the registry pyfunc and the service."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.calibration import Calibration
from pipeline.heads import LoadedModel, head_named
from pipeline.models import ModelSettings
from pipeline.text import normalize_text, with_prefix


def pick_device(preferred: str | None = None) -> str:
    """`preferred` if given, else CUDA when present, else CPU."""
    import torch

    if preferred:
        return preferred
    return "cuda" if torch.cuda.is_available() else "cpu"


class PairScorer:
    """A loaded pair model: normalizes text as in training, batches by length, returns scores in [0, 5].

    The model's head (pipeline.heads) does the forward pass; the head and the sentence prefix are read from
    the model's similarity.json; a calibration.json that says `applied` maps the raw scores onto the gold scale.
    """

    def __init__(self, loaded: LoadedModel, settings: ModelSettings, device: str = "cpu", calibration: Calibration | None = None):
        self.model = loaded.model.to(device).eval()
        self.tokenizer = loaded.tokenizer
        self.settings = settings
        self.head = head_named(settings.head)
        self.device = device
        self.calibration = calibration

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        device: str | None = None,
        runtime: str = "torch",
        threads: int | None = None,
        cache_size: int = 0,
    ) -> PairScorer:
        """Load a model folder written by the train stage (any head) with a serving runtime (pipeline.runtimes).

        cache_size > 0 puts the head's cache of repeated work in front of the model (bi: sentence embeddings).
        """
        from pipeline.runtimes import RUNTIMES

        settings = ModelSettings.load(folder)
        loaded = RUNTIMES[runtime].load(Path(folder), settings, threads)
        loaded = head_named(settings.head).with_cache(loaded, cache_size)
        return cls(loaded, settings, pick_device(device), Calibration.load(folder))

    @classmethod
    def from_registry(cls, model_uri: str, device: str | None = None) -> PairScorer:
        """Load a registered model, e.g. `models:/korean-sts-similarity@champion` (downloads its folder)."""
        import tempfile

        from pipeline.registry import download_pair_model

        return cls.from_folder(download_pair_model(model_uri, Path(tempfile.mkdtemp(prefix="pair-model-"))), device)

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """0-5 scores for pairs in input order: the raw scores, calibrated when the model's calibration is applied."""
        return self.calibrate(self.raw_scores(pairs, batch_size))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores -> what the model answers: calibrated when its calibration is applied, else unchanged."""
        return self.calibration.apply(raw) if self.calibration is not None and self.calibration.applied else raw

    def sentence_tokens(self, sentences: Sequence[str]) -> list[int]:
        """How many tokens the model reads for each sentence (normalized, prefixed, special tokens; untruncated)."""
        texts = with_prefix([normalize_text(text, self.settings.hangul_only) for text in sentences], self.settings.prefix)
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]

    def raw_scores(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """The model's own scores (5 x cosine or 5 x sigmoid) in input order; batches hold pairs of similar length."""
        hangul_only, prefix = self.settings.hangul_only, self.settings.prefix
        first = with_prefix([normalize_text(a, hangul_only) for a, _ in pairs], prefix)
        second = with_prefix([normalize_text(b, hangul_only) for _, b in pairs], prefix)
        order = np.argsort([len(a) + len(b) for a, b in zip(first, second, strict=True)], kind="stable")
        scores = np.empty(len(pairs), dtype=np.float64)
        loaded = LoadedModel(self.model, self.tokenizer)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            scores[batch] = self.head.forward(loaded, [first[i] for i in batch], [second[i] for i in batch], self.device)
        return scores
