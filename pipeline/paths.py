"""Artifact paths shared by more than one stage (relative to the repository root, where every stage runs)."""

from __future__ import annotations

from pathlib import Path

BASE_DIR = Path("models/base")  # the base encoder, as the base stage materialized it
SOURCE_RECORD = BASE_DIR / "source.json"  # where those weights came from (kind, revision, resolved commit, digest)
