"""One fine-tuning run (an Optuna trial calls this), for each head.

`cross` and `mlp` train on tokenized pairs with transformers' Trainer; `bi` trains on text pairs with
sentence-transformers' SentenceTransformerTrainer (a Trainer subclass). Both report the same validation
metrics (loss, pearson, spearman, f1, mse on the 0-5 scale) at every epoch and keep the best epoch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline import distributed
from pipeline.config import ModelParams, TrainParams
from pipeline.errors import ConfigError
from pipeline.metrics import MAX_SCORE, SIMILAR_AT, similarity_metrics
from pipeline.models import load_bi_encoder, load_cross_encoder, load_mlp_model
from pipeline.scoring import scores_from_logits


@dataclass
class FinetuneResult:
    """The best epoch's validation metrics, the per-epoch history and the run's cost."""

    best_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    train_pairs: int = 0
    train_seconds: float = 0.0
    train_steps: int = 0  # optimizer steps (data-parallel processes split each epoch's batches)


def _bar_only_progress():
    from transformers.trainer_callback import ProgressCallback

    class BarOnlyProgress(ProgressCallback):
        """transformers' progress bar without the metric dict it prints at every log."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    return BarOnlyProgress


def select_train_pairs(dataset, max_pairs: int | None, seed: int):
    """A seeded random subset of at most max_pairs rows (all rows when max_pairs is None)."""
    if max_pairs is None or max_pairs >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_pairs))


def score_loss(outputs, labels, num_items_in_batch=None):
    """Binary cross-entropy of sigmoid(logit) against score / 5, as sentence-transformers' CrossEncoder trains.

    Measured on MiniLM/KorSTS: plain MSE on the raw 0-5 score collapsed to predicting the mean
    (validation Pearson 0.06 after one epoch); this loss keeps learning (README: the default model).
    """
    import torch

    logits = outputs["logits"].squeeze(-1)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype) / MAX_SCORE)


def validation_metrics(eval_prediction) -> dict[str, float]:
    """Trainer's compute_metrics on 0-5 scores, mapped from logits exactly as scoring maps them.

    An undefined correlation (constant predictions) counts as 0 so best-checkpoint selection still works.
    """
    predicted = scores_from_logits(np.asarray(eval_prediction.predictions).reshape(-1))
    gold = np.asarray(eval_prediction.label_ids).reshape(-1)
    metrics = similarity_metrics(gold, predicted, SIMILAR_AT)
    return {name: (0.0 if value is None else float(value)) for name, value in metrics.items() if name != "pairs"}


def mixed_precision(choice: str, cuda: bool, bf16_supported: bool) -> dict[str, bool]:
    """train.precision -> Trainer's bf16 / fp16 flags.

    auto: bf16 on GPUs that support it (Ampere or newer), fp16 (with Trainer's gradient scaler) on older
    GPUs, full precision on CPU. fp16 needs CUDA; bf16 also runs on CPU (autocast), slower on most CPUs.
    """
    if choice == "auto":
        return {"bf16": cuda and bf16_supported, "fp16": cuda and not bf16_supported}
    if choice == "fp16" and not cuda:
        raise ConfigError("train.precision fp16 needs a CUDA GPU; use auto, fp32 or bf16")
    return {"bf16": choice == "bf16", "fp16": choice == "fp16"}


def training_arguments(config: TrainParams, checkpoint_dir: str, arguments_class=None, **overrides: Any):
    """TrainingArguments for one run: linear warmup, AdamW, length-grouped batches, best epoch by Pearson.

    Under torchrun Trainer trains data-parallel by itself (DDP over NCCL on GPUs); on CPU it needs to be
    told to use the gloo backend.
    """
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere+: fp32 accuracy for training, faster
        torch.backends.cudnn.allow_tf32 = True
    settings: dict[str, Any] = {
        "output_dir": checkpoint_dir,
        "num_train_epochs": config.epochs,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.eval_batch_size,
        "weight_decay": config.weight_decay,
        "warmup_steps": config.warmup_ratio,  # a float below 1 is a ratio of all steps in transformers 5
        "lr_scheduler_type": "linear",
        "optim": "adamw_torch",
        "train_sampling_strategy": "group_by_length",
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "epoch",
        "save_total_limit": 1,
        "save_only_model": True,
        "load_best_model_at_end": True,
        "metric_for_best_model": "pearson",
        "greater_is_better": True,
        "seed": config.seed,
        "data_seed": config.seed,
        "report_to": "none",
        "disable_tqdm": False,
        "dataloader_pin_memory": cuda,  # pinning only helps host-to-GPU copies
        "torch_compile": config.torch_compile,
        **mixed_precision(config.precision, cuda, cuda and torch.cuda.is_bf16_supported()),
    }
    if not cuda and settings["bf16"]:
        settings.update(use_cpu=True)  # bf16 autocast on the CPU (AVX-512 bf16 here); Trainer refuses it otherwise
    if distributed.active() and not cuda:
        settings.update(use_cpu=True, ddp_backend="gloo")
    settings.update(overrides)
    return (arguments_class or TrainingArguments)(**settings)


