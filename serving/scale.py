"""The similarity scale: scores from 0 (unrelated) to 5 (same meaning), KLUE's "similar" label, the buckets the
service counts on /metrics, and the bi-encoder's score of a pair (5 x the cosine of its two embeddings)."""

from __future__ import annotations

import numpy as np

# KLUE's own binary label ("similar" when the 0-5 score is at least 3.0) and the default of ModelSettings.threshold.
# What decides "similar" in this pipeline is params.yaml evaluate.threshold, saved with each model (similarity.json).
SIMILAR_AT = 3.0
MAX_SCORE = 5.0  # scores run from 0 (unrelated) to 5 (same meaning)
# Histogram buckets (upper bounds) of what the service answers and reads, on /metrics and in the analyze stage's
# test-split distributions, so a deployment compares its traffic with the test split bucket by bucket.
SCORE_BUCKETS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
TOKEN_BUCKETS = (8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512)


def scores_from_cosine(cosine: np.ndarray) -> np.ndarray:
    """Cosine similarity -> a 0-5 score (training fits the cosine to score / 5; negatives mean unrelated)."""
    return MAX_SCORE * np.clip(np.asarray(cosine, dtype=np.float64), 0.0, 1.0)


def pairwise_cosine(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two embedding matrices."""
    norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
    return np.sum(first * second, axis=1) / np.maximum(norms, 1e-12)


def embedded_pair_scores(embedded: np.ndarray, pairs: int) -> np.ndarray:
    """0-5 scores of `pairs` pairs from the embeddings of their first sentences, then their second sentences."""
    return scores_from_cosine(pairwise_cosine(embedded[:pairs], embedded[pairs:]))
