"""Build the tiny TFLite test assets (run once on the workstation; the tests never import tensorflow).

    .venv/bin/python tests/runtime/assets/make_tiny_tflite.py

Model: NHWC (1, 28, 28, 1) float input -> 7x7 average pool (stride 7) -> flatten (16) -> dense (10) logits,
with seeded weights saved to ``tiny_weights.npz`` so a test can recompute the output with numpy alone.
Writes ``tiny_fp32.tflite`` (float I/O) and ``tiny_int8.tflite`` (full-integer quantized, int8 I/O,
calibrated on MNIST-normalised random canvases).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent
MEAN, STD = 0.1307, 0.3081


def main() -> None:
    rng = np.random.default_rng(20261123)
    w = rng.normal(0.0, 0.5, size=(16, 10)).astype(np.float32)
    b = rng.normal(0.0, 0.1, size=(10,)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, 28, 28, 1], tf.float32, name="input")])
    def model(x):
        p = tf.nn.avg_pool2d(x, ksize=7, strides=7, padding="VALID")
        return {"logits": tf.matmul(tf.reshape(p, [1, 16]), w) + b}

    conc = model.get_concrete_function()
    fp32 = tf.lite.TFLiteConverter.from_concrete_functions([conc], model).convert()

    def representative():
        for _ in range(64):
            canvas = (rng.random((1, 28, 28, 1)) < 0.2).astype(np.float32) * rng.random((1, 28, 28, 1))
            yield [((canvas - MEAN) / STD).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([conc], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    int8 = conv.convert()

    (HERE / "tiny_fp32.tflite").write_bytes(fp32)
    (HERE / "tiny_int8.tflite").write_bytes(int8)
    np.savez(HERE / "tiny_weights.npz", w=w, b=b)
    print(f"tiny_fp32.tflite {len(fp32)} B, tiny_int8.tflite {len(int8)} B")


if __name__ == "__main__":
    main()
