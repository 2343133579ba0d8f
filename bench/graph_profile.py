"""Where a served ONNX graph spends its time: ONNX Runtime's own profiler, summed per operator type.

Each graph is scored as a worker scores it (serving/onnx_scorer.py's OnnxPairScorer on serve.torch_threads threads:
the model's prefix, the length sort, tokenization and truncation, serve.forward_batch_size pairs a forward pass) on
validation pairs. The kernel times come from `SessionOptions.enable_profiling`; the wall rate (tokenizing included)
is timed with profiling on, so it is a little below an unprofiled run's.

    python bench/graph_profile.py --folder models/model
    python bench/graph_profile.py --folder models/model --graph bench/results/serve_load/pair_model-onnx/onnx/model.onnx

Default graph: the packaged champion's int8 graph (reports/package.json, as bench/serve_load.py finds it). Writes
bench/results/graph_profile.json (or --out) and prints, per graph, the operator types by their share of kernel time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

RESULTS = REPO / "bench" / "results"


def operator_times(profile_file: str) -> tuple[Counter, Counter]:
    """Microseconds and calls per operator type in an ONNX Runtime profile (its `Node` kernel-time events)."""
    spent, calls = Counter(), Counter()
    for event in json.loads(Path(profile_file).read_text(encoding="utf-8")):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            spent[event["args"]["op_name"]] += event["dur"]
            calls[event["args"]["op_name"]] += 1
    return spent, calls


def profile_graph(
    graph: Path, folder: Path, pairs: list[tuple[str, str]], threads: int, pairs_per_pass: int, scratch: Path
) -> dict:
    """One graph's wall rate (pairs/s through the service's scoring path, profiling on) and each operator type's share
    of kernel time. The scorer is the worker's (OnnxPairScorer.raw_scores: prefix, length sort, tokenization, one pass
    per pairs_per_pass pairs); only its session is swapped for one with the profiler on."""
    from serving.onnx_scorer import OnnxPairScorer, OnnxSentenceEncoder, inference_session
    from serving.pair_model import ModelSettings

    encoder = OnnxSentenceEncoder(graph, folder, threads)
    encoder.session = inference_session(graph, threads, enable_profiling=True, profile_file_prefix=str(scratch / graph.stem))
    scorer = OnnxPairScorer(encoder, encoder, ModelSettings.load(folder), None)
    scorer.raw_scores(pairs[: 4 * pairs_per_pass], pairs_per_pass)  # warm-up, profiled too: every share includes it alike
    started = time.perf_counter()
    scorer.raw_scores(pairs, pairs_per_pass)
    wall = time.perf_counter() - started
    spent, calls = operator_times(encoder.session.end_profiling())
    total = sum(spent.values())
    operators = [
        {"op": op, "share_pct": round(100 * us / total, 1), "ms": round(us / 1000, 1), "calls": calls[op]}
        for op, us in spent.most_common()
    ]
    return {
        "graph": str(graph),
        "pairs_per_s": round(len(pairs) / wall, 1),
        "kernel_s": round(total / 1e6, 2),
        "operators": operators,
    }


def print_profile(result: dict, rows: int) -> None:
    print(f"\n{result['graph']}: {result['pairs_per_s']} pairs/s (profiling on), kernels {result['kernel_s']} s")
    print(f"{'operator':<32}{'share %':>8}{'ms':>10}{'calls':>8}")
    for row in result["operators"][:rows]:
        print(f"{row['op']:<32}{row['share_pct']:>8}{row['ms']:>10}{row['calls']:>8}")


def main() -> None:
    import tempfile

    from serve_load import served_int8_graph

    from pipeline.config import load_params
    from pipeline.runtimes.selection import split_pairs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="the pair-model folder (tokenizer, prefix), e.g. models/model")
    parser.add_argument(
        "--graph", type=Path, action="append", help="a graph to profile (repeat; default: the packaged int8 graph)"
    )
    parser.add_argument("--pairs", type=int, default=512, help="validation pairs scored per graph")
    parser.add_argument("--rows", type=int, default=15, help="operator types printed per graph")
    parser.add_argument("--out", type=Path, default=RESULTS / "graph_profile.json")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error(f"--pairs {args.pairs}: at least 1")
    if not args.folder.is_dir():
        parser.error(f"--folder {args.folder}: no such folder")
    graphs = args.graph
    if not graphs:  # the packaged graph, looked up only when none is named
        served = served_int8_graph()
        if served is None:
            parser.error("no packaged int8 graph (reports/package.json): name one with --graph")
        graphs = [served[0]]
    if missing := [str(graph) for graph in graphs if not graph.is_file()]:
        parser.error(f"no such graph: {', '.join(missing)}")
    settings = load_params().serve
    pairs = split_pairs("validation")[0][: args.pairs]
    with tempfile.TemporaryDirectory() as scratch:
        results = [
            profile_graph(graph, args.folder, pairs, settings.torch_threads, settings.forward_batch_size, Path(scratch))
            for graph in graphs
        ]
    for result in results:
        print_profile(result, args.rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"threads": settings.torch_threads, "pairs_per_pass": settings.forward_batch_size, "profiles": results}, indent=2
        ),
        encoding="utf-8",
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
