"""The `cross` head: the encoder's sequence-classification model with one regression output."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.heads.pair import PairHead, load_sequence_classifier

if TYPE_CHECKING:
    from pipeline.config import ModelParams


class CrossHead(PairHead):
    """Pair in one sequence -> AutoModelForSequenceClassification (num_labels=1) -> 5 x sigmoid."""

    def new_model(self, source: str, model: ModelParams):
        return load_sequence_classifier(source)

    def encoder(self, model):
        return model
