"""Convert any ONNX image classifier to TFLite (fp32/fp16/int8) and ONNX int8, each checked for parity.

Public entry points: `to_tflite`, `to_onnx_int8` (a directory of artifacts) and `convert_into` (the engine,
also used by `convert_bundle`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgekd_runtime.manifest import Artifact, InputSpec, Manifest, Normalization, PreprocessSpec, check_normalization
from edgekd_runtime.recognizer import looks_like_probabilities

from . import parity as parity_mod
from .calibration import MAX_CALIBRATION_SAMPLES, MIN_CALIBRATION_SAMPLES, check_canvases, subsample, to_model_input
from .errors import CalibrationDataError, ParityError, UserInputError
from .model_info import OnnxModelInfo, check_ops, inspect_model, load_onnx
from .parity import ParityResult, SequenceParityResult, SequenceScorer, Tolerance
from .runners import run_onnx, run_tflite
from .staging import staged_directory

TARGETS = ("tflite", "onnx-int8")
TFLITE_PRECISIONS = ("fp32", "fp16", "int8")
FILE_NAMES = {("tflite", "fp32"): "{stem}_float32.tflite", ("tflite", "fp16"): "{stem}_float16.tflite",
              ("tflite", "int8"): "{stem}_int8.tflite", ("onnx", "int8"): "{stem}_int8.onnx"}


@dataclass(frozen=True)
class ConvertedArtifact:
    """One checked artifact: where it is, what it is, and its numbers."""

    path: Path
    format: str
    precision: str
    size_bytes: int
    parity: ParityResult | SequenceParityResult
    accuracy: float | None = None
    convert_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "precision": self.precision,
                "size_bytes": self.size_bytes, "parity": self.parity.to_dict(), "accuracy": self.accuracy,
                "convert_s": round(self.convert_s, 3)}


@dataclass(frozen=True)
class FailedArtifact:
    """An artifact that missed its tolerance (only kept in a report when `strict=False`; its file is deleted)."""

    name: str
    format: str
    precision: str
    parity: ParityResult | SequenceParityResult
    accuracy: float | None = None
    size_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.name, "format": self.format, "precision": self.precision,
                "size_bytes": self.size_bytes, "parity": self.parity.to_dict(), "accuracy": self.accuracy}


@dataclass(frozen=True)
class ConversionReport:
    """What a conversion produced; `reference_accuracy` is the source model's accuracy on the same labels."""

    source: str
    artifacts: tuple[ConvertedArtifact, ...]
    reference_accuracy: float | None = None
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    failed: tuple[FailedArtifact, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "reference_accuracy": self.reference_accuracy,
                "wall_s": round(self.wall_s, 3), "artifacts": [a.to_dict() for a in self.artifacts],
                "failed": [f.to_dict() for f in self.failed], **self.extra}


def prepare(onnx_path: str | os.PathLike, targets: Sequence[str]) -> OnnxModelInfo:
    """Load, check and inspect the source model, and check every op converts for every target."""
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise UserInputError(f"unknown conversion target(s) {bad or '(none)'}; choose from {', '.join(TARGETS)}")
    model = load_onnx(onnx_path)
    info = inspect_model(model, onnx_path)
    for t in targets:
        check_ops(model, onnx_path, t)
    return info


