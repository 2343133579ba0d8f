"""The `mlp` head's model: an encoder plus a small MLP on its pooled output, as a proper transformers model.

PairMlpConfig / PairMlpModel are registered with AutoConfig and AutoModelForSequenceClassification when
this module is imported, so a saved folder loads with the same `from_pretrained` call as a `cross` model
(no remote code: the classes live here). The model returns `logits` of shape (batch, 1) like a
sequence-classification model, so training, scoring and the registry treat both heads alike.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MLP_MODEL_TYPE = "pair_mlp"


class PairMlpConfig(PretrainedConfig):
    """The encoder's own config (as a dict, any architecture) plus the head's shape."""

    model_type = MLP_MODEL_TYPE

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        pooling: str = "mean",
        mlp_hidden: int = 256,
        mlp_dropout: float = 0.1,
        **kwargs: Any,
    ) -> None:
        self.encoder = encoder or {}
        self.pooling = pooling
        self.mlp_hidden = mlp_hidden
        self.mlp_dropout = mlp_dropout
        super().__init__(**kwargs)

    def encoder_config(self) -> PretrainedConfig:
        settings = dict(self.encoder)
        return AutoConfig.for_model(settings.pop("model_type"), **settings)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Sentence vector from token states: the first token ([CLS] / <s>) or the mask-weighted mean."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class PairMlpModel(PreTrainedModel):
    """Encoder -> pooled pair vector -> dropout, linear, GELU, dropout, linear -> one logit."""

    config_class = PairMlpConfig
    base_model_prefix = "pair_mlp"  # matches no key: the checkpoint always holds encoder.* and head.*

    def __init__(self, config: PairMlpConfig) -> None:
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder_config())
        width = self.encoder.config.hidden_size
        self.head = torch.nn.Sequential(
            torch.nn.Dropout(config.mlp_dropout),
            torch.nn.Linear(width, config.mlp_hidden),
            torch.nn.GELU(),
            torch.nn.Dropout(config.mlp_dropout),
            torch.nn.Linear(config.mlp_hidden, 1),
        )
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        if isinstance(module, torch.nn.Linear) and module in self.head.modules():
            torch.nn.init.normal_(module.weight, std=0.02)
            torch.nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:  # RoBERTa-family tokenizers send none
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        return SequenceClassifierOutput(logits=self.head(pool(hidden, attention_mask, self.config.pooling)))

    @classmethod
    def from_encoder(cls, source: str, pooling: str, mlp_hidden: int, mlp_dropout: float) -> PairMlpModel:
        """A new head on pretrained encoder weights (safetensors only)."""
        encoder = AutoModel.from_pretrained(source, use_safetensors=True, trust_remote_code=False)
        config = PairMlpConfig(encoder=encoder.config.to_dict(), pooling=pooling, mlp_hidden=mlp_hidden, mlp_dropout=mlp_dropout)
        model = cls(config)
        model.encoder = encoder
        return model


AutoConfig.register(MLP_MODEL_TYPE, PairMlpConfig, exist_ok=True)
AutoModelForSequenceClassification.register(PairMlpConfig, PairMlpModel, exist_ok=True)
