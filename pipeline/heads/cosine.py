"""Scores from sentence embeddings: 5 x the cosine of the two sentences, clipped to [0, 5]."""

from __future__ import annotations

import numpy as np

from pipeline.metrics import MAX_SCORE


def scores_from_cosine(cosine: np.ndarray) -> np.ndarray:
    """Cosine similarity -> a 0-5 score (training fits the cosine to score / 5; negatives mean unrelated)."""
    return MAX_SCORE * np.clip(np.asarray(cosine, dtype=np.float64), 0.0, 1.0)


def pairwise_cosine(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two embedding matrices."""
    norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
    return np.sum(first * second, axis=1) / np.maximum(norms, 1e-12)
