"""The interface every head implements, and the training arguments all heads share.

A head turns a base encoder into a pair scorer. It owns everything that differs between heads: what a
trial trains on, the trainer, how a saved model loads, saves and scores, and where its encoder sits
(for freezing). Nothing outside pipeline/heads/ branches on the head's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from pipeline import distributed
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config import ModelParams, TrainParams


class TrainingPairs(NamedTuple):
    """What a trial trains and validates on, in the head's own format, and the tokenizer (None if the model has its own)."""

    train: Any
    validation: Any
    tokenizer: Any = None


class LoadedModel(NamedTuple):
    """A saved pair model in memory: the model (on its device, in eval mode) and its tokenizer."""

    model: Any
    tokenizer: Any


@dataclass(frozen=True)
class TrainingJob:
    """One fine-tuning run as a head's trainer sees it."""

    model_source: str  # the base encoder's folder or hub id
    model: ModelParams
    pairs: TrainingPairs
    config: TrainParams
    checkpoint_dir: str
    best_metric: str  # validation metric that picks the best epoch
    threshold: float  # validation F1 counts "similar" at score >= threshold (the saved model's settings.threshold)
    callbacks: Sequence[Any] = ()
    nli: Any = None  # NLI triplets to train beside the pairs (heads with trains_on_triplets), or None


class Head(ABC):
    """One way to score a sentence pair with an encoder."""

    trains_on_triplets: bool = False  # can train NLI triplets (MultipleNegativesRankingLoss) beside the pairs
    losses: tuple[str, ...] = ("cosine",)  # the train.loss values its trainer takes (cosine: a regression on the score)
    exports_onnx: bool = False  # export_onnx writes a sentence-encoder graph: the torch-free runtime can serve it

    @abstractmethod
    def training_pairs(self, model: ModelParams, model_name: str) -> TrainingPairs:
        """The train and validation splits for encoder `model_name` (the base stage's model.name or a searched one)."""

    @abstractmethod
    def trainer(self, job: TrainingJob):
        """A transformers Trainer (or subclass) ready to train the job; its `model` is what gets saved."""

    @abstractmethod
    def load(self, folder: str | Path) -> LoadedModel:
        """A saved model folder of this head (safetensors; never remote code)."""

    @abstractmethod
    def save(self, model, tokenizer, folder: Path) -> None:
        """Write the trained model (safetensors) and its tokenizer into an empty folder."""

    @abstractmethod
    def forward(self, loaded: LoadedModel, first: list[str], second: list[str], device: str) -> np.ndarray:
        """Raw 0-5 scores of a batch of (already normalized and prefixed) sentence pairs."""

    @abstractmethod
    def encoder(self, model):
        """The transformers encoder inside a model of this head (its word embeddings may be frozen)."""

    def export_onnx(self, folder: Path, target: Path) -> Path:
        """The saved model in folder as the ONNX sentence-encoder graph (input_ids, attention_mask -> sentence_embedding)
        that serving/onnx_scorer.py scores with; only heads with exports_onnx have one."""
        raise NotImplementedError(f"{type(self).__name__} has no ONNX export (exports_onnx is False)")

    def with_cache(self, loaded: LoadedModel, size: int) -> LoadedModel:
        """The model with a cache of repeated work in front of it; heads that score the pair as one input have none."""
        return loaded


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


def training_arguments(job: TrainingJob, arguments_class=None, **overrides: Any):
    """TrainingArguments for one run: linear warmup, AdamW, length-grouped batches, best epoch by `job.best_metric`.

    Under torchrun Trainer trains data-parallel by itself (DDP over NCCL on GPUs); on CPU it needs to be
    told to use the gloo backend.
    """
    import torch
    from transformers import TrainingArguments

    config, cuda = job.config, torch.cuda.is_available()
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere+: fp32 accuracy for training, faster
        torch.backends.cudnn.allow_tf32 = True
    settings: dict[str, Any] = {
        "output_dir": job.checkpoint_dir,
        "num_train_epochs": config.epochs,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.eval_batch_size,
        "weight_decay": config.weight_decay,
        "warmup_steps": config.warmup_ratio,  # a float below 1 is a ratio of all steps in transformers 5
        "lr_scheduler_type": "linear",
        "optim": "adamw_torch",
        "train_sampling_strategy": "group_by_length",
        **dict.fromkeys(("eval_strategy", "save_strategy", "logging_strategy"), "epoch"),
        "save_total_limit": 1,
        "save_only_model": True,
        "load_best_model_at_end": True,
        "metric_for_best_model": job.best_metric,
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
