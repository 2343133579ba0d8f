"""The `mlp` head: the encoder plus a small MLP on its pooled output (model classes in mlp_model.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import ConfigError
from pipeline.heads.pair import PairHead

if TYPE_CHECKING:
    from pipeline.config import ModelParams


class MlpHead(PairHead):
    """Pair in one sequence -> encoder -> pooled vector -> MLP -> one logit -> 5 x sigmoid."""

    def new_model(self, source: str, model: ModelParams):
        from pipeline.heads.mlp_model import PairMlpModel

        try:
            return PairMlpModel.from_encoder(source, model.pooling, model.mlp_hidden, model.mlp_dropout)
        except OSError as error:
            raise ConfigError(f"cannot load safetensors weights from {source!r}: {error}") from error

    def encoder(self, model):
        return model.encoder
