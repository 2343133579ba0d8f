"""The packed e5 file's building blocks: dtype codes, the Q4_0 block, the tensors e5.c expects, a bounds-checked
cursor, and PackedE5, the parsed file (the byte layout itself is spelled out in the package docstring)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError

BLOCK_SIZE = 32  # e5.c's QK: Q4_0 values per block
FP32, Q4_0 = 0, 1
DTYPE_NAMES = {FP32: "fp32", Q4_0: "Q4_0"}
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (BLOCK_SIZE // 2,))])  # fp16 scale + 16 bytes of nibbles


@dataclass(frozen=True, eq=False)
class PackedE5:
    """Everything in a packed e5 file, with the 4-bit weights dequantized to float32."""

    path: Path
    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # rows of the word-embedding matrix (250037 for e5-small: more than its 250002 pieces)
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int
    pieces: tuple[str, ...]
    scores: tuple[float, ...]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, str]  # code point -> replacement (possibly empty), applied per code point
    tensors: dict[str, np.ndarray]  # the file's names (emb.word, l0.q.w, ...), float32, nn.Linear layout


def expected_shapes(hidden: int, layers: int, ffn: int, vocab: int, positions: int, types: int) -> dict[str, tuple[int, ...]]:
    """Every tensor e5.c looks up (find_tensor), with the shape the header implies."""
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (vocab, hidden),
        "emb.pos": (positions, hidden),
        "emb.type": (types, hidden),
        "emb.ln.w": (hidden,),
        "emb.ln.b": (hidden,),
    }
    for layer in range(layers):
        for name, (rows, cols) in {
            "q": (hidden, hidden),
            "k": (hidden, hidden),
            "v": (hidden, hidden),
            "ao": (hidden, hidden),
            "fi": (ffn, hidden),
            "fo": (hidden, ffn),
        }.items():
            shapes[f"l{layer}.{name}.w"] = (rows, cols)
            shapes[f"l{layer}.{name}.b"] = (rows,)
        for norm in ("aln", "oln"):
            shapes[f"l{layer}.{norm}.w"] = (hidden,)
            shapes[f"l{layer}.{norm}.b"] = (hidden,)
    return shapes


class Cursor:
    """Bounds-checked little-endian reads: running past the end is a ConfigError naming the file and the field."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def need(self, size: int, what: str, start: int | None = None) -> int:
        start = self.pos if start is None else start
        if size < 0 or start + size > len(self.data):
            raise ConfigError(f"{self.path}: truncated: {what} needs bytes {start}..{start + size}, file has {len(self.data)}")
        return start

    def unpack(self, layout: struct.Struct, what: str) -> tuple:
        start = self.need(layout.size, what)
        self.pos += layout.size
        return layout.unpack_from(self.data, start)

    def take(self, size: int, what: str) -> memoryview:
        start = self.need(size, what)
        self.pos += size
        return memoryview(self.data)[start : start + size]

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(count * np.dtype(dtype).itemsize, what), dtype=dtype)


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Q4_0 bytes -> float32[count]: per 32 values an fp16 scale d, then byte j = value j (low nibble), j+16 (high).

    value = (nibble - 8) * d, exactly as e5.c's deq_row computes it (the product is exact in float32).
    """
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=count // BLOCK_SIZE)
    nibbles = np.empty((len(blocks), BLOCK_SIZE), dtype=np.int8)
    nibbles[:, : BLOCK_SIZE // 2] = blocks["qs"] & 0x0F
    nibbles[:, BLOCK_SIZE // 2 :] = blocks["qs"] >> 4
    nibbles -= 8
    values = nibbles.astype(np.float32)
    values *= blocks["d"].astype(np.float32)[:, None]
    return values.reshape(count)
