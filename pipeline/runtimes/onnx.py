"""ONNX graphs for the serving runtimes: onnxruntime's dynamic int8 quantization of an exported graph's weights.

The fp32 graph itself comes from the model's head (Head.export_onnx); the torch-free runtime that runs both graphs
is serving/onnx_scorer.py.
"""

from __future__ import annotations

from pathlib import Path


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization of the weights, one scale per output channel (activations quantized on the fly; VNNI).

    Per channel: on the fine-tuned e5 default it kept Pearson closest to fp32 of the variants tried (docs/serving.md).
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    def not_the_preprocessing_advice(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing before quantization")

    # quantize_dynamic logs that advice (shape inference and graph optimization first, from its static-quantization
    # examples) as a WARNING on the root logger for every graph; the API is used as documented and the gate checks
    # the int8 scores against torch, so that one message is dropped, during this call only.
    root = logging.getLogger()
    root.addFilter(not_the_preprocessing_advice)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.removeFilter(not_the_preprocessing_advice)
    return target
