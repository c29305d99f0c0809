"""Fill an edgekd bundle (made by `edgekd export`) with TFLite and ONNX int8 artifacts, each with parity and
accuracy recorded in `manifest.json`.

All or nothing: artifacts are built and checked in a hidden staging directory inside the bundle, accuracy is
measured by loading the staged bundle through `edgekd_runtime` (what the board runs), and only then are the
files moved in and the manifest rewritten atomically.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgekd_runtime.loader import load
from edgekd_runtime.manifest import Artifact, Manifest, verify_artifact
from edgekd_runtime.pixels import as_canvases
from edgekd_runtime.sysinfo import package_versions

from .calibration import MAX_CALIBRATION_SAMPLES, MIN_CALIBRATION_SAMPLES
from .convert import FILE_NAMES, ConversionReport, convert_into, prepare
from .errors import CalibrationDataError, ConversionError, InputShapeError, OutputExistsError
from .parity import Tolerance
from .staging import make_stage

DEFAULT_TARGETS = ("tflite", "onnx-int8")
RUNTIME_ACCURACY_SLACK = 0.01  # runtime vs converters' accuracy on the same artifact and samples
DEFAULT_DEPLOY_PRECISION = "int8"  # for bundles without a budget: edgekd's default deployed precision


def convert_bundle(bundle_dir: str | os.PathLike, calib_canvases: np.ndarray, eval_canvases: np.ndarray,
                   eval_labels: np.ndarray, *, reference_outputs: np.ndarray | None = None,
                   reference_name: str = "onnx", targets: Sequence[str] = DEFAULT_TARGETS, force: bool = False,
                   tolerances: Mapping[str, Tolerance] | None = None,
                   min_calib_samples: int = MIN_CALIBRATION_SAMPLES,
                   max_calib_samples: int = MAX_CALIBRATION_SAMPLES,
                   strict: bool = True) -> tuple[Manifest, ConversionReport]:
    """Convert the bundle's fp32 ONNX model and record every artifact in its manifest.

    Args:
        bundle_dir: a directory with `manifest.json` and the fp32 `.onnx` it lists.
        calib_canvases: (N, S, S) float32 [0, 1] training canvases at the model's resolution (N >= 200); int8 is
            calibrated on `max_calib_samples` of them (a seeded draw), or all when fewer.
        eval_canvases, eval_labels: the test split (canvases and int labels) for parity and accuracy; for a
            text-line bundle, line canvases (N, H, W) at the manifest's reference width and their texts.
        reference_outputs: (N, C) reference logits on `eval_canvases` (e.g. torch's); default the ONNX model's
            ((N, T, C) CTC scores for a line bundle).
        reference_name: what `reference_outputs` came from ("torch", "onnx").
        force: replace artifacts a previous conversion left in the bundle.
        strict: raise `ParityError` if any artifact misses its tolerance (nothing is written); when False,
            write the artifacts that passed and record the failures in the manifest (`extra.conversion.failed`).

    Returns:
        The updated manifest (already saved) and the conversion report.
    """
    bundle = Path(bundle_dir)
    manifest = Manifest.load(bundle)
    src = manifest.artifact("onnx", "fp32")
    src_path = verify_artifact(bundle, src)
    load(bundle, backend="onnx", precision="fp32")  # read as the board reads it: a manifest that does not fit the
    # model (labels, input, lines block) is refused here, naming the bundle, not a staged copy after converting
    stem = Path(src.path).stem
    wanted = _planned_names(targets, stem)
    _refuse_existing(manifest, bundle, wanted, force)
    lines = manifest.lines  # a text-line bundle: see line_bundle
    info, eval_labels = _checked_source(manifest, src_path, targets, eval_canvases, eval_labels)
    norm = manifest.normalization
    start = time.perf_counter()
    stage = make_stage(bundle, ".convert-")
    try:
        shutil.copyfile(src_path, stage / src.path)
        line_kw: dict[str, Any] = {}
        if lines is not None:
            from .line_bundle import prepare_line_model

            info, line_kw = prepare_line_model(stage / src.path, stage, targets, lines, eval_labels,
                                               len(eval_canvases))
        report = convert_into(info, stage, targets, calib_canvases, eval_canvases,
                              eval_labels if lines is None else None, mean=norm.mean, std=norm.std, stem=stem,
                              reference_outputs=reference_outputs, reference_name=reference_name,
                              tolerances=tolerances, min_calib_samples=min_calib_samples,
                              max_calib_samples=max_calib_samples, strict=strict, **line_kw)
        staged = _recorded(manifest, bundle, stage, report, wanted)
        if lines is None:
            runtime_accuracy(stage, staged, eval_canvases, eval_labels)
        else:
            from .line_bundle import runtime_line_accuracy

            runtime_line_accuracy(stage, staged, eval_canvases, eval_labels)
        _install(bundle, stage, staged, report, reference_name, time.perf_counter() - start)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return staged, report


def _refuse_existing(manifest: Manifest, bundle: Path, wanted: set[str], force: bool) -> None:
    """Without `force`, refuse a bundle that already has (or holds files named like) the artifacts to write."""
    present = [a.path for a in manifest.artifacts if a.path in wanted] + \
        [n for n in wanted if (bundle / n).exists() and n not in {a.path for a in manifest.artifacts}]
    if present and not force:
        raise OutputExistsError(f"{bundle}: already has {', '.join(sorted(set(present)))}; pass --force to "
                                f"convert again and replace them")


def _checked_source(manifest: Manifest, src_path: Path, targets: Sequence[str], eval_canvases: np.ndarray,
                    eval_labels: Any) -> tuple[Any, Any]:
    """The digit model's inspected ONNX (None for a line bundle: line_bundle prepares it in the stage) and the
    evaluation labels (an int array, one per canvas; a line bundle's texts as a list)."""
    if manifest.lines is not None:
        return None, list(eval_labels)
    info = prepare(src_path, targets)
    if info.height != manifest.input.size:
        raise InputShapeError(f"{src_path}: input {list(info.input_shape)} does not match the manifest's "
                              f"{list(manifest.input.shape)}; re-run `edgekd export`")
    labels = np.asarray(eval_labels)
    if labels.ndim != 1 or len(labels) != len(eval_canvases):
        raise CalibrationDataError(f"evaluation labels: shape {list(labels.shape)} for {len(eval_canvases)} "
                                   f"samples; pass one integer label per test canvas")
    return info, labels


def _install(bundle: Path, stage: Path, staged: Manifest, report: ConversionReport, reference_name: str,
             wall_s: float) -> None:
    """Record the conversion in the staged manifest, move the checked artifacts into the bundle, save the
    manifest, and remove older files of precisions that failed now."""
    staged.versions = {**staged.versions, **converter_versions()}
    staged.extra = {**staged.extra, "conversion": {
        "reference": reference_name, "reference_accuracy": report.reference_accuracy,
        "wall_s": round(wall_s, 3), **report.extra, "failed": [f.to_dict() for f in report.failed]}}
    for conv in report.artifacts:
        os.replace(stage / conv.path.name, bundle / conv.path.name)
    staged.save(bundle)
    for fail in report.failed:  # an older file of a precision that failed now is no longer vouched for
        (bundle / fail.name).unlink(missing_ok=True)


def _recorded(manifest: Manifest, bundle: Path, stage: Path, report: ConversionReport, replaced: set[str]
              ) -> Manifest:
    """A copy of the bundle's manifest with the converted artifacts (in `stage`) in place of the `replaced`
    ones, and the one to deploy; saved in `stage`."""
    staged = Manifest.from_dict(manifest.to_dict(), source=str(bundle / "manifest.json"))
    staged.artifacts = [a for a in staged.artifacts if a.path not in replaced]
    for conv in report.artifacts:
        staged.set_artifact(Artifact.from_file(
            stage, conv.path.name, conv.precision, parity=conv.parity.to_dict(), accuracy=conv.accuracy,
            extra={"accuracy_source": "converters", "convert_s": round(conv.convert_s, 3)}))
    staged.deployed = deployable_artifact(staged).path
    staged.save(stage)
    return staged


def deployable_artifact(manifest: Manifest, precision: str | None = None) -> Artifact:
    """The artifact to deploy on the board (recorded as the manifest's `deployed`, loaded by default by
    `edgekd_runtime.load`): TFLite at the budget's precision (`precision`, else the manifest's budget's, else
    int8, edgekd's default), else the closest one that passed conversion (failures are left out of the bundle)."""
    prec = precision or (manifest.budget or {}).get("precision") or DEFAULT_DEPLOY_PRECISION
    order = [("tflite", prec), ("onnx", prec), ("tflite", "fp16"), ("tflite", "fp32"), ("onnx", "fp32")]
    for fmt, p in order:
        for a in manifest.artifacts:
            if a.format == fmt and a.precision == p:
                return a
    return manifest.artifacts[0]


def _planned_names(targets: Sequence[str], stem: str) -> set[str]:
    keys = [("tflite", p) for p in ("fp32", "fp16", "int8")] if "tflite" in targets else []
    keys += [("onnx", "int8")] if "onnx-int8" in targets else []
    return {FILE_NAMES[k].format(stem=stem) for k in keys}


def runtime_accuracy(stage: Path, manifest: Manifest, canvases: np.ndarray, labels: np.ndarray,
                     source: str = "converters") -> None:
    """Replace the accuracy of each artifact measured by `source` (its `extra.accuracy_source`: "converters", or
    "onnxruntime" for `edgekd export`) by the one `edgekd_runtime` measures on the staged bundle.

    The runtime preprocesses, lays out and (de)quantizes on its own; if its accuracy disagrees with the
    converters' own run of the same file by more than 1 pp, the two read the model differently and the
    numbers in the manifest would not be what the board sees: that is a `ConversionError`.
    """
    from edgekd_runtime import load

    x = as_canvases(canvases, manifest.normalization, "evaluation canvases")
    if x.ndim == 4:
        x = x[..., 0] if x.shape[-1] == 1 else x[:, 0]
    for art in manifest.artifacts:
        if art.extra.get("accuracy_source") != source:
            continue
        rec = load(str(stage), backend=art.format, precision=art.precision)
        runtime_acc = float(rec.evaluate(x, np.asarray(labels)))
        if art.accuracy is not None and abs(runtime_acc - art.accuracy) > RUNTIME_ACCURACY_SLACK:
            raise ConversionError(f"{art.path}: edgekd_runtime measures accuracy {runtime_acc:.4f} but {source}'s "
                                  f"own run of the same file gives {art.accuracy:.4f}; the runtime reads the model "
                                  f"differently (input layout, normalisation or quantization in the manifest)")
        art.extra["converter_accuracy"] = art.accuracy
        art.accuracy = runtime_acc
        art.extra["accuracy_source"] = "edgekd_runtime"


def converter_versions() -> dict[str, str]:
    """Versions of the converters and the libraries a conversion ran with (those installed)."""
    return package_versions(("edgekd-converters", "onnx", "onnxruntime", "onnx2tf", "tensorflow-cpu", "ai-edge-litert"))
