"""edgekd_converters: ONNX -> TFLite (float32/float16/full-int8) and ONNX int8, each checked for parity.

Never imports torch; tensorflow/onnx2tf are imported only when a TFLite conversion runs.
"""

from .calibration import MAX_CALIBRATION_SAMPLES, MIN_CALIBRATION_SAMPLES, check_canvases, load_samples
from .convert import ConversionReport, ConvertedArtifact, convert_model, to_onnx_int8, to_tflite
from .errors import CalibrationDataError, ConversionError, OutputExistsError, ParityError, UnsupportedOpError
from .parity import TOLERANCES, ParityResult, Tolerance

__version__ = "0.1.0"

__all__ = [
    "MAX_CALIBRATION_SAMPLES", "MIN_CALIBRATION_SAMPLES", "TOLERANCES", "CalibrationDataError", "ConversionError",
    "ConversionReport", "ConvertedArtifact", "OutputExistsError", "ParityError", "ParityResult", "Tolerance",
    "UnsupportedOpError",
    "check_canvases", "convert_bundle", "convert_model", "load_samples", "to_onnx_int8", "to_tflite",
]


def __getattr__(name: str):
    if name == "convert_bundle":
        from .bundle import convert_bundle

        return convert_bundle
    raise AttributeError(f"module 'edgekd_converters' has no attribute {name!r}")
