"""Checkpoints: the per-epoch training state (`last.pt`, for --resume) and the final model checkpoint contract.

Both are written atomically and load with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd_runtime.atomic import atomic_path
from edgekd_runtime.errors import ModelLoadError, first_line
from edgekd_runtime.manifest import MNIST_MEAN, MNIST_STD

if TYPE_CHECKING:
    import torch

CHECKPOINT_FORMAT = "edgekd-checkpoint"
TRAIN_STATE_FORMAT = "edgekd-train-state"


class CheckpointError(ModelLoadError):
    """A checkpoint that is missing, truncated, corrupt or of the wrong kind."""


def save_torch(obj: Any, path: str | Path) -> None:
    """torch.save through a temp file + rename: a crash never leaves a half-written checkpoint."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | Path, expect_format: str | None = None) -> dict[str, Any]:
    """torch.load(weights_only=True) with clear errors for missing, corrupt and foreign files."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); {_load_hint(expect_format)}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a text file raises KeyError, a truncated one EOFError, RuntimeError ...
        raise CheckpointError(f"checkpoint {path} cannot be read as a torch file ({first_line(e, 160)}): it is "
                              f"truncated, corrupt or not a weights_only checkpoint; {_load_hint(expect_format)}") \
            from None
    if expect_format and not (isinstance(obj, dict) and obj.get("format") == expect_format):
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path} is not an {expect_format} file (format: {got!r})")
    return obj


def _load_hint(expect_format: str | None) -> str:
    if expect_format == TRAIN_STATE_FORMAT:
        return "delete it and start again without --resume"
    return "pass the student.pt / teacher.pt that edgekd wrote (copy it again if it was damaged in transit)"


def check_model_checkpoint(ck: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """Refuse an edgekd model checkpoint without the fields a model is rebuilt from (`arch`, a whole
    `num_classes` >= 1, `state_dict`; `labels`, `input_size` and `normalization` valid when present), naming
    the field."""
    from edgekd_runtime.manifest import check_normalization

    arch, n = ck.get("arch"), ck.get("num_classes")
    if not isinstance(arch, str) or not arch:
        raise CheckpointError(f"{path}: the checkpoint has no architecture (arch: {arch!r}); it was not written "
                              f"by edgekd or was edited: use the student.pt / teacher.pt edgekd wrote")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CheckpointError(f"{path}: num_classes {n!r} is not a whole number >= 1; use the checkpoint edgekd "
                              f"wrote")
    if not isinstance(ck.get("state_dict"), dict):
        raise CheckpointError(f"{path}: the checkpoint has no state_dict (weights); use the checkpoint edgekd wrote")
    labels, size = ck.get("labels"), ck.get("input_size")
    digits = ck.get("task", "digits") == "digits"  # a line model's labels are its charset, without the blank
    if labels is not None and (not isinstance(labels, list) or (digits and len(labels) != n)):
        raise CheckpointError(f"{path}: labels must be a list of num_classes ({n}) names, got {labels!r:.80}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise CheckpointError(f"{path}: input_size {size!r} is not a whole number of pixels")
    norm = ck.get("normalization")
    if norm is not None:
        if not isinstance(norm, dict):
            raise CheckpointError(f"{path}: normalization {norm!r} is not a mapping with mean and std")
        check_normalization(norm.get("mean"), norm.get("std"), str(path), CheckpointError)
    return ck


def rng_state() -> dict[str, Any]:
    import torch

    np_state = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "python": random.getstate(),
          "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(st["torch"])
    v = st["python"]
    random.setstate((v[0], tuple(v[1]), v[2]))
    n = st["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def model_checkpoint(kind: str, arch: str, model: "torch.nn.Module", *, num_classes: int, labels: list[str],
                     input_size: int, data: dict[str, Any], metrics: dict[str, Any], config: dict[str, Any],
                     budget: dict[str, Any] | None = None, profile: dict[str, Any] | None = None,
                     task: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `student.pt` / `teacher.pt` dict of the DESIGN contract. `task` adds the task's own fields (lines:
    `task`, `charset`, `blank`, `input_height`, `width_policy`); without it the checkpoint is a digit one."""
    ck = {"format": CHECKPOINT_FORMAT, "kind": kind, "arch": arch, "num_classes": int(num_classes),
          "labels": [str(s) for s in labels], "input_size": int(input_size),
          "normalization": {"mean": MNIST_MEAN, "std": MNIST_STD}, "data": data,
          "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
          "metrics": metrics, "config": config}
    ck.update(task or {"task": "digits"})
    if budget is not None:
        ck["budget"] = budget
    if profile is not None:
        ck["profile"] = profile
    return ck


def load_student_checkpoint(path: str | Path, task: str | None = "digits") -> tuple["torch.nn.Module", dict[str, Any]]:
    """Load a student checkpoint and rebuild its module (eval mode). Returns (model, checkpoint dict).

    `task` (digits / lines) is the task the caller handles; a checkpoint of another task is refused (None: any).
    """
    from edgekd.models.students import build_student

    ck = load_torch(path, CHECKPOINT_FORMAT)
    if ck.get("kind") != "student":
        raise CheckpointError(f"{path} is a {ck.get('kind')} checkpoint; a student checkpoint is needed")
    got = ck.get("task", "digits")
    if task is not None and got != task:
        what = {"lines": "a text-line (CTC) student", "digits": "a single-digit student"}.get(got, f"a {got} student")
        raise CheckpointError(f"{path} is {what} (task {got!r}) but this step takes {task} students; "
                              f"use a {task} checkpoint")
    check_model_checkpoint(ck, path)
    model = build_student(ck["arch"], ck["num_classes"])
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {ck['arch']}: {str(e).splitlines()[0]}") from None
    return model.eval(), ck


def transfer_parameters(model: "torch.nn.Module", path: str | Path) -> int:
    """Warm start: copy every parameter/buffer of the checkpoint at `path` whose name and shape match. Returns
    how many tensors were copied (0 is refused: the checkpoint is for an unrelated architecture)."""
    from edgekd.models.line_models import is_line_model

    ck = load_torch(path, CHECKPOINT_FORMAT)
    want = "lines" if is_line_model(getattr(model, "student_id", "") or "") else "digits"
    if ck.get("task", "digits") != want:
        raise CheckpointError(f"--init-from {path} is a {ck.get('task', 'digits')} checkpoint but this student "
                              f"reads {want}; warm-start from a checkpoint of the same task")
    src = ck["state_dict"]
    own = model.state_dict()
    copied = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    if not copied:
        raise CheckpointError(f"--init-from {path} ({ck.get('arch')}) shares no parameter shapes with this model")
    own.update(copied)
    model.load_state_dict(own)
    return len(copied)
