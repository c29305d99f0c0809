"""Teachers from any framework: ONNX and TFLite files run by edgekd_runtime, and the input scaling a teacher file
expects.

Every teacher takes (N, 1, 28, 28) MNIST-normalised canvases and returns (N, C) logits (`teachers` module doc).
A file made elsewhere declares what it was trained on with a `TeacherScale` (`--teacher-scale 0-1`, `0-255` or
`MEAN,STD`; MNIST's 0.1307,0.3081 by default, as edgekd's own teachers): `InputScale` turns the canvases into
that before a torch teacher sees them, and an ONNX/TFLite teacher is opened by `edgekd_runtime.load` with that
normalisation (which also reads its layout, NCHW or NHWC or flat, a fixed batch, int8 inputs and outputs).
An ONNX file is checked with onnx first and normalised when it is foreign (`edgekd_converters.normalize`: an old
opset upgraded, weights listed as graph inputs made initializers), its output read as logits, or as
probabilities (non-negative rows summing to 1) whose log is taken. `check_teacher_scale` warns when the
teacher's accuracy on the val split is implausibly low for the declared scaling and names a scaling that does
better.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgekd_runtime.errors import InputShapeError, ModelLoadError, UserInputError, first_line
from edgekd_runtime.manifest import MNIST_MEAN, MNIST_STD, check_normalization

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

RUNTIME_SUFFIXES = (".onnx", ".tflite")
TEACHER_INPUT_SIZE = 28
PLAUSIBLE_ACCURACY = 0.5  # below this on the val split, the declared scaling is checked against the others
MUCH_BETTER = 0.2  # another scaling "would give much more" when it is this much (absolute) more accurate


class TeacherScaleError(UserInputError):
    """A --teacher-scale that is not 0-1, 0-255 or MEAN,STD."""


@dataclass(frozen=True)
class TeacherScale:
    """What a teacher file takes: (canvas in [0, 1] - mean) / std. `label` is how the user writes it."""

    label: str
    mean: float
    std: float

    @property
    def is_default(self) -> bool:
        return (self.mean, self.std) == (MNIST_MEAN, MNIST_STD)


DEFAULT_SCALE = TeacherScale(f"{MNIST_MEAN},{MNIST_STD}", MNIST_MEAN, MNIST_STD)
NAMED_SCALES = {"0-1": TeacherScale("0-1", 0.0, 1.0), "0-255": TeacherScale("0-255", 0.0, 1 / 255),
                "mnist": DEFAULT_SCALE}


def parse_teacher_scale(text: str | None) -> TeacherScale:
    """`0-1`, `0-255`, `mnist` or `MEAN,STD` (of canvases in [0, 1]); None is MNIST's mean and std."""
    if text is None:
        return DEFAULT_SCALE
    t = str(text).strip()
    if t in NAMED_SCALES:
        return NAMED_SCALES[t]
    parts = t.split(",")
    try:
        mean, std = (float(p) for p in parts)
    except ValueError:
        raise TeacherScaleError(f"teacher scale {text!r}: give 0-1 (pixels / 255), 0-255 (raw pixels) or MEAN,STD "
                                f"of pixels / 255 (e.g. 0.1307,0.3081, MNIST's)") from None
    check_normalization(mean, std, f"teacher scale {text!r}", TeacherScaleError)
    return TeacherScale(t, mean, std)


def _canvases(x: Any) -> Any:
    """MNIST-normalised canvases (a torch tensor) back to [0, 1]."""
    return x * MNIST_STD + MNIST_MEAN


