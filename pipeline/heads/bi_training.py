"""The `bi` head's training pieces: text datasets, a length-grouped batch sampler, the validation evaluator.

Imported only when a bi-encoder trains (it subclasses sentence-transformers classes at import).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from sentence_transformers.base.sampler import DefaultBatchSampler
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

from pipeline.metrics import MAX_SCORE, similarity_metrics
from serving.scale import pairwise_cosine, scores_from_cosine

TEXT_COLUMNS = ["sentence1", "sentence2"]


def text_pairs(dataset, prefix: str = ""):
    """Clean split rows -> (prefix + sentence1, prefix + sentence2, label = score / 5), what the trainer and loss read."""
    pairs = dataset.select_columns([*TEXT_COLUMNS, "score"])
    return pairs.map(
        lambda row: {
            "sentence1": prefix + row["sentence1"],
            "sentence2": prefix + row["sentence2"],
            "label": row["score"] / MAX_SCORE,
        },
        remove_columns=["score"],
    )


def text_triplets(dataset, prefix: str = ""):
    """Clean NLI triplets -> (prefix + anchor, prefix + positive, prefix + negative) for MultipleNegativesRankingLoss."""
    from pipeline.nli import TRIPLET_COLUMNS

    return dataset.select_columns(list(TRIPLET_COLUMNS)).map(
        lambda row: {column: prefix + row[column] for column in TRIPLET_COLUMNS}
    )


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """Batches of pairs of similar character length, in random order (transformers' length grouping).

    sentence-transformers' default sampler pads every batch to its longest pair; on MiniLM's jamo-heavy
    tokens that doubled the cost per pair (stack facts: 7 -> 14 pairs/s with grouping).
    """

    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns=None, generator=None, seed: int = 0):
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        texts = [name for name, feature in dataset.features.items() if getattr(feature, "dtype", None) == "string"]
        self.lengths = [sum(map(len, row)) for row in zip(*(dataset[name] for name in texts), strict=True)]  # pairs or triplets

    def __iter__(self) -> Iterator[list[int]]:
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
        for start in range(0, len(indices), self.batch_size):
            batch = indices[start : start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self) -> int:
        rounding = math.floor if self.drop_last else math.ceil
        return rounding(len(self.lengths) / self.batch_size)


class PairScoreEvaluator(EmbeddingSimilarityEvaluator):
    """sentence-transformers' EmbeddingSimilarityEvaluator plus our metrics on the 0-5 scale.

    Adds pearson, spearman, f1 (at `threshold`) and mse of 5 x cosine, the numbers every head reports, and the
    validation loss, from the embeddings the library evaluator computes (no second pass).
    """

    def __init__(
        self, sentences1: list[str], sentences2: list[str], scores: list[float], batch_size: int, threshold: float
    ) -> None:
        super().__init__(sentences1, sentences2, [score / MAX_SCORE for score in scores], batch_size=batch_size, write_csv=False)
        self.gold = np.asarray(scores, dtype=np.float64)
        self.threshold = threshold
        self._embedded: list[np.ndarray] = []

    def embed_inputs(self, model, sentences, **kwargs) -> np.ndarray:
        embeddings = super().embed_inputs(model, sentences, **kwargs)
        self._embedded.append(embeddings)
        return embeddings

    def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        self._embedded = []
        metrics = super().__call__(model, output_path, epoch, steps)
        first, second = self._embedded
        cosine = pairwise_cosine(first, second)
        ours = similarity_metrics(self.gold, scores_from_cosine(cosine), self.threshold)
        metrics.update({name: (0.0 if value is None else float(value)) for name, value in ours.items() if name != "pairs"})
        # CosineSimilarityLoss over the whole split, whatever train.loss is (so runs with different losses compare);
        # Trainer computes no eval loss for a DDP-wrapped bi-encoder.
        metrics["loss"] = float(np.mean((cosine - self.gold / MAX_SCORE) ** 2))
        self.primary_metric = "pearson"
        return metrics
