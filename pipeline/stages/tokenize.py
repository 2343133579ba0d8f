"""Stage tokenize: clean split tables -> pair encodings with the model's own tokenizer, saved as Arrow.

What the `cross` and `mlp` heads train on (pipeline.heads.pair); the `bi` head reads the clean text.
"""

from __future__ import annotations

from pipeline.config import ModelParams, load_params
from pipeline.digests import json_digest, path_digest
from pipeline.errors import run_stage
from pipeline.heads.pair import encode_pairs
from pipeline.models import load_tokenizer
from pipeline.paths import BASE_DIR, CLEAN_DIR, TOKENIZED_PAIRS, TOKENIZER_DIR
from pipeline.tables import SPLITS, split_path


def main() -> None:
    import datasets

    params = load_params().model
    tokenizer = load_tokenizer(str(BASE_DIR), params.lowercase)
    tokenizer.model_max_length = params.max_length  # scoring reads it back from the saved tokenizer
    tokenizer.save_pretrained(str(TOKENIZER_DIR))
    raw = datasets.DatasetDict({split: datasets.Dataset.from_json(str(split_path(CLEAN_DIR, split))) for split in SPLITS})
    encoded = datasets.DatasetDict(
        {
            split: encode_pairs(raw[split], tokenizer, params.max_length, params.prefix, content_fingerprint(split, params))
            for split in SPLITS
        }
    )
    encoded.save_to_disk(str(TOKENIZED_PAIRS))
    for split in SPLITS:
        lengths = sorted(encoded[split]["length"])
        truncated = sum(length >= params.max_length for length in lengths)
        unknown = unknown_share(encoded[split], tokenizer.unk_token_id)
        print(
            f"tokenize: {split}: {len(lengths)} pairs, median {lengths[len(lengths) // 2]} tokens, "
            f"{truncated} at max_length, {unknown:.1%} of tokens unknown"
        )


def content_fingerprint(split: str, params: ModelParams) -> str:
    """The encoded split's datasets fingerprint from what it is made of (the clean split, the saved tokenizer, the
    encoding params), not from where the checkout lies: the stage's output, and the study identity over it, are the
    same in every clone."""
    sources = {"split": path_digest(split_path(CLEAN_DIR, split)), "tokenizer": path_digest(TOKENIZER_DIR)}
    return json_digest({**sources, "max_length": params.max_length, "prefix": params.prefix}, length=16)


def unknown_share(encoded, unk_token_id: int | None) -> float:
    """Share of [UNK] tokens: a high value means the vocabulary (or its lower-casing) does not fit Korean."""
    total = unknown = 0
    for ids in encoded["input_ids"]:
        total += len(ids)
        unknown += sum(token == unk_token_id for token in ids)
    return unknown / total if total else 0.0


if __name__ == "__main__":
    run_stage(main)
