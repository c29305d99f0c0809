"""edgekd_runtime: run edgekd students on a board with numpy, pillow, onnxruntime and a TFLite interpreter.

Never imports torch or tensorflow (tensorflow.lite is only a last, lazy fallback interpreter).
"""

__version__ = "0.1.0"
