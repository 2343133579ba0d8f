"""ONNX graphs for the serving runtimes: onnxruntime's int8 quantization of an exported fp32 graph, dynamic (weights
int8, activations quantized on the fly) or static (activations' ranges calibrated beforehand, QDQ format).

The fp32 graph itself comes from the model's head (Head.export_onnx); which recipe the onnx-int8 runtime uses is
pipeline/runtimes/int8.py; the torch-free runtime that runs the graphs is serving/onnx_scorer.py.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np

PREPROCESSING_ADVICE = "pre-processing before quantization"  # both wordings: "Please consider (to run) ..."


@contextmanager
def without_preprocessing_advice() -> Iterator[None]:
    """Drop onnxruntime's pre-processing advice from the root logger, for the duration of the block only.

    quantize_dynamic and quantize_static log that advice (shape inference and graph optimization first, from its
    static-quantization examples) as a WARNING for every graph; the API is used as documented and the gate checks the
    int8 scores against torch, so that one message is dropped.
    """

    def not_the_advice(record: logging.LogRecord) -> bool:
        return PREPROCESSING_ADVICE not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(not_the_advice)
    try:
        yield
    finally:
        root.removeFilter(not_the_advice)


def quantize_int8(source: Path, target: Path, op_types: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> Path:
    """Dynamic int8 quantization of the weights, one scale per output channel (activations quantized on the fly; VNNI),
    of the nodes of op_types (None: every type onnxruntime quantizes: MatMul, Gather, ...) but those named in exclude."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with without_preprocessing_advice():
        quantize_dynamic(
            str(source),
            str(target),
            op_types_to_quantize=list(op_types) if op_types is not None else None,
            nodes_to_exclude=list(exclude),
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
    return target


class CalibrationBatches:
    """onnxruntime's CalibrationDataReader (get_next: one input dict per call, None when done) over given batches."""

    def __init__(self, batches: Sequence[dict[str, np.ndarray]]) -> None:
        self.batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def quantize_static_int8(
    source: Path, target: Path, batches: Sequence[dict[str, np.ndarray]], percentile: float = 99.999
) -> Path:
    """Static int8 quantization of the MatMuls with a constant weight, QDQ format: weights int8, one scale per output
    channel; their inputs uint8 with ranges calibrated on batches (the graph's inputs) by the percentile method (each
    tensor's range keeps all but its (100 - percentile) % most extreme values, half from each side: a rare outlier does
    not stretch the range for all the rest). Every batch must have the same shape (the calibrator stacks them). The
    MatMul outputs stay float (not quantized again). The calibrator's progress prints are kept off stdout."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not batches:
        raise ValueError("static int8 quantization needs calibration batches")
    with without_preprocessing_advice(), redirect_stdout(io.StringIO()):
        quantize_static(
            str(source),
            str(target),
            CalibrationBatches(batches),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={
                "MatMulConstBOnly": True,
                "OpTypesToExcludeOutputQuantization": ["MatMul"],
                "CalibPercentile": percentile,
                "CalibTensorRangeSymmetric": False,  # each side cut on its own: uint8 codes for the range the values use
            },
        )
    return target
