"""What the `cross` and `mlp` heads share: the pair in one sequence, one logit, transformers' Trainer.

Both train on the tokenize stage's pair encodings with a binary cross-entropy of sigmoid(logit) against
score / 5, and score a pair as 5 x sigmoid(logit). They differ only in the model they build on the
encoder (`new_model`) and where that model keeps its encoder.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import ConfigError
from pipeline.heads.base import Head, LoadedModel, TrainingJob, TrainingPairs, training_arguments
from pipeline.metrics import MAX_SCORE, similarity_metrics
from pipeline.models import load_model_tokenizer, load_tokenizer, resolve_model_source
from pipeline.paths import CLEAN_DIR, TOKENIZED_PAIRS, TOKENIZER_DIR
from pipeline.tables import split_path
from serving.text import with_prefix

if TYPE_CHECKING:
    from pipeline.config import ModelParams


def scores_from_logits(logits: np.ndarray) -> np.ndarray:
    """The model's one logit -> a 0-5 score: sigmoid, scaled (training fits sigmoid(logit) to score / 5)."""
    return MAX_SCORE / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def encode_pairs(dataset, tokenizer, max_length: int, prefix: str = "", fingerprint: str | None = None):
    """Pair encoding of prefix + each sentence, truncated to max_length (no padding: batches pad dynamically), labels = score.

    A `length` column lets the length-grouped sampler bucket batches without re-reading input_ids. `fingerprint`: the
    result's datasets fingerprint (default: derived by datasets, which hashes the source file's path and time).
    """

    def encode(batch):
        first, second = with_prefix(batch["sentence1"], prefix), with_prefix(batch["sentence2"], prefix)
        encoded = tokenizer(first, second, truncation=True, max_length=max_length)
        encoded["labels"] = [float(score) for score in batch["score"]]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenize", new_fingerprint=fingerprint)


def score_loss(outputs, labels, num_items_in_batch=None):
    """Binary cross-entropy of sigmoid(logit) against score / 5, as sentence-transformers' CrossEncoder trains.

    Measured on MiniLM/KorSTS: plain MSE on the raw 0-5 score collapsed to predicting the mean
    (validation Pearson 0.06 after one epoch); this loss keeps learning (docs/models-and-heads.md).
    """
    import torch

    logits = outputs["logits"].squeeze(-1)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype) / MAX_SCORE)


def validation_metrics(eval_prediction, threshold: float) -> dict[str, float]:
    """Trainer's compute_metrics on 0-5 scores, mapped from logits exactly as scoring maps them; F1 at `threshold`.

    An undefined correlation (constant predictions) counts as 0 so best-checkpoint selection still works.
    """
    predicted = scores_from_logits(np.asarray(eval_prediction.predictions).reshape(-1))
    gold = np.asarray(eval_prediction.label_ids).reshape(-1)
    metrics = similarity_metrics(gold, predicted, threshold)
    return {name: (0.0 if value is None else float(value)) for name, value in metrics.items() if name != "pairs"}


def load_sequence_classifier(source: str):
    """A sequence-classification model with one regression output, from safetensors weights.

    Also loads a saved `mlp` model: pipeline.heads.mlp_model registers its classes with the Auto classes.
    """
    from transformers import AutoModelForSequenceClassification

    import pipeline.heads.mlp_model  # noqa: F401  (registers the mlp head's classes)

    try:
        return AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, problem_type="regression", use_safetensors=True, trust_remote_code=False
        )
    except OSError as error:
        raise ConfigError(f"cannot load safetensors weights from {source!r}: {error}") from error


class PairHead(Head):
    """A head that reads the pair as one sequence and outputs one logit."""

    @abstractmethod
    def new_model(self, source: str, model: ModelParams):
        """A fresh model of this head on the pretrained encoder at source."""

    def training_pairs(self, model: ModelParams, model_name: str) -> TrainingPairs:
        import datasets

        if model_name == model.name:  # the tokenize stage's output
            pairs = datasets.load_from_disk(str(TOKENIZED_PAIRS))
            return TrainingPairs(pairs["train"], pairs["validation"], load_tokenizer(str(TOKENIZER_DIR)))
        tokenizer = load_tokenizer(resolve_model_source(model_name), model.lowercase)
        tokenizer.model_max_length = model.max_length
        encoded = [
            encode_pairs(datasets.Dataset.from_json(str(split_path(CLEAN_DIR, split))), tokenizer, model.max_length, model.prefix)
            for split in ("train", "validation")
        ]
        return TrainingPairs(*encoded, tokenizer)

    def trainer(self, job: TrainingJob):
        from transformers import DataCollatorWithPadding, Trainer

        args = training_arguments(job)
        return Trainer(
            model=self.new_model(job.model_source, job.model),
            args=args,
            train_dataset=job.pairs.train,
            eval_dataset=job.pairs.validation,
            data_collator=DataCollatorWithPadding(job.pairs.tokenizer),
            processing_class=job.pairs.tokenizer,
            compute_loss_func=score_loss,
            compute_metrics=partial(validation_metrics, threshold=job.threshold),
            callbacks=list(job.callbacks),
        )

    def load(self, folder: str | Path) -> LoadedModel:
        return LoadedModel(load_sequence_classifier(str(folder)), load_model_tokenizer(folder))

    def save(self, model, tokenizer, folder: Path) -> None:
        model.save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(folder)

    def forward(self, loaded: LoadedModel, first: list[str], second: list[str], device: str) -> np.ndarray:
        import torch

        tokenizer = loaded.tokenizer
        encoded = tokenizer(
            first, second, truncation=True, max_length=tokenizer.model_max_length, padding=True, return_tensors="pt"
        ).to(device)
        with torch.inference_mode():
            logits = loaded.model(**encoded).logits
        return scores_from_logits(logits[:, 0].float().cpu().numpy())
