"""Cost model of a student or teacher: parameters, MACs, flash bytes and peak activation RAM per precision, and
the per-op-class features the latency model of a `DeviceProfile` takes.

Everything is computed from the ONNX graph with static shapes, the graph the converters and the board also see:
a torch module is exported to ONNX in memory first (`module_cost`), so the workstation and `edgekd-rt calibrate`
share one definition of the features. `torch_macs` counts with torch's `FlopCounterMode` as a cross-check.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from edgekd_runtime.errors import ModelLoadError
from edgekd_runtime.profile import PRECISIONS, OpFeatures

# Bytes per activation element in the arena. fp16 TFLite models store fp16 weights but compute in fp32.
ACTIVATION_BYTES = {"fp32": 4, "fp16": 4, "int8": 1}
# Bytes per weight element; biases stay 32-bit in int8 models (int32 accumulators), fp16 in fp16 models.
WEIGHT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
BIAS_BYTES = {"fp32": 4, "fp16": 2, "int8": 4}
# int8: per output channel, a float32 scale + int64 zero point for the weights and again for the int32 bias.
INT8_BYTES_PER_CHANNEL = 24
# Container overhead (flatbuffer metadata, tensor names, extra ops such as PAD/TRANSPOSE, activation quantization),
# least-squares fitted on onnx2tf 1.28.8 files of 14 students (fp32, int8: max error 335 / 256 bytes); fp16 scaled
# from the fp32 ratio measured on the calibration suite. `benchmarks/latency_model.py` re-checks them.
FILE_BASE_BYTES = {"fp32": 1470, "fp16": 1570, "int8": 1580}
FILE_BYTES_PER_LAYER = {"fp32": 430, "fp16": 700, "int8": 550}

DENSE_OPS = {"Gemm", "MatMul"}
POOL_OPS = {"MaxPool", "AveragePool"}
GLOBAL_POOL_OPS = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"}
FUSABLE_ACTIVATIONS = {"Relu", "Clip"}  # fused into the producing conv/dense/add by ORT and XNNPACK
FUSING_PRODUCERS = {"Conv", "Gemm", "MatMul", "Add"}
ALIAS_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}  # no kernel, no new buffer
FREE_OPS = ALIAS_OPS | {"Constant", "Shape", "Gather", "Cast", "ConstantOfShape"}


@dataclass(frozen=True)
class ModelCost:
    """What a model costs at batch 1. Byte counts are per precision (fp32, fp16, int8)."""

    name: str
    params: int
    macs: int
    features: OpFeatures
    flash_bytes: Mapping[str, int]
    peak_ram_bytes: Mapping[str, int]
    input_shape: tuple[int, ...]
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "macs": self.macs, "features": self.features.to_dict(),
                "flash_bytes": dict(self.flash_bytes), "peak_ram_bytes": dict(self.peak_ram_bytes),
                "input_shape": list(self.input_shape)}


def _load(model: Any):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model))
        except Exception as e:  # protobuf DecodeError has no stable import path
            raise ModelLoadError(f"bytes are not an ONNX model ({e})") from None
    p = Path(model)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such ONNX file")
    try:
        return onnx.load(str(p))
    except Exception as e:
        raise ModelLoadError(f"{p}: not a readable ONNX model ({type(e).__name__}: {e}); re-export it") from None


def _shapes(mp) -> dict[str, tuple[int, ...]]:
    """Static shapes of every value (dynamic dims -> 1, i.e. batch 1)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(mp, strict_mode=True)
    except Exception as e:
        raise ModelLoadError(f"ONNX shape inference failed ({e}); export with static input shapes") from None
    g = inferred.graph
    out: dict[str, tuple[int, ...]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = tuple(max(int(d.dim_value), 1) if d.HasField("dim_value") else 1 for d in t.shape.dim)
    for init in g.initializer:
        out[init.name] = tuple(init.dims)
    return out


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _attr(node, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _float_data_types() -> frozenset[int]:
    """Initializer data types counted as parameters (the weights that precision changes)."""
    from onnx import TensorProto

    return frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16})


def analyze_onnx(model: Any, name: str | None = None) -> ModelCost:
    """Cost of an ONNX model (path, bytes or ModelProto) at batch 1.

    Raises:
        ModelLoadError: the model is unreadable or its shapes cannot be inferred.
    """
    mp = _load(model)
    g = mp.graph
    shapes = _shapes(mp)
    inits = {i.name: i for i in g.initializer}
    const_outputs = {o for n in g.node if n.op_type == "Constant" for o in n.output}

    def shape(t: str) -> tuple[int, ...]:
        if t not in shapes:
            raise ModelLoadError(f"ONNX value {t!r} has no inferred shape; export with static input shapes")
        return shapes[t]

    fused = _fused_activations(g)
    ops = _OpCount()
    for i, n in enumerate(g.node):
        if i not in fused and n.op_type not in FREE_OPS:
            ops.add(n, shape)
    params, flash = _params_and_flash(g, ops)
    peak = {p: _peak_activation_bytes(g, shapes, inits, const_outputs, fused, ACTIVATION_BYTES[p])
            for p in PRECISIONS}
    in_name = next(i.name for i in g.input if i.name not in inits)
    io_elems = (sum(_numel(shape(i.name)) for i in g.input if i.name not in inits)
                + sum(_numel(shape(o.name)) for o in g.output))
    feats = OpFeatures(conv_macs=ops.conv, dwconv_macs=ops.dw, dense_macs=ops.dense, elementwise_elems=ops.elem,
                       layers=ops.layers, conv_positions=ops.positions, pointwise_macs=ops.pw, io_elems=io_elems,
                       activation_elems=ops.acts)
    return ModelCost(name=name or g.name or "model", params=params, macs=feats.macs, features=feats,
                     flash_bytes=flash, peak_ram_bytes=peak, input_shape=shape(in_name))


