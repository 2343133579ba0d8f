"""Text normalization shared by preprocess (training data) and scoring (any pair at inference)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

NOT_HANGUL = re.compile(r"[^ㄱ-ㅎㅏ-ㅣ가-힣 ]")  # the seed notebook's cleaning rule
SPACES = re.compile(r"\s+")


def normalize_text(text: str, hangul_only: bool = False) -> str:
    """Unicode NFC, whitespace collapsed; optionally keep Hangul and spaces only (the seed's rule)."""
    text = unicodedata.normalize("NFC", text)
    if hangul_only:
        text = NOT_HANGUL.sub(" ", text)
    return SPACES.sub(" ", text).strip()


def with_prefix(sentences: list[str], prefix: str) -> list[str]:
    """The model's input for each (normalized) sentence: model.prefix first (e5 was trained with "query: ")."""
    return [prefix + sentence for sentence in sentences] if prefix else list(sentences)


def model_text(sentences: Sequence[str], hangul_only: bool, prefix: str) -> list[str]:
    """What a model reads for each sentence: normalized as in training, then its prefix (ModelSettings' two fields)."""
    return with_prefix([normalize_text(text, hangul_only) for text in sentences], prefix)
