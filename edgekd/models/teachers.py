"""Teachers (a registry of built-in architectures) and loading a user's teacher.

A teacher can be:
  * an edgekd teacher checkpoint written by `edgekd teacher train` (`teacher.pt`);
  * a TorchScript file (`torch.jit.save`) or a `torch.export` ExportedProgram file (`torch.export.save`, `.pt2`);
  * a plain state_dict for a registered architecture (`--teacher-arch cnn`), loaded with `weights_only=True`;
  * an ONNX or TFLite file from any framework, run by edgekd_runtime (`foreign_teachers`);
  * several of these separated by commas: an ensemble (`ensemble.ProbabilityEnsemble`, the mean posterior).
Teachers take (N, 1, 28, 28) normalised canvases and return logits (N, C). A teacher whose C differs from the
data's class count is refused, and so is one that does not run on a batch. A teacher file made elsewhere may
declare the input scaling it was trained with (`foreign_teachers.TeacherScale`, MNIST's by default).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgekd_runtime.errors import ModelLoadError, UserInputError, first_line
from edgekd_runtime.registry import Registry

from .foreign_teachers import (
    RUNTIME_SUFFIXES,
    TEACHER_INPUT_SIZE,
    TeacherScale,
    input_scale,
    load_runtime_teacher,
    parse_teacher_scale,
)

if TYPE_CHECKING:
    from torch import nn

TEACHERS: Registry[Callable[[int], "nn.Module"]] = Registry("teacher")
DEFAULT_TEACHER = "cnn"


class TeacherMismatchError(UserInputError):
    """A teacher whose number of outputs does not match the data's classes."""


# The built-in architectures need torch: they live in these modules, imported when one of them is first built.
TEACHERS.declare("edgekd.models.teacher_nets", "cnn", "cnn-small")
TEACHERS.declare("edgekd.models.line_nets", "crnn", "crnn-small", "convctc")


@dataclass
class Teacher:
    """A loaded teacher: the module (eval mode), where it came from, whether it exposes `features`, and the
    normalisation its input takes ({mean, std}; None: MNIST's, the default of every teacher file but a
    checkpoint that records its own)."""

    model: "nn.Module"
    name: str
    source: str
    has_features: bool
    normalization: dict | None = None


def check_num_classes(model: "nn.Module", num_classes: int, where: str) -> None:
    """Run a dummy input, then a batch of 3, through `model`; refuse it unless it returns (N, num_classes) logits."""
    import torch

    for n in (1, 3):
        try:
            with torch.inference_mode():
                out = model(torch.zeros(1, 1, TEACHER_INPUT_SIZE, TEACHER_INPUT_SIZE) if n == 1
                            else torch.randn(n, 1, TEACHER_INPUT_SIZE, TEACHER_INPUT_SIZE,
                                             generator=torch.Generator().manual_seed(0)))
        except Exception as e:  # noqa: BLE001 - user models fail in many ways
            raise ModelLoadError(f"teacher {where} does not run on a ({n}, 1, 28, 28) input ({_cause(e)}); "
                                 f"it must take (N, 1, 28, 28) normalised canvases with a dynamic batch "
                                 f"(torch.export: dynamic_shapes={{'x': {{0: Dim('batch')}}}})") from None
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim != 2 or out.shape[1] != num_classes:
            raise TeacherMismatchError(f"teacher {where} outputs shape {tuple(out.shape)} but the data has "
                                       f"{num_classes} classes; use a teacher trained on these classes or pick the "
                                       f"matching data")


def _cause(e: BaseException) -> str:
    """`first_line`, or for an error raised inside TorchScript (whose first line only says that) its last line,
    which names the exception the model raised (`builtins.RuntimeError: ...`)."""
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    if len(lines) > 1 and "TorchScript interpreter" in lines[0]:
        return lines[-1].removeprefix("builtins.")[:200]
    return first_line(e, 200)


