"""Every int8 recipe of a trained pair model: its gate figures on the validation split and its speed, side by side.

The register stage stops at the first recipe that passes (pipeline/runtimes/selection.py); this builds them all, so
the order of INT8_RECIPES and the gate's limits can be judged on measurements. Each graph is built into a copy of
the folder, gated against fp32 torch exactly as register gates it (serve: params), then timed in-process with one
worker's threads: pairs/s scoring validation pairs in serve.forward_batch_size batches, the runtimes timed in interleaved
rounds (fp32 ONNX too) so the machine's noise falls on all of them alike.

    python bench/int8_recipes.py --folder models/model
    python bench/int8_recipes.py --folder models/model --recipes dynamic-matmul smooth-dynamic-matmul --rounds 5

Writes bench/results/int8_recipes.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"


def gate_every_recipe(folder: Path, names: list[str], settings) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Each named recipe's gate figures (validation, fp32 torch reference), and its graph kept in a folder of its own."""
    from pipeline.models import ModelSettings
    from pipeline.paths import ONNX_DIR
    from pipeline.runtimes import RUNTIMES
    from pipeline.runtimes.gate import GateRule
    from pipeline.runtimes.int8 import INT8_RECIPES
    from pipeline.runtimes.selection import GateTrial, split_pairs, training_sentences

    (pairs, gold), (training_pairs, _) = split_pairs("validation"), split_pairs("train")
    rule, threshold = GateRule.from_settings(settings), ModelSettings.load(folder).threshold
    trial = GateTrial(folder, pairs, gold, rule, threshold, training_sentences(training_pairs), training_pairs=training_pairs)
    graph = folder / ONNX_DIR / str(RUNTIMES["onnx-int8"].graph)
    figures, graphs = [], {}
    for recipe in (recipe for recipe in INT8_RECIPES if recipe.name in names):
        started = time.perf_counter()
        result = trial.gate("onnx-int8", recipe)
        seconds = round(time.perf_counter() - started, 1)
        if not result.passed:  # the gate removed its graph: built again, to be timed
            RUNTIMES["onnx-int8"].build(folder, recipe, trial.batches)
        graphs[recipe.name] = graph.rename(graph.with_name(f"{recipe.name}.onnx.kept"))  # not *.onnx: no runtime's graph
        figures.append({**result.__dict__, "build_and_gate_seconds": seconds})
        print(f"{recipe.name}: {result.reason}", flush=True)
    return figures, graphs


def pairs_per_second(
    folder: Path, graphs: dict[str, Path], pairs: list, rounds: int, threads: int, batch: int
) -> dict[str, float]:
    """Best-of-rounds pairs/s of each graph (and fp32 ONNX) scoring `pairs` as a worker does (forward batches of `batch`
    pairs), interleaved: each round times every graph once."""
    from pipeline.paths import ONNX_DIR
    from pipeline.runtimes import RUNTIMES
    from serving.onnx_scorer import OnnxPairScorer

    int8 = folder / ONNX_DIR / str(RUNTIMES["onnx-int8"].graph)
    scorers = {"onnx (fp32)": OnnxPairScorer.from_folder(folder, runtime="onnx", threads=threads)}
    for name, path in graphs.items():
        shutil.copyfile(path, int8)
        scorers[name] = OnnxPairScorer.from_folder(folder, runtime="onnx-int8", threads=threads)
    best = dict.fromkeys(scorers, 0.0)
    for _ in range(rounds):
        for name, scorer in scorers.items():
            scorer.score(pairs[:batch], batch_size=batch)  # warm-up
            started = time.perf_counter()
            scorer.score(pairs, batch_size=batch)
            best[name] = max(best[name], len(pairs) / (time.perf_counter() - started))
    return {name: round(value, 1) for name, value in best.items()}


def main() -> None:
    from pipeline.config import load_params
    from pipeline.runtimes.int8 import INT8_RECIPES
    from pipeline.runtimes.selection import split_pairs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True, help="a trained pair-model folder, e.g. models/model")
    parser.add_argument(
        "--recipes", nargs="+", default=[recipe.name for recipe in INT8_RECIPES], choices=[r.name for r in INT8_RECIPES]
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best of)")
    parser.add_argument("--pairs", type=int, default=128, help="validation pairs timed per round")
    parser.add_argument("--out", type=Path, default=RESULTS / "int8_recipes.json")
    args = parser.parse_args()
    settings = load_params().serve
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(shutil.copytree(args.folder, Path(scratch) / "model"))
        figures, graphs = gate_every_recipe(folder, args.recipes, settings)
        pairs, _ = split_pairs("validation")
        batch = settings.forward_batch_size
        speed = pairs_per_second(folder, graphs, pairs[: args.pairs], args.rounds, settings.torch_threads, batch)
    report = {
        "folder": str(args.folder),
        "gate": figures,
        "pairs_per_second": speed,
        "threads": settings.torch_threads,
        "batch": batch,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{'recipe':32} {'F1 d':>7} {'Pearson d':>9} {'p99.5':>6} {'max':>6} {'gate':>7} {'pairs/s':>7} {'vs fp32':>7}")
    fp32 = speed["onnx (fp32)"]
    print(f"{'onnx (fp32)':32} {'':>7} {'':>9} {'':>6} {'':>6} {'':>7} {fp32:7.1f} {1.0:7.2f}")
    for entry in figures:
        rate = speed[entry["recipe"]]
        print(
            f"{entry['recipe']:32} {entry['f1_delta']:7.4f} {entry['pearson_delta']:9.4f} {entry['percentile_score_shift']:6.3f} "
            f"{entry['max_score_shift']:6.3f} {'pass' if entry['passed'] else 'refuse':>7} {rate:7.1f} {rate / fp32:7.2f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
