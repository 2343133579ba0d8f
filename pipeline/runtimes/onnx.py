"""ONNX Runtime for the `bi` head: the sentence encoder (transformer + pooling) exported once, run by ORT.

`torch.onnx.export` (TorchScript exporter, opset 17, dynamic batch and sequence axes) of the saved
sentence-transformers model, then onnxruntime's dynamic int8 quantization of its weights. optimum (what
sentence-transformers' own ONNX backend uses) does not install beside transformers 5 here: pip downgrades
transformers to 4.57 (docs/serving.md). OnnxSentenceEncoder answers `encode()` like a SentenceTransformer,
so the bi head scores with it unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.models import load_tokenizer

OPSET = 17


def export_sentence_encoder(folder: Path, target: Path) -> Path:
    """The saved bi-encoder in folder -> an ONNX graph (input_ids, attention_mask -> sentence_embedding)."""
    import torch

    from pipeline.heads.bi import load_bi_encoder

    model = load_bi_encoder(str(folder)).eval()

    class Embedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

    example = model.tokenizer(["가나다 라마", "바사"], padding=True, return_tensors="pt")
    target.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(
            Embedder(),
            (example["input_ids"], example["attention_mask"]),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: measured to give scores equal to torch's (stack facts)
        )
    return target


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization of the weights, one scale per output channel (activations quantized on the fly; VNNI).

    Per channel: on the fine-tuned e5 default it kept Pearson closest to fp32 of the variants tried (docs/serving.md).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    return target


class OnnxSentenceEncoder:
    """A SentenceTransformer-like encoder over an exported graph: `encode(sentences) -> embeddings`."""

    def __init__(self, graph: Path, folder: Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.tokenizer = load_tokenizer(str(folder))
        config = Path(folder) / "sentence_bert_config.json"
        self.max_length = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length") if config.is_file() else None

    def encode(self, sentences: list[str], batch_size: int = 32, convert_to_numpy: bool = True, **_) -> np.ndarray:
        """Embeddings in input order; each batch padded to its longest sentence."""
        chunks = []
        for start in range(0, len(sentences), batch_size):
            encoded = self.tokenizer(
                sentences[start : start + batch_size],
                padding=True,
                truncation=self.max_length is not None,
                max_length=self.max_length,
                return_tensors="np",
            )
            inputs = {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
            chunks.append(self.session.run(["sentence_embedding"], inputs)[0])
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)

    def to(self, _device: str) -> OnnxSentenceEncoder:
        return self  # CPU only (the GPU default stays torch)

    def eval(self) -> OnnxSentenceEncoder:
        return self
