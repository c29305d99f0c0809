"""What the converters need to know about an ONNX classifier: its input/output and whether its ops convert."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import InputShapeError, ModelLoadError, UnsupportedOpError

# Domains onnxruntime's CPU provider implements (the ONNX int8 path runs the model in onnxruntime).
_ORT_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}


@dataclass(frozen=True)
class OnnxModelInfo:
    """The single image input and the (N, C) output of an ONNX classifier.

    Attributes:
        path: the model file.
        input_name, output_name: tensor names.
        input_shape: with the batch dimension as -1 when dynamic.
        layout: "NCHW" or "NHWC" (channels are the dimension of size 1 or 3 next to the batch or at the end).
        num_classes: size of the output's last dimension (-1 when unknown).
    """

    path: str
    input_name: str
    input_shape: tuple[int, ...]
    layout: str
    output_name: str
    num_classes: int

    @property
    def height(self) -> int:
        return self.input_shape[2] if self.layout == "NCHW" else self.input_shape[1]

    @property
    def width(self) -> int:
        return self.input_shape[3] if self.layout == "NCHW" else self.input_shape[2]

    @property
    def channels(self) -> int:
        return self.input_shape[1] if self.layout == "NCHW" else self.input_shape[3]


def load_onnx(path: str | os.PathLike):
    """Load and check an ONNX model; anything that is not one is a `ModelLoadError` naming the file."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such file; pass the path of an .onnx model")
    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as e:  # onnx raises DecodeError, ValidationError, ... depending on the damage
        raise ModelLoadError(f"{p}: not a valid ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                             f"re-export it (e.g. `edgekd export`, torch.onnx.export or tf2onnx)") from None
    if not model.graph.node:
        raise ModelLoadError(f"{p}: the ONNX graph has no nodes; re-export the model")
    return model


def inspect_model(model, path: str | os.PathLike) -> OnnxModelInfo:
    """Read the image input and the class output of a loaded ONNX model."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise InputShapeError(f"{path}: expected one image input and one output, found inputs "
                              f"{[i.name for i in inputs]} and outputs {[o.name for o in model.graph.output]}; "
                              f"only single-input image classifiers can be converted")
    inp, out = inputs[0], model.graph.output[0]
    shape = tuple(_dims(inp))
    if len(shape) != 4 or any(d <= 0 for d in shape[1:]):
        raise InputShapeError(f"{path}: input {inp.name!r} has shape {list(shape)}; expected a 4-D image input "
                              f"with fixed height, width and channels (NCHW or NHWC)")
    if shape[1] in (1, 3) and shape[3] not in (1, 3):
        layout = "NCHW"
    elif shape[3] in (1, 3):
        layout = "NHWC"
    else:
        raise InputShapeError(f"{path}: cannot tell the channel axis of input shape {list(shape)}; expected 1 or 3 "
                              f"channels first (NCHW) or last (NHWC)")
    out_dims = _dims(out)
    return OnnxModelInfo(str(path), inp.name, shape, layout, out.name, out_dims[-1] if out_dims else -1)


def _dims(value_info) -> list[int]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else -1 for d in dims]


@lru_cache(maxsize=1)
def onnx2tf_ops() -> frozenset[str]:
    """ONNX op types onnx2tf converts (one module per op in `onnx2tf/ops`), found without importing tensorflow."""
    spec = importlib.util.find_spec("onnx2tf")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    ops_dir = Path(list(spec.submodule_search_locations)[0]) / "ops"
    return frozenset(p.stem for p in ops_dir.glob("*.py") if p.stem not in ("__init__", "Input"))


def check_ops(model, path: str | os.PathLike, target: str) -> None:
    """Raise `UnsupportedOpError` naming every op and node that `target` ("tflite" or "onnx-int8") cannot take."""
    if target == "tflite":
        known = onnx2tf_ops()
        bad = [(n.op_type, n.domain, n.name or f"#{i}") for i, n in enumerate(_all_nodes(model.graph))
               if n.domain not in ("", "ai.onnx") or n.op_type not in known]
    else:
        from onnx import defs

        bad = []
        for i, n in enumerate(_all_nodes(model.graph)):
            if n.domain not in _ORT_DOMAINS or (n.domain in ("", "ai.onnx") and not defs.has(n.op_type)):
                bad.append((n.op_type, n.domain, n.name or f"#{i}"))
    if bad:
        raise UnsupportedOpError(str(path), target, bad)


def _all_nodes(graph):
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.g is not None and a.g.node:
                yield from _all_nodes(a.g)
            for g in a.graphs:
                yield from _all_nodes(g)
