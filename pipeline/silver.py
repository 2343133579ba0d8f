"""Augmented SBERT's silver pairs (Thakur et al. 2021): in-domain sentences recombined into new pairs, picked by
a bi-encoder's similarity (semantic-search sampling) and labelled by a cross-encoder trained on the gold pairs.

The sentences are the clean NLI triplets' (KLUE-NLI: KLUE-STS's own domains). Preprocess already dropped any
triplet that shares a sentence with the test split; `silver_sentences` drops the held-out sentences again, so a
silver pair can never hold a test sentence, whatever table it is given.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.errors import ConfigError
from pipeline.metrics import MAX_SCORE
from pipeline.nli import TRIPLET_COLUMNS

SILVER_SOURCE = "silver"


def silver_sentences(triplets: Iterable[dict[str, Any]], held_out: set[str]) -> list[str]:
    """The distinct sentences of the triplets (anchor, positive, negative), first-seen order, minus held_out."""
    seen: dict[str, None] = {}
    for triplet in triplets:
        for column in TRIPLET_COLUMNS:
            sentence = triplet[column]
            if sentence and sentence not in held_out:
                seen.setdefault(sentence)
    return list(seen)


def neighbour_pairs(hits: Sequence[Sequence[dict[str, Any]]], max_pairs: int | None, seed: int) -> list[tuple[int, int]]:
    """Unordered sentence pairs (i < j) from semantic-search hits (hits[i]: the corpus ids nearest sentence i,
    sentence-transformers' `util.semantic_search` format), self-matches dropped, each pair once; a seeded
    subset of at most max_pairs (None: all), in sorted order."""
    if max_pairs is not None and max_pairs < 0:
        raise ConfigError(f"silver pairs: max_pairs must be >= 0 or null, got {max_pairs}")
    pairs = {
        (min(query, hit["corpus_id"]), max(query, hit["corpus_id"]))
        for query, query_hits in enumerate(hits)
        for hit in query_hits
        if hit["corpus_id"] != query
    }
    chosen = sorted(pairs)
    if max_pairs is not None and max_pairs < len(chosen):
        chosen = sorted(random.Random(seed).sample(chosen, max_pairs))
    return chosen


def pick_pairs(embeddings, per_sentence: int, max_pairs: int | None, seed: int) -> list[tuple[int, int]]:
    """Each sentence paired with its `per_sentence` nearest others by cosine of the (bi-encoder's) embeddings."""
    from sentence_transformers import util

    if per_sentence < 1:
        raise ConfigError(f"silver pairs: per_sentence must be >= 1, got {per_sentence}")
    hits = util.semantic_search(embeddings, embeddings, top_k=per_sentence + 1)  # +1: each sentence finds itself
    return neighbour_pairs(hits, max_pairs, seed)


def silver_rows(sentences: Sequence[str], pairs: Sequence[tuple[int, int]], scores: Sequence[float]) -> list[dict[str, Any]]:
    """Rows in the clean splits' format (guid, source, sentence1, sentence2, score), labelled with the cross-encoder's
    0-5 scores."""
    if len(pairs) != len(scores):
        raise ValueError(f"{len(pairs)} pairs but {len(scores)} scores")
    return [
        {
            "guid": f"{SILVER_SOURCE}-{index:05d}",
            "source": SILVER_SOURCE,
            "sentence1": sentences[first],
            "sentence2": sentences[second],
            "score": float(min(max(score, 0.0), MAX_SCORE)),
        }
        for index, ((first, second), score) in enumerate(zip(pairs, scores, strict=True))
    ]
