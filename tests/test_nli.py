"""NLI triplets from the mirror: parsing, one triplet per premise, cleaning with the test-leak guard."""

import pytest

from pipeline.errors import DataError
from pipeline.nli import clean_triplets, kornli_pairs, mirror_triplets, triplets_from_pairs


def test_the_mirror_gives_one_triplet_per_premise(mirror):
    triplets = mirror_triplets(mirror)
    by_source = {}
    for triplet in triplets:
        by_source[triplet["source"]] = by_source.get(triplet["source"], 0) + 1
    # every premise in these files has an entailed, a neutral and a contradicting hypothesis
    assert by_source == {"kornli/xnli.dev.ko.tsv": 830, "kornli/xnli.test.ko.tsv": 1670, "klue-nli": 1000}
    first = triplets[0]
    assert first["anchor"] == '그리고 그가 말했다, "엄마, 저 왔어요."'
    assert (first["positive"], first["negative"]) == ("그는 엄마에게 집에 갔다고 말했다.", "그는 한마디도 하지 않았다.")


def test_premises_without_both_labels_give_no_triplet_and_unknown_labels_are_errors():
    pairs = [("p1", "h1", "entailment", "f:2"), ("p1", "h2", "neutral", "f:3"), ("p2", "h3", "entailment", "f:4")]
    pairs.append(("p2", "h4", "contradiction", "f:5"))
    assert [(t["anchor"], t["positive"], t["negative"]) for t in triplets_from_pairs(pairs, "s")] == [("p2", "h3", "h4")]
    with pytest.raises(DataError, match="f:9: gold_label 'maybe'"):
        triplets_from_pairs([("p", "h", "maybe", "f:9")], "s")


def test_a_kornli_file_with_a_bad_header_or_row_names_it(tmp_path):
    path = tmp_path / "xnli.tsv"
    path.write_text("premise\thypothesis\tlabel\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"xnli.tsv: expected the header"):
        kornli_pairs(path)
    path.write_text("sentence1\tsentence2\tgold_label\n가\tneutral\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"xnli.tsv:2: expected 3 tab-separated fields"):
        kornli_pairs(path)


def test_cleaning_normalizes_and_drops_empty_repeated_and_test_sentences():
    def triplet(anchor, positive="맞다", negative="틀리다"):
        return {"guid": anchor, "source": "s", "anchor": anchor, "positive": positive, "negative": negative, "origin": "o"}

    records = [triplet("가  나"), triplet(" "), triplet("가 나"), triplet("시험 문장"), triplet("다", negative="시험 문장")]
    kept, counts = clean_triplets(records, hangul_only=False, held_out={"시험 문장"})
    assert [t["anchor"] for t in kept] == ["가 나"]
    assert counts == {"rows_in": 5, "empty_dropped": 1, "test_overlap_dropped": 2, "duplicates_dropped": 1, "rows_out": 1}