def _fused_activations(g: Any) -> set[int]:
    """Indices of the activation nodes that the interpreter fuses into their producer (a conv, dense or
    batchnorm whose output nothing else reads): they cost no layer, no pass and no buffer."""
    consumers: dict[str, int] = {}
    for n in g.node:
        for t in n.input:
            consumers[t] = consumers.get(t, 0) + 1
    producer = {o: n for n in g.node for o in n.output}
    fused = set()
    for i, n in enumerate(g.node):
        src = producer.get(n.input[0]) if n.op_type in FUSABLE_ACTIVATIONS else None
        if src is not None and src.op_type in FUSING_PRODUCERS and consumers.get(n.input[0], 0) == 1:
            fused.add(i)
    return fused


@dataclass
class _OpCount:
    """The latency model's features summed over the graph's costed nodes, and which initializers are biases and
    how many output channels each weight has (int8 stores a scale per channel)."""

    conv: int = 0
    pw: int = 0
    dw: int = 0
    dense: int = 0
    elem: int = 0
    layers: int = 0
    positions: int = 0
    acts: int = 0  # elements written by the costed nodes (activation traffic)
    bias_names: set[str] = field(default_factory=set)
    weight_channels: dict[str, int] = field(default_factory=dict)

    def add(self, n: Any, shape: Callable[[str], tuple[int, ...]]) -> None:
        op = n.op_type
        out_elems = _numel(shape(n.output[0]))
        self.layers += 1
        self.acts += out_elems
        if len(n.input) > 2 and (op == "Conv" or op == "Gemm"):
            self.bias_names.add(n.input[2])
        if op == "Conv":
            self._conv(n, shape, out_elems)
        elif op in DENSE_OPS:
            self.dense += out_elems * int(shape(n.input[0])[-1])
            w = shape(n.input[1])
            self.weight_channels[n.input[1]] = int((w[0] if _attr(n, "transB", 0) else w[1]) if op == "Gemm"
                                                   else w[-1])
        elif op in POOL_OPS:
            self.elem += out_elems * _numel(tuple(_attr(n, "kernel_shape", [1])))
        elif op in GLOBAL_POOL_OPS:
            self.elem += _numel(shape(n.input[0]))
        else:  # stand-alone elementwise / softmax / batchnorm / anything else: one pass over its output
            self.elem += out_elems

    def _conv(self, n: Any, shape: Callable[[str], tuple[int, ...]], out_elems: int) -> None:
        w = shape(n.input[1])  # (Cout, Cin/groups, kH, kW)
        groups = int(_attr(n, "group", 1))
        cin = shape(n.input[0])[1]
        m = out_elems * _numel(w[1:])
        if groups > 1 and groups == cin:
            self.dw += m
        elif _numel(w[2:]) == 1 and groups == 1:
            self.pw += m
        else:
            self.conv += m
            self.positions += out_elems // int(w[0])
        self.weight_channels[n.input[1]] = int(w[0])


def _params_and_flash(g: Any, ops: _OpCount) -> tuple[int, dict[str, int]]:
    """Float parameters, and the model file's bytes per precision (weights, biases, int8 per-channel scales,
    the file's fixed and per-layer overhead)."""
    float_types = _float_data_types()
    params = 0
    flash = {p: 0 for p in PRECISIONS}
    for init in g.initializer:
        if init.data_type not in float_types:
            continue
        k = _numel(tuple(init.dims))
        params += k
        for p in PRECISIONS:
            if init.name in ops.bias_names or len(init.dims) <= 1:
                flash[p] += k * BIAS_BYTES[p]
            else:
                flash[p] += k * WEIGHT_BYTES[p]
                if p == "int8":
                    flash[p] += INT8_BYTES_PER_CHANNEL * ops.weight_channels.get(init.name, 1)
    for p in PRECISIONS:
        flash[p] += FILE_BASE_BYTES[p] + FILE_BYTES_PER_LAYER[p] * ops.layers
    return params, flash


