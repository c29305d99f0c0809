"""Export of a text-line (CTC) student: `student.onnx` with a dynamic width axis where onnxruntime matches torch
at other widths, and a manifest with task `line-recognition` and the `lines` block the board reads.

Parity is measured on the checkpoint's own test lines (rebuilt from its LineSpec): torch fp32 against ONNX at the
reference width by `edgekd_converters.parity.SequenceScorer` (the one rule for sequences), and the max logit
difference at half, once and twice the reference width (lines cropped or zero-padded) for the dynamic width.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd_runtime.lines import TEXT_HEIGHT_SHARE
from edgekd_runtime.manifest import (
    COVERAGE_PNG,
    LINE_TASK,
    Artifact,
    InputSpec,
    LinesSpec,
    Manifest,
    Normalization,
    PreprocessSpec,
)
from edgekd_runtime.pixels import as_canvases

from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_line_onnx, torch_logits
from .samples import eval_split, normalise

if TYPE_CHECKING:
    import torch

MAX_WIDTH_FACTOR = 8  # a dynamic-width ONNX model takes lines up to 8x the reference width
WIDTH_CHECK_FACTORS = (0.5, 1.0, 2.0)  # widths (x the reference) where the dynamic ONNX must match torch
# Training lines int8 is calibrated on (the digits' 500 left rarer, larger activations out of the ranges): the default
# run's ctc-w8-d2-c2-r24, 2,000 test strings, int8 TFLite agrees with torch on 98.40 % of them calibrated on 500 lines,
# 98.80 % on 2,000 (onnxruntime's MinMax, 8-bit weights: 98.40 -> 98.80 %, no further gain from all 4,000)
LINE_CALIBRATION_SAMPLES = 2000


@dataclass(frozen=True)
class LineSamples:
    """Line canvases (N, H, W) float32 in [0, 1] at the reference width: calibration lines and test lines."""

    calib: np.ndarray
    test_x: np.ndarray
    texts: list[str]
    split: str
    val_x: np.ndarray | None = None  # the val split (calibrates the string confidence); None without one
    val_texts: list[str] = field(default_factory=list)


def line_samples(data: dict[str, Any] | None, calib_samples: int = 500, seed: int = 0) -> LineSamples:
    """Rebuild the checkpoint's line splits (its LineSpec dict): training lines to calibrate, the test split."""
    from edgekd.data.lines import LineSpec, load_lines
    from edgekd_converters.calibration import subsample
    from edgekd_runtime.errors import ManifestError

    if not data:
        raise ManifestError("the bundle/checkpoint records no line data spec (extra.data); re-export it from a "
                            "checkpoint made by `edgekd distill --task lines`")
    splits = load_lines(LineSpec.from_dict(dict(data)))
    test, name = eval_split(splits, f"line data {data}")
    train_x = subsample(splits.train.x, calib_samples, seed)
    as_float = lambda x: as_canvases(x, what=f"line data {data}")  # noqa: E731
    val = splits.val if name == "test" and len(splits.val) else None
    return LineSamples(as_float(train_x), as_float(test.x), list(test.texts), name,
                       as_float(val.x) if val is not None else None, list(val.texts) if val is not None else [])


def confidence_calibration(val_scores: np.ndarray | None, val_texts: list[str], test_scores: np.ndarray,
                           test_texts: list[str], charset: str) -> tuple[float, dict[str, Any]]:
    """Fit the confidence temperature on the val lines' CTC scores (N, T, C), then on the test lines: the
    coverage-accuracy curve at that temperature, the ECE/NLL before and after, the thresholds for 99 % / 95 %."""
    from edgekd_runtime.confidence import fit_temperature

    t = fit_temperature(val_scores, val_texts, charset) if val_scores is not None and len(val_texts) else 1.0
    return t, {"temperature": t, "fitted_on": "val" if len(val_texts) else None, "num_val": len(val_texts),
               **confidence_on(test_scores, test_texts, charset, t), "source": "onnxruntime fp32"}


def confidence_on(scores: np.ndarray, texts: list[str], charset: str, temperature: float) -> dict[str, Any]:
    """How the string confidence at `temperature` sorts the greedy readings of CTC scores (N, T, C) of lines
    with their true `texts`: ECE/NLL before (T = 1) and after, the coverage-accuracy curve, the confidence
    thresholds that reach 99 % / 95 % string accuracy (the `confidence` block of a manifest or a report)."""
    from edgekd_runtime.confidence import coverage_curve, ece, greedy_confidences, nll, threshold_for

    reads, raw = greedy_confidences(scores, charset, 1.0)
    _, cal = greedy_confidences(scores, charset, temperature)
    right = np.array([r == y for r, y in zip(reads, texts)])
    return {"temperature": temperature, "num_test": len(texts),
            "ece_before": ece(raw, right), "ece_after": ece(cal, right),
            "nll_before": nll(raw, right), "nll_after": nll(cal, right),
            "coverage": coverage_curve(cal, right),
            "threshold_99": threshold_for(cal, right, 0.99), "threshold_95": threshold_for(cal, right, 0.95)}


