"""The `bi` head's ONNX export: the sentence encoder (transformer + pooling) as one graph, which the torch-free runtime
(serving/onnx_scorer.py) runs with ONNX Runtime.

`torch.onnx.export` (TorchScript exporter, opset 17, dynamic batch and sequence axes) of the saved
sentence-transformers model. optimum (what sentence-transformers' own ONNX backend uses) does not install beside
transformers 5 here: pip downgrades transformers to 4.57 (docs/serving.md).
"""

from __future__ import annotations

from pathlib import Path

OPSET = 17


def export_sentence_encoder(model, target: Path) -> Path:
    """A loaded sentence-transformers bi-encoder -> an ONNX graph (input_ids, attention_mask -> sentence_embedding).

    The model is moved to the CPU first: sentence-transformers loads onto CUDA where there is one, and the graph is
    traced from CPU inputs for ONNX Runtime's CPU provider, so a GPU runner exports the graph a CPU one does."""
    import warnings

    import torch

    model = model.to("cpu").eval()

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
