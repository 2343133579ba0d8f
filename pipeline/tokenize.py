"""Stage tokenize: clean split tables -> pair encodings with the model's own tokenizer, saved as Arrow."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_params
from pipeline.errors import run_stage
from pipeline.models import load_tokenizer
from pipeline.paths import BASE_DIR
from pipeline.tables import SPLITS, split_path
from pipeline.text import with_prefix

CLEAN_DIR = Path("data/clean")
TOKENIZED_DIR = Path("data/tokenized")
TOKENIZER_DIR = TOKENIZED_DIR / "tokenizer"


def encode_pairs(dataset, tokenizer, max_length: int, prefix: str = ""):
    """Pair encoding of prefix + each sentence, truncated to max_length (no padding: batches pad dynamically), labels = score.

    A `length` column lets the length-grouped sampler bucket batches without re-reading input_ids.
    """

    def encode(batch):
        first, second = with_prefix(batch["sentence1"], prefix), with_prefix(batch["sentence2"], prefix)
        encoded = tokenizer(first, second, truncation=True, max_length=max_length)
        encoded["labels"] = [float(score) for score in batch["score"]]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenize")


def main() -> None:
    import datasets

    params = load_params().model
    tokenizer = load_tokenizer(str(BASE_DIR), params.lowercase)
    tokenizer.model_max_length = params.max_length  # scoring reads it back from the saved tokenizer
    raw = datasets.DatasetDict({split: datasets.Dataset.from_json(str(split_path(CLEAN_DIR, split))) for split in SPLITS})
    encoded = datasets.DatasetDict(
        {split: encode_pairs(raw[split], tokenizer, params.max_length, params.prefix) for split in SPLITS}
    )
    encoded.save_to_disk(str(TOKENIZED_DIR / "pairs"))
    tokenizer.save_pretrained(str(TOKENIZER_DIR))
    for split in SPLITS:
        lengths = sorted(encoded[split]["length"])
        truncated = sum(length >= params.max_length for length in lengths)
        unknown = unknown_share(encoded[split], tokenizer.unk_token_id)
        print(
            f"tokenize: {split}: {len(lengths)} pairs, median {lengths[len(lengths) // 2]} tokens, "
            f"{truncated} at max_length, {unknown:.1%} of tokens unknown"
        )


def unknown_share(encoded, unk_token_id: int | None) -> float:
    """Share of [UNK] tokens: a high value means the vocabulary (or its lower-casing) does not fit Korean."""
    total = unknown = 0
    for ids in encoded["input_ids"]:
        total += len(ids)
        unknown += sum(token == unk_token_id for token in ids)
    return unknown / total if total else 0.0


if __name__ == "__main__":
    run_stage(main)
