"""edgekd_runtime: run edgekd students on a board with numpy, pillow, OpenCV, onnxruntime and a TFLite interpreter.

Never imports torch or tensorflow (tensorflow.lite is only a last, lazy fallback interpreter)::

    import edgekd_runtime as rt
    rec = rt.load("bundle/")                 # or "student.onnx" / "student_int8.tflite"
    rec.predict("photo_of_a_7.jpg")          # Prediction(label='7', probability=0.98, ...)
    rec.benchmark(runs=200).to_dict()        # benchmark_model-style latency report
    lines = rt.load("line_bundle/")          # a text-line bundle -> LineRecognizer
    lines.read("meter.jpg").text             # Reading(text='004217', confidence=0.97, characters=[...])
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    BackendUnavailableError,
    BlankImageError,
    ChecksumMismatchError,
    EdgekdError,
    ImageError,
    InputShapeError,
    ManifestError,
    ModelLoadError,
    MultipleLinesError,
    UserInputError,
    WrongTaskError,
)
from .line_recognizer import LineRecognizer, Reading  # noqa: E402
from .loader import load  # noqa: E402
from .preprocess import resize_canvas  # noqa: E402  (edgekd_runtime.preprocess stays the module)
from .recognizer import Prediction, Recognizer  # noqa: E402

__all__ = [
    "load", "Recognizer", "Prediction", "LineRecognizer", "Reading", "WrongTaskError", "resize_canvas", "EdgekdError",
    "UserInputError",
    "ModelLoadError", "ManifestError", "ChecksumMismatchError", "ImageError", "BlankImageError", "MultipleLinesError",
    "InputShapeError", "BackendUnavailableError", "__version__",
]
