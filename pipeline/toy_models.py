"""Tiny encoders built locally with save_pretrained: for tests, benchmarks and offline smoke runs.

The tokenizer is a WordPiece vocabulary trained on the given Korean sentences (no lower-casing and no
accent stripping, which would split Hangul syllables into jamo), loaded back through BertTokenizer(vocab=...) so
[CLS]/[SEP] and token_type_ids survive a save and reload.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def train_wordpiece_tokenizer(sentences: Iterable[str], vocab_size: int, folder: str | Path):
    """Train a cased WordPiece vocabulary on sentences; returns a BertTokenizer saved in folder."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trainer = BertWordPieceTokenizer(lowercase=False, strip_accents=False, clean_text=True)
    trainer.train_from_iterator(list(sentences), vocab_size=vocab_size, min_frequency=1, show_progress=False)
    trainer.save_model(str(folder))
    tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"), do_lower_case=False, strip_accents=False)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def build_tiny_bert(
    folder: str | Path,
    sentences: Iterable[str],
    vocab_size: int = 1000,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 512,
    seed: int = 0,
) -> Path:
    """A randomly initialised BERT encoder plus its tokenizer, saved as safetensors in folder."""
    import torch
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    tokenizer = train_wordpiece_tokenizer(sentences, vocab_size, folder)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 4,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder
