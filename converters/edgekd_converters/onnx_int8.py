"""ONNX -> ONNX int8 (QDQ, per-channel weights, static activations) through onnxruntime.quantization."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .errors import ConversionError
from .model_info import OnnxModelInfo


def convert_onnx_int8(info: OnnxModelInfo, out_path: Path, calib_inputs: np.ndarray) -> Path:
    """`quant_pre_process` then `quantize_static` (QDQ, int8 weights per channel, int8 activations, MinMax).

    Args:
        info: the float ONNX model.
        out_path: where the int8 model goes.
        calib_inputs: normalised model inputs in the model's layout (N, ...) float32.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .quiet import captured_output
    from .staging import work_directory

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calib_inputs[i:i + 1] for i in range(len(calib_inputs)))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {info.input_name: batch.astype(np.float32)}

    with work_directory(out_path.parent, ".ortq-") as tmp:
        pre, quant = tmp / "pre.onnx", tmp / "int8.onnx"
        with captured_output() as log:
            try:
                quant_pre_process(info.path, str(pre), skip_symbolic_shape=True)
                quantize_static(str(pre), str(quant), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
                error = None
            except Exception as e:
                error = e
        if error is not None:
            tail = "\n".join(log[0].strip().splitlines()[-8:]) if log and log[0] else ""
            raise ConversionError(f"{info.path}: onnxruntime quantization failed ({type(error).__name__}: "
                                  f"{error}); its last output:\n{tail}")
        shutil.move(str(quant), str(out_path))
    return out_path
