"""The `distilled-smooth-dynamic-matmul` int8 recipe (int8.py): a copy of the model trained to score well in int8.

Dynamic int8 of every MatMul, even after SmoothQuant (smooth.py), moves the fine-tuned default's scores too far for the
gate; keeping the most hurt MatMuls fp32 passes, at a cost in speed. This recipe keeps every MatMul int8 and changes the
weights instead: a copy of the model (the student) has each Linear that the fp32 graph runs as a weight MatMul compute
what the smoothed int8 graph will compute, fake-quant(x / s) @ fake-quant(W * s), where s is the smoothing plan's scale of
that MatMul's input, x is rounded as DynamicQuantizeLinear does (uint8, one scale per pass) and W as quantize_dynamic
does (int8, one scale per output channel), with gradients straight through the rounding (sensitivity.py simulates the
same rounding in numpy). With dropout off and the word embeddings frozen, the student learns to match the frozen fp32
model (the teacher) on training sentences, in DISTILL_PHASES; then it is exported, smoothed with the same scales and
every MatMul quantized. The gate judges the graph against the teacher's own scores, as it judges every recipe.

Only the bi head exports a graph (Head.exports_onnx), so the student is a sentence-transformers bi-encoder, and a pair
scores 5 x the cosine of its embeddings (serving/scale.py).
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from serving.scale import MAX_SCORE
from serving.text import model_text


@dataclass(frozen=True)
class Phase:
    """A stretch of distillation: `steps` optimizer steps, each over `passes` forward passes of `pairs_per_pass`
    training pairs (both sentences of each in one pass, as a worker batches them) or, with pairs=False, as many random
    training sentences; loss = mean(1 - cosine(student, teacher embedding)) + pair_weight x mean((student score -
    teacher score)^2) of the pass's pairs; AdamW at learning_rate, no weight decay."""

    steps: int
    pairs_per_pass: int
    learning_rate: float
    passes: int = 1
    pair_weight: float = 0.0
    pairs: bool = True


# Measured on the fine-tuned e5 default (2026-12-03, docs/serving.md): the first phase alone left a p99.5 shift of
# 0.130 at 1 pair a pass and 0.155 at 4 (refused); the second, shaped like a worker's full pass with the score in the
# loss, brought it to 0.120 and 0.137 (passes); 1e-5 in the second phase made both losses grow. ~21 min on 2 cores.
DISTILL_PHASES = (
    Phase(steps=400, pairs_per_pass=8, learning_rate=2e-5, pairs=False),
    Phase(steps=300, pairs_per_pass=4, learning_rate=3e-6, passes=2, pair_weight=1.0),
)
DISTILL_SEED = 0


def fake_uint8(values: torch.Tensor) -> torch.Tensor:
    """values rounded as DynamicQuantizeLinear rounds them (uint8 over [min(x, 0), max(x, 0)]); gradient straight."""
    low, high = values.detach().min().clamp(max=0.0), values.detach().max().clamp(min=0.0)
    scale = (high - low) / 255.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(-low / scale), 0, 255)
    rounded = (torch.clamp(torch.round(values / scale) + zero, 0, 255) - zero) * scale
    return values + (rounded - values).detach()


def fake_int8_per_channel(weight: torch.Tensor) -> torch.Tensor:
    """A torch Linear weight ([out, in]) rounded to symmetric int8, one scale per output channel; gradient straight."""
    scale = weight.detach().abs().amax(dim=1, keepdim=True) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    rounded = torch.clamp(torch.round(weight / scale), -127, 127) * scale
    return weight + (rounded - weight).detach()


