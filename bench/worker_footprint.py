"""What one service worker costs per runtime: RSS at idle and after load, process start to /readyz 200, req/s at
c=1 and c=32, and whether torch is mapped into the worker (libtorch in /proc/<pid>/maps).

Servers: `bentoml serve service:KoreanSimilarity` with one worker, one per --runtimes value (the pair model imported
once per runtime with that runtime built into it, as bench/serve_load.py does), and with --baseline REF the same
service from a checkout of REF (a git worktree) on the ONNX model: the "before" of a change, measured in the same
run. Rounds interleave the variants (the machine is noisy); each server is stopped by PID before the next starts.

    python bench/worker_footprint.py --folder models/model --baseline a4f04d1

Writes bench/results/worker_footprint.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serve_load import (  # noqa: E402
    BASE_ENV,
    RESULTS,
    Server,
    load_pairs,
    run_load,
    runtime_models,
    stream,
    warm_up,
    write_report,
)
from bench.soak import process_rss  # noqa: E402

HEADER = f"{'server':<18}{'round':>6}{'ready s':>9}{'idle MB':>9}{'loaded MB':>10}{'torch':>7}{'c=1 req/s':>11}{'c=32 req/s':>11}"


def worker_pids(pid: int) -> list[int]:
    """The BentoML worker processes under a server."""
    return [int(key.split()[0]) for key in process_rss(pid) if key.endswith("worker")]


def worker_rss_mb(pid: int) -> float:
    """RSS of the server's workers in MB (one worker here)."""
    return round(sum(mb for key, mb in process_rss(pid).items() if key.endswith("worker")), 1)


def maps_torch(pid: int) -> bool:
    """Whether libtorch is mapped into the process (torch imported)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def baseline_checkout(ref: str, where: Path) -> Path:
    """A git worktree of ref (reused when it exists): the service as it was before."""
    if not (where / "service.py").is_file():
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=True)  # one removed with its folder
        subprocess.run(["git", "worktree", "add", "--detach", str(where), ref], cwd=REPO, check=True, capture_output=True)
    return where


def baseline_model(home: Path, folder: Path, code_dir: Path) -> str:
    """The pair model with the ONNX graph the baseline's own code builds, imported by that code: its tag."""
    copy = home.parent / "pair_model-baseline-onnx"
    code = (
        "import shutil, sys\n"
        "from pipeline.runtimes import RUNTIMES\n"
        "from pipeline.stages.package import import_pair_model\n"
        f"copy = {str(copy)!r}\n"
        f"shutil.copytree({str(folder)!r}, copy, dirs_exist_ok=True)\n"
        "RUNTIMES['onnx'].build(__import__('pathlib').Path(copy))\n"
        "print(import_pair_model(copy, 'korean-sts-similarity', {'registry_version': 'baseline', 'runtime': 'onnx'}))\n"
    )
    env = {**os.environ, **BASE_ENV, "BENTOML_HOME": str(home), "PYTHONPATH": str(code_dir)}
    done = subprocess.run([sys.executable, "-c", code], cwd=code_dir, env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()[-1]


def start_server(name: str, code_dir: Path, home: Path, model_tag: str, logs: Path) -> Server:
    from serving.ports import free_local_port

    port = free_local_port()
    env = {**os.environ, **BASE_ENV, "BENTOML_HOME": str(home), "PYTHONPATH": str(code_dir)}
    env.update({"KSTS_SERVE_MODEL_NAME": model_tag, "KSTS_SERVE_WORKERS": "1"})
    command = [sys.executable, "-m", "bentoml", "serve", "service:KoreanSimilarity", "--host", "127.0.0.1", "--port", str(port)]
    return Server(name, command, env, port, logs / f"{name}.log", cwd=code_dir)


def measure(server: Server, pairs, duration: float, round_number: int) -> dict[str, Any]:
    """Start (from the server's code folder), idle RSS, warm-up, load at c=1 and c=32, loaded RSS; the server is stopped after."""
    server.start(timeout=300)
    try:
        time.sleep(3.0)  # idle: loaded and ready, no request yet
        pid = server.process.pid
        row = {"server": server.name, "round": round_number, "ready_s": round(server.ready_seconds, 1)}
        row["idle_worker_rss_mb"] = worker_rss_mb(pid)
        row["torch_in_worker"] = any(maps_torch(worker) for worker in worker_pids(pid))
        url = f"http://127.0.0.1:{server.port}/similarity_batch"
        asyncio.run(warm_up(url, pairs, 64))
        for concurrency in (1, 32):
            load = asyncio.run(run_load(url, stream("no-repeat", pairs, seed=concurrency), concurrency, duration, 30.0))
            row[f"c{concurrency}"] = load
        row["loaded_worker_rss_mb"] = worker_rss_mb(pid)
        return row
    finally:
        server.stop()


def table_row(row: dict[str, Any]) -> str:
    return (
        f"{row['server']:<18}{row['round']:>6}{row['ready_s']:>9}{row['idle_worker_rss_mb']:>9}{row['loaded_worker_rss_mb']:>10}"
        f"{'yes' if row['torch_in_worker'] else 'no':>7}{row['c1']['req_per_s']:>11}{row['c32']['req_per_s']:>11}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True, help="a trained pair-model folder (bi head), e.g. models/model")
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnx", "onnx-int8"], choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--baseline", help="git ref whose service serves the onnx model as the 'before' variant")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per concurrency level")
    parser.add_argument("--home", type=Path, default=RESULTS / "worker_footprint" / "bentoml_home")
    parser.add_argument("--out", type=Path, default=RESULTS / "worker_footprint.json")
    args = parser.parse_args()

    home = args.home.resolve()
    os.environ["BENTOML_HOME"] = str(home)
    tags = runtime_models(home, args.folder.resolve(), args.runtimes)
    variants = [(f"after-{name}", REPO, tags[name]) for name in args.runtimes if name in tags]
    if args.baseline:
        code_dir = baseline_checkout(args.baseline, home.parent / "baseline")
        variants.append((f"before-onnx@{args.baseline}", code_dir, baseline_model(home, args.folder.resolve(), code_dir)))
    pairs = load_pairs(1500)
    logs = args.out.parent / "worker_footprint_logs"
    rows = []
    print(HEADER, flush=True)
    for round_number in range(1, args.rounds + 1):
        for name, code_dir, tag in variants:
            rows.append(measure(start_server(name, code_dir, home, tag, logs), pairs, args.duration, round_number))
            print(table_row(rows[-1]), flush=True)
    graph_sizes = {
        folder.name: sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        for folder in sorted(home.parent.glob("pair_model-*"))
    }
    report = {
        "folder": str(args.folder),
        "model_tags": tags,
        "model_folder_bytes": graph_sizes,
        "baseline": args.baseline,
        "duration_s": args.duration,
        "results": rows,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
