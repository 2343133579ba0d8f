"""Tiny encoders built locally with save_pretrained: for tests, benchmarks and offline smoke runs.

BERT: a WordPiece vocabulary of the given Korean sentences' most frequent pieces (no lower-casing and no accent
stripping, which would split Hangul syllables into jamo), loaded back through BertTokenizer(vocab=...) so
[CLS]/[SEP] and token_type_ids survive a save and reload. RoBERTa: a byte-level BPE vocabulary through
RobertaTokenizer(vocab=..., merges=...): <s> A </s></s> B </s>, no token_type_ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece_vocabulary(sentences: Iterable[str], vocab_size: int) -> list[str]:
    """A cased WordPiece vocabulary of at most vocab_size entries: the special tokens, then the pieces of the sentences'
    words (BERT's pre-tokenization) by frequency: single characters first (word-initial and ##-continuation forms),
    then longer pieces; ties go by text.

    Built here rather than by `tokenizers`' WordPieceTrainer: that one breaks ties by hash order, so the same sentences
    gave a different vocabulary (2 tokens of 800) in a different order every run, and with it a different tiny model
    whose float noise, between batched and single forward passes, was sometimes above the tests' 1e-5.
    """
    from collections import Counter

    from tokenizers.pre_tokenizers import BertPreTokenizer

    splitter = BertPreTokenizer()
    words = Counter(word for sentence in sentences for word, _ in splitter.pre_tokenize_str(sentence))
    pieces: Counter[str] = Counter()
    for word, count in words.items():
        for start in range(len(word)):
            for end in range(start + 1, len(word) + 1):
                pieces[("##" if start else "") + word[start:end]] += count

    def rank(piece: str) -> tuple[int, int, str]:
        return len(piece.removeprefix("##")) > 1, -pieces[piece], piece

    return (BERT_SPECIAL_TOKENS + sorted(pieces, key=rank))[:vocab_size]


def train_wordpiece_tokenizer(sentences: Iterable[str], vocab_size: int, folder: str | Path):
    """A cased WordPiece vocabulary of sentences (wordpiece_vocabulary); returns a BertTokenizer saved in folder."""
    from transformers import BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("".join(f"{token}\n" for token in wordpiece_vocabulary(sentences, vocab_size)), encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(vocab_file), do_lower_case=False, strip_accents=False)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def train_bpe_tokenizer(sentences: Iterable[str], vocab_size: int, folder: str | Path):
    """Train a byte-level BPE vocabulary on sentences; returns a RobertaTokenizer saved in folder."""
    import json

    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trainer = ByteLevelBPETokenizer()
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer.train_from_iterator(
        list(sentences), vocab_size=vocab_size, min_frequency=1, special_tokens=special, show_progress=False
    )
    trainer.save_model(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = [
        tuple(line.split()) for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:] if line.strip()
    ]
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def build_tiny_roberta(
    folder: str | Path, sentences: Iterable[str], vocab_size: int = 1000, hidden_size: int = 32, layers: int = 2, seed: int = 0
) -> Path:
    """A randomly initialised RoBERTa encoder plus its BPE tokenizer, saved as safetensors in folder."""
    import torch
    from transformers import RobertaConfig, RobertaModel

    folder = Path(folder)
    tokenizer = train_bpe_tokenizer(sentences, vocab_size, folder)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden_size * 4,
        max_position_embeddings=514,  # RoBERTa positions start after the padding index
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        type_vocab_size=1,
    )
    torch.manual_seed(seed)
    RobertaModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


def build_tiny_bert(
    folder: str | Path,
    sentences: Iterable[str],
    vocab_size: int = 1000,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 512,
    seed: int = 0,
    initializer_range: float = 0.02,
) -> Path:
    """A randomly initialised BERT encoder plus its tokenizer, saved as safetensors in folder (weights drawn with
    standard deviation initializer_range: BERT's 0.02 gives nearly one embedding for every sentence)."""
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
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


def write_small_mirror(source: Path, target: Path, train_rows: int = 160, dev_rows: int = 60, test_rows: int = 60) -> Path:
    """The mirror's layout with the first rows of each file: the same parsers, seconds instead of minutes."""
    nli_rows = 3 * train_rows // 4  # KorNLI lists each premise's three hypotheses together
    for name, rows in (
        ("korsts/sts-train.tsv", train_rows),
        ("korsts/sts-dev.tsv", dev_rows),
        ("kornli/xnli.dev.ko.tsv", nli_rows),
        ("kornli/xnli.test.ko.tsv", nli_rows),
    ):
        lines = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text("".join(lines[: rows + 1]), encoding="utf-8")
    import json

    klue = json.loads((source / "klue-sts/klue-sts-v1.1_dev.json").read_text(encoding="utf-8"))
    (target / "klue-sts").mkdir(parents=True, exist_ok=True)
    (target / "klue-sts/klue-sts-v1.1_dev.json").write_text(json.dumps(klue[:test_rows], ensure_ascii=False), encoding="utf-8")
    nli = json.loads((source / "klue-nli/klue-nli-v1.1_dev.json").read_text(encoding="utf-8"))
    (target / "klue-nli").mkdir(parents=True, exist_ok=True)
    (target / "klue-nli/klue-nli-v1.1_dev.json").write_text(json.dumps(nli[:nli_rows], ensure_ascii=False), encoding="utf-8")
    return target


def bi_pair_model(encoder: Path, folder: Path, max_length: int = 64, runtime: str = "torch", threshold: float = 3.0) -> Path:
    """A bi-encoder pair model of `encoder` (untrained head: mean pooling) saved in folder, with `runtime`'s files built."""
    from pipeline.heads import save_pair_model
    from pipeline.heads.bi import load_bi_encoder
    from pipeline.models import ModelSettings
    from pipeline.runtimes import RUNTIMES

    settings = ModelSettings(head="bi", base_model="tiny", hangul_only=False, threshold=threshold)
    save_pair_model(load_bi_encoder(str(encoder), max_length), None, settings, folder)
    RUNTIMES[runtime].build(folder)
    return folder
