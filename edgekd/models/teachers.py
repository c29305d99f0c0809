"""Teachers (a registry of built-in architectures) and loading a user's teacher.

A teacher can be:
  * an edgekd teacher checkpoint written by `edgekd teacher train` (`teacher.pt`);
  * a TorchScript file (`torch.jit.save`) or a `torch.export` ExportedProgram file (`torch.export.save`, `.pt2`);
  * a plain state_dict for a registered architecture (`--teacher-arch cnn`), loaded with `weights_only=True`.
Teachers take (N, 1, 28, 28) normalised canvases and return logits (N, C). A teacher whose C differs from the
data's class count is refused.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from edgekd_runtime.errors import ModelLoadError, UserInputError, first_line
from edgekd_runtime.registry import Registry

if TYPE_CHECKING:
    from torch import nn

TEACHERS: Registry[Callable[[int], "nn.Module"]] = Registry("teacher")
DEFAULT_TEACHER = "cnn"
TEACHER_INPUT_SIZE = 28


class TeacherMismatchError(UserInputError):
    """A teacher whose number of outputs does not match the data's classes."""


# The built-in architectures need torch: they live in these modules, imported when one of them is first built.
TEACHERS.declare("edgekd.models.teacher_nets", "cnn", "cnn-small")
TEACHERS.declare("edgekd.models.line_nets", "crnn", "crnn-small", "convctc")


@dataclass
class Teacher:
    """A loaded teacher: the module (eval mode), where it came from and whether it exposes `features`."""

    model: "nn.Module"
    name: str
    source: str
    has_features: bool


def check_num_classes(model: "nn.Module", num_classes: int, where: str) -> None:
    """Run one dummy input through `model` and refuse it unless it returns (1, num_classes) logits."""
    import torch

    try:
        with torch.inference_mode():
            out = model(torch.zeros(1, 1, TEACHER_INPUT_SIZE, TEACHER_INPUT_SIZE))
    except Exception as e:  # noqa: BLE001 - user models fail in many ways
        raise ModelLoadError(f"teacher {where} does not run on a (1, 1, 28, 28) input ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); it must take (N, 1, 28, 28) normalised canvases with "
                              f"a dynamic batch (torch.export: dynamic_shapes={{'x': {{0: Dim('batch')}}}})") from None
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise TeacherMismatchError(f"teacher {where} outputs shape {tuple(out.shape)} but the data has {num_classes} "
                                   f"classes; use a teacher trained on these classes or pick the matching data")


def load_teacher(ref: str, num_classes: int, arch: str | None = None) -> Teacher:
    """Load a digit teacher from a file (see module doc) and check its class count. Eval mode, on the CPU."""
    path = Path(ref).expanduser()
    model, source, ck = load_teacher_module(path, arch, num_classes=num_classes)
    if ck is not None and ck.get("task", "digits") != "digits":
        raise TeacherMismatchError(f"teacher {path} reads text lines (task {ck.get('task')!r}); digits need a digit "
                                   f"teacher, or pass --task lines to read lines")
    check_num_classes(model, num_classes, str(path))
    name = ck["arch"] if ck is not None else (arch if source == "state-dict" else path.stem)
    return Teacher(model, name, source, has_features=hasattr(model, "features") and source != "torchscript")


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
