"""Base weights from the Hugging Face Hub (or its local cache when HF_HUB_OFFLINE=1): safetensors only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.sources.folder import NOT_COPIED, copy_model_files

# Config, tokenizer and sentence-transformers module files, and safetensors weights; never pickles.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
IGNORE_PATTERNS = [*(pattern for pattern in NOT_COPIED if pattern.startswith("*.")), "onnx/*", "openvino/*"]


def fetch(location: str, revision: str | None, target: Path) -> dict[str, Any]:
    """snapshot_download at `revision` into the Hub cache, then copy the snapshot; records the resolved commit."""
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(
            snapshot_download(location, revision=revision, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS)
        )
    except Exception as error:  # the Hub client raises many kinds (offline, not found, gated); all mean "cannot fetch"
        raise ConfigError(
            f"model.name {location!r} (revision {revision or 'main'}): cannot fetch from the Hub: {error}"
        ) from error
    if not list(snapshot.glob("*.safetensors")):
        raise ConfigError(f"model.name {location!r}: the repository publishes no safetensors weights (pickles are never loaded)")
    copy_model_files(snapshot, target)
    return {"resolved_commit": snapshot.name}  # the cache names each snapshot folder by its commit
