"""The word-embedding table stored compactly (pipeline/runtimes/embedding_table.py) on the real fine-tuned e5:
graph sizes, ONNX Runtime session memory and validation scores, fp32 export vs compacted, each also after int8.

Copies the pair-model folder (without any onnx/ it has) to a work folder, exports the fp32 graph (the bi head's
export), compacts it (timed), quantizes both to int8 as the onnx-int8 runtime does, and then for each graph:
  - its file size, and the model folder's size with it (the folder ships one chosen graph; the Bento copies the
    folder as it is, so the Bento and its image change by the same bytes);
  - the RSS of a fresh process that loads onnxruntime, opens the session (--threads) and scores one batch
    (VmRSS after, VmHWM peak; the process's RSS before the session is subtracted for `session_mb`);
  - the validation split's scores through serving's ONNX scorer (normalized, prefixed, truncated as served):
    |score difference| from the fp32 graph's (max, p99, mean), raw (5 x cosine) and as served (max; calibrated
    when the model's calibration is applied), and Pearson with the gold scores.

    python bench/embedding_table.py [--model models/model] [--clean data/clean] [--threads 1] \
        [--out bench/results/embedding_table.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.paths import CLEAN_DIR, MODEL_DIR
from pipeline.runtimes.embedding_table import compact_embedding_table
from pipeline.runtimes.onnx import quantize_int8
from pipeline.tables import read_jsonl, split_path
from serving.pair_model import ONNX_DIR

MB = 1e6
RSS_SCRIPT = r"""
import json, sys
import numpy as np
import onnxruntime

def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith(("VmRSS", "VmHWM")))
    return {key: int(value.split()[0]) * 1024 for key, value in fields.items()}

before = status()["VmRSS"]
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = int(sys.argv[2])
session = onnxruntime.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
ids = np.random.default_rng(0).integers(5, 500, size=(8, 48))  # ids every vocabulary here has.astype(np.int64)
session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
after = status()
print(json.dumps({"rss_before_session": before, "rss": after["VmRSS"], "peak": after["VmHWM"]}))
"""


def folder_bytes(folder: Path) -> int:
    """Bytes of the files in folder, its onnx/ graphs left out."""
    files = [path for path in folder.rglob("*") if path.is_file() and ONNX_DIR not in path.relative_to(folder).parts]
    return sum(path.stat().st_size for path in files)


def session_memory(graph: Path, threads: int) -> dict[str, float]:
    """RSS figures (MB) of a fresh process holding an ORT session of graph after one batch."""
    command = [sys.executable, "-c", RSS_SCRIPT, str(graph), str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "rss_mb": round(figures["rss"] / MB, 1),
        "peak_rss_mb": round(figures["peak"] / MB, 1),
        "session_mb": round((figures["rss"] - figures["rss_before_session"]) / MB, 1),
    }


def scores(graph: Path, folder: Path, pairs: list[tuple[str, str]], threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw 5 x cosine, served) scores of pairs with graph, through serving's ONNX scorer (as the service scores)."""
    from serving.onnx_scorer import OnnxPairScorer, OnnxSentenceEncoder
    from serving.pair_model import Calibration, ModelSettings

    encoder = OnnxSentenceEncoder(graph, folder, threads)
    scorer = OnnxPairScorer(encoder, encoder, ModelSettings.load(folder), Calibration.load(folder))
    raw = scorer.raw_scores(pairs)
    return raw, scorer.calibrate(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL_DIR, help="a bi-encoder pair-model folder (train's output)")
    parser.add_argument("--clean", type=Path, default=CLEAN_DIR, help="preprocess's output (validation.jsonl)")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (scores do not depend on it)")
    parser.add_argument("--work", type=Path, default=None, help="where to write the graphs (default: a temp dir, removed)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/embedding_table.json"))
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="embedding-table-"))
    folder = work / "model"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(args.model, folder, ignore=shutil.ignore_patterns(ONNX_DIR))
    graphs = work / "graphs"
    graphs.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    try:
        from pipeline.heads import head_named
        from pipeline.models import ModelSettings

        started = time.perf_counter()
        head_named(ModelSettings.load(folder).head).export_onnx(folder, graphs / "fp32.onnx")
        timings["export_fp32_s"] = time.perf_counter() - started
        started = time.perf_counter()
        report = compact_embedding_table(graphs / "fp32.onnx", graphs / "compact.onnx")
        timings["compact_s"] = time.perf_counter() - started
        print(f"compacted: {report.kind}: {report.reason} ({timings['compact_s']:.1f} s)")
        for name in ("fp32", "compact"):
            started = time.perf_counter()
            quantize_int8(graphs / f"{name}.onnx", graphs / f"{name}_int8.onnx")
            timings[f"int8_of_{name}_s"] = time.perf_counter() - started

        records = read_jsonl(split_path(args.clean, "validation"))
        pairs = [(record["sentence1"], record["sentence2"]) for record in records]
        gold = np.array([record["score"] for record in records], dtype=np.float64)
        base = folder_bytes(folder)
        rows: dict[str, dict] = {}
        results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in ("fp32", "compact", "fp32_int8", "compact_int8"):
            graph = graphs / f"{name}.onnx"
            started = time.perf_counter()
            results[name] = scores(graph, folder, pairs, args.threads)
            rows[name] = {
                "graph_mb": round(graph.stat().st_size / MB, 1),
                "folder_with_graph_mb": round((base + graph.stat().st_size) / MB, 1),
                **session_memory(graph, args.threads),
                "pearson_raw": float(np.corrcoef(results[name][0], gold)[0, 1]),
                "scoring_s": round(time.perf_counter() - started, 1),
            }
        for name, (raw, served) in results.items():
            shift = np.abs(raw - results["fp32"][0])
            rows[name]["max_abs_diff_vs_fp32_raw"] = float(shift.max())
            rows[name]["p99_abs_diff_vs_fp32_raw"] = float(np.percentile(shift, 99))
            rows[name]["mean_abs_diff_vs_fp32_raw"] = float(shift.mean())
            rows[name]["max_abs_diff_vs_fp32_served"] = float(np.abs(served - results["fp32"][1]).max())
            if name == "compact_int8":  # the int8 graph before this change: how far the new one moved from it
                between = np.abs(raw - results["fp32_int8"][0])
                rows[name]["max_abs_diff_vs_fp32_int8_raw"] = float(between.max())
                rows[name]["mean_abs_diff_vs_fp32_int8_raw"] = float(between.mean())
        result = {
            "model": str(args.model),
            "validation_pairs": len(pairs),
            "threads": args.threads,
            "compaction": report.as_dict(),
            "timings_s": {key: round(value, 2) for key, value in timings.items()},
            "model_folder_without_graphs_mb": round(base / MB, 1),
            "graphs": rows,
        }
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    print("| graph | file MB | folder + graph MB | session RSS MB | peak RSS MB | diff vs fp32: max / p99 / mean | Pearson |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        diffs = " / ".join(f"{row[f'{kind}_abs_diff_vs_fp32_raw']:.2e}" for kind in ("max", "p99", "mean"))
        print(
            f"| {name} | {row['graph_mb']} | {row['folder_with_graph_mb']} | {row['session_mb']} | {row['peak_rss_mb']} | "
            f"{diffs} | {row['pearson_raw']:.5f} |"
        )
    print(f"timings: {result['timings_s']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