def load_teacher(ref: str, num_classes: int, arch: str | None = None,
                 scale: TeacherScale | str | None = None) -> Teacher:
    """Load a digit teacher from a file (see module doc), fed its declared input `scale` (a `TeacherScale` or its
    text; MNIST's by default), and check its class count. Eval mode, on the CPU."""
    if "," in ref:
        return _ensemble([load_teacher(r, num_classes, arch, scale) for r in teacher_files(ref)])
    path = Path(ref).expanduser()
    scale = scale if isinstance(scale, TeacherScale) else parse_teacher_scale(scale)
    if path.suffix.lower() in RUNTIME_SUFFIXES:
        if not path.is_file():
            raise ModelLoadError(f"teacher file {path} not found; pass an existing {path.suffix} file")
        model = load_runtime_teacher(path, num_classes, scale)
        return Teacher(model, path.stem, path.suffix[1:].lower(), has_features=False)
    model, source, ck = load_teacher_module(path, arch, num_classes=num_classes)
    if ck is not None and ck.get("task", "digits") != "digits":
        raise TeacherMismatchError(f"teacher {path} reads text lines (task {ck.get('task')!r}); digits need a digit "
                                   f"teacher, or pass --task lines to read lines")
    if ck is not None and not scale.is_default:
        raise UserInputError(f"teacher {path} is an edgekd checkpoint, which carries its own normalisation; leave "
                             f"--teacher-scale ({scale.label}) out")
    model = input_scale(model, scale)
    check_num_classes(model, num_classes, str(path))
    name = ck["arch"] if ck is not None else (arch if source == "state-dict" else path.stem)
    return Teacher(model, name, source, has_features=hasattr(model, "features") and source != "torchscript",
                   normalization=None if ck is None else ck.get("normalization"))


def teacher_files(ref: str) -> list[str]:
    """The files of a teacher reference: one path, or an ensemble's paths separated by commas."""
    return [part.strip() for part in ref.split(",") if part.strip()]


def check_teacher_files(ref: str, task: str) -> None:
    """Refuse, before any data is read, a teacher (one file, or an ensemble's separated by commas) that is no
    readable file (missing, a directory, ...), and for the lines task an ONNX / TFLite file: line teachers are
    edgekd line checkpoints (or TorchScript / ExportedProgram files), the runtime formats are for digits."""
    from edgekd_runtime.images import check_readable

    for part in teacher_files(ref):
        path = Path(part).expanduser()
        try:
            check_readable(path, ModelLoadError, "teacher")
        except ModelLoadError as e:
            raise ModelLoadError(f"teacher {e}") from None
        if task == "lines" and path.suffix.lower() in RUNTIME_SUFFIXES:
            raise UserInputError(f"teacher {path}: {path.suffix} files are digit teachers only; a line teacher is an "
                                 f"edgekd line checkpoint (`edgekd teacher train --task lines` writes teacher.pt) "
                                 f"or a TorchScript / ExportedProgram file")


def _ensemble(members: list[Teacher]) -> Teacher:
    """Teachers as one (the mean of their posteriors); members that carry their own normalisation must agree."""
    from .ensemble import ProbabilityEnsemble

    norms = {str(m.normalization) for m in members}
    if len(norms) > 1:
        raise UserInputError(f"the ensemble's teachers expect different input normalisations ({', '.join(norms)}); "
                             f"ensemble teachers trained on the same normalisation")
    return Teacher(ProbabilityEnsemble([m.model for m in members]).eval(),
                   "ensemble(" + "+".join(m.name for m in members) + ")", "ensemble", has_features=False,
                   normalization=members[0].normalization)


def load_checked_teacher(ref: str, splits: Any, arch: str | None = None,
                         scale: TeacherScale | str | None = None) -> Teacher:
    """`load_teacher` for `splits`' classes, then `foreign_teachers.check_teacher_scale` on its val split: an
    `EdgekdWarning` when the teacher is implausibly inaccurate with the declared scaling (the CLIs print it as
    one `warning:` line)."""
    import warnings

    from edgekd_runtime.errors import EdgekdWarning

    from .foreign_teachers import check_teacher_scale

    scale = scale if isinstance(scale, TeacherScale) else parse_teacher_scale(scale)
    teacher = load_teacher(ref, splits.num_classes, arch, scale)
    if teacher.source == "edgekd-checkpoint":  # trained here, on this normalisation
        return teacher
    make = lambda s: teacher.model if s == scale else load_teacher(ref, splits.num_classes, arch, s).model  # noqa: E731
    note = check_teacher_scale(make, scale, splits.val.x, splits.val.y, str(ref))
    if note:
        warnings.warn(note, EdgekdWarning, stacklevel=2)
    return teacher


