"""ONNX -> ONNX int8 (QDQ, per-channel weights, static activations) through onnxruntime.quantization.

Weights are quantized to 7 bits (`reduce_range=True`), as onnxruntime's quantization guide advises for x86: on a
CPU with AVX2 but no VNNI, its int8 kernels multiply u8 x s8 pairs with VPMADDUBSW, whose 16-bit sums saturate
with full-range weights, so the same model computed different logits there than on a VNNI CPU. Measured on the
committed digit student (5,000 digits): full-range weights gave top-1 agreement with fp32 of 99.70 % with VNNI
and 99.02 % on AVX2 only (logits up to 2.27 apart; the parity check's bound is 99 %); 7-bit weights give 99.76 %
on both, the same accuracy (97.64 %), and bit-identical logits (tests/converters/test_int8_any_cpu.py runs the
AVX2-only CPU under qemu).

A line model (`line_bundle`) keeps its first and last convolutions in float (`float_end_convs`, onnxruntime's
`nodes_to_exclude`), as low-bit quantization commonly keeps the first and last layers: the first has one input
channel (9 weights per output channel, each rounding counts), the last writes the CTC scores the strings are
decoded from. Measured on the default lines run's student over 4 calibration draws, as the share of 4,000 val
lines (a val split composed 8x larger than the run's) read as torch reads them: all 7-bit 98.99 % (98.90-99.08,
under the 99 % rule half the time), first conv float 99.15 %, first and last 99.24 % (99.12-99.38); on the 2,000
test lines 98.90 -> 99.20 %. The rest stays 7-bit, so both kinds of x86 CPU compute the same int8 layers.

When per-channel quantization fails on a model (onnxruntime's quantizer has per-channel paths that some
foreign graphs trip), the model is quantized per tensor instead and the result says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgekd_runtime.errors import first_line

from .errors import ConversionError
from .model_info import OnnxModelInfo


class Int8Result(NamedTuple):
    """What `convert_onnx_int8` did beyond the rule: a warning (per-tensor fallback) and the nodes left float."""

    note: str | None
    float_nodes: tuple[str, ...]


def convert_onnx_int8(info: OnnxModelInfo, out_path: Path, calib_inputs: np.ndarray,
                      name: str | None = None, float_end_convs: bool = False) -> Int8Result:
    """`quant_pre_process` then `quantize_static` (QDQ, 7-bit weights per channel, int8 activations, MinMax).

    Args:
        info: the float ONNX model.
        out_path: where the int8 model goes.
        calib_inputs: normalised model inputs in the model's layout (N, ...) float32.
        name: how messages name the model (default `info.path`).
        float_end_convs: leave the first and the last Conv node (in graph order) unquantized.

    Returns:
        The note (None, or a warning when per-channel quantization failed and the weights were quantized per
        tensor) and the names of the nodes left in float.

    Raises:
        ConversionError: both granularities failed (a few lines: the error and the quantizer's last output).
    """
    from .staging import work_directory

    name = name or info.path
    with work_directory(out_path.parent, ".ortq-") as tmp:
        pre = tmp / "pre.onnx"
        error, tail, kept = _quantize(info, calib_inputs, pre, tmp / "int8.onnx", True, float_end_convs)
        note = None
        if error is not None:
            note = (f"{Path(name).name}: per-channel int8 quantization failed ({first_line(error, 160)}); the "
                    f"weights were quantized per tensor instead (coarser: check the int8 artifact's parity)")
            error, tail, kept = _quantize(info, calib_inputs, pre, tmp / "int8.onnx", False, float_end_convs)
        if error is not None:
            raise ConversionError(f"{name}: onnxruntime quantization failed per channel and per tensor "
                                  f"({first_line(error, 160)})" + (f"; its last output:\n{tail}" if tail else ""))
        shutil.move(str(tmp / "int8.onnx"), str(out_path))
    return Int8Result(note, kept)


def end_convs(path: Path) -> tuple[str, ...]:
    """The names of the model's first and last Conv nodes in graph order (ONNX graphs are sorted): () without a
    Conv, one name with a single one."""
    import onnx

    convs = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "Conv"]
    return tuple(dict.fromkeys(convs[:1] + convs[-1:]))


def _quantize(info: OnnxModelInfo, calib_inputs: np.ndarray, pre: Path, quant: Path, per_channel: bool,
              float_end_convs: bool) -> tuple[Exception | None, str, tuple[str, ...]]:
    """One quantization attempt: (the error or None, the last lines the quantizer printed, the float nodes)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .quiet import captured_output

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calib_inputs[i:i + 1] for i in range(len(calib_inputs)))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {info.input_name: batch.astype(np.float32)}

    kept: tuple[str, ...] = ()
    with captured_output() as log:
        try:
            if not pre.is_file():
                quant_pre_process(info.path, str(pre), skip_symbolic_shape=True)
            kept = end_convs(pre) if float_end_convs else ()
            quantize_static(str(pre), str(quant), _Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, reduce_range=True,
                            nodes_to_exclude=list(kept))
            error = None
        except Exception as e:  # noqa: BLE001 - the quantizer raises anything from ValueError to KeyError
            error = e
    tail = "\n".join(log[0].strip().splitlines()[-4:]) if log and log[0] else ""
    return error, tail, kept