def input_scale(model: "nn.Module", scale: TeacherScale) -> "nn.Module":
    """`model` fed its declared scaling (itself for MNIST's, what every torch teacher gets by default)."""
    from torch import nn

    if scale.is_default:
        return model

    class InputScale(nn.Module):
        """MNIST-normalised canvases -> (canvas - mean) / std, then the wrapped teacher."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: Any) -> Any:
            return self.inner((_canvases(x) - scale.mean) / scale.std)

    return InputScale()


def load_runtime_teacher(path: Path, num_classes: int, scale: TeacherScale) -> "nn.Module":
    """An ONNX or TFLite teacher file as a torch module (see the module doc); checked on a batch of 3."""
    import numpy as np

    rec = _open(path, scale)
    if rec.size != TEACHER_INPUT_SIZE:
        raise InputShapeError(f"teacher {path} takes {rec.size}x{rec.size} images ({rec.input_spec.layout} "
                              f"{list(rec.input_spec.shape)}); digit teachers take 28x28 canvases: re-export it "
                              f"for 28x28 input")
    if len(rec.backend.outputs) != 1:
        names = ", ".join(f"{o.name} {list(o.shape)}" for o in rec.backend.outputs)
        raise ModelLoadError(f"teacher {path} has {len(rec.backend.outputs)} outputs ({names}); a teacher has one "
                             f"output of logits or probabilities: export the model with only that output")
    probe = np.random.default_rng(0).random((3, TEACHER_INPUT_SIZE, TEACHER_INPUT_SIZE), dtype=np.float32)
    try:
        y = rec.forward(probe)
    except UserInputError:  # ours already says what is wrong and what to do (NaN scores, ...): whole, not cut
        raise
    except Exception as e:  # noqa: BLE001 - a foreign model fails in many ways at run time
        raise ModelLoadError(f"teacher {path} does not run on a batch of 3 28x28 canvases ({first_line(e, 160)}); "
                             f"it must take one image batch (N, 1, 28, 28), (N, 28, 28, 1) or (N, 784)") from None
    if y.shape != (3, num_classes):
        from .teachers import TeacherMismatchError

        raise TeacherMismatchError(f"teacher {path} outputs {y.shape[1]} scores per image but the data has "
                                   f"{num_classes} classes; use a teacher trained on these classes or pick the "
                                   f"matching data")
    from edgekd_runtime.recognizer import looks_like_probabilities

    return _runtime_module(rec, looks_like_probabilities(y))


def _open(path: Path, scale: TeacherScale) -> Any:
    """`edgekd_runtime.load` on the file, or on its normalised copy when it is a foreign ONNX graph."""
    import edgekd_runtime

    if path.suffix.lower() != ".onnx":
        return edgekd_runtime.load(path, mean=scale.mean, std=scale.std)
    from edgekd_converters.model_info import load_onnx
    from edgekd_converters.normalize import normalize_model

    model, steps = normalize_model(load_onnx(path), str(path))
    if not steps:
        return edgekd_runtime.load(path, mean=scale.mean, std=scale.std)
    import onnx

    with tempfile.TemporaryDirectory(prefix="edgekd_teacher_") as tmp:  # onnxruntime reads it whole at load
        copy = Path(tmp) / path.name
        onnx.save(model, str(copy))
        return edgekd_runtime.load(copy, mean=scale.mean, std=scale.std)


def _runtime_module(rec: Any, probs: bool) -> "nn.Module":
    import numpy as np
    import torch
    from torch import nn

    class RuntimeTeacher(nn.Module):
        """A teacher run by edgekd_runtime: MNIST-normalised (N, 1, 28, 28) tensors in, (N, C) float32 logits out
        on the input's device (the log of the model's probabilities when it outputs probabilities)."""

        def __init__(self) -> None:
            super().__init__()
            self.recognizer, self.outputs_probabilities = rec, probs

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            c = _canvases(x.detach().float()).clamp_(0.0, 1.0).cpu().numpy()[:, 0]
            y = rec.forward(np.ascontiguousarray(c))
            if probs:
                y = np.log(np.clip(y, 1e-12, None))
            return torch.from_numpy(np.ascontiguousarray(y, np.float32)).to(x.device)

    return RuntimeTeacher()



def check_teacher_scale(make: Callable[[TeacherScale], "nn.Module"], declared: TeacherScale, x: "np.ndarray",
                        y: "np.ndarray", where: str) -> str | None:
    """A warning when the teacher is implausibly inaccurate on the val split (`x` uint8 canvases, `y`) with the
    declared scaling (< `PLAUSIBLE_ACCURACY`), naming a scaling that gives much more when there is one; None when
    its accuracy is plausible. `make(scale)` builds the teacher for a scaling."""
    from edgekd.train.device import resolve_device
    from edgekd.train.trainer import evaluate

    if len(y) == 0:
        return None
    cpu = resolve_device("cpu")
    acc = evaluate(make(declared), x, y, cpu)[0]
    if acc >= PLAUSIBLE_ACCURACY:
        return None
    others = {s.label: evaluate(make(s), x, y, cpu)[0] for s in NAMED_SCALES.values() if s != declared}
    best = max(others, key=lambda k: others[k])
    head = (f"teacher {where} is {acc:.1%} accurate on the {len(y)} val digits with teacher scale "
            f"{declared.label}")
    if others[best] >= acc + MUCH_BETTER:
        return f"{head}; with {best} it is {others[best]:.1%}: pass --teacher-scale {best} (or teacher_scale: {best})"
    return (f"{head}, and no other scaling does much better ({', '.join(f'{k}: {v:.1%}' for k, v in others.items())})"
            f": check it was trained on these classes, in this order, on light ink on a dark background")
