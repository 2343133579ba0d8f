"""The torch-free runtime: a bi-encoder's exported ONNX graph run by ONNX Runtime, tokenized by `tokenizers`.

What a lean Bento's worker runs (tokenizers + onnxruntime + numpy; no torch, transformers, sentence-transformers
or scipy): the pipeline exports the graph (a head that declares `exports_onnx`) and gates these scores against
the torch model before it packages them (pipeline/runtimes/). The tokenizer is the model's own tokenizer.json,
truncated at input_token_limit and padded with its pad token, as transformers tokenizes it for the torch path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from serving.embedding_cache import EmbeddingCache
from serving.errors import UnscorableInput
from serving.pair_model import ONNX_DIR, ONNX_GRAPHS, Calibration, ModelSettings, input_token_limit
from serving.scale import embedded_pair_scores
from serving.scorer import PairScorer

UNLIMITED = int(1e30)  # transformers' model_max_length when a tokenizer names none


def special_token(value) -> str | None:
    """A tokenizer_config.json special-token entry (a string or an AddedToken dict) -> its text."""
    return value.get("content") if isinstance(value, dict) else value


def load_tokenizers(folder: Path):
    """The saved model's tokenizer.json twice: one truncating and padding as the torch path does, one counting tokens."""
    from tokenizers import Tokenizer

    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    limit = input_token_limit(folder, int(config.get("model_max_length") or UNLIMITED))
    reading, counting = (Tokenizer.from_file(str(folder / "tokenizer.json")) for _ in range(2))
    reading.enable_truncation(max_length=limit)
    pad = special_token(config.get("pad_token"))
    pad_id = reading.token_to_id(pad) if pad else None
    reading.enable_padding(pad_id=pad_id or 0, pad_token=pad or "[PAD]")
    counting.no_truncation()
    counting.no_padding()
    return reading, counting


class OnnxSentenceEncoder:
    """A SentenceTransformer-like encoder over an exported graph: `encode(sentences) -> embeddings`."""

    def __init__(self, graph: Path, folder: Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.tokenizer, self.counting_tokenizer = load_tokenizers(Path(folder))

    def encode(self, sentences: list[str], batch_size: int = 32, **_) -> np.ndarray:
        """Embeddings in input order; each batch padded to its longest sentence, every sentence truncated as in training."""
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        chunks = []
        for start in range(0, len(sentences), batch_size):
            encoded = self.tokenizer.encode_batch(sentences[start : start + batch_size])
            inputs = {
                "input_ids": np.array([item.ids for item in encoded], dtype=np.int64),
                "attention_mask": np.array([item.attention_mask for item in encoded], dtype=np.int64),
            }
            try:
                chunks.append(self.session.run(["sentence_embedding"], inputs)[0])
            except InvalidArgument as error:  # the graph refused these inputs (e.g. past its positions): the input's fault
                raise UnscorableInput(f"the ONNX graph refused the input: {error}") from error
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


class OnnxPairScorer(PairScorer):
    """A bi-encoder pair model on an ONNX graph (serve.runtime onnx or onnx-int8): 5 x the cosine of the embeddings."""

    @classmethod
    def from_folder(cls, folder: str | Path, runtime: str = "onnx", threads: int | None = None, cache_size: int = 0):
        """The packaged model folder's graph for `runtime`; cache_size > 0 keeps that many sentence embeddings (LRU)."""
        folder = Path(folder)
        settings = ModelSettings.load(folder)
        encoder = OnnxSentenceEncoder(folder / ONNX_DIR / ONNX_GRAPHS[runtime], folder, threads)
        model = EmbeddingCache(encoder, cache_size) if cache_size > 0 else encoder
        return cls(model, encoder.counting_tokenizer, settings, Calibration.load(folder))

    def __init__(self, model, counting_tokenizer, settings: ModelSettings, calibration: Calibration | None) -> None:
        super().__init__(model, settings, calibration)
        self.counting_tokenizer = counting_tokenizer

    def forward(self, first: list[str], second: list[str]) -> np.ndarray:
        return embedded_pair_scores(self.model.encode(first + second, batch_size=2 * len(first)), len(first))

    def token_counts(self, texts: list[str]) -> list[int]:
        return [len(item.ids) for item in self.counting_tokenizer.encode_batch(texts)]