def _peak_activation_bytes(g, shapes, inits, const_outputs, fused, elem_bytes: int) -> int:
    """Largest sum of live activation buffers while any node runs (what an arena planner must hold).

    A tensor lives from the node that produces it (graph inputs: from the start) to its last consumer (graph
    outputs: to the end). Reshape-like ops and fused activations reuse their input's buffer.
    """
    n_nodes = len(g.node)
    graph_outputs = {o.name for o in g.output}
    buf_of: dict[str, int] = {}
    size: dict[int, int] = {}
    last_use: dict[int, int] = {}

    def is_activation(t: str) -> bool:
        return bool(t) and t not in inits and t not in const_outputs

    def new_buf(t: str, born: int) -> None:
        b = len(size)
        buf_of[t] = b
        size[b] = _numel(shapes.get(t, (0,))) * elem_bytes
        last_use[b] = born

    for inp in g.input:
        if is_activation(inp.name):
            new_buf(inp.name, -1)
    births: dict[int, list[int]] = {}
    for i, n in enumerate(g.node):
        ins = [t for t in n.input if is_activation(t) and t in buf_of]
        for t in ins:
            last_use[buf_of[t]] = max(last_use[buf_of[t]], i)
        if n.op_type == "Constant":
            continue
        alias = (n.op_type in ALIAS_OPS or i in fused) and ins
        for o in n.output:
            if not o:
                continue
            if alias:
                buf_of[o] = buf_of[ins[0]]
                size[buf_of[o]] = max(size[buf_of[o]], _numel(shapes.get(o, (0,))) * elem_bytes)
            else:
                new_buf(o, i)
                births.setdefault(i, []).append(buf_of[o])
            if o in graph_outputs:
                last_use[buf_of[o]] = n_nodes
    born_at = {b: -1 for b in size}
    for i, bs in births.items():
        for b in bs:
            born_at[b] = i
    peak = 0
    for i in range(n_nodes):
        live = sum(size[b] for b in size if born_at[b] <= i <= max(last_use[b], born_at[b]))
        peak = max(peak, live)
    return int(peak)


# ---- torch side ---------------------------------------------------------------------------------------------
def export_onnx_bytes(module: Any, input_shape: tuple[int, ...]) -> bytes:
    """Export a torch module to ONNX in memory with `edgekd export`'s exporter (`torch_to_onnx`), its shapes
    fixed at `input_shape` (batch 1): the cost model counts concrete tensor sizes."""
    import torch

    from edgekd.export.onnx_export import torch_to_onnx

    buf = io.BytesIO()
    torch_to_onnx(module, torch.zeros(*input_shape), buf)
    return buf.getvalue()


def module_cost(module: Any, input_shape: tuple[int, ...], name: str = "model") -> ModelCost:
    """Cost of a torch module: exported to ONNX in memory, then `analyze_onnx`; `params` is the torch count."""
    c = analyze_onnx(export_onnx_bytes(module, input_shape), name=name)
    torch_params = sum(p.numel() for p in module.parameters())
    return ModelCost(name=name, params=int(torch_params), macs=c.macs, features=c.features,
                     flash_bytes=c.flash_bytes, peak_ram_bytes=c.peak_ram_bytes, input_shape=c.input_shape,
                     extra={"onnx_params": c.params})


def torch_macs(module: Any, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass counted by torch's FlopCounterMode (FLOPs / 2); a cross-check of analyze_onnx."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        module.eval()(torch.zeros(*input_shape))
    return int(fc.get_total_flops()) // 2


def student_resolution(student_id: str) -> int:
    """Input side R of a student id such as ``dscnn-w16-d3-r28`` (the line height of a line student), read by
    the one student-id grammar (`parse_student_id`, which raises StudentIdError naming the valid forms)."""
    from edgekd.models.students import parse_student_id

    return parse_student_id(student_id).input_size


#: Line students are costed per line of this many pixel columns (192 px at height 24: about 12 digits).
REFERENCE_LINE_WIDTH = 192
#: The widest line a line student is costed on (the cost model builds and exports the student at that width):
#: at the tallest line height, 64 px, some 100 handwritten characters.
MAX_LINE_WIDTH = 4096


@lru_cache(maxsize=512)
def student_cost(student_id: str, num_classes: int = 10, line_width: int = REFERENCE_LINE_WIDTH) -> ModelCost:
    """Cost of a student of the family (built with random weights; costs do not depend on them). A line student
    (`ctc-...`) is costed on one line of `line_width` pixel columns at its height; `extra["macs_per_column"]`
    gives the MACs per pixel column."""
    from edgekd.models.line_models import is_line_model
    from edgekd.models.students import build_student

    r = student_resolution(student_id)
    shape = (1, 1, r, line_width) if is_line_model(student_id) else (1, 1, r, r)
    c = module_cost(build_student(student_id, num_classes), shape, name=student_id)
    if is_line_model(student_id):
        c = replace(c, extra={**c.extra, "line_width": line_width, "macs_per_column": c.macs / line_width})
    return c


def file_cost(path: str | os.PathLike) -> ModelCost:
    """Cost of an ONNX file on disk (a teacher or an exported student)."""
    return analyze_onnx(path, name=Path(path).stem)
