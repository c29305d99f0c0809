"""What converting a text-line bundle (task `line-recognition`, a CTC line student) adds to `convert_bundle`.

The bundle's ONNX model may take any line width (a dynamic width axis); onnx2tf needs a fixed one, so TFLite is
converted from a copy whose width is fixed to the manifest's reference width (`lines.width`), while ONNX int8 is
quantized from the original and keeps its dynamic width. Calibration and evaluation use line canvases
(N, H, W) at the reference width; every artifact is judged by `parity.SequenceScorer` (decoded strings, CER).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekd_runtime.manifest import LinesSpec, Manifest
from edgekd_runtime.pixels import as_canvases

from .errors import CalibrationDataError, ConversionError, InputShapeError
from .model_info import OnnxModelInfo

FIXED_COPY_NAME = ".fixed-width.onnx"
RUNTIME_ACCURACY_SLACK = 0.01  # runtime vs converters' string accuracy on the same artifact and lines
#: A line model's ONNX int8 keeps its first and last convolutions in float (`onnx_int8` says why).
INT8_FLOAT_END_CONVS = True


def fixed_width_copy(src: Path, dst: Path, width: int, frame_stride: int) -> Path:
    """Write `src` with its input width (and its output's frame axis) fixed: (N, 1, H, width) -> (N, T, C)."""
    import onnx

    model = onnx.load(str(src))
    inits = {i.name for i in model.graph.initializer}
    inp = [i for i in model.graph.input if i.name not in inits][0]
    dims = inp.type.tensor_type.shape.dim
    out = model.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != 4 or len(out) != 3:
        raise InputShapeError(f"{src}: input rank {len(dims)} / output rank {len(out)}; a line model takes "
                              f"(N, 1, H, W) and returns (N, T, C)")
    for dim, value in ((dims[3], width), (out[1], width // frame_stride)):
        dim.Clear()
        dim.dim_value = value
    del model.graph.value_info[:]
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - onnx raises several types
        raise ConversionError(f"{src}: fixing its input width to {width} px fails shape inference ({e})") from None
    onnx.save(model, str(dst))
    return dst


def prepare_line_model(src: Path, stage: Path, targets: Sequence[str], lines: LinesSpec, texts: Any,
                       num_lines: int) -> tuple[OnnxModelInfo, dict[str, Any]]:
    """(info of the fixed-width copy, the `convert_into` keywords for a line model: scorer, int8 source, and its
    first and last convs left float in ONNX int8, see `onnx_int8`)."""
    from .convert import prepare
    from .parity import SequenceScorer

    texts = [str(t) for t in texts]
    if len(texts) != num_lines:
        raise CalibrationDataError(f"evaluation texts: {len(texts)} for {num_lines} line canvases; pass one each")
    fixed = fixed_width_copy(src, stage / FIXED_COPY_NAME, lines.width, lines.frame_stride)
    info = prepare(fixed, targets)
    if info.height != lines.height or info.width != lines.width:
        raise InputShapeError(f"{src}: takes lines {info.height} px high but the manifest says {lines.height}; "
                              f"re-run `edgekd export`")
    if info.num_classes not in (-1, lines.num_classes):
        raise InputShapeError(f"{src}: outputs {info.num_classes} classes per frame; the charset has "
                              f"{len(lines.charset)} characters + blank: re-run `edgekd export`")
    return info, {"scorer": SequenceScorer(lines.charset, texts), "int8_source": replace(info, path=str(src)),
                  "int8_float_end_convs": INT8_FLOAT_END_CONVS}


def runtime_line_accuracy(stage: Path, manifest: Manifest, canvases: np.ndarray, texts: Sequence[str],
                          source: str = "converters") -> None:
    """`bundle.runtime_accuracy` for line bundles: each artifact measured by `source` is read again through
    `edgekd_runtime` (what the board runs); its whole-string accuracy and CER replace the converters' numbers,
    and a disagreement over 1 pp is a `ConversionError` (the runtime would read the model differently)."""
    from edgekd_runtime import load

    x = as_canvases(canvases, manifest.normalization, "evaluation canvases")
    for art in manifest.artifacts:
        if art.extra.get("accuracy_source") != source:
            continue
        rec = load(str(stage), backend=art.format, precision=art.precision)
        got = rec.evaluate(x, list(texts))
        if art.accuracy is not None and abs(got["string_accuracy"] - art.accuracy) > RUNTIME_ACCURACY_SLACK:
            raise ConversionError(f"{art.path}: edgekd_runtime reads {got['string_accuracy']:.4f} of the lines "
                                  f"right but {source}'s own run of the same file {art.accuracy:.4f}; the runtime "
                                  f"reads the model differently (layout, width, normalisation or quantization)")
        art.extra.update(converter_accuracy=art.accuracy, accuracy_source="edgekd_runtime", cer=got["cer"])
        art.accuracy = got["string_accuracy"]
