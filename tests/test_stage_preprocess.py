import unicodedata

import pytest

from pipeline.errors import DataError
from pipeline.stages.preprocess import clean_split, validate_record
from serving.text import normalize_text


def row(sentence1="가방", sentence2="가방이다", score=3.0, origin="train.tsv:2"):
    return {
        "guid": "g",
        "source": "s",
        "sentence1": sentence1,
        "sentence2": sentence2,
        "score": score,
        "binary": int(score >= 3) if isinstance(score, float) else None,
        "origin": origin,
    }


def test_text_is_nfc_and_whitespace_collapsed():
    decomposed = unicodedata.normalize("NFD", "한국어  문장\t입니다 ")
    assert decomposed != "한국어 문장 입니다"
    assert normalize_text(decomposed) == "한국어 문장 입니다"


def test_hangul_only_is_the_seeds_rule():
    assert normalize_text("KLUE 데이터셋 (v1.1)입니다!", hangul_only=True) == "데이터셋 입니다"
    assert normalize_text("KLUE 데이터셋 (v1.1)입니다!") == "KLUE 데이터셋 (v1.1)입니다!"


def test_empty_and_duplicate_pairs_are_dropped_and_counted():
    rows = [
        row(),
        row(sentence1=" "),
        row(sentence2=unicodedata.normalize("NFD", "가방이다")),  # a duplicate once normalized
        row(sentence1="ABC", sentence2="다른 문장"),
    ]
    kept, counts = clean_split(rows, hangul_only=True)
    assert counts == {"rows_in": 4, "empty_dropped": 2, "duplicates_dropped": 1, "rows_out": 1}
    assert kept[0]["sentence2"] == "가방이다"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (row(score=7.5), r"train.tsv:2: score 7.5 is outside 0-5"),
        (row(score=-0.1), r"outside 0-5"),
        (row(score=float("nan")), r"is not a number"),
        (row(score=None), r"missing field\(s\) \['score', 'binary'\]"),
        (row(sentence2=None), r"missing field\(s\) \['sentence2'\]"),
        (row(sentence1=5), r"sentence1 must be text"),
    ],
)
def test_bad_rows_fail_with_the_origin_named(record, message):
    with pytest.raises(DataError, match=message):
        validate_record(record)
