"""Run an .onnx or .tflite classifier on a batch of model-space inputs (already normalised) and return float
outputs (int8 models are quantized on the way in and dequantized on the way out).

Inputs are given in the ONNX model's layout; a TFLite model made by onnx2tf takes NHWC, so NCHW batches are
transposed for it. Used for parity; accuracy is measured through `edgekd_runtime` as the board runs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgekd_runtime.manifest import Normalization
from edgekd_runtime.quantize import InputQuantizer, dequantize

from .errors import ModelLoadError

BATCH = 256


def run_onnx(path: str | os.PathLike, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Outputs of an ONNX model's first output on `x` (batched in chunks of `BATCH`)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelLoadError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0][:200]})") from None
    inp = sess.get_inputs()[0]
    fixed = isinstance(inp.shape[0], int) and inp.shape[0] > 0  # a fixed-batch model: feed exactly that many
    batch = inp.shape[0] if fixed else BATCH
    outs = []
    for i in range(0, len(x), batch):
        n = len(x[i:i + batch])
        outs.append(sess.run(None, {inp.name: _pad(x[i:i + batch], batch if fixed else 0)})[0][:n])
    return np.concatenate(outs).astype(np.float32)


def _pad(chunk: np.ndarray, batch: int) -> np.ndarray:
    """float32 chunk, zero-padded to `batch` rows for a fixed-batch model (0 = leave as is)."""
    chunk = np.ascontiguousarray(chunk, dtype=np.float32)
    if batch and len(chunk) < batch:
        chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.float32)])
    return chunk


def make_tflite_interpreter(path: str | os.PathLike, threads: int = 1):
    """A TFLite interpreter found as the board finds one (`edgekd_runtime.backend_tflite.find_interpreter`:
    ai_edge_litert, else tflite_runtime, else tensorflow.lite, skipping one that is installed but broken)."""
    from edgekd_runtime.backend_tflite import find_interpreter

    from .quiet import captured_output

    interpreter_cls, _, _ = find_interpreter()
    try:
        with captured_output():  # LiteRT prints "Created TensorFlow Lite XNNPACK delegate" on fd 2
            return interpreter_cls(model_path=str(path), num_threads=threads)
    except Exception as e:
        raise ModelLoadError(f"{path}: the TFLite interpreter cannot load it ({str(e)[:200]})") from None


def run_tflite(path: str | os.PathLike, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Outputs of a TFLite model on `x` (NCHW or NHWC float; transposed to the model's layout if needed)."""
    it = make_tflite_interpreter(path, threads)
    inp = it.get_input_details()[0]
    model_shape = tuple(int(d) for d in inp["shape"][1:])
    if tuple(x.shape[1:]) != model_shape:
        if x.ndim == 4 and tuple(np.transpose(x, (0, 2, 3, 1)).shape[1:]) == model_shape:
            x = np.transpose(x, (0, 2, 3, 1))
        else:
            raise ModelLoadError(f"{Path(path).name}: takes input {list(model_shape)} per sample; got "
                                 f"{list(x.shape[1:])}")
    from .quiet import captured_output

    outs = []
    with captured_output():  # the XNNPACK delegate announces itself on fd 2 at the first allocate
        for chunk_out in _invoke_chunks(it, inp, x, model_shape):
            outs.append(chunk_out)
    return np.concatenate(outs)


def _invoke_chunks(it, inp, x: np.ndarray, model_shape: tuple[int, ...]):
    signature = inp.get("shape_signature")
    fixed = signature is not None and len(signature) and int(signature[0]) > 0  # a fixed-batch model
    batch = int(inp["shape"][0]) if fixed else BATCH
    if fixed:
        it.allocate_tensors()
    o = it.get_output_details()[0]  # resizing the batch keeps the tensors' indices, dtypes and quantization
    quantize = InputQuantizer.of(Normalization(0.0, 1.0), *inp["quantization"], inp["dtype"]) \
        if inp["dtype"] in (np.int8, np.uint8) else None  # the board's rule, on inputs normalised already
    for i in range(0, len(x), batch):
        n = len(x[i:i + batch])
        chunk = _pad(x[i:i + batch], batch if fixed else 0)
        if not fixed:
            it.resize_tensor_input(inp["index"], [len(chunk), *model_shape])
            it.allocate_tensors()
        if quantize is not None:
            chunk = quantize(chunk, np.empty(chunk.shape, inp["dtype"]))
        it.set_tensor(inp["index"], chunk)
        it.invoke()
        y = it.get_tensor(o["index"])
        if o["dtype"] in (np.int8, np.uint8):
            y = dequantize(y, *o["quantization"])
        yield np.asarray(y, dtype=np.float32).reshape(len(chunk), -1)[:n]