def load_teacher_module(path: Path, arch: str | None, num_classes: int | None = None, task: str = "digits",
                        height: int | None = None) -> tuple["nn.Module", str, dict | None]:
    """Load the module of a teacher file: (model in eval mode, source kind, the edgekd checkpoint dict or None).

    `num_classes` (when given) must match an edgekd checkpoint's; `task`/`height` build line architectures.
    """
    import torch

    if not path.is_file():
        raise ModelLoadError(f"teacher file {path} not found; train one with `edgekd teacher train --out DIR` "
                             f"or pass a TorchScript / ExportedProgram / state_dict file")
    ck = None
    if path.suffix == ".pt2":
        model, source = _load_exported(path), "exported-program"
    elif zipfile.is_zipfile(path) and _is_torchscript(path):
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"teacher {path} looks like TorchScript but does not load: {e}") from None
        source = "torchscript"
    else:
        from edgekd.train.checkpoint import check_model_checkpoint, load_torch

        obj = load_torch(path)
        if isinstance(obj, dict) and obj.get("format") == "edgekd-checkpoint":
            if obj.get("kind") != "teacher":
                raise ModelLoadError(f"{path} is an edgekd {obj.get('kind')} checkpoint, not a teacher")
            check_model_checkpoint(obj, path)
            ck, arch, state, source = obj, obj["arch"], obj["state_dict"], "edgekd-checkpoint"
            if obj.get("task", "digits") != task:
                return torch.nn.Identity(), source, ck  # the caller refuses it with a task-specific message
            if num_classes is not None and int(obj["num_classes"]) != num_classes:
                raise TeacherMismatchError(f"teacher {path} was trained for {obj['num_classes']} classes but the "
                                           f"data has {num_classes}; retrain it on this data (edgekd teacher train)")
            num_classes = int(obj["num_classes"])
            if task == "lines":  # rebuilt at its own height; the caller compares it with the data's
                height = int(obj.get("input_height", height))
        elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
            if arch is None:
                raise UserInputError(f"{path} is a bare state_dict: say which architecture it is for with "
                                     f"--teacher-arch (known: {', '.join(TEACHERS.names())})")
            state, source = obj, "state-dict"
        else:
            raise ModelLoadError(f"{path} is not an edgekd checkpoint, TorchScript, ExportedProgram or state_dict")
        model = _build_teacher(arch, num_classes, task, height)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            msg = str(e).splitlines()[0]
            if "size mismatch" in str(e) and "head" in str(e):
                raise TeacherMismatchError(f"teacher {path} does not have {num_classes} outputs ({msg})") from None
            raise ModelLoadError(f"teacher {path} does not fit architecture {arch!r}: {msg}") from None
    return to_eval(model), source, ck


def _build_teacher(arch: str, num_classes: int | None, task: str, height: int | None) -> "nn.Module":
    from .line_models import is_line_model

    if is_line_model(arch) != (task == "lines"):
        kind = "text lines" if is_line_model(arch) else "single digits"
        raise TeacherMismatchError(f"teacher architecture {arch!r} reads {kind}, not the {task} task")
    factory = TEACHERS.get(arch)
    return factory(num_classes, height=height) if task == "lines" else factory(num_classes)


def to_eval(model: "nn.Module") -> "nn.Module":
    """Eval mode. An ExportedProgram's module refuses .eval(): its graph is frozen in the mode it was exported in
    (export teachers after `model.eval()`)."""
    try:
        return model.eval()
    except NotImplementedError:
        return model


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def _load_exported(path: Path) -> "nn.Module":
    """`torch.export.load(path).module()`. torch logs a traceback (about 18 lines, at WARNING) for a file it cannot
    read, then raises a vaguer error of its own: the log is kept off the console and its cause goes in the
    message."""
    import logging

    import torch

    class _Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.causes: list[BaseException] = []

        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info and record.exc_info[1] is not None:
                self.causes.append(record.exc_info[1])

    log, keep = logging.getLogger("torch.export"), _Keep()
    handlers, propagate = list(log.handlers), log.propagate
    for h in handlers:  # torch gives this logger its own stderr handler
        log.removeHandler(h)
    log.addHandler(keep)
    log.propagate = False
    try:
        return torch.export.load(str(path)).module()
    except Exception as e:  # noqa: BLE001
        cause = first_line(keep.causes[0], 120) if keep.causes else first_line(e, 120)
        raise ModelLoadError(f"cannot load ExportedProgram {path} ({cause}); pass a file written by "
                             f"torch.export.save, a TorchScript file or an edgekd teacher.pt") from None
    finally:
        log.removeHandler(keep)
        for h in handlers:
            log.addHandler(h)
        log.propagate = propagate


from . import line_models  # noqa: E402,F401  registers the line teachers (crnn, crnn-small)
