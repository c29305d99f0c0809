"""`edgekd convert`: fill an exported bundle with TFLite (fp32/fp16/int8) and ONNX int8 artifacts.

The data are rebuilt from the DataSpec the manifest records (`extra.data`): training canvases calibrate int8,
the test split checks parity and accuracy (for a text-line bundle: its LineSpec, line canvases and their texts).
When the checkpoint the bundle was exported from (a student's, or the teacher file of a bundle that deploys the
teacher) is still where the manifest says (same sha256), parity is measured against torch's logits; otherwise
against the ONNX model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekd_runtime.atomic import sha256_file
from edgekd_runtime.manifest import Manifest

from .onnx_export import torch_logits
from .samples import bundle_samples, normalise


def convert_exported_bundle(bundle_dir: str | os.PathLike, *, targets: Sequence[str] = ("tflite", "onnx-int8"),
                            force: bool = False, calib_samples: int | None = None,
                            max_samples: int | None = None, strict: bool = True) -> tuple[Manifest, Any]:
    """Convert the bundle in place; returns (saved manifest, `edgekd_converters.ConversionReport`).

    With `strict=False` an artifact that misses its tolerance is left out and listed in the report's `failed`
    (and the manifest's `extra.conversion.failed`) instead of raising `ParityError`. int8 is calibrated on
    `calib_samples` training samples (default: the converters' MAX_CALIBRATION_SAMPLES, LINE_CALIBRATION_SAMPLES
    lines for a text-line bundle).
    """
    from edgekd_converters import MAX_CALIBRATION_SAMPLES, convert_bundle

    manifest = Manifest.load(bundle_dir)
    if manifest.lines is not None:
        return _convert_lines(bundle_dir, manifest, targets, force, calib_samples, max_samples, strict)
    calib_samples = calib_samples or MAX_CALIBRATION_SAMPLES
    samples = bundle_samples(manifest.extra.get("data"), manifest.input.size, calib_samples)
    test_x, test_y = samples.test_x[:max_samples], samples.test_y[:max_samples]
    ref, ref_name = _torch_reference(manifest, test_x)
    return convert_bundle(bundle_dir, samples.calib, test_x, test_y, reference_outputs=ref,
                          reference_name=ref_name, targets=targets, force=force, strict=strict,
                          max_calib_samples=calib_samples)


def _convert_lines(bundle_dir: str | os.PathLike, manifest: Manifest, targets: Sequence[str], force: bool,
                   calib_samples: int | None, max_samples: int | None, strict: bool) -> tuple[Manifest, Any]:
    """A text-line bundle: calibrate on the training lines, check on the test lines and their texts."""
    from edgekd_converters import convert_bundle

    from .lines import LINE_CALIBRATION_SAMPLES, line_samples

    calib_samples = calib_samples or LINE_CALIBRATION_SAMPLES
    samples = line_samples(manifest.extra.get("data"), calib_samples)
    test_x, texts = samples.test_x[:max_samples], samples.texts[:max_samples]
    ref, ref_name = _torch_reference(manifest, test_x)
    return convert_bundle(bundle_dir, samples.calib, test_x, texts, reference_outputs=ref,
                          reference_name=ref_name, targets=targets, force=force, strict=strict,
                          max_calib_samples=calib_samples)


def _torch_reference(manifest: Manifest, canvases: np.ndarray) -> tuple[np.ndarray | None, str]:
    ck = manifest.extra.get("checkpoint") or {}
    path = Path(ck.get("path", ""))
    if not ck.get("path") or not path.is_file() or sha256_file(path) != ck.get("sha256"):
        return None, "onnx"
    if ck.get("kind") == "teacher":  # a deployed teacher (`teacher_bundle`): its own file
        from .teacher_bundle import reference_model

        model = reference_model(ck, len(manifest.labels))
        if model is None:
            return None, "onnx"
    else:
        from edgekd.train.checkpoint import load_student_checkpoint

        model, _ = load_student_checkpoint(path, task=None)
    norm = manifest.normalization
    return torch_logits(model, normalise(canvases, norm.mean, norm.std)), "torch"
