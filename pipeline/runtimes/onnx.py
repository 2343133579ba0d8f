"""ONNX Runtime for the `bi` head: the sentence encoder (transformer + pooling) exported once, run by ORT.

`torch.onnx.export` (TorchScript exporter, opset 17, dynamic batch and sequence axes) of the saved
sentence-transformers model, then onnxruntime's dynamic int8 quantization of its weights. optimum (what
sentence-transformers' own ONNX backend uses) does not install beside transformers 5 here: pip downgrades
transformers to 4.57 (docs/serving.md). OnnxSentenceEncoder answers `encode()` like a SentenceTransformer,
so the bi head scores with it unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import UnscorableInput
from pipeline.models import load_model_tokenizer

OPSET = 17


def export_sentence_encoder(folder: Path, target: Path) -> Path:
    """The saved bi-encoder in folder -> an ONNX graph (input_ids, attention_mask -> sentence_embedding)."""
    import warnings

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
    with torch.inference_mode(), warnings.catch_warnings():
        # Known and checked, so kept off the console (other warnings stay visible): the tracer warns where
        # transformers and sentence-transformers branch on a tensor's shape (the mask's padding and length, the
        # causal flag), fixed for this graph, whose inputs are always input_ids and an attention_mask of one shape;
        # torch warns that aten::index becomes Gather ops, wrong only for negative indices. The export is used as
        # documented, and the gate scores the graph against torch before it is served (pipeline/runtimes/gate.py).
        tracer_modules = r"(transformers|sentence_transformers)\."
        warnings.filterwarnings("ignore", "Converting a tensor to a Python boolean", torch.jit.TracerWarning, tracer_modules)
        warnings.filterwarnings("ignore", "Exporting aten::index operator of advanced indexing", UserWarning, r"torch\.onnx\.")
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
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    def not_the_preprocessing_advice(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing before quantization")

    # quantize_dynamic logs that advice (shape inference and graph optimization first, from its static-quantization
    # examples) as a WARNING on the root logger for every graph; the API is used as documented and the gate checks
    # the int8 scores against torch, so that one message is dropped, during this call only.
    root = logging.getLogger()
    root.addFilter(not_the_preprocessing_advice)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.removeFilter(not_the_preprocessing_advice)
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
        self.tokenizer = load_model_tokenizer(folder)  # truncates where the torch path does (model.max_length)

    def encode(self, sentences: list[str], batch_size: int = 32, convert_to_numpy: bool = True, **_) -> np.ndarray:
        """Embeddings in input order; each batch padded to its longest sentence, every sentence truncated as in training."""
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        chunks = []
        for start in range(0, len(sentences), batch_size):
            encoded = self.tokenizer(
                sentences[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=self.tokenizer.model_max_length,
                return_tensors="np",
            )
            inputs = {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
            try:
                chunks.append(self.session.run(["sentence_embedding"], inputs)[0])
            except InvalidArgument as error:  # the graph refused these inputs (e.g. past its positions): the input's fault
                raise UnscorableInput(f"the ONNX graph refused the input: {error}") from error
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)

    def to(self, _device: str) -> OnnxSentenceEncoder:
        return self  # CPU only (the GPU default stays torch)

    def eval(self) -> OnnxSentenceEncoder:
        return self
