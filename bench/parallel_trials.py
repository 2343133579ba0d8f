"""Trials per minute of the train stage's study with 1 vs 2 processes on one machine: 2 local workers
(study.workers, two trials at once) or 2 data-parallel ranks (train.data_parallel, one trial at a time).

Each variant runs `python -m pipeline.stages.train` in its own work folder on a small slice of the mirror
(fresh SQLite stores), on the embedded default model with a small training budget per trial, and times
the whole stage (process starts included). On 2 CPU cores expect little gain: the point is that the
recipe works and what it costs.

    python bench/parallel_trials.py [--vary workers|data_parallel] [--trials 4] [--train-pairs 96] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.toy_models import write_small_mirror  # noqa: E402  (after the sys.path line)

VARIED_KEY = {"workers": ("study", "workers"), "data_parallel": ("train", "data_parallel")}


def prepare(work: Path, mirror: Path, trials: int, vary: str, processes: int, train_pairs: int) -> None:
    """A work folder with params for the study (`vary` set to `processes`) and the stages before train already run."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["mirror_dir"] = str(write_small_mirror(mirror, work / "mirror", train_rows=400, dev_rows=100, test_rows=60))
    params["train"].update(max_train_pairs=train_pairs, epochs=1)
    params["study"].update(n_trials=trials, pruner="none")
    params["study"]["search"].update(epochs=[1, 1])
    section, key = VARIED_KEY[vary]
    params[section][key] = processes
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for stage in ("download", "preprocess", "tokenize"):
        subprocess.run([sys.executable, "-m", f"pipeline.{stage}"], cwd=work, env=env, check=True, capture_output=True)


def timed_study(work: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline.stages.train"],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vary", choices=sorted(VARIED_KEY), default="workers")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--train-pairs", type=int, default=96)
    parser.add_argument("--mirror", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, help="default: bench/results/parallel_trials.json (workers), data_parallel.json")
    args = parser.parse_args()
    out = args.out or REPO / "bench/results" / ("parallel_trials.json" if args.vary == "workers" else "data_parallel.json")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as scratch:
        for processes in (1, 2):
            work = Path(scratch) / f"{args.vary}-{processes}"
            work.mkdir()
            prepare(work, args.mirror, args.trials, args.vary, processes, args.train_pairs)
            seconds = timed_study(work)
            results.append({args.vary: processes, "trials": args.trials, "seconds": round(seconds, 1)})
            rate = 60 * args.trials / seconds
            print(f"{args.vary}={processes}: {args.trials} trials in {seconds:.0f} s = {rate:.2f} trials/min")
    for row in results:
        row["trials_per_minute"] = round(60 * row["trials"] / row["seconds"], 2)
    report = {
        "model": "embedded default (MiniLM), head from params.yaml",
        "varied": ".".join(VARIED_KEY[args.vary]),
        "train_pairs_per_trial": args.train_pairs,
        "cpu_count": os.cpu_count(),
        "results": results,
        "speedup": round(results[0]["seconds"] / results[1]["seconds"], 2),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"speedup 2 vs 1 ({args.vary}): {report['speedup']}x -> {out}")


if __name__ == "__main__":
    main()