class SmoothedInt8Weight(torch.nn.Module):
    """A weight parametrization, W -> fake-quant(W * s): the smoothed weight as the int8 graph will hold it."""

    def __init__(self, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_int8_per_channel(weight * self.scale)


def weight_digest(weight: np.ndarray) -> str:
    """A fingerprint of a MatMul weight as the graph holds it ([in, out]): how a Linear is found in the graph."""
    return hashlib.sha256(np.ascontiguousarray(weight, dtype=np.float32).tobytes()).hexdigest()


def input_scales(graph: Path, scales: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{weight digest: the smoothing scale of that MatMul's input (ones where the plan smooths none)} for every weight
    MatMul of the fp32 graph: the Linears the student rounds, found by their weights, not by node names."""
    import onnx

    from pipeline.runtimes.sensitivity import weight_matmuls

    nodes, weights = weight_matmuls(onnx.load(str(graph)))
    found = {}
    for node in nodes:
        weight = weights[node.input[1]]
        found[weight_digest(weight)] = scales.get(node.input[0], np.ones(weight.shape[0], dtype=np.float32))
    return found


def fake_quantized(encoder: torch.nn.Module, scales: dict[str, np.ndarray]) -> Callable[[], None]:
    """Make each Linear of encoder that is a weight MatMul of the graph (scales: input_scales) compute
    fake-quant(x / s) @ fake-quant(W * s)^T, by a forward pre-hook and a weight parametrization; returns the function
    that takes both off again, leaving the trained W."""
    from torch.nn.utils import parametrize

    undo = []
    for module in list(encoder.modules()):
        digest = weight_digest(module.weight.detach().numpy().T) if isinstance(module, torch.nn.Linear) else None
        if digest in scales:
            scale = torch.tensor(scales[digest], dtype=torch.float32)
            parametrize.register_parametrization(module, "weight", SmoothedInt8Weight(scale))
            hook = module.register_forward_pre_hook(lambda _module, args, s=scale: (fake_uint8(args[0] / s),))
            undo.append((module, hook))
    if not undo or len(undo) != len(scales):
        raise ValueError(f"{len(undo)} Linears of the model found for the graph's {len(scales)} weight MatMuls")

    def restore() -> None:
        for module, hook in undo:
            hook.remove()
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)

    return restore


def cpu_model(head, folder: Path):
    """The folder's saved model on the CPU, in eval mode (no dropout): what distillation trains and teaches with. On the
    CPU also on a GPU runner (sentence-transformers loads onto CUDA when it can): the graph is served on CPUs, and a GPU
    runner then distils the one a CPU runner does from the same weights."""
    return head.load(folder).model.to("cpu").eval()


def unit_embeddings(model, sentences: list[str]) -> torch.Tensor:
    """A sentence-transformers model's embeddings of sentences, one forward pass, scaled to unit length."""
    return torch.nn.functional.normalize(model(model.preprocess(sentences))["sentence_embedding"], dim=-1)


def distillation_loss(student, teacher, sentences: list[str], pair_weight: float) -> tuple[torch.Tensor, float, float]:
    """The loss of one pass (sentences: first and second of each pair, alternating), and its two terms: the mean
    1 - cosine of each sentence's student and teacher embeddings; the mean squared shift of the pairs' scores."""
    with torch.no_grad():
        target = unit_embeddings(teacher, sentences)
    embedded = unit_embeddings(student, sentences)
    embedding_loss = (1 - (embedded * target).sum(-1)).mean()
    shift = MAX_SCORE * ((embedded[0::2] * embedded[1::2]).sum(-1) - (target[0::2] * target[1::2]).sum(-1))
    score_loss = (shift**2).mean()
    return embedding_loss + pair_weight * score_loss, embedding_loss.item(), score_loss.item()


def pass_sentences(phase: Phase, pairs: list[tuple[str, str]], sentences: list[str], draw: random.Random) -> list[str]:
    """One pass's sentences: phase.pairs_per_pass of the pairs, or twice as many of the (distinct) sentences."""
    if phase.pairs:
        return [sentence for pair in draw.sample(pairs, min(len(pairs), phase.pairs_per_pass)) for sentence in pair]
    return draw.sample(sentences, min(len(sentences), 2 * phase.pairs_per_pass))


def distill(student, teacher, pairs: Sequence[tuple[str, str]], phases: Sequence[Phase], seed: int) -> list[list[float]]:
    """Train student (fake-quantized, its trainable parameters only) to match teacher on the training pairs' text;
    each phase's per-step (embedding loss + score loss, unweighted) for the record and the tests."""
    torch.manual_seed(seed)
    draw, record = random.Random(seed), []
    pairs, sentences = list(pairs), sorted({sentence for pair in pairs for sentence in pair})
    for phase in phases:
        trained = [parameter for parameter in student.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(trained, lr=phase.learning_rate, weight_decay=0.0)
        record.append([])
        for _ in range(phase.steps):
            optimizer.zero_grad()
            step_losses = []
            for _ in range(phase.passes):  # each pass's graph is freed by its own backward
                loss, embedding_loss, score_loss = distillation_loss(
                    student, teacher, pass_sentences(phase, pairs, sentences, draw), phase.pair_weight
                )
                (loss / phase.passes).backward()
                step_losses.append(embedding_loss + score_loss)
            optimizer.step()
            record[-1].append(float(np.mean(step_losses)))
        ends = (np.mean(record[-1][:20]), np.mean(record[-1][-20:])) if record[-1] else (0.0, 0.0)
        print(f"distill: phase {len(record)}/{len(phases)}: {phase.steps} steps, loss {ends[0]:.5f} -> {ends[1]:.5f}")
    return record


def distilled_graph(source: Path, target: Path, batches, phases: Sequence[Phase], seed: int = DISTILL_SEED) -> Path:
    """The recipe: distill the model of the fp32 graph at source (<folder>/onnx/model.onnx) on the calibration set's
    training pairs in `phases`, then smooth the student's graph with the set's smoothing plan of source and quantize
    every MatMul (dynamic int8) into target."""
    from pipeline.heads import head_named
    from pipeline.models import ModelSettings
    from pipeline.runtimes.embedding_table import compact_embedding_table
    from pipeline.runtimes.onnx import quantize_int8
    from pipeline.runtimes.smooth import smooth_graph

    if not batches.training_pairs:
        raise ValueError("distillation needs training pairs")
    folder, plan = source.parent.parent, batches.smoothing_plan(source)
    settings = ModelSettings.load(folder)
    text = [tuple(model_text(pair, settings.hangul_only, settings.prefix)) for pair in batches.training_pairs]
    head = head_named(settings.head)
    teacher, student = cpu_model(head, folder), cpu_model(head, folder)
    encoder = head.encoder(student)
    getattr(encoder, "embeddings", encoder.get_input_embeddings()).requires_grad_(False)
    restore = fake_quantized(encoder, input_scales(source, plan.scales))
    distill(student, teacher, text, phases, seed)
    restore()
    with tempfile.TemporaryDirectory() as scratch:
        exported, fp32, smoothed = (Path(scratch) / name for name in ("exported.onnx", "fp32.onnx", "smoothed.onnx"))
        head.export_model(student, exported)
        compact_embedding_table(exported, fp32)
        smooth_graph(fp32, smoothed, plan.scales)
        return quantize_int8(smoothed, target, op_types=("MatMul",))
