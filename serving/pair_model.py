"""A saved pair model's folder as scoring reads it: the file names, the settings beside the weights, the calibration
map, and where its inputs are truncated. Training writes these files (pipeline/); every runtime reads them here."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.errors import ConfigError
from serving.scale import SIMILAR_AT

SETTINGS_FILE = "similarity.json"  # head, base model, text settings: what scoring needs
CALIBRATION_FILE = "calibration.json"
MODEL_CARD_FILE = "model_card.md"  # a version's card: in reports/, in its run's artifacts, beside the packaged model
PAIR_FOLDER = "pair_model"  # the pair-model folder inside the MLflow artifact and the BentoML model
ONNX_DIR = "onnx"  # the serving runtime's exported graphs inside a packaged pair model
ONNX_GRAPHS = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}  # serve.runtime -> its graph under ONNX_DIR


@dataclass(frozen=True)
class ModelSettings:
    """What scoring needs to know about a saved pair model, stored beside its weights."""

    head: str
    base_model: str
    hangul_only: bool
    prefix: str = ""  # prepended to each sentence after normalization (e5: "query: "); folders before it had none
    threshold: float = SIMILAR_AT  # "similar" when score >= threshold (evaluate.threshold); folders before it: KLUE's 3.0

    def save(self, folder: str | Path) -> None:
        (Path(folder) / SETTINGS_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> ModelSettings:
        path = Path(folder) / SETTINGS_FILE
        if not path.is_file():
            raise ConfigError(f"{folder}: not a fine-tuned pair model (no {SETTINGS_FILE})")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Calibration:
    """The fitted map (breakpoints) and whether scoring applies it, with the evidence for that choice (fitted by
    pipeline.calibration)."""

    raw: list[float]  # increasing breakpoints of the raw score
    calibrated: list[float]  # the calibrated score at each breakpoint
    applied: bool
    reason: str
    validation: dict[str, Any] = field(default_factory=dict)  # metrics raw vs cross-fitted calibrated

    def apply(self, raw_scores: np.ndarray) -> np.ndarray:
        """Raw scores -> calibrated 0-5 scores (whether or not `applied`: evaluate reports both)."""
        return np.interp(np.asarray(raw_scores, dtype=np.float64), self.raw, self.calibrated)

    def save(self, folder: str | Path) -> None:
        (Path(folder) / CALIBRATION_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> Calibration | None:
        """The model folder's calibration, or None for a folder without one."""
        path = Path(folder) / CALIBRATION_FILE
        return cls(**json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def input_token_limit(folder: str | Path, model_max_length: int) -> int:
    """Where every runtime truncates an input of the saved pair model in folder (the one home of that length).

    The length training saved with the tokenizer (model.max_length: the tokenizer's model_max_length), capped at
    the encoder's position embeddings exactly as sentence-transformers caps it when it loads a saved bi-encoder:
    the torch path, the ONNX graphs and training then read the same tokens.
    """
    config = Path(folder) / "config.json"
    positions = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings") if config.is_file() else None
    if positions is None or positions == -1:  # -1: no limit (xlnet), as sentence-transformers reads it
        return model_max_length
    return min(model_max_length, positions)
