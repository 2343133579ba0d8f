"""How much a bi-encoder's forward passes would gain from batching sentences by length instead of pairs.

The scorers (serving/scorer.py raw_scores) sort a request batch's pairs by length and run serve.forward_batch_size
pairs per pass: both sentences of a pair share the pass, padded to the longest of the 2 x batch. A bi-encoder embeds
each sentence alone, so the sentences could instead be sorted by length on their own, with less padding. This times
both on the ONNX runtimes (in-process, one worker's threads, request batches of --batch pairs drawn from the
validation split, the two ways interleaved in each round) and counts the padded tokens of each.

    python bench/sentence_batching.py --folder models/model --runtimes onnx onnx-int8

The folder needs the runtimes' graphs (onnx/model.onnx; onnx/model_int8.onnx, which register keeps in the packaged
copy: the BentoML store's pair_model folder). Writes bench/results/sentence_batching.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"


def pair_order(first: list[str], second: list[str]) -> np.ndarray:
    """The pairs' indices in the order serving/scorer.py raw_scores batches them: characters of both, shortest first.
    (Its rule, restated: moving it to a function there would change a stage dependency and stale dvc.lock.)"""
    return np.argsort([len(a) + len(b) for a, b in zip(first, second, strict=True)], kind="stable")


def sentence_batched_scores(scorer, pairs: list[tuple[str, str]], pairs_per_pass: int) -> np.ndarray:
    """Raw scores with the batch's sentences sorted by token count and run 2 x pairs_per_pass to a pass. The counts
    tokenize each sentence once more than a built-in version would need to: timed, that favours pair batches."""
    from serving.scale import embedded_pair_scores

    sentences = scorer.model_inputs([a for a, _ in pairs]) + scorer.model_inputs([b for _, b in pairs])
    order = np.argsort(scorer.token_counts(sentences), kind="stable")
    embedded = scorer.encoder.encode([sentences[i] for i in order], batch_size=2 * pairs_per_pass)
    restored = np.empty_like(embedded)
    restored[order] = embedded
    return embedded_pair_scores(restored, len(pairs))


def padded_tokens(counts: np.ndarray, group: int) -> int:
    """Tokens computed when rows of `counts` (already in pass order) run `group` to a pass, padded to the longest."""
    chunks = (counts[start : start + group] for start in range(0, len(counts), group))
    return int(sum(chunk.max() * len(chunk) for chunk in chunks))


def padding(scorer, batches: list[list[tuple[str, str]]], pairs_per_pass: int) -> dict[str, float]:
    """Padded tokens per real token, pairs batched as raw_scores does (pair_order) vs sentences by token count."""
    real = by_pair = by_sentence = 0
    for batch in batches:
        first, second = scorer.model_inputs([a for a, _ in batch]), scorer.model_inputs([b for _, b in batch])
        tokens = np.array(scorer.token_counts(first + second))
        real += int(tokens.sum())
        longer = np.maximum(tokens[: len(batch)], tokens[len(batch) :])  # a pair's pass pads to its longer sentence
        by_pair += 2 * padded_tokens(longer[pair_order(first, second)], pairs_per_pass)
        by_sentence += padded_tokens(np.sort(tokens), 2 * pairs_per_pass)
    return {"pair_batches": round(by_pair / real, 3), "sentence_batches": round(by_sentence / real, 3)}


def timed(scorers: dict, batches: list, pairs_per_pass: int, rounds: int) -> dict[str, dict[str, float]]:
    """Best-of-rounds pairs/s of each runtime both ways, interleaved: each round times every runtime and way once."""
    ways = {
        "pair_batches": lambda scorer, batch: scorer.raw_scores(batch, batch_size=pairs_per_pass),
        "sentence_batches": lambda scorer, batch: sentence_batched_scores(scorer, batch, pairs_per_pass),
    }
    pairs = sum(len(batch) for batch in batches)
    best = {runtime: dict.fromkeys(ways, 0.0) for runtime in scorers}
    for _ in range(rounds):
        for runtime, scorer in scorers.items():
            for way, score in ways.items():
                score(scorer, batches[0])  # warm-up
                started = time.perf_counter()
                for batch in batches:
                    score(scorer, batch)
                best[runtime][way] = max(best[runtime][way], round(pairs / (time.perf_counter() - started), 1))
    return best


def main() -> None:
    from pipeline.config import load_params
    from pipeline.runtimes.selection import split_pairs
    from serving.onnx_scorer import OnnxPairScorer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True, help="a pair-model folder with the runtimes' ONNX graphs")
    parser.add_argument("--runtimes", nargs="+", default=["onnx", "onnx-int8"], choices=["onnx", "onnx-int8"])
    parser.add_argument("--batch", type=int, default=16, help="pairs per request batch (what adaptive batching merges)")
    parser.add_argument("--pairs", type=int, default=512, help="validation pairs scored per round (a seeded draw)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best of)")
    parser.add_argument("--out", type=Path, default=RESULTS / "sentence_batching.json")
    args = parser.parse_args()
    settings = load_params().serve
    pairs, _ = split_pairs("validation")
    drawn = np.random.default_rng(0).permutation(len(pairs))[: args.pairs]
    batches = [[pairs[i] for i in drawn[start : start + args.batch]] for start in range(0, len(drawn), args.batch)]
    scorers = {rt: OnnxPairScorer.from_folder(args.folder, runtime=rt, threads=settings.torch_threads) for rt in args.runtimes}
    per_pass = settings.forward_batch_size
    report = {
        "folder": str(args.folder),
        "batch": args.batch,
        "pairs_per_pass": per_pass,
        "threads": settings.torch_threads,
        "padded_per_real_token": padding(next(iter(scorers.values())), batches, per_pass),
        "pairs_per_second": timed(scorers, batches, per_pass, args.rounds),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"padded tokens per real token: {report['padded_per_real_token']}")
    for runtime, rates in report["pairs_per_second"].items():
        gain = rates["sentence_batches"] / rates["pair_batches"]
        by_pair, by_sentence = rates["pair_batches"], rates["sentence_batches"]
        print(f"{runtime:10} pairs/s: by pair {by_pair:6.1f}  by sentence {by_sentence:6.1f}  x{gain:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
