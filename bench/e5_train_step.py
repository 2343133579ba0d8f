"""Fine-tuning step time of the embedded default (e5-small bi-encoder): frozen vs trainable word embeddings,
bf16 autocast vs fp32, through the pipeline's own finetune() (the path a trial takes).

Each variant trains --steps optimizer steps of --batch-size KorSTS train pairs (model.prefix applied; bf16
variants --bf16-steps, since a bf16 step took over a minute here); the first step is warm-up and not
counted. Variants run interleaved (A B C D A B C D): timing here drifts.
Needs models/base (run `dvc repro base` first).

    python bench/e5_train_step.py [--steps 8] [--rounds 2] [--out bench/results/e5_train_step.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_params, resolve_path
from pipeline.finetune import finetune
from pipeline.heads import TrainingPairs
from pipeline.paths import BASE_DIR
from pipeline.stages.download import mirror_splits
from pipeline.stages.preprocess import clean_split

VARIANTS = {
    "full-fp32": {"freeze_embeddings": False, "precision": "fp32"},
    "frozen-fp32": {"freeze_embeddings": True, "precision": "fp32"},
    "full-bf16": {"freeze_embeddings": False, "precision": "bf16"},
    "frozen-bf16": {"freeze_embeddings": True, "precision": "bf16"},
}


def step_timer(times: list[float]):
    """A Trainer callback recording each optimizer step's wall time (on a GPU, until its kernels have run: CUDA
    launches return before they finish)."""
    from transformers import TrainerCallback

    synchronize = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            synchronize()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            synchronize()
            times.append(time.perf_counter() - self.started)

    return StepTimer()


def main() -> None:
    import datasets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--bf16-steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("bench/results/e5_train_step.json"))
    args = parser.parse_args()
    params = load_params()
    splits = mirror_splits(resolve_path(params.data.mirror_dir))
    rows = {name: clean_split(splits[name], hangul_only=False)[0] for name in ("train", "validation")}
    columns = ("sentence1", "sentence2", "score")
    train = datasets.Dataset.from_list([{k: r[k] for k in columns} for r in rows["train"]])
    validation = datasets.Dataset.from_list([{k: r[k] for k in columns} for r in rows["validation"][:32]])
    model = params.model.model_copy(update={"head": "bi"})
    steps: dict[str, list[float]] = {name: [] for name in args.variants}
    for round_index in range(args.rounds):
        for name in args.variants:
            config = params.train.model_copy(
                update={
                    **VARIANTS[name],
                    "epochs": 1,
                    "batch_size": args.batch_size,
                    "max_train_pairs": args.batch_size * (args.bf16_steps if "bf16" in name else args.steps),
                    "seed": round_index,
                    "warmup_ratio": 0.0,
                }
            )
            times: list[float] = []
            pairs = TrainingPairs(train, validation)
            finetune(str(BASE_DIR), model, pairs, config, params.evaluate.threshold, callbacks=[step_timer(times)], quiet=True)
            steps[name] += times[1:]
            print(f"round {round_index} {name:12s} median step {statistics.median(times[1:]):.2f} s", flush=True)
    summary = {
        name: {"median_step_seconds": round(statistics.median(times), 3), "steps": len(times)} for name, times in steps.items()
    }
    baseline = summary.get("full-fp32", {}).get("median_step_seconds")
    for name, figures in summary.items():
        if baseline:
            figures["speedup_vs_full_fp32"] = round(baseline / figures["median_step_seconds"], 2)
        print(f"{name:12s} median {figures['median_step_seconds']:.2f} s/step ({args.batch_size} pairs)  {figures}")
    report = {
        "settings": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "threads": torch.get_num_threads(),
        },
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "summary": summary,
        "step_seconds": steps,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
