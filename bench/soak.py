"""Soak test: the packaged champion under steady load with stalled clients held open, and each process's
resident memory sampled, to see whether memory levels off.

One `bentoml serve service:KoreanSimilarity` (settings as shipped, serve: in params.yaml) over the model store
BENTOML_HOME (--home, default the repository's bentoml_home, filled by `make run`). For --duration seconds:
  - --concurrency clients post one pair each to /similarity_batch, back to back (bench/serve_load.py's
    no-repeat stream: every sentence unique, so no cache hit hides work), in one-minute segments;
  - --stalled connections each send a request's headers and part of its body, then nothing: the server
    answers 408 after serve.body_timeout_seconds and closes; the client reconnects at once, so that many
    stalled requests are always open;
  - the RSS of the server and each of its workers is sampled every --sample-every seconds.
The verdict compares each worker's RSS over the last half: growth = (mean of the last minute) / (mean of the
minute at the half) - 1; the target is under 5 %.

    python bench/soak.py --duration 600                      # 10 minutes, c=64, 200 stalled (the defaults)
    python bench/soak.py --home /path/to/bentoml_home --duration 120

Writes bench/results/soak.json (or --out): the settings, per-minute load figures, the RSS series, the verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serve_load import BASE_ENV, RESULTS, Server, load_pairs, run_load, stream  # noqa: E402


def stalled_request(body_bytes: int) -> bytes:
    """Headers announcing a body of body_bytes, and its first 10 bytes."""
    head = (
        "POST /similarity_batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_bytes}\r\n\r\n"
    )
    return head.encode() + b'{"pairs": '


async def hold_stalled(port: int, count: int, until: float, outcomes: Counter) -> None:
    """Keep `count` stalled requests open until the deadline: each reconnects as soon as the server drops it."""

    async def one() -> None:
        while (left := until - time.monotonic()) > 0:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError as error:
                outcomes[f"connect {type(error).__name__}"] += 1
                await asyncio.sleep(1)
                continue
            writer.write(stalled_request(400))
            try:
                answer = await asyncio.wait_for(reader.read(), timeout=left)  # until the server closes
                outcomes[answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed silently"] += 1
            except TimeoutError:
                outcomes["still open at the end"] += 1
            except OSError as error:
                outcomes[type(error).__name__] += 1
            finally:
                writer.close()

    await asyncio.gather(*(one() for _ in range(count)))


def process_rss(pid: int) -> dict[str, float]:
    """RSS in MB of the server process and each descendant, keyed 'pid name'."""
    import psutil

    root = psutil.Process(pid)
    rows = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            command = " ".join(process.cmdline())
            role = "worker" if "worker" in command else "server" if process.pid == pid else "helper"
            rows[f"{process.pid} {role}"] = round(process.memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            continue
    return rows


async def sample_rss(pid: int, every: float, until: float, started: float, series: list[dict[str, Any]]) -> None:
    while time.monotonic() < until:
        series.append({"t_s": round(time.monotonic() - started, 1), "rss_mb": process_rss(pid)})
        await asyncio.sleep(every)


async def load_in_segments(url: str, pairs, concurrency: int, until: float, segment: float) -> list[dict[str, Any]]:
    """Back-to-back load in segments of `segment` seconds until the deadline; one row per segment."""
    rows, requests = [], stream("no-repeat", pairs)
    while (left := until - time.monotonic()) > 1:
        rows.append(await run_load(url, requests, concurrency, min(segment, left), request_timeout=60))
        shown = ("seconds", "ok", "errors", "req_per_s", "p50_ms", "p99_ms")
        print(json.dumps({key: rows[-1][key] for key in shown}), flush=True)
    return rows


def growth_verdict(series: list[dict[str, Any]], duration: float, window: float = 60.0) -> dict[str, Any]:
    """Per worker: mean RSS in the minute before the half and in the last minute, and the growth between them."""
    half, end = duration / 2, series[-1]["t_s"]
    verdict = {}
    for key in {key for sample in series for key in sample["rss_mb"] if key.endswith("worker")}:

        def mean(low: float, high: float, key: str = key) -> float | None:
            values = [s["rss_mb"][key] for s in series if low <= s["t_s"] <= high and key in s["rss_mb"]]
            return round(sum(values) / len(values), 1) if values else None

        at_half, at_end = mean(half - window, half), mean(end - window, end)
        growth = round(100 * (at_end / at_half - 1), 2) if at_half and at_end else None
        verdict[key] = {"rss_mb_at_half": at_half, "rss_mb_at_end": at_end, "growth_pct": growth}
    return verdict


def stalled_counter(url: str) -> float:
    """The service's stalled_requests_total from /metrics (0 when it never counted one)."""
    import httpx

    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("stalled_requests_total"))


async def soak(url: str, port: int, pid: int, args, pairs) -> dict[str, Any]:
    started = time.monotonic()
    until = started + args.duration
    series: list[dict[str, Any]] = []
    stalled: Counter = Counter()
    load, *_ = await asyncio.gather(
        load_in_segments(f"{url}/similarity_batch", pairs, args.concurrency, until, args.segment),
        hold_stalled(port, args.stalled, until, stalled),
        sample_rss(pid, args.sample_every, until, started, series),
    )
    return {"load": load, "stalled_outcomes": dict(stalled), "rss": series}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=REPO / "bentoml_home", help="BENTOML_HOME holding the champion")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--stalled", type=int, default=200, help="stalled requests held open throughout")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--segment", type=float, default=60.0, help="seconds per load row")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()

    from pipeline.config import load_serve_settings
    from serving.ports import free_local_port

    settings = load_serve_settings(REPO / "params.yaml")
    port = free_local_port()
    env = {**os.environ, **BASE_ENV, "BENTOML_HOME": str(args.home.resolve())}
    command = [sys.executable, "-m", "bentoml", "serve", "service:KoreanSimilarity", "--host", "127.0.0.1", "--port", str(port)]
    server = Server("soak", command, env, port, args.out.parent / "soak_logs" / "server.log")
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        result = asyncio.run(soak(url, port, server.process.pid, args, load_pairs(1500)))
        counted = stalled_counter(url)
    finally:
        server.stop()
    errors = Counter()
    for row in result["load"]:
        errors.update(row["errors"])
    verdict = growth_verdict(result["rss"], args.duration)
    report = {
        "settings": {key: getattr(args, key) for key in ("duration", "concurrency", "stalled", "sample_every", "segment")},
        "serve_settings": settings.model_dump(),
        "model_store": str(args.home),
        "answered": sum(row["ok"] for row in result["load"]),
        "errors": dict(errors),
        "stalled_outcomes": result["stalled_outcomes"],
        "stalled_requests_total": counted,
        "rss_growth_last_half": verdict,
        "load": result["load"],
        "rss": result["rss"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({key: report[key] for key in ("answered", "errors", "stalled_outcomes", "stalled_requests_total")}))
    print(json.dumps(verdict, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
