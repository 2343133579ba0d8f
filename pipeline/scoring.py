"""Pairs -> similarity scores for a saved pair model. The one path used by evaluate and by the service."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.calibration import Calibration
from pipeline.metrics import MAX_SCORE
from pipeline.models import ModelSettings, load_bi_encoder, load_cross_encoder, load_tokenizer
from pipeline.text import normalize_text, with_prefix


def scores_from_logits(logits: np.ndarray) -> np.ndarray:
    """The model's one logit -> a 0-5 score: sigmoid, scaled (training fits sigmoid(logit) to score / 5)."""
    return MAX_SCORE / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def scores_from_cosine(cosine: np.ndarray) -> np.ndarray:
    """Cosine similarity -> a 0-5 score (training fits the cosine to score / 5; negatives mean unrelated)."""
    return MAX_SCORE * np.clip(np.asarray(cosine, dtype=np.float64), 0.0, 1.0)


def pairwise_cosine(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two embedding matrices."""
    norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
    return np.sum(first * second, axis=1) / np.maximum(norms, 1e-12)


def pick_device(preferred: str | None = None) -> str:
    """`preferred` if given, else CUDA when present, else CPU."""
    import torch

    if preferred:
        return preferred
    return "cuda" if torch.cuda.is_available() else "cpu"


class PairScorer:
    """A loaded pair model: normalizes text as in training, batches by length, returns scores in [0, 5].

    `cross` and `mlp` models score a pair in one forward pass (5 x sigmoid of the logit); a `bi` model
    embeds each sentence and scores 5 x cosine. The head and the sentence prefix are read from the model's
    similarity.json; a calibration.json that says `applied` maps the raw scores onto the gold scale.
    """

    def __init__(self, model, tokenizer, settings: ModelSettings, device: str = "cpu", calibration: Calibration | None = None):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device
        self.calibration = calibration

    @classmethod
    def from_folder(cls, folder: str | Path, device: str | None = None) -> PairScorer:
        """Load a model folder written by the train stage (any head)."""
        settings = ModelSettings.load(folder)
        calibration = Calibration.load(folder)
        if settings.head == "bi":
            model = load_bi_encoder(str(folder))
            return cls(model, model.tokenizer, settings, pick_device(device), calibration)
        return cls(load_cross_encoder(str(folder)), load_tokenizer(str(folder)), settings, pick_device(device), calibration)

    @classmethod
    def from_registry(cls, model_uri: str, device: str | None = None) -> PairScorer:
        """Load a registered model, e.g. `models:/korean-sts-similarity@champion` (downloads its folder)."""
        import tempfile

        from pipeline.registry import download_pair_model

        return cls.from_folder(download_pair_model(model_uri, Path(tempfile.mkdtemp(prefix="pair-model-"))), device)

    def _forward(self, first: list[str], second: list[str]) -> np.ndarray:
        import torch

        if self.settings.head == "bi":
            with torch.inference_mode():
                embedded = self.model.encode(first + second, batch_size=2 * len(first), convert_to_numpy=True)
            return scores_from_cosine(pairwise_cosine(embedded[: len(first)], embedded[len(first) :]))
        encoded = self.tokenizer(
            first, second, truncation=True, max_length=self.tokenizer.model_max_length, padding=True, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            logits = self.model(**encoded).logits
        return scores_from_logits(logits[:, 0].float().cpu().numpy())

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """0-5 scores for pairs in input order: the raw scores, calibrated when the model's calibration is applied."""
        return self.calibrate(self.raw_scores(pairs, batch_size))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores -> what the model answers: calibrated when its calibration is applied, else unchanged."""
        return self.calibration.apply(raw) if self.calibration is not None and self.calibration.applied else raw

    def raw_scores(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """The model's own scores (5 x cosine or 5 x sigmoid) in input order; batches hold pairs of similar length."""
        hangul_only, prefix = self.settings.hangul_only, self.settings.prefix
        first = with_prefix([normalize_text(a, hangul_only) for a, _ in pairs], prefix)
        second = with_prefix([normalize_text(b, hangul_only) for _, b in pairs], prefix)
        order = np.argsort([len(a) + len(b) for a, b in zip(first, second, strict=True)], kind="stable")
        scores = np.empty(len(pairs), dtype=np.float64)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            scores[batch] = self._forward([first[i] for i in batch], [second[i] for i in batch])
        return scores
