"""Pairs -> similarity scores for a saved pair model. The one path used by evaluate and by the service."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.models import ModelSettings, load_cross_encoder, load_tokenizer
from pipeline.text import normalize_text

MAX_SCORE = 5.0


def scores_from_logits(logits: np.ndarray) -> np.ndarray:
    """The model's one logit -> a 0-5 score: sigmoid, scaled (training fits sigmoid(logit) to score / 5)."""
    return MAX_SCORE / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def pick_device(preferred: str | None = None) -> str:
    """`preferred` if given, else CUDA when present, else CPU."""
    import torch

    if preferred:
        return preferred
    return "cuda" if torch.cuda.is_available() else "cpu"


class PairScorer:
    """A loaded pair model: normalizes text as in training, batches by length, returns scores in [0, 5]."""

    def __init__(self, model, tokenizer, settings: ModelSettings, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device

    @classmethod
    def from_folder(cls, folder: str | Path, device: str | None = None) -> PairScorer:
        """Load a model folder written by the train stage."""
        settings = ModelSettings.load(folder)
        return cls(load_cross_encoder(str(folder)), load_tokenizer(str(folder)), settings, pick_device(device))

    @classmethod
    def from_registry(cls, model_uri: str, device: str | None = None) -> PairScorer:
        """Load a model logged by the register stage, e.g. `models:/korean-sts-similarity@champion`."""
        import mlflow

        info = mlflow.models.get_model_info(model_uri)
        settings = ModelSettings(**(info.metadata or {}).get("similarity", {}))
        components = mlflow.transformers.load_model(model_uri, return_type="components")
        return cls(components["model"], components["tokenizer"], settings, pick_device(device))

    def _forward(self, first: list[str], second: list[str]) -> np.ndarray:
        import torch

        encoded = self.tokenizer(
            first, second, truncation=True, max_length=self.tokenizer.model_max_length, padding=True, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            logits = self.model(**encoded).logits
        return logits[:, 0].float().cpu().numpy()

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """Scores for pairs in input order; batches hold pairs of similar length to keep padding low."""
        hangul_only = self.settings.hangul_only
        first = [normalize_text(a, hangul_only) for a, _ in pairs]
        second = [normalize_text(b, hangul_only) for _, b in pairs]
        order = np.argsort([len(a) + len(b) for a, b in zip(first, second, strict=True)], kind="stable")
        scores = np.empty(len(pairs), dtype=np.float64)  # logits until the last line
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            scores[batch] = self._forward([first[i] for i in batch], [second[i] for i in batch])
        return scores_from_logits(scores)