def lines_spec(ck: dict[str, Any], dynamic: bool) -> LinesSpec:
    """The manifest's lines block from a lines checkpoint (the contract of the lines task)."""
    policy = ck["width_policy"]
    width, stride = int(policy["width"]), int(policy.get("frame_stride", 4))
    return LinesSpec(charset=str(ck["charset"]), height=int(ck["input_height"]), width=width,
                     max_width=width * MAX_WIDTH_FACTOR if dynamic else width,
                     dynamic_formats=("onnx",) if dynamic else (), blank=int(ck.get("blank", 0)),
                     frame_stride=stride, max_len=int(ck.get("max_len", width // stride // 2)),
                     text_height_share=TEXT_HEIGHT_SHARE)


def width_diffs(model: "torch.nn.Module", onnx_path: Path, x: np.ndarray, width: int) -> dict[str, float] | None:
    """Max |logit| difference torch vs ONNX at each checked width (model-space input `x` (N, 1, H, width)
    cropped or padded with the normalised background), or None when onnxruntime refuses a width."""
    from edgekd_converters.runners import run_onnx

    background = float(x.min())
    out: dict[str, float] = {}
    for factor in WIDTH_CHECK_FACTORS:
        w = int(width * factor)
        xw = np.full((*x.shape[:3], w), background, np.float32)
        xw[..., :min(w, width)] = x[..., :min(w, width)]
        try:
            got = run_onnx(onnx_path, xw)
        except Exception:  # noqa: BLE001 - a runtime that cannot take this width: no dynamic width
            return None
        ref = torch_logits(model, xw)
        out[str(w)] = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
    return out


def export_line_onnx_checked(model: "torch.nn.Module", ck: dict[str, Any], path: Path, opset: int,
                             x: np.ndarray) -> tuple[bool, dict[str, float] | None]:
    """Export with a dynamic width; keep it only where ONNX matches torch at every checked width within the fp32
    tolerance, else re-export at the fixed reference width. Returns (dynamic, the diffs per width)."""
    from edgekd_converters.parity import SEQUENCE_TOLERANCES

    h, w = int(ck["input_height"]), int(ck["width_policy"]["width"])
    n_cls = int(ck["num_classes"])
    export_line_onnx(model, h, w, n_cls, path, opset, dynamic_width=True)
    diffs = width_diffs(model, path, x[:64], w)
    if diffs is not None and max(diffs.values()) <= SEQUENCE_TOLERANCES["fp32"].atol:
        return True, diffs
    export_line_onnx(model, h, w, n_cls, path, opset, dynamic_width=False)
    return False, diffs


def export_line_bundle(model: "torch.nn.Module", ck: dict[str, Any], stage: Path,
                       *, onnx_name: str, opset: int, max_samples: int | None, base_extra: dict[str, Any],
                       versions: dict[str, Any], created: str) -> Manifest:
    """Write `onnx_name` and the manifest of a line student into `stage` (a staging directory), all checked."""
    from edgekd.report.figures import coverage_png
    from edgekd_converters.errors import ParityError
    from edgekd_converters.line_bundle import runtime_line_accuracy
    from edgekd_converters.parity import SequenceScorer
    from edgekd_converters.runners import run_onnx

    samples = line_samples(ck.get("data"))
    test_x, texts = samples.test_x[:max_samples], samples.texts[:max_samples]
    norm = Normalization(**(ck.get("normalization") or {}))
    x = normalise(test_x, norm.mean, norm.std)
    dynamic, diffs = export_line_onnx_checked(model, ck, stage / onnx_name, opset, x)
    ref, out = torch_logits(model, x), run_onnx(stage / onnx_name, x)
    scorer = SequenceScorer(str(ck["charset"]), texts)
    parity = scorer.compare(ref, out, "fp32", "torch")
    if not parity.passed:
        raise ParityError(onnx_name, parity)
    val_scores = None
    if samples.val_x is not None:
        val_scores = run_onnx(stage / onnx_name, normalise(samples.val_x, norm.mean, norm.std))
    temperature, conf = confidence_calibration(val_scores, samples.val_texts, out, texts, str(ck["charset"]))
    spec = replace(lines_spec(ck, dynamic), confidence_temperature=temperature)
    manifest = Manifest(
        name=str(ck["arch"]), labels=list(spec.charset),
        input=InputSpec(INPUT_NAME, (1, 1, spec.height, spec.width), "NCHW", "float32"),
        output={"name": OUTPUT_NAME, "kind": "logits"}, normalization=norm,
        preprocessing=PreprocessSpec(),  # the digits' field, unused by line bundles: the lines block governs
        artifacts=[Artifact.from_file(stage, onnx_name, "fp32", parity=parity.to_dict(),
                                      accuracy=parity.string_accuracy,
                                      extra={"accuracy_source": "onnxruntime", "opset": opset, "cer": parity.cer,
                                             "dynamic_width": dynamic, "width_max_abs_diff": diffs})],
        task=LINE_TASK, lines=spec, budget=ck.get("budget"), profile=ck.get("profile"), versions=versions,
        created=created, extra={**base_extra, "eval_split": samples.split, "num_eval_samples": len(texts),
                                "torch_accuracy": scorer.accuracy(ref),
                                "torch_cer": parity.reference_cer, "confidence": conf})
    coverage_png(conf, stage / COVERAGE_PNG)
    manifest.save(stage)
    runtime_line_accuracy(stage, manifest, test_x, texts, source="onnxruntime")
    manifest.save(stage)
    return manifest
