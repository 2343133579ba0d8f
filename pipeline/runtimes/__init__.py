"""Serving runtimes: how a packaged pair model computes its scores. RUNTIMES binds `serve.runtime` values.

    torch       the saved model in PyTorch (any head; the default on GPUs)
    onnx        the model's ONNX sentence-encoder graph on ONNX Runtime in fp32, torch-free (serving/onnx_scorer.py)
    onnx-int8   the same graph in int8 (VNNI on this CPU; scores move a little: gated), made by the first recipe of
                int8.INT8_RECIPES (dynamic, static QDQ, ...) that passes the gate

A runtime builds its files into the pair-model folder (`onnx/`); serving.runtime.load_scorer(folder, runtime) scores
with them. Which heads export a graph is each head's own declaration (Head.exports_onnx). The register stage chooses
the runtime behind an accuracy gate (gate.py, selection.py); the package stage ships that choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.heads import head_named
from pipeline.models import ModelSettings
from serving.pair_model import ONNX_DIR, ONNX_GRAPHS

if TYPE_CHECKING:
    from pipeline.runtimes.int8 import CalibrationSet, Int8Recipe


@dataclass(frozen=True)
class Runtime:
    """One way to run a saved pair model."""

    name: str
    graph: str | None  # the ONNX file under <folder>/onnx/, or None for the saved torch model

    @property
    def torch_free(self) -> bool:
        """Served without torch, transformers, sentence-transformers or scipy (a lean Bento)."""
        return self.graph is not None

    def ships(self, relative: str) -> bool:
        """Whether a file of the pair-model folder (its path relative to it) goes into a Bento served on this runtime:
        a torch-free one leaves out the PyTorch weights, which its graph holds already."""
        return not (self.torch_free and relative.endswith(".safetensors"))

    def supports(self, settings: ModelSettings) -> bool:
        return self.graph is None or head_named(settings.head).exports_onnx

    @property
    def quantized(self) -> bool:
        """Made from the fp32 graph by an int8 recipe (pipeline/runtimes/int8.py)."""
        return self.graph is not None and self.graph != ONNX_GRAPHS["onnx"]

    def build(self, folder: Path, recipe: Int8Recipe | None = None, batches: CalibrationSet | None = None) -> None:
        """Write this runtime's files into the pair-model folder (nothing for torch; the fp32 graph first for int8): the
        head's export, its word-embedding table stored as what it is (4-bit blocks when exactly that: embedding_table.py);
        for int8, the graph that `recipe` makes (an int8.Int8Recipe; None: the first of INT8_RECIPES), calibrated on
        `batches` (the graph's inputs) when the recipe needs it. An int8 graph already there is kept."""
        from pipeline.runtimes.embedding_table import compact_embedding_table
        from pipeline.runtimes.int8 import INT8_RECIPES, CalibrationSet

        if self.graph is None:
            return
        fp32 = Path(folder) / ONNX_DIR / ONNX_GRAPHS["onnx"]
        if not fp32.is_file():
            exported = Path(folder) / ONNX_DIR / f"exported-{fp32.name}"
            head_named(ModelSettings.load(folder).head).export_onnx(Path(folder), exported)
            compact_embedding_table(exported, fp32)
            exported.unlink()
        if self.quantized and not (Path(folder) / ONNX_DIR / self.graph).is_file():
            recipe = recipe or INT8_RECIPES[0]
            recipe.quantize(fp32, Path(folder) / ONNX_DIR / self.graph, CalibrationSet() if batches is None else batches)


RUNTIMES: dict[str, Runtime] = {"torch": Runtime("torch", None)} | {name: Runtime(name, f) for name, f in ONNX_GRAPHS.items()}
# serve.runtime: auto -> the first of these that the model supports and that passes the gate; else torch.
AUTO_ORDER = ("onnx-int8", "onnx")


def candidates(choice: str, gpu: bool) -> list[str]:
    """The optimized runtimes to try for serve.runtime `choice`, best first (torch is the fallback)."""
    if choice == "auto":
        return [] if gpu else list(AUTO_ORDER)  # on a GPU torch (with its batching) stays the default
    return [] if choice == "torch" else [choice]


__all__ = ["AUTO_ORDER", "RUNTIMES", "Runtime", "candidates"]
