"""`edgekd export`: a student checkpoint -> bundle directory with `student.onnx` and `manifest.json`.

The ONNX model is checked against torch on the real test split (max abs logit difference and top-1 agreement,
fp32 tolerance) and its accuracy is measured through `edgekd_runtime`, the way the board runs it. The bundle is
built in a hidden staging directory and renamed into place only when every check passed.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgekd_runtime.atomic import sha256_file
from edgekd_runtime.manifest import Artifact, InputSpec, Manifest, Normalization, PreprocessSpec
from edgekd_runtime.sysinfo import package_versions, utc_timestamp

from .onnx_export import INPUT_NAME, MIN_OPSET, OUTPUT_NAME, export_onnx, torch_logits
from .samples import bundle_samples, normalise

ONNX_NAME = "student.onnx"


def export_bundle(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *, force: bool = False,
                  opset: int = MIN_OPSET, max_samples: int | None = None) -> Manifest:
    """Export a student checkpoint to a new bundle directory.

    Args:
        checkpoint: `student.pt` (the DESIGN checkpoint contract).
        out_dir: the bundle directory to create (refused if it exists, unless `force`).
        opset: ONNX opset (>= 17).
        max_samples: check parity on at most this many test samples (None: the whole test split).

    Raises:
        OutputExistsError: `out_dir` exists and not `force`.
        ParityError: ONNX differs from torch beyond the fp32 tolerance (nothing is written).
    """
    from edgekd.train.checkpoint import load_student_checkpoint
    from edgekd_converters.staging import check_output_dir

    check_output_dir(out_dir, force, inputs=[checkpoint])
    model, ck = load_student_checkpoint(checkpoint, task=None)
    if ck.get("task", "digits") == "lines":
        return _export_lines(model, ck, checkpoint, out_dir, force, opset, max_samples)
    return export_digits(model, ck, _base_extra(ck, checkpoint), out_dir, force, opset, max_samples)


def export_digits(model: Any, ck: dict[str, Any], base_extra: dict[str, Any], out_dir: str | os.PathLike,
                   force: bool, opset: int, max_samples: int | None) -> Manifest:
    """A digit model (N, 1, R, R) -> (N, C): ONNX, checked against torch on the test split, in a staged bundle."""
    from edgekd_converters import TOLERANCES
    from edgekd_converters.bundle import runtime_accuracy
    from edgekd_converters.parity import check
    from edgekd_converters.runners import run_onnx
    from edgekd_converters.staging import staged_directory

    size = int(ck.get("input_size") or getattr(model, "input_size", 28))
    norm = Normalization(**(ck.get("normalization") or {}))
    samples = bundle_samples(ck.get("data"), size)
    test_x, test_y = samples.test_x[:max_samples], samples.test_y[:max_samples]
    x = normalise(test_x, norm.mean, norm.std)
    with staged_directory(out_dir, force) as stage:
        onnx_path = export_onnx(model, size, stage / ONNX_NAME, opset)
        ref = torch_logits(model, x)
        out = run_onnx(onnx_path, x)
        parity = check(ONNX_NAME, ref, out, TOLERANCES["fp32"], reference_name="torch")
        manifest = Manifest(
            name=str(ck["arch"]), labels=[str(s) for s in ck["labels"]],
            input=InputSpec(INPUT_NAME, (1, 1, size, size), "NCHW", "float32"),
            output={"name": OUTPUT_NAME, "kind": "logits"}, normalization=norm, preprocessing=PreprocessSpec(),
            artifacts=[Artifact.from_file(stage, ONNX_NAME, "fp32", parity=parity.to_dict(),
                                          accuracy=float(np.mean(out.argmax(1) == test_y)),
                                          extra={"accuracy_source": "onnxruntime", "opset": opset})],
            budget=ck.get("budget"), profile=ck.get("profile"), versions=export_versions(), created=utc_timestamp(),
            extra={**base_extra, "eval_split": samples.split, "num_eval_samples": int(len(test_y)),
                   "torch_accuracy": float(np.mean(ref.argmax(1) == test_y))})
        manifest.save(stage)
        runtime_accuracy(stage, manifest, test_x, test_y, source="onnxruntime")
        manifest.save(stage)
    return manifest


def _export_lines(model: Any, ck: dict[str, Any], checkpoint: str | os.PathLike, out_dir: str | os.PathLike,
                  force: bool, opset: int, max_samples: int | None) -> Manifest:
    """A text-line (CTC) student: see `edgekd.export.lines`."""
    from edgekd_converters.staging import staged_directory

    from .lines import export_line_bundle

    with staged_directory(out_dir, force) as stage:
        return export_line_bundle(model, ck, stage, onnx_name=ONNX_NAME, opset=opset,
                                  max_samples=max_samples, base_extra=_base_extra(ck, checkpoint),
                                  versions=export_versions(), created=utc_timestamp())


def _base_extra(ck: dict[str, Any], checkpoint: str | os.PathLike) -> dict[str, Any]:
    return {"data": ck.get("data"),
            "checkpoint": {"path": str(Path(checkpoint).resolve()), "sha256": sha256_file(checkpoint)},
            "metrics": ck.get("metrics") or {}}


def export_versions() -> dict[str, str]:
    """The versions a bundle or run report records from the workstation: Python and the installed edgekd,
    edgekd-runtime, torch, onnx and onnxruntime."""
    return {"python": platform.python_version(),
            **package_versions(("edgekd", "edgekd-runtime", "torch", "onnx", "onnxruntime"))}
