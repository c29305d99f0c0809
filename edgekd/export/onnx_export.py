"""torch -> ONNX for a student: opset >= 17, input "input" (N, 1, R, R), output "logits" (N, C), dynamic batch,
then the ONNX checker and strict shape inference."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

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
    import onnx
    import torch

    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; use --opset {MIN_OPSET} or newer")
    path = Path(path)
    model = model.eval()
    dummy = torch.zeros(1, channels, input_size, input_size)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (dummy,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              opset_version=opset, do_constant_folding=True, dynamo=False)
    except Exception as e:  # torch raises many types for unexportable modules
        raise ExportError(f"torch could not export {type(model).__name__} to ONNX opset {opset}: "
                          f"{str(e).splitlines()[0][:300]}") from None
    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception as e:
        raise ExportError(f"{path}: exported ONNX fails the checker/shape inference: {str(e)[:300]}") from None
    out_dims = inferred.graph.output[0].type.tensor_type.shape.dim
    if len(out_dims) != 2:
        raise ExportError(f"{path}: output {OUTPUT_NAME!r} has rank {len(out_dims)}; a student returns (N, C)")
    onnx.save(inferred, str(path))
    return path


def torch_logits(model: "torch.nn.Module", x: np.ndarray, batch: int = 512) -> np.ndarray:
    """(N, C) float32 logits of `model` on model-space input `x` (N, 1, R, R), in eval mode without grad."""
    import torch

    model = model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], np.float32))).numpy())
    return np.concatenate(outs).astype(np.float32)
