"""The `bi` head: a sentence-transformers bi-encoder; a pair scores 5 x the cosine of its two embeddings.

Trained on label = score / 5 with the STS loss train.loss picks (STS_LOSSES: cosine -> CosineSimilarityLoss, an MSE
on the cosine; cosent -> CoSENTLoss and angle -> AnglELoss, which rank the batch's pairs by cosine or angle), and,
with train.nli_triplets, MultipleNegativesRankingLoss on NLI triplets beside it; each sentence is embedded alone,
so it is the head that can cache embeddings.
The trainer's pieces (batch sampler, evaluator, text datasets) live in bi_training.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import ConfigError
from pipeline.heads.base import Head, LoadedModel, TrainingJob, TrainingPairs, training_arguments
from pipeline.models import input_token_limit, tokenizer_overrides
from pipeline.paths import CLEAN_DIR
from pipeline.tables import split_path
from serving.scale import embedded_pair_scores

if TYPE_CHECKING:
    from pipeline.config import ModelParams

# train.loss -> the sentence-transformers loss class on the STS pairs (named here, imported only when a bi-encoder trains)
STS_LOSSES: dict[str, str] = {"cosine": "CosineSimilarityLoss", "cosent": "CoSENTLoss", "angle": "AnglELoss"}


def sts_loss(name: str, model):
    """train.loss `name` as sentence-transformers' loss on `model` (labels: score / 5)."""
    from sentence_transformers.sentence_transformer import losses

    return getattr(losses, STS_LOSSES[name])(model)


def load_bi_encoder(source: str, max_length: int | None = None, pooling: str = "mean", lowercase: bool | None = None):
    """A sentence-transformers bi-encoder: a saved one as is, or a plain encoder plus a pooling layer."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    try:
        if (Path(source) / "modules.json").is_file():
            model = SentenceTransformer(
                source, local_files_only=True, trust_remote_code=False, model_kwargs={"use_safetensors": True}
            )
        else:
            encoder = Transformer(
                source,
                model_kwargs={"use_safetensors": True},
                processor_kwargs=tokenizer_overrides(lowercase),
                max_seq_length=max_length,
            )
            model = SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), pooling)])
    except OSError as error:
        raise ConfigError(f"cannot load a bi-encoder from {source!r}: {error}") from error
    if max_length is not None:
        model.max_seq_length = max_length
    return model


class BiHead(Head):
    """Each sentence embedded alone (pooling over the encoder's tokens); score = 5 x cosine, clipped to [0, 5]."""

    trains_on_triplets = True
    losses = tuple(STS_LOSSES)
    exports_onnx = True  # one sentence encoder: transformer + pooling in one graph

    def training_pairs(self, model: ModelParams, model_name: str) -> TrainingPairs:
        import datasets

        # Clean text rows for any encoder: sentence-transformers tokenizes each sentence itself.
        splits = (datasets.Dataset.from_json(str(split_path(CLEAN_DIR, split))) for split in ("train", "validation"))
        return TrainingPairs(*splits)

    def trainer(self, job: TrainingJob):
        """sentence-transformers' trainer on text pairs (train.loss's STS loss on score / 5).

        With NLI triplets, multi-task: sentence-transformers' multi-dataset training alternates STS batches
        (that loss) and NLI batches (MultipleNegativesRankingLoss: premise, entailed, contradicting).
        """
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        from pipeline.heads.bi_training import LengthGroupedBatchSampler, PairScoreEvaluator, text_pairs, text_triplets

        args = training_arguments(
            job,
            SentenceTransformerTrainingArguments,
            train_sampling_strategy="random",  # batches come from the length-grouped batch sampler
            batch_sampler=LengthGroupedBatchSampler,
        )
        params, validation_rows = job.model, job.pairs.validation
        model = load_bi_encoder(job.model_source, params.max_length, params.pooling, params.lowercase)
        validation = text_pairs(validation_rows, params.prefix)
        evaluator = PairScoreEvaluator(
            validation["sentence1"], validation["sentence2"], validation_rows["score"], job.config.eval_batch_size, job.threshold
        )
        train_dataset, loss = text_pairs(job.pairs.train, params.prefix), sts_loss(job.config.loss, model)
        if job.nli is not None:
            train_dataset = {"sts": train_dataset, "nli": text_triplets(job.nli, params.prefix)}
            loss = {"sts": loss, "nli": MultipleNegativesRankingLoss(model)}
        return SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=None,  # the evaluator reports the validation loss too: no second pass over the split
            loss=loss,
            evaluator=evaluator,
            callbacks=list(job.callbacks),
        )

    def load(self, folder: str | Path) -> LoadedModel:
        model = load_bi_encoder(str(folder))
        model.max_seq_length = input_token_limit(folder, model.tokenizer)  # the length every runtime truncates at
        return LoadedModel(model, model.tokenizer)

    def save(self, model, tokenizer, folder: Path) -> None:
        model.save_pretrained(str(folder), safe_serialization=True)  # its own tokenizer and modules too

    def forward(self, loaded: LoadedModel, first: list[str], second: list[str], device: str) -> np.ndarray:
        import torch

        with torch.inference_mode():
            embedded = loaded.model.encode(first + second, batch_size=2 * len(first), convert_to_numpy=True)
        return embedded_pair_scores(embedded, len(first))

    def export_onnx(self, folder: Path, target: Path) -> Path:
        return self.export_model(self.load(folder).model, target)

    def export_model(self, model, target: Path) -> Path:
        """A loaded bi-encoder (the saved one, or one changed in memory: distill.py) as the sentence-encoder graph."""
        from pipeline.heads.bi_export import export_sentence_encoder

        return export_sentence_encoder(model, target)

    def encoder(self, model):
        return model[0].auto_model

    def with_cache(self, loaded: LoadedModel, size: int) -> LoadedModel:
        """Each sentence is embedded alone, so a repeated sentence's embedding is reused (an LRU of `size`)."""
        from serving.embedding_cache import EmbeddingCache

        return loaded if size < 1 else LoadedModel(EmbeddingCache(loaded.model, size), loaded.tokenizer)
