"""One fine-tuning run (an Optuna trial calls this), whatever the head.

The head (pipeline.heads) builds the trainer: transformers' Trainer for `cross` and `mlp`,
sentence-transformers' SentenceTransformerTrainer for `bi`. All report the same validation metrics (loss,
pearson, spearman, f1, mse on the 0-5 scale) at every epoch and keep the best epoch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline import distributed
from pipeline.heads import TrainingJob, TrainingPairs, head_named

if TYPE_CHECKING:
    from pipeline.config import ModelParams, TrainParams


@dataclass
class FinetuneResult:
    """The best epoch's validation metrics, the per-epoch history and the run's cost."""

    best_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    train_pairs: int = 0
    train_seconds: float = 0.0
    train_steps: int = 0  # optimizer steps (data-parallel processes split each epoch's batches)
    nli_triplets: int = 0  # NLI triplets trained beside the pairs


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


def freeze_word_embeddings(encoder) -> int:
    """Stop training the word-embedding matrix of an encoder; returns how many weights it holds.

    e5-small's matrix is 96M of its 118M weights: frozen, a CPU step ran 1.35x faster with the same
    validation Pearson (stack facts); its rows for words absent from the training pairs get no gradient anyway.
    """
    weight = encoder.get_input_embeddings().weight
    weight.requires_grad_(False)
    return weight.numel()


def finetune(
    model_source: str,
    model_params: ModelParams,
    pairs: TrainingPairs,
    config: TrainParams,
    threshold: float,
    callbacks: Sequence[Any] = (),
    best_metric: str = "pearson",
    quiet: bool = False,
    nli=None,
):
    """Fine-tune `model_source` with head `model_params.head`; returns (trained model, FinetuneResult).

    `pairs` come from the head's `training_pairs`; the model returned holds the best epoch's weights by validation
    `best_metric` (F1 counts "similar" at score >= `threshold`, the model's settings.threshold). `quiet` drops the
    per-epoch metric dicts from the console, keeping the progress bar. `nli`: NLI triplets, config.nli_triplets trained.
    """
    from transformers import set_seed
    from transformers.trainer_callback import ProgressCallback

    head = head_named(model_params.head)
    set_seed(config.seed)  # before loading, so a new head starts the same every run
    pairs = pairs._replace(train=select_train_pairs(pairs.train, config.max_train_pairs, config.seed))
    wants_nli = nli is not None and config.nli_triplets != 0
    nli = select_train_pairs(nli, config.nli_triplets, config.seed) if wants_nli else None
    with distributed.shared_temporary_directory(prefix="checkpoints-") as checkpoint_dir:
        job = TrainingJob(model_source, model_params, pairs, config, checkpoint_dir, best_metric, threshold, callbacks, nli)
        trainer = head.trainer(job)
        if config.freeze_embeddings:
            freeze_word_embeddings(head.encoder(trainer.model))
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
    result = FinetuneResult(
        best_metrics=max(history, key=lambda entry: entry[best_metric]),
        history=history,
        train_pairs=len(pairs.train),
        train_seconds=seconds,
        train_steps=trainer.state.global_step,
        nli_triplets=0 if nli is None else len(nli),
    )
    return trainer.model, result
