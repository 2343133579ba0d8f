"""A PackedE5 -> a model folder: config.json, fp32 safetensors (with a seeded pooler), tokenizer files and the
sentence-transformers files (Transformer + mean pooling)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError
from pipeline.sources.packed_e5.layout import PackedE5
from pipeline.sources.packed_e5.tokenizer import build_tokenizer, tokenizer_configs

MAX_SEQ_LENGTH = 512  # sentence-transformers' max_seq_length (capped by the model's positions)
POOLER_SEED = 0
INITIALIZER_RANGE = 0.02  # BertConfig's default: transformers initialises a missing pooler the same way

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
    tokenizer_config, special_tokens = tokenizer_configs(packed)
    _write_json(folder / "tokenizer_config.json", tokenizer_config)
    _write_json(folder / "special_tokens_map.json", special_tokens)
    _write_sentence_transformers(packed, folder)


def _write_sentence_transformers(packed: PackedE5, folder: Path) -> None:
    """sentence-transformers: Transformer + mean pooling; the module names every version since 2.x reads."""
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
