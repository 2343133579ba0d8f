"""Serving runtimes: how a packaged pair model computes its scores. RUNTIMES binds `serve.runtime` values.

    torch       the saved model in PyTorch (any head; the default on GPUs)
    onnx        the bi-encoder exported to ONNX, run by ONNX Runtime in fp32 (scores equal torch's)
    onnx-int8   the same graph with dynamic int8 weights (VNNI on this CPU; scores move a little: gated)

A runtime builds its files into the pair-model folder (`onnx/`) and loads the model for PairScorer; the
head scores with it unchanged. The package stage chooses the runtime behind an accuracy gate (gate.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.heads import LoadedModel, head_named
from pipeline.models import ModelSettings
from pipeline.paths import ONNX_DIR

ONNX_HEADS = ("bi",)  # heads whose model the ONNX export covers (one sentence encoder)


@dataclass(frozen=True)
class Runtime:
    """One way to run a saved pair model."""

    name: str
    graph: str | None  # the ONNX file under <folder>/onnx/, or None for the saved torch model

    def supports(self, settings: ModelSettings) -> bool:
        return self.graph is None or settings.head in ONNX_HEADS

    def build(self, folder: Path) -> None:
        """Write this runtime's files into the pair-model folder (nothing for torch; the fp32 graph first for int8)."""
        from pipeline.runtimes.onnx import export_sentence_encoder, quantize_int8

        if self.graph is None:
            return
        fp32 = folder / ONNX_DIR / RUNTIMES["onnx"].graph
        if not fp32.is_file():
            export_sentence_encoder(folder, fp32)
        if self.graph != fp32.name and not (folder / ONNX_DIR / self.graph).is_file():
            quantize_int8(fp32, folder / ONNX_DIR / self.graph)

    def load(self, folder: Path, settings: ModelSettings, threads: int | None = None) -> LoadedModel:
        """The model as PairScorer takes it: the head's own torch model, or the ONNX encoder."""
        if self.graph is None:
            return head_named(settings.head).load(folder)
        from pipeline.runtimes.onnx import OnnxSentenceEncoder

        encoder = OnnxSentenceEncoder(Path(folder) / ONNX_DIR / self.graph, Path(folder), threads)
        return LoadedModel(encoder, encoder.tokenizer)


RUNTIMES: dict[str, Runtime] = {
    "torch": Runtime("torch", None),
    "onnx": Runtime("onnx", "model.onnx"),
    "onnx-int8": Runtime("onnx-int8", "model_int8.onnx"),
}
# serve.runtime: auto -> the first of these that the model supports and that passes the gate; else torch.
AUTO_ORDER = ("onnx-int8", "onnx")


def candidates(choice: str, gpu: bool) -> list[str]:
    """The optimized runtimes to try for serve.runtime `choice`, best first (torch is the fallback)."""
    if choice == "auto":
        return [] if gpu else list(AUTO_ORDER)  # on a GPU torch (with its batching) stays the default
    return [] if choice == "torch" else [choice]


__all__ = ["AUTO_ORDER", "RUNTIMES", "Runtime", "candidates"]
