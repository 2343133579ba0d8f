import json

import pytest

from pipeline.config import DataParams
from pipeline.errors import DataError
from pipeline.stages.download import (
    hub_splits,
    klue_records,
    mirror_splits,
    read_klue_json,
    read_korsts,
    split_off_validation,
)


def test_mirror_split_sizes_and_normalized_rows(mirror):
    splits = mirror_splits(mirror)
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 5749, "validation": 1500, "test": 519}
    first = splits["test"][0]
    assert first["guid"] == "klue-sts-v1_dev_00000"
    assert first["source"] == "airbnb-rtt"
    assert first["score"] == 4.9 and first["binary"] == 1
    korsts = splits["train"][1]
    assert korsts["score"] == 3.8 and korsts["binary"] == 1 and korsts["source"] == "korsts/main-captions"
    assert korsts["origin"].endswith("sts-train.tsv:3")
    assert len({row["guid"] for row in splits["train"]}) == 5749


def test_broken_json_names_file_and_line(tmp_path):
    path = tmp_path / "klue.json"
    path.write_text('[\n{"guid": "a",\n "source": }\n]', encoding="utf-8")
    with pytest.raises(DataError, match=r"klue.json: not valid JSON at line 3"):
        read_klue_json(path)


def test_korsts_missing_column_and_bad_rows(tmp_path):
    path = tmp_path / "sts.tsv"
    path.write_text("genre\tscore\tsentence1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"missing column\(s\) \['sentence2'\]"):
        read_korsts(path)
    path.write_text("genre\tscore\tsentence1\tsentence2\nnews\tfive\t가\t나\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"sts.tsv:2: score 'five' is not a number"):
        read_korsts(path)
    path.write_text("genre\tscore\tsentence1\tsentence2\nnews\t1.0\t가\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"sts.tsv:2: expected 4 tab-separated fields, got 3"):
        read_korsts(path)


def test_klue_row_without_label_keeps_none_for_preprocess_to_reject():
    (record,) = klue_records([{"guid": "g", "source": "news", "sentence1": "a", "sentence2": "b"}], "f.json")
    assert record["score"] is None and record["binary"] is None and record["origin"] == "f.json[0]"


def test_validation_slice_is_seeded_and_disjoint():
    rows = [{"guid": str(i)} for i in range(100)]
    train, validation = split_off_validation(rows, 0.1, seed=7)
    again_train, again_validation = split_off_validation(rows, 0.1, seed=7)
    assert validation == again_validation and train == again_train
    assert len(validation) == 10 and len(train) == 90
    assert not {r["guid"] for r in train} & {r["guid"] for r in validation}
    assert split_off_validation(rows, 0.1, seed=8)[1] != validation


def _hub_params(hub_id: str, add_korsts: bool = False) -> DataParams:
    return DataParams(
        source="hub",
        mirror_dir="unused",
        hub_id=hub_id,
        hub_config="sts",
        hub_add_korsts=add_korsts,
        validation_fraction=0.25,
        seed=1,
    )


def test_hub_source_with_load_dataset_on_a_local_dataset_folder(mirror, tmp_path):
    """The hub path calls datasets.load_dataset; a local folder laid out like klue/klue stands in for the Hub."""
    rows = json.loads((mirror / "klue-sts/klue-sts-v1.1_dev.json").read_text(encoding="utf-8"))
    folder = tmp_path / "klue"
    (folder / "sts").mkdir(parents=True)
    for split, part in (("train", rows[:40]), ("validation", rows[40:60])):
        with (folder / "sts" / f"{split}.jsonl").open("w", encoding="utf-8") as stream:
            for row in part:
                stream.write(
                    json.dumps({k: row[k] for k in ("guid", "source", "sentence1", "sentence2", "labels")}, ensure_ascii=False)
                    + "\n"
                )
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: sts\n  data_files:\n  - split: train\n    path: sts/train.jsonl\n"
        "  - split: validation\n    path: sts/validation.jsonl\n---\n",
        encoding="utf-8",
    )
    splits = hub_splits(_hub_params(str(folder)), mirror)
    assert (len(splits["train"]), len(splits["validation"]), len(splits["test"])) == (30, 10, 20)
    assert splits["test"][0]["guid"] == rows[40]["guid"]
    assert splits["test"][0]["score"] == rows[40]["labels"]["label"]
    with_korsts = hub_splits(_hub_params(str(folder), add_korsts=True), mirror)
    assert len(with_korsts["train"]) == 30 + 5749


def test_unreachable_hub_dataset_is_a_clear_error(mirror):
    with pytest.raises(DataError, match="cannot load 'klue/klue' config 'sts'"):
        hub_splits(_hub_params("klue/klue"), mirror)
