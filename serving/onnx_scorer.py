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
# ONNX Runtime graph fusions a worker leaves off. SkipLayerNormFusion merges each residual Add + LayerNormalization of
# the int8 graph into one SkipLayerNormalization kernel, which ran 5-10 % slower on our CPUs than the two ops it
# replaces (docs/benchmarks.md#where-an-onnx-graphs-time-goes-graph_profilepy); the gate scores the graph through
# this session, so it judges what is served.
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
READ_COUNTS_KEPT = 4096  # sentences whose token counts wait to be counted: a few batches (scoring alone never reads them)


def special_token(value) -> str | None:
    """A tokenizer_config.json special-token entry (a string or an AddedToken dict) -> its text."""
    return value.get("content") if isinstance(value, dict) else value


def inference_session(graph: Path, threads: int | None = None, **options):
    """An ONNX Runtime CPU session of graph as a worker runs it: `threads` intra-op threads and one inter-op thread (None:
    ONNX Runtime's defaults), DISABLED_OPTIMIZERS off; options: more SessionOptions attributes (enable_profiling=True)."""
    import onnxruntime

    session_options = onnxruntime.SessionOptions()
    if threads:
        session_options.intra_op_num_threads = threads
        session_options.inter_op_num_threads = 1
    for name, value in options.items():
        setattr(session_options, name, value)
    providers = ["CPUExecutionProvider"]
    return onnxruntime.InferenceSession(str(graph), session_options, providers, disabled_optimizers=list(DISABLED_OPTIMIZERS))


def load_tokenizer(folder: Path):
    """The saved model's tokenizer.json (truncation and padding off: OnnxSentenceEncoder applies them), the length
    inputs are truncated at (input_token_limit) and the pad token's id."""
    from tokenizers import Tokenizer

    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    pad = special_token(config.get("pad_token"))
    pad_id = tokenizer.token_to_id(pad) if pad else None
    return tokenizer, input_token_limit(folder, int(config.get("model_max_length") or UNLIMITED)), pad_id or 0


class OnnxSentenceEncoder:
    """A SentenceTransformer-like encoder over an exported graph: `encode(sentences) -> embeddings`.

    One tokenizer serves both reading and counting: a 250k-piece Unigram tokenizer (e5's) holds ~290 MB in memory.
    Each sentence is tokenized without special tokens (its full length), truncated, then given its special tokens:
    the steps, in that order, by which `tokenizers` truncates (and transformers for the torch path). The full lengths
    of what the graph read wait in read_counts until token_counts asks (the service's token histogram right after
    its batch), so a sentence is tokenized once for both.
    """

    def __init__(self, graph: Path, folder: Path, threads: int | None = None) -> None:
        self.session = inference_session(graph, threads)
        self.tokenizer, self.token_limit, self.pad_id = load_tokenizer(Path(folder))
        self.special_tokens = self.tokenizer.num_special_tokens_to_add(False)
        self.read_counts: dict[str, int] = {}  # sentence -> its token count, from the graph's tokenization

    def token_counts(self, sentences: list[str]) -> list[int]:
        """Tokens each sentence is, special tokens included, before truncation: as the graph last read it (taken from
        read_counts), else tokenized here (a sentence the embedding cache answered)."""
        known = {sentence: self.read_counts.pop(sentence, None) for sentence in dict.fromkeys(sentences)}
        missing = [sentence for sentence, count in known.items() if count is None]
        if missing:
            encoded = self.tokenizer.encode_batch(missing, add_special_tokens=False)
            known.update(zip(missing, self.full_counts(encoded), strict=True))
        return [known[sentence] for sentence in sentences]

    def model_inputs(self, sentences: list[str]) -> tuple[dict[str, np.ndarray], list[int]]:
        """input_ids and attention_mask of sentences, each truncated at token_limit, padded to the longest; and each
        sentence's token count before truncation (special tokens included)."""
        encoded = self.tokenizer.encode_batch(sentences, add_special_tokens=False)
        counts = self.full_counts(encoded)
        rows = []
        for item in encoded:
            item.truncate(max(self.token_limit - self.special_tokens, 0))
            rows.append(self.tokenizer.post_process(item).ids)
        width = max((len(row) for row in rows), default=0)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = row
            mask[index, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}, counts

    def full_counts(self, encoded: list) -> list[int]:
        """Each encoding's (made without special tokens, untruncated) token count with its special tokens."""
        return [len(item.ids) + self.special_tokens for item in encoded]

    def remember_counts(self, sentences: list[str], counts: list[int]) -> None:
        """Keep what the graph read for token_counts; the oldest go past READ_COUNTS_KEPT (scoring that never counts)."""
        self.read_counts.update(zip(sentences, counts, strict=True))
        while len(self.read_counts) > READ_COUNTS_KEPT:
            self.read_counts.pop(next(iter(self.read_counts)), None)

    def encode(self, sentences: list[str], batch_size: int = 32, **_) -> np.ndarray:
        """Embeddings in input order; each batch padded to its longest sentence, every sentence truncated as in training."""
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        chunks = []
        for start in range(0, len(sentences), batch_size):
            batch = sentences[start : start + batch_size]
            inputs, counts = self.model_inputs(batch)
            self.remember_counts(batch, counts)
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
        return cls(model, encoder, settings, Calibration.load(folder))

    def __init__(self, model, encoder: OnnxSentenceEncoder, settings: ModelSettings, calibration: Calibration | None) -> None:
        super().__init__(model, settings, calibration)
        self.encoder = encoder  # model itself, or behind the embedding cache

    def forward(self, first: list[str], second: list[str]) -> np.ndarray:
        return embedded_pair_scores(self.model.encode(first + second, batch_size=2 * len(first)), len(first))

    def token_counts(self, texts: list[str]) -> list[int]:
        return self.encoder.token_counts(texts)