def convert_into(info: OnnxModelInfo, dest_dir: Path, targets: Sequence[str], calib_canvases: np.ndarray,
                 eval_canvases: np.ndarray | None = None, eval_labels: np.ndarray | None = None, *,
                 mean: float = 0.0, std: float = 1.0, stem: str = "model",
                 tflite_precisions: Sequence[str] = TFLITE_PRECISIONS,
                 reference_outputs: np.ndarray | None = None, reference_name: str = "onnx",
                 tolerances: Mapping[str, Tolerance] | None = None,
                 min_calib_samples: int = MIN_CALIBRATION_SAMPLES, max_calib_samples: int = MAX_CALIBRATION_SAMPLES,
                 strict: bool = True, scorer: SequenceScorer | None = None,
                 int8_source: OnnxModelInfo | None = None, int8_float_end_convs: bool = False
                 ) -> ConversionReport:
    """Write every requested artifact into `dest_dir` and check each against the reference.

    Args:
        info: the source model (from `prepare`).
        dest_dir: an existing directory (a staging one: nothing here is final until the caller says so).
        targets: "tflite" and/or "onnx-int8".
        calib_canvases: >= `min_calib_samples` representative canvases in [0, 1] (see `calibration`); int8 is
            calibrated on `max_calib_samples` of them (a seeded draw), or all when fewer.
        eval_canvases: the real inputs parity (and accuracy, with `eval_labels`) is measured on;
            the calibration canvases when None.
        mean, std: the model's input normalisation.
        reference_outputs: (N, C) reference outputs on `eval_canvases` (e.g. torch logits); by default the
            source ONNX model run by onnxruntime.
        tolerances: per-precision overrides of `parity.TOLERANCES`.
        strict: raise on the first artifact outside its tolerance; when False, delete it, list it in
            `ConversionReport.failed` and go on with the others.
        scorer: for a CTC line model ((N, T, C) outputs): judges each artifact by its decoded strings (and
            accuracy by its texts) instead of top-1 classes; its own tolerances apply (`tolerances` is ignored).
        int8_source: the model ONNX int8 is quantized from, when not `info` (a line model's dynamic-width
            original, while `info` is its fixed-width copy for onnx2tf).
        int8_float_end_convs: ONNX int8 leaves the first and last convolutions in float (line models, see `onnx_int8`);
            the report's `extra["onnx_int8_float_nodes"]` names the nodes left float.

    Raises:
        CalibrationDataError: too few, mis-shaped or out-of-range samples.
        ParityError: an artifact outside its tolerance (carries the numbers).
    """
    start = time.perf_counter()
    check_normalization(mean, std, "input normalisation (--mean/--std)", CalibrationDataError)
    calib, x_eval, ref = _calibration_and_reference(info, calib_canvases, eval_canvases, eval_labels, mean, std,
                                                    reference_outputs, min_calib_samples, max_calib_samples)
    plan: list[tuple[str, str]] = []
    if "tflite" in targets:
        plan += [("tflite", p) for p in tflite_precisions]
    if "onnx-int8" in targets:
        plan.append(("onnx", "int8"))
    paths = {k: dest_dir / FILE_NAMES[k].format(stem=stem) for k in plan}
    timings, normalized, notes, float_nodes = _write_artifacts(info, paths, calib, mean, std,
                                                               int8_source, int8_float_end_convs)

    def accuracy(outputs: np.ndarray) -> float | None:
        if scorer is not None:
            return scorer.accuracy(outputs)
        return None if eval_labels is None else float(np.mean(outputs.argmax(1) == np.asarray(eval_labels)))

    tols = {**parity_mod.TOLERANCES, **(tolerances or {})}
    artifacts, failed = [], []
    for fmt, precision in plan:
        path = paths[(fmt, precision)]
        out, result = _check_parity(path, fmt, precision, x_eval, ref, scorer, tols, reference_name)
        if result.passed:
            artifacts.append(ConvertedArtifact(path, fmt, precision, path.stat().st_size, result, accuracy(out),
                                               timings[(fmt, precision)]))
        elif strict:
            raise ParityError(path.name, result)
        else:
            failed.append(FailedArtifact(path.name, fmt, precision, result, accuracy(out), path.stat().st_size))
            path.unlink()
    kind = "probs" if looks_like_probabilities(ref) else "logits"
    return ConversionReport(info.path, tuple(artifacts), accuracy(ref), time.perf_counter() - start,
                            extra={"num_calibration_samples": len(calib), "num_eval_samples": len(x_eval),
                                   "num_classes": int(ref.shape[-1]), "output_kind": kind,
                                   "normalized": normalized, "warnings": notes,
                                   **({"onnx_int8_float_nodes": list(float_nodes)} if float_nodes else {})},
                            failed=tuple(failed))


