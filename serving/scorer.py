"""Pairs -> similarity scores for a saved pair model: the steps every runtime shares. The one path used by evaluate,
the registry pyfunc, the accuracy gate and the service; a runtime supplies only the raw scores of a batch, and
serving.runtime.load_scorer picks the runtime:

    torch       pipeline.scoring.PairScorer (the model's head in PyTorch; needs the training stack)
    onnx*       serving.onnx_scorer.OnnxPairScorer (tokenizers + onnxruntime + numpy: what a lean Bento ships)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from serving.pair_model import Calibration, ModelSettings
from serving.text import model_text


class PairScorer(ABC):
    """A loaded pair model: normalizes text as in training, batches by length, returns scores in [0, 5].

    The head and the sentence prefix are read from the model's similarity.json; a calibration.json that says
    `applied` maps the raw scores onto the gold scale. `model` is what computes (an encoder, maybe behind a cache).
    """

    device = "cpu"  # where the forward pass runs (the torch runtime sets its own; ONNX Runtime's CPU provider)

    def __init__(self, model, settings: ModelSettings, calibration: Calibration | None) -> None:
        self.model = model
        self.settings = settings
        self.calibration = calibration

    @abstractmethod
    def forward(self, first: list[str], second: list[str]) -> np.ndarray:
        """Raw 0-5 scores of a batch of (normalized and prefixed) sentence pairs."""

    @abstractmethod
    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens the model would read for each (normalized and prefixed) text, special tokens included, untruncated."""

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """0-5 scores for pairs in input order: the raw scores, calibrated when the model's calibration is applied."""
        return self.calibrate(self.raw_scores(pairs, batch_size))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores -> what the model answers: calibrated when its calibration is applied, else unchanged."""
        return self.calibration.apply(raw) if self.calibration is not None and self.calibration.applied else raw

    def model_inputs(self, sentences: Sequence[str]) -> list[str]:
        """What the model reads for each sentence: normalized as in training, then the model's prefix."""
        return model_text(sentences, self.settings.hangul_only, self.settings.prefix)

    def sentence_tokens(self, sentences: Sequence[str]) -> list[int]:
        """How many tokens the model reads for each sentence (normalized, prefixed, special tokens; untruncated)."""
        return self.token_counts(self.model_inputs(sentences))

    def raw_scores(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """The model's own scores (5 x cosine or 5 x sigmoid) in input order; batches hold pairs of similar length."""
        first = self.model_inputs([a for a, _ in pairs])
        second = self.model_inputs([b for _, b in pairs])
        order = np.argsort([len(a) + len(b) for a, b in zip(first, second, strict=True)], kind="stable")
        scores = np.empty(len(pairs), dtype=np.float64)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            scores[batch] = self.forward([first[i] for i in batch], [second[i] for i in batch])
        return scores
