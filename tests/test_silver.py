"""Augmented SBERT's silver pairs: in-domain sentences, never a test sentence, paired by embedding similarity."""

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.nli import clean_triplets, mirror_triplets
from pipeline.silver import SILVER_SOURCE, neighbour_pairs, pick_pairs, silver_rows, silver_sentences


def triplet(anchor: str, positive: str, negative: str) -> dict:
    return {"guid": anchor, "source": "klue-nli", "anchor": anchor, "positive": positive, "negative": negative}


def test_silver_pairs_never_contain_a_test_sentence(mirror):
    kept, _ = clean_triplets(mirror_triplets(mirror)[-200:], hangul_only=False, held_out=set())
    # held out: sentences of cleaned triplets too, so the guard holds whatever table it is given
    held_out = {"시험 문장 하나", "시험 문장 둘"} | {t["positive"] for t in kept[:20]}
    raw = [triplet("시험 문장 하나", "가", "나"), triplet("다", "시험 문장 둘", "라"), triplet("마", "바", "시험 문장 하나")]
    sentences = silver_sentences(raw + kept, held_out)
    assert held_out.isdisjoint(sentences)
    assert {"가", "나", "다", "라", "마", "바"} <= set(sentences) and len(sentences) == len(set(sentences))
    embeddings = torch.nn.functional.normalize(torch.randn(len(sentences), 16, generator=torch.Generator().manual_seed(0)))
    pairs = pick_pairs(embeddings, per_sentence=3, max_pairs=None, seed=0)
    rows = silver_rows(sentences, pairs, [2.5] * len(pairs))
    assert len(rows) >= len(sentences)  # each sentence is in at least one pair
    assert all(held_out.isdisjoint((row["sentence1"], row["sentence2"])) for row in rows)
    assert all(row["sentence1"] != row["sentence2"] and row["source"] == SILVER_SOURCE for row in rows)


def test_each_sentence_pairs_with_its_nearest_neighbours():
    # two tight clusters: {0, 1} near the x axis, {2, 3} near the y axis
    embeddings = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]]))
    assert pick_pairs(embeddings, per_sentence=1, max_pairs=None, seed=0) == [(0, 1), (2, 3)]
    assert len(pick_pairs(embeddings, per_sentence=3, max_pairs=None, seed=0)) == 6  # every pair, once


def test_neighbour_pairs_drop_self_matches_merge_repeats_and_subsample_by_seed():
    hits = [[{"corpus_id": 0}, {"corpus_id": 1}, {"corpus_id": 2}], [{"corpus_id": 1}, {"corpus_id": 0}], [{"corpus_id": 3}]]
    assert neighbour_pairs(hits, None, seed=0) == [(0, 1), (0, 2), (2, 3)]
    subset = neighbour_pairs(hits, 2, seed=5)
    assert len(subset) == 2 and subset == neighbour_pairs(hits, 2, seed=5) and set(subset) < {(0, 1), (0, 2), (2, 3)}
    assert neighbour_pairs(hits, 0, seed=0) == []


def test_bad_silver_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="max_pairs must be >= 0"):
        neighbour_pairs([], -1, seed=0)
    with pytest.raises(ConfigError, match="per_sentence must be >= 1"):
        pick_pairs(torch.eye(2), per_sentence=0, max_pairs=None, seed=0)


def test_silver_labels_are_clipped_onto_the_gold_scale():
    rows = silver_rows(["가", "나", "다"], [(0, 1), (1, 2)], [5.4, -0.2])
    assert [(row["sentence1"], row["sentence2"], row["score"]) for row in rows] == [("가", "나", 5.0), ("나", "다", 0.0)]
    with pytest.raises(ValueError, match="2 pairs but 1 scores"):
        silver_rows(["가", "나", "다"], [(0, 1), (1, 2)], [1.0])
