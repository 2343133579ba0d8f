"""The file's Unigram vocabulary and normalization map as an XLM-R style tokenizer.

The normalizer: tokenizers' Precompiled reads SentencePiece's compiled form of the map (a Darts-clone double-array
trie over the UTF-8 keys, then the NUL-terminated replacements). The file stores the map expanded per code point;
compiling it back here keeps Precompiled's exact semantics (the same one the official tokenizer.json uses) with no
sentencepiece dependency, and lets transformers' XLMRobertaTokenizer pick the normalizer up (it only looks for a
Precompiled one).
"""

from __future__ import annotations

import struct

import numpy as np

from pipeline.errors import ConfigError
from pipeline.sources.packed_e5.layout import PackedE5


def compile_charsmap(mapping: dict[int, str]) -> bytes:
    """code point -> replacement, as the precompiled_charsmap bytes normalizers.Precompiled takes.

    Layout (spm_precompiled): u32 trie byte size, the trie's u32 units, then the replacements. A unit holds its
    label (low 8 bits), a has-leaf flag (bit 8) and the XOR offset to its children's block (bits 10-30); a leaf
    unit (bit 31) holds a replacement's byte offset. Every node gets its own base, so a lookup whose label does
    not match can never land on another node's child.
    """
    strings = bytearray()
    where: dict[str, int] = {}
    for target in sorted(set(mapping.values())):
        where[target] = len(strings)
        strings += target.encode("utf-8") + b"\0"

    trie: dict = {}  # byte -> subtrie; None -> leaf value
    for code_point, target in mapping.items():
        node = trie
        for byte in chr(code_point).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[target]

    trie_bytes = np.asarray(_double_array(trie), dtype="<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(strings)


def _double_array(trie: dict) -> list[int]:
    """The byte trie as double-array units (see compile_charsmap), laid out breadth first from the root at 0."""
    units: list[int] = [0] * 256
    used = bytearray(256)
    used[0] = 1  # the root
    first_free = 1
    queue = [(trie, 0)]
    for node, position in queue:
        labels = sorted(label for label in node if label is not None)
        if not labels and None not in node:
            continue
        while first_free < len(used) and used[first_free]:
            first_free += 1
        # The slot base ^ 0 is always taken (by the leaf, or reserved), which keeps every base unique.
        base = _free_base(used, first_free, [0, *labels])
        top = (base | 0xFF) + 1
        if top > len(units):
            units += [0] * (top - len(units))
            used += bytearray(top - len(used))
        offset = position ^ base
        if offset >= 1 << 21:
            raise ValueError("normalization map too large for a compact double array")
        units[position] |= (offset << 10) | ((None in node) << 8)
        used[base] = 1
        if None in node:
            units[base] = (1 << 31) | node[None]
        for label in labels:
            used[base ^ label] = 1
            units[base ^ label] = label
            queue.append((node[label], base ^ label))
    return units


def _free_base(used: bytearray, first_free: int, slots: list[int]) -> int:
    """The first base, trying from the first free unit on, at which every slot (base ^ label) is free."""
    candidate = first_free
    while True:
        base = candidate ^ slots[-1]
        if all(base ^ slot >= len(used) or not used[base ^ slot] for slot in slots):
            return base
        candidate += 1
        while candidate < len(used) and used[candidate]:
            candidate += 1


def build_tokenizer(packed: PackedE5):
    """The file's Unigram vocabulary as a `tokenizers.Tokenizer`, the way XLM-R's tokenizer.json spells it.

    Precompiled(map) then collapse runs of spaces (e5.c does both), Metaspace with a prefix always, and the
    templates `<s> A </s>` / `<s> A </s> </s> B </s>`.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    vocabulary = list(zip(packed.pieces, packed.scores, strict=True))
    tokenizer = Tokenizer(Unigram(vocabulary, unk_id=packed.unk_id, byte_fallback=False))
    try:
        charsmap = compile_charsmap(packed.normalization)
    except ValueError as error:
        raise ConfigError(f"{packed.path}: {error}") from error
    tokenizer.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = packed.pieces[packed.bos_id], packed.pieces[packed.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, packed.bos_id), (eos, packed.eos_id)],
    )
    tokenizer.add_special_tokens([AddedToken(piece, special=True, normalized=False) for piece in _special_pieces(packed)])
    return tokenizer


def _special_pieces(packed: PackedE5) -> list[str]:
    """bos, pad, eos, unk and, when the vocabulary has it, <mask> (lstrip=False, as in the official tokenizer.json)."""
    ids = sorted({packed.bos_id, packed.pad_id, packed.eos_id, packed.unk_id})
    pieces = [packed.pieces[index] for index in ids]
    return [*pieces, "<mask>"] if "<mask>" in packed.pieces and "<mask>" not in pieces else pieces


def tokenizer_configs(packed: PackedE5) -> tuple[dict, dict]:
    """tokenizer_config.json and special_tokens_map.json for transformers' XLMRobertaTokenizer."""
    piece = packed.pieces
    named = {
        "bos_token": piece[packed.bos_id],
        "cls_token": piece[packed.bos_id],
        "eos_token": piece[packed.eos_id],
        "sep_token": piece[packed.eos_id],
        "pad_token": piece[packed.pad_id],
        "unk_token": piece[packed.unk_id],
    }
    if "<mask>" in piece:
        named["mask_token"] = "<mask>"
    added = {
        str(piece.index(token)): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for token in _special_pieces(packed)
    }
    config = {
        "added_tokens_decoder": added,
        **named,
        "clean_up_tokenization_spaces": True,
        "model_max_length": packed.max_positions,
        "tokenizer_class": "XLMRobertaTokenizer",
    }
    return config, named
