"""ONNX -> TFLite float32, float16 and full-int8 (int8 in/out) through onnx2tf.

onnx2tf writes a SavedModel and half a dozen .tflite files and prints a lot: it runs in a scratch directory
beside the outputs (`staging.work_directory`, never the system temp directory, so a killed conversion leaves
nothing there) with its output captured, and only the artifacts asked for are moved out.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from .errors import ConversionError
from .model_info import OnnxModelInfo

# precision -> suffix onnx2tf gives the file (<stem>_<suffix>.tflite)
ONNX2TF_SUFFIX = {"fp32": "float32", "fp16": "float16", "int8": "full_integer_quant"}


def convert_tflite(info: OnnxModelInfo, out_paths: dict[str, Path], calib_canvases: np.ndarray | None,
                   mean: float, std: float, name: str | None = None) -> dict[str, Path]:
    """Convert `info.path` with onnx2tf and move the requested precisions to `out_paths`.

    Args:
        info: the ONNX model (single image input).
        out_paths: precision ("fp32", "fp16", "int8") -> destination file.
        calib_canvases: (N, H, W, C) float32 canvases in [0, 1]; needed for "int8".
        mean, std: the model's input normalisation, applied by onnx2tf to the calibration canvases.
        name: how messages name the model (default `info.path`).

    Returns:
        The same mapping, once every file is in place.
    """
    from .quiet import captured_output
    from .staging import work_directory

    name = name or info.path
    want_int8 = "int8" in out_paths
    with work_directory(Path(next(iter(out_paths.values()))).parent, ".onnx2tf-") as tmp_dir:
        src = tmp_dir / "model.onnx"
        shutil.copyfile(info.path, src)
        kwargs: dict = dict(input_onnx_file_path=str(src), output_folder_path=str(tmp_dir / "out"),
                            copy_onnx_input_output_names_to_tflite=True, non_verbose=True,
                            output_integer_quantized_tflite=want_int8)
        if info.layout == "NHWC":  # e.g. a Keras model via tf2onnx: without this onnx2tf reads it as NCHW
            kwargs["keep_shape_absolutely_input_names"] = [info.input_name]
        if want_int8:
            if calib_canvases is None:
                raise ConversionError("int8 TFLite needs calibration canvases")
            calib_path = tmp_dir / "calib.npy"
            np.save(calib_path, np.ascontiguousarray(calib_canvases, dtype=np.float32))
            c = calib_canvases.shape[-1]
            kwargs["custom_input_op_name_np_data_path"] = [[
                info.input_name, str(calib_path),
                np.full((1, 1, 1, c), mean, np.float32), np.full((1, 1, 1, c), std, np.float32)]]
            kwargs["quant_type"] = "per-channel"
        with captured_output() as log, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # onnx2tf's own tf.lite.Interpreter deprecation notices
            try:
                import onnx2tf  # heavy: pulls in tensorflow (its import logs are captured too)

                onnx2tf.convert(**kwargs)
                error = None
            except (Exception, SystemExit) as e:  # onnx2tf calls sys.exit on some failures
                error = e
        text = log[0] if log and log[0] else ""
        tail = "\n".join(text.strip().splitlines()[-8:])
        if error is not None:
            raise ConversionError(onnx2tf_failure(name, info.path, error, text))
        for precision, dst in out_paths.items():
            made = tmp_dir / "out" / f"model_{ONNX2TF_SUFFIX[precision]}.tflite"
            if not made.is_file():
                raise ConversionError(f"{name}: onnx2tf did not write the {precision} TFLite model "
                                      f"({made.name}); files written: {sorted(os.listdir(tmp_dir / 'out'))}; "
                                      f"its last output:\n{tail}")
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(made), str(dst))
    return out_paths


def onnx2tf_failure(name: str, model_path: str, error: BaseException, log: str) -> str:
    """A few lines for a failed onnx2tf run: the op it stopped at (onnx2tf logs `onnx_op_name: X`; its type is read
    from the model) and the first line of the error, never the tensors onnx2tf puts in its messages."""
    import re

    from edgekd_runtime.errors import first_line

    names = re.findall(r"onnx_op_name:\s*(\S+)", log)
    where = ""
    if names:
        op_type = _op_type(model_path, names[-1])
        where = f" at node {names[-1]!r}" + (f" (op {op_type})" if op_type else "")
    message = re.split(r"\s*\[\s*[\[\d-]", first_line(error, 160))[0]  # onnx2tf's messages print whole tensors
    message = re.sub(r"(\s*Found:?|[\s:.])+$", "", message)  # ... after a "Found:" that would now point at nothing
    fix = "replace that op and re-export the model" if names else "re-export the model with standard ONNX ops"
    return f"{name}: onnx2tf failed{where}: {message}; convert to onnx-int8 only (--to onnx-int8), or {fix}"


def _op_type(model_path: str, node_name: str) -> str | None:
    import onnx

    try:
        model = onnx.load(model_path, load_external_data=False)
    except Exception:  # noqa: BLE001 - only a detail of an error message
        return None
    return next((n.op_type for n in model.graph.node if n.name == node_name), None)
