"""torch -> ONNX for a student: opset >= 17, input "input" (N, 1, R, R), output "logits" (N, C), dynamic batch
(a line student: (N, 1, H, W) -> (N, T, C), the width dynamic too), then the ONNX checker and strict shape
inference."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from edgekd_runtime.errors import UserInputError

if TYPE_CHECKING:
    import torch

INPUT_NAME, OUTPUT_NAME = "input", "logits"
MIN_OPSET = 17


class ExportError(UserInputError):
    """A model torch cannot export to ONNX, or whose ONNX fails the checker or shape inference."""


def export_onnx(model: "torch.nn.Module", input_size: int, path: str | os.PathLike, opset: int = MIN_OPSET,
                channels: int = 1) -> Path:
    """Export `model` (eval mode) to `path` (written as given: callers pass a staging path).

    Args:
        model: takes (N, channels, input_size, input_size) float, returns (N, C) logits.
        input_size: the square input's side in pixels.
        path: destination .onnx file.
        opset: ONNX opset, >= 17.
    """
    import torch

    dummy = torch.zeros(1, channels, input_size, input_size)
    return _export_checked(model, dummy, path, opset, {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                           "(N, C)")


def export_line_onnx(model: "torch.nn.Module", height: int, width: int, num_classes: int,
                     path: str | os.PathLike, opset: int = MIN_OPSET, dynamic_width: bool = True) -> Path:
    """Export a CTC line model taking (N, 1, height, width) and returning (N, T, num_classes) logits, with a
    dynamic batch and (when `dynamic_width`) a dynamic width axis (and frame axis T of the output)."""
    import torch

    axes = {INPUT_NAME: {0: "batch", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: "frames"}} if dynamic_width else \
        {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    return _export_checked(model, torch.zeros(1, 1, height, width), path, opset, axes, "(N, T, C)",
                           fix_last_dim=num_classes)


def torch_to_onnx(model: "torch.nn.Module", dummy: "torch.Tensor", f: str | os.PathLike | IO[bytes],
                  opset: int = MIN_OPSET, dynamic_axes: dict[str, dict[int, str]] | None = None) -> None:
    """The one torch -> ONNX call: the TorchScript exporter at `opset` (>= MIN_OPSET), input `INPUT_NAME`, output
    `OUTPUT_NAME`, constant folding, in eval mode without grad, into a path or a bytes buffer `f`.

    `dynamic_axes` names the symbolic dimensions (None: every shape fixed as `dummy`'s, what the cost model
    wants). Raises ExportError for an old opset or a module torch cannot export."""
    import torch

    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; use --opset {MIN_OPSET} or newer")
    model = model.eval()
    target: Any = str(f) if isinstance(f, (str, os.PathLike)) else f
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (dummy,), target, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True,
                              dynamo=False)
    except Exception as e:  # torch raises many types for unexportable modules
        raise ExportError(f"torch could not export {type(model).__name__} to ONNX opset {opset}: "
                          f"{str(e).splitlines()[0][:300]}") from None


def _export_checked(model: "torch.nn.Module", dummy: "torch.Tensor", path: str | os.PathLike, opset: int,
                    dynamic_axes: dict, out_shape: str, fix_last_dim: int | None = None) -> Path:
    """`torch_to_onnx` into `path`, then the ONNX checker and strict shape inference; the output
    must have the rank `out_shape` names. `fix_last_dim` states the output's last dimension where the exporter
    left it symbolic (a reshape's)."""
    import onnx

    path = Path(path)
    torch_to_onnx(model, dummy, path, opset, dynamic_axes)
    proto = onnx.load(str(path))
    if fix_last_dim is not None:
        last = proto.graph.output[0].type.tensor_type.shape.dim[-1]
        last.Clear()
        last.dim_value = fix_last_dim
    try:
        onnx.checker.check_model(proto, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception as e:
        raise ExportError(f"{path}: exported ONNX fails the checker/shape inference: {str(e)[:300]}") from None
    out_dims = inferred.graph.output[0].type.tensor_type.shape.dim
    if len(out_dims) != out_shape.count(",") + 1:
        raise ExportError(f"{path}: output {OUTPUT_NAME!r} has rank {len(out_dims)}; this model must return "
                          f"{out_shape}")
    onnx.save(inferred, str(path))
    return path


def torch_logits(model: "torch.nn.Module", x: np.ndarray, batch: int = 512) -> np.ndarray:
    """(N, C) float32 logits of `model` on model-space input `x` (N, 1, R, R) (or (N, T, C) CTC logits of a
    line model on (N, 1, H, W)), in eval mode without grad."""
    import torch

    model = model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], np.float32))).numpy())
    return np.concatenate(outs).astype(np.float32)
