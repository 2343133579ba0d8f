"""Latency of a pair model as a worker serves it: one pair, and a batch of 32, timed in-process."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

BATCH = 32


def p95_ms(seconds: Sequence[float]) -> float:
    return round(float(np.percentile(np.asarray(seconds) * 1000.0, 95)), 1)


def measure_latency(scorer, pairs: Sequence[tuple[str, str]], repeats: int = 40, forward_batch_size: int = 4) -> dict[str, float]:
    """p50 / p95 milliseconds of scorer.score for one pair (repeats times) and for a batch of 32 (repeats / 4 times).

    Pairs cycle through `pairs`, so the model sees real lengths; two warm-up calls are not counted.
    """
    for start in range(2):
        scorer.score(pairs[start : start + 1], batch_size=forward_batch_size)
    one, batch = [], []
    for index in range(repeats):
        pair = [pairs[index % len(pairs)]]
        started = time.perf_counter()
        scorer.score(pair, batch_size=forward_batch_size)
        one.append(time.perf_counter() - started)
    for index in range(max(2, repeats // 4)):
        chunk = [pairs[(index * BATCH + offset) % len(pairs)] for offset in range(BATCH)]
        started = time.perf_counter()
        scorer.score(chunk, batch_size=forward_batch_size)
        batch.append(time.perf_counter() - started)
    return {
        "p50_ms_one_pair": round(float(np.median(one)) * 1000.0, 1),
        "p95_ms_one_pair": p95_ms(one),
        f"p50_ms_batch_{BATCH}": round(float(np.median(batch)) * 1000.0, 1),
        f"p95_ms_batch_{BATCH}": p95_ms(batch),
    }
