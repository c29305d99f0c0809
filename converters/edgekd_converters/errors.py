"""Typed errors of the converters, built on the shared `edgekd_runtime.errors` hierarchy.

`UserInputError` subclasses are the user's to fix (CLI exit 2); `ParityError` and `ConversionError` mean the
conversion ran but its result cannot be trusted or the converter itself failed (CLI exit 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from edgekd_runtime.errors import EdgekdError, InputShapeError, ModelLoadError, UserInputError

if TYPE_CHECKING:
    from .parity import ParityResult, SequenceParityResult

__all__ = [
    "CalibrationDataError",
    "ConversionError",
    "InputShapeError",
    "ModelLoadError",
    "OutputExistsError",
    "ParityError",
    "UserInputError",
    "UnsupportedOpError",
]


class UnsupportedOpError(UserInputError):
    """An ONNX model with an operator the chosen conversion path cannot handle."""

    def __init__(self, path: str, target: str, nodes: Sequence[tuple[str, str, str]]) -> None:
        self.path, self.target, self.nodes = path, target, list(nodes)
        shown = "; ".join(f"op {op!r} (domain {dom or 'ai.onnx'!r}) at node {name!r}" for op, dom, name in nodes[:5])
        more = f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
        super().__init__(f"{path}: cannot convert to {target}: {shown}{more}; replace the op in the model "
                         f"(re-export with standard ONNX ops) or pick another --to target")


class CalibrationDataError(UserInputError):
    """Calibration or evaluation samples that are missing, too few, of the wrong shape or out of range."""


class OutputExistsError(UserInputError):
    """An output path that already exists, without permission to replace it."""


class ConversionError(EdgekdError):
    """A converter (onnx2tf, onnxruntime.quantization) failed on a model it accepted."""


class ParityError(EdgekdError):
    """A converted artifact whose outputs differ from the reference beyond its declared tolerance."""

    def __init__(self, artifact: str, result: "ParityResult | SequenceParityResult") -> None:
        self.artifact, self.result = artifact, result
        super().__init__(
            f"{artifact}: {result.summary()}; the artifact was not written: check the input "
            f"layout/normalisation, or use more representative calibration data")