def _calibration_and_reference(info: OnnxModelInfo, calib_canvases: np.ndarray, eval_canvases: np.ndarray | None,
                               eval_labels: np.ndarray | None, mean: float, std: float,
                               reference_outputs: np.ndarray | None,
                               min_calib_samples: int, max_calib_samples: int
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs of a conversion: the calibration canvases (subsampled), the evaluation inputs as the model
    takes them, and the reference outputs on those (the source ONNX model's by default)."""
    calib_all = check_canvases(calib_canvases, info, "calibration data", min_samples=min_calib_samples)
    if max_calib_samples < min_calib_samples:
        raise CalibrationDataError(f"max_calib_samples {max_calib_samples} is under the {min_calib_samples} int8 "
                                   f"calibration needs; calibrate on at least {min_calib_samples}")
    calib = subsample(calib_all, max_calib_samples)
    evals = calib_all if eval_canvases is None else check_canvases(eval_canvases, info, "evaluation data", 1)
    if eval_labels is not None and len(eval_labels) != len(evals):
        raise CalibrationDataError(f"evaluation labels: {len(eval_labels)} labels for {len(evals)} samples")
    x_eval = to_model_input(evals, info, mean, std)
    ref = run_onnx(info.path, x_eval) if reference_outputs is None else np.asarray(reference_outputs, np.float32)
    if ref.shape[0] != len(x_eval):
        raise CalibrationDataError(f"reference outputs: {ref.shape[0]} rows for {len(x_eval)} evaluation samples")
    return calib, x_eval, ref


def _check_parity(path: Path, fmt: str, precision: str, x_eval: np.ndarray, ref: np.ndarray,
                  scorer: SequenceScorer | None, tols: Mapping[str, Tolerance],
                  reference_name: str) -> tuple[np.ndarray, ParityResult | SequenceParityResult]:
    """Run the written artifact on the evaluation inputs and compare it with the reference: (outputs, result)."""
    out = run_tflite(path, x_eval) if fmt == "tflite" else run_onnx(path, x_eval)
    if scorer is not None:  # TFLite returns rows flattened: back to the reference's (N, T, C)
        out = out.reshape(ref.shape)
        return out, scorer.compare(ref, out, precision, reference_name)
    return out, parity_mod.compare(ref, out, tols[precision], reference_name)


def _write_artifacts(info: OnnxModelInfo, paths: dict[tuple[str, str], Path], calib: np.ndarray, mean: float,
                     std: float, int8_source: OnnxModelInfo | None, float_end_convs: bool
                     ) -> tuple[dict[tuple[str, str], float], list[str], list[str], tuple[str, ...]]:
    """Convert to every (format, precision) in `paths`, from the model normalised by `normalize` when it needs it
    (a foreign graph); returns (the seconds each took, the normalisation steps, warnings, the ONNX int8 nodes left
    float). onnx2tf writes all the TFLite precisions in one run: its time is shared among them."""
    from .normalize import normalized_file
    from .staging import work_directory

    timings: dict[tuple[str, str], float] = {}
    notes: list[str] = []
    float_nodes: tuple[str, ...] = ()
    tflite_paths = {p: path for (f, p), path in paths.items() if f == "tflite"}
    with work_directory(next(iter(paths.values())).parent, ".normalize-") as tmp:
        src_path, steps = normalized_file(info.path, tmp)
        if tflite_paths:
            from .tflite import convert_tflite

            t = time.perf_counter()
            convert_tflite(replace(info, path=src_path), tflite_paths, calib if "int8" in tflite_paths else None,
                           mean, std, name=info.path)
            for p in tflite_paths:
                timings[("tflite", p)] = (time.perf_counter() - t) / len(tflite_paths)
        if ("onnx", "int8") in paths:
            from .onnx_int8 import convert_onnx_int8

            t = time.perf_counter()
            q_info = int8_source or info
            if int8_source is not None:
                (tmp / "int8").mkdir()
            q_path = src_path if int8_source is None else normalized_file(q_info.path, tmp / "int8")[0]
            note, float_nodes = convert_onnx_int8(replace(q_info, path=q_path), paths[("onnx", "int8")],
                                                  to_model_input(calib, info, mean, std), q_info.path,
                                                  float_end_convs)
            notes += [note] if note else []
            timings[("onnx", "int8")] = time.perf_counter() - t
    return timings, steps, notes, float_nodes


def convert_model(onnx_path: str | os.PathLike, out_dir: str | os.PathLike, targets: Sequence[str],
                  calib_canvases: np.ndarray, eval_canvases: np.ndarray | None = None,
                  eval_labels: np.ndarray | None = None, *, mean: float = 0.0, std: float = 1.0,
                  force: bool = False, preprocess: str = "mnist", **kw: Any) -> ConversionReport:
    """Convert to every target into `out_dir` (created; refused if it exists unless `force`); all or nothing.

    `out_dir` also gets a `manifest.json` listing the artifacts with the normalisation (`mean`, `std`) and the
    image preprocessing (`preprocess`: "mnist" or "resize") they take, so `edgekd_runtime.load` reads them right
    (the directory, or any one artifact in it)."""
    from .staging import check_output_dir

    check_output_dir(out_dir, force, inputs=[onnx_path])
    check_normalization(mean, std, "input normalisation (--mean/--std)", CalibrationDataError)
    info = prepare(onnx_path, targets)
    stem = kw.pop("stem", None) or Path(onnx_path).stem
    with staged_directory(out_dir, force) as stage:
        report = convert_into(info, stage, targets, calib_canvases, eval_canvases, eval_labels,
                              mean=mean, std=std, stem=stem, **kw)
        conversion_manifest(info, stage, report, stem, mean, std, preprocess).save(stage)
    final = Path(out_dir)
    arts = tuple(ConvertedArtifact(final / a.path.name, a.format, a.precision, a.size_bytes, a.parity, a.accuracy,
                                   a.convert_s) for a in report.artifacts)
    return ConversionReport(report.source, arts, report.reference_accuracy, report.wall_s, report.extra,
                            report.failed)


def conversion_manifest(info: OnnxModelInfo, out_dir: Path, report: ConversionReport, name: str, mean: float,
                        std: float, preprocess: str = "mnist") -> Manifest:
    """The manifest of a plain conversion's output directory: every artifact with its parity and accuracy, the
    model's input, its normalisation and preprocessing, its labels ("0".."C-1") and whether it emits logits."""
    from .bundle import converter_versions

    if preprocess == "resize":  # the converters' resize keeps the image's polarity
        prep = PreprocessSpec(kind="resize", canvas=info.height, box=min(20, info.height), polarity="light-on-dark")
    else:
        prep = PreprocessSpec()
    return Manifest(
        name=name, labels=[str(i) for i in range(int(report.extra["num_classes"]))],
        input=InputSpec(info.input_name, tuple(info.input_shape), info.layout, "float32"),
        output={"name": info.output_name, "kind": report.extra.get("output_kind", "logits")},
        normalization=Normalization(float(mean), float(std)), preprocessing=prep,
        artifacts=[Artifact.from_file(out_dir, a.path.name, a.precision, parity=a.parity.to_dict(),
                                      accuracy=a.accuracy, extra={"accuracy_source": "converters"})
                   for a in report.artifacts],
        versions=converter_versions(),
        extra={"conversion": {"source": str(info.path), "reference_accuracy": report.reference_accuracy,
                              **report.extra, "failed": [f.to_dict() for f in report.failed]}})


def to_tflite(onnx_path: str | os.PathLike, out_dir: str | os.PathLike, calib_canvases: np.ndarray,
              **kw: Any) -> ConversionReport:
    """ONNX -> TFLite float32, float16 and full-int8 in `out_dir` (see `convert_model` for the options)."""
    return convert_model(onnx_path, out_dir, ["tflite"], calib_canvases, **kw)


def to_onnx_int8(onnx_path: str | os.PathLike, out_dir: str | os.PathLike, calib_canvases: np.ndarray,
                 **kw: Any) -> ConversionReport:
    """ONNX -> ONNX int8 (QDQ, per-channel) in `out_dir` (see `convert_model` for the options)."""
    return convert_model(onnx_path, out_dir, ["onnx-int8"], calib_canvases, **kw)
