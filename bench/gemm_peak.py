"""The GEMM peak of this machine's cores, per precision: the ceiling a serving runtime can reach.

    python bench/gemm_peak.py --threads 2        # prints fp32 (torch) and int8 (ONNX Runtime MatMulInteger) GFLOP/s

fp32: torch.matmul of square matrices. int8: ONNX Runtime's MatMulInteger (uint8 x int8 -> int32), the
kernel dynamic int8 quantization runs (VNNI on this CPU). Best of --repeats, after a warm-up.
Also `transformer_flops_per_token()`: what one token costs an encoder, to turn served tokens into GFLOP/s.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def best_seconds(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def fp32_peak(size: int, threads: int, repeats: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / best_seconds(lambda: torch.matmul(a, b), repeats) / 1e9


def int8_peak(size: int, threads: int, repeats: int) -> float:
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [size, size])],
        [
            helper.make_tensor(
                "b", TensorProto.INT8, [size, size], np.random.default_rng(0).integers(-64, 64, size * size).tolist()
            )
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    a = np.random.default_rng(1).integers(0, 255, (size, size), dtype=np.uint8)
    onnx.checker.check_model(model)
    return 2 * size**3 / best_seconds(lambda: session.run(["c"], {"a": a}), repeats) / 1e9


def transformer_flops_per_token(config: dict, tokens_per_sequence: float) -> float:
    """Multiply-adds x 2 of one token through a BERT-style encoder: the dense layers plus attention scores."""
    hidden, layers, intermediate = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    dense = 4 * hidden * hidden + 2 * hidden * intermediate  # q, k, v, output projections and the feed-forward pair
    attention = 2 * hidden * tokens_per_sequence  # scores and the weighted sum, over the sequence
    return 2.0 * layers * (dense + attention)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "gemm_peak.json")
    args = parser.parse_args()
    report = {
        "threads": args.threads,
        "size": args.size,
        "fp32_gflops": round(fp32_peak(args.size, args.threads, args.repeats), 1),
        "int8_gops": round(int8_peak(args.size, args.threads, args.repeats), 1),
    }
    print(json.dumps(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