def pair_trainer(model_source: str, model_params: ModelParams, train_pairs, validation_pairs, tokenizer, args, callbacks):
    """transformers' Trainer for the `cross` and `mlp` heads, on tokenized pairs."""
    from transformers import DataCollatorWithPadding, Trainer

    if model_params.head == "mlp":
        model = load_mlp_model(model_source, model_params.pooling, model_params.mlp_hidden, model_params.mlp_dropout)
    else:
        model = load_cross_encoder(model_source)
    return Trainer(
        model=model,
        args=args,
        train_dataset=train_pairs,
        eval_dataset=validation_pairs,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_loss_func=score_loss,
        compute_metrics=validation_metrics,
        callbacks=list(callbacks),
    )


def bi_encoder_trainer(
    model_source: str, model_params: ModelParams, train_pairs, validation_pairs, config: TrainParams, args, callbacks, nli=None
):
    """sentence-transformers' trainer for the `bi` head, on text pairs (CosineSimilarityLoss on score / 5).

    With NLI triplets, multi-task: sentence-transformers' multi-dataset training alternates STS batches
    (CosineSimilarityLoss) and NLI batches (MultipleNegativesRankingLoss: premise, entailed, contradicting).
    """
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss, MultipleNegativesRankingLoss

    from pipeline.bi_encoder import PairScoreEvaluator, text_pairs, text_triplets

    model = load_bi_encoder(model_source, model_params.max_length, model_params.pooling, model_params.lowercase)
    validation = text_pairs(validation_pairs, model_params.prefix)
    evaluator = PairScoreEvaluator(
        validation["sentence1"], validation["sentence2"], validation_pairs["score"], config.eval_batch_size
    )
    train_dataset, loss = text_pairs(train_pairs, model_params.prefix), CosineSimilarityLoss(model)
    if nli is not None:
        train_dataset = {"sts": train_dataset, "nli": text_triplets(nli, model_params.prefix)}
        loss = {"sts": loss, "nli": MultipleNegativesRankingLoss(model)}
    return SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=None,  # the evaluator reports the validation loss too: no second pass over the split
        loss=loss,
        evaluator=evaluator,
        callbacks=list(callbacks),
    )


def freeze_word_embeddings(model) -> int:
    """Stop training the word-embedding matrix (any head); returns how many weights it holds.

    e5-small's matrix is 96M of its 118M weights: frozen, a CPU step ran 1.35x faster with the same
    validation Pearson (stack facts); its rows for words absent from the training pairs get no gradient anyway.
    """
    from sentence_transformers import SentenceTransformer

    from pipeline.heads import PairMlpModel

    if isinstance(model, SentenceTransformer):
        encoder = model[0].auto_model
    elif isinstance(model, PairMlpModel):
        encoder = model.encoder
    else:
        encoder = model
    weight = encoder.get_input_embeddings().weight
    weight.requires_grad_(False)
    return weight.numel()


def finetune(
    model_source: str,
    model_params: ModelParams,
    train_pairs,
    validation_pairs,
    tokenizer,
    config: TrainParams,
    callbacks: Sequence[Any] = (),
    best_metric: str = "pearson",
    quiet: bool = False,
    nli=None,
):
    """Fine-tune `model_source` with head `model_params.head`; returns (trained model, FinetuneResult).

    Pairs are tokenized (cross, mlp) or clean text rows with sentence1, sentence2, score (bi). The returned
    model holds the best epoch's weights by the validation `best_metric`. `quiet` keeps the progress bar
    but drops the per-epoch metric dicts from the console (a study prints one line per trial). `nli`: the
    clean NLI triplets (bi head), of which config.nli_triplets are trained beside the pairs.
    """
    from transformers import set_seed
    from transformers.trainer_callback import ProgressCallback

    set_seed(config.seed)  # before loading, so a new head starts the same every run
    train_pairs = select_train_pairs(train_pairs, config.max_train_pairs, config.seed)
    with distributed.shared_temporary_directory(prefix="checkpoints-") as checkpoint_dir:
        if model_params.head == "bi":
            from sentence_transformers import SentenceTransformerTrainingArguments

            from pipeline.bi_encoder import LengthGroupedBatchSampler

            args = training_arguments(
                config,
                checkpoint_dir,
                SentenceTransformerTrainingArguments,
                metric_for_best_model=best_metric,
                train_sampling_strategy="random",  # batches come from the length-grouped batch sampler
                batch_sampler=LengthGroupedBatchSampler,
            )
            if nli is not None and config.nli_triplets != 0:
                nli = select_train_pairs(nli, config.nli_triplets, config.seed)
            else:
                nli = None
            trainer = bi_encoder_trainer(model_source, model_params, train_pairs, validation_pairs, config, args, callbacks, nli)
        else:
            args = training_arguments(config, checkpoint_dir, metric_for_best_model=best_metric)
            trainer = pair_trainer(model_source, model_params, train_pairs, validation_pairs, tokenizer, args, callbacks)
        if config.freeze_embeddings:
            freeze_word_embeddings(trainer.model)
        if quiet:
            trainer.remove_callback(ProgressCallback)
            trainer.add_callback(_bar_only_progress())
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        history = [
            {key.removeprefix("eval_"): value for key, value in entry.items()}
            for entry in trainer.state.log_history
            if "eval_pearson" in entry
        ]
    best = max(history, key=lambda entry: entry[best_metric])
    result = FinetuneResult(
        best_metrics=best,
        history=history,
        train_pairs=len(train_pairs),
        train_seconds=seconds,
        train_steps=trainer.state.global_step,
    )
    return trainer.model, result
