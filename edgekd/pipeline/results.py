"""Collect a finished run's numbers into report.json: models, artifacts, the deployed student, checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .config import PipelineConfig

INT8_ACCURACY_DROP_PP = 0.5  # the converters issue's bound for int8 vs fp32 torch


def build_report(cfg: PipelineConfig, run_dir: Path, splits: Any, profile: Any, budget: Any, search: dict[str, Any],
                 bundle: Path, bench: dict[str, Any], teacher_ck: str) -> dict[str, Any]:
    from edgekd.budget.cost import student_cost
    from edgekd.budget.profiles import get_profile
    from edgekd.export.bundle import export_versions
    from edgekd_runtime.manifest import Manifest
    from edgekd_runtime.sysinfo import utc_timestamp

    manifest = Manifest.load(bundle)
    chosen = search["chosen"]
    cost = student_cost(chosen, splits.num_classes)
    prec = budget.precision
    checks: list[dict[str, Any]] = []
    for f in (manifest.extra.get("conversion") or {}).get("failed", []):
        par = f.get("parity") or {}
        checks.append({"name": f"parity: {f.get('path')}", "ok": False,
                       "detail": f"left out of the bundle: max abs diff {par.get('max_abs_diff', float('nan')):.2e}, "
                                 f"top-1 agreement {100 * par.get('top1_agreement', 0):.2f}% vs "
                                 f"{par.get('reference', '?')}"})
    deployed_art = _deployable(manifest, prec)
    if deployed_art.precision != prec or deployed_art.format != "tflite":
        checks.append({"name": f"deploy {prec} TFLite", "ok": False,
                       "detail": f"no passing {prec} TFLite artifact; deployed {deployed_art.path} instead"})
    dep = _deployed(bundle, deployed_art, manifest)

    # --- models -------------------------------------------------------------------------------------------
    teacher = _teacher_row(teacher_ck, splits, profile, run_dir, cfg.teacher_scale)
    rows = [teacher] if teacher else []
    for role in ("scratch", "distilled"):
        ck = _load_ck(run_dir / role / "student.pt")
        rows.append({"role": role, "arch": chosen, "test_accuracy": ck["metrics"].get("test_acc"),
                     "params": cost.params, "macs": cost.macs, "flash_bytes": cost.flash_bytes[prec],
                     "peak_ram_bytes": cost.peak_ram_bytes[prec],
                     "predicted_latency_ms": profile.estimate_latency_ms(cost.features, prec),
                     # scratch and distilled share the architecture: the deployed artifact's latency is both
                     "measured_latency_ms": bench[deployed_art.path]["p50_ms"],
                     "metrics": f"{role}/metrics.jsonl", "epochs_run": ck["metrics"].get("epochs_run"),
                     "epoch_time_s": ck["metrics"].get("epoch_time_s")})

    # --- artifacts + the budget check after conversion (real file sizes vs the limits) ---------------------
    from edgekd.budget.check import check_bundle

    budget_checks = {c.path: c for c in check_bundle(bundle, measure=False)}  # flags budget_ok in the manifest
    manifest = Manifest.load(bundle)
    artifacts = []
    for a in manifest.artifacts:
        b = bench.get(a.path, {})
        artifacts.append({"path": a.path, "format": a.format, "precision": a.precision, "size_bytes": a.size_bytes,
                          "accuracy": a.accuracy, "parity": a.parity, "p50_ms": b.get("p50_ms"),
                          "p99_ms": b.get("p99_ms"), "budget_ok": a.budget_ok})
        c = budget_checks.get(a.path)
        if c is not None and a.precision == prec:  # the budget is for the deployed precision
            detail = "; ".join(c.problems()) or (
                f"{a.size_bytes / 1024:.1f} KiB file, {c.predicted_ram_bytes / 1024:.1f} KiB peak RAM"
                + (f", {c.predicted_latency_ms:.3f} ms predicted on {profile.name}"
                   if c.predicted_latency_ms is not None else ""))
            checks.append({"name": f"budget after conversion: {a.path}", "ok": c.budget_ok, "detail": detail})
        par = a.parity or {}
        if par:
            checks.append({"name": f"parity: {a.path}", "ok": bool(par.get("passed")),
                           "detail": f"max abs diff {par.get('max_abs_diff', float('nan')):.2e}, top-1 agreement "
                                     f"{100 * par.get('top1_agreement', 0):.2f}% vs {par.get('reference', '?')}"})

    torch_acc = (manifest.extra or {}).get("torch_accuracy")
    checks.append({"name": "deployed accuracy = runtime measurement", "ok": _close(dep["accuracy"],
                                                                                   deployed_art.accuracy),
                   "detail": f"manifest {deployed_art.accuracy}, edgekd_runtime now {dep['accuracy']}"})
    if prec == "int8" and torch_acc is not None:
        drop = 100 * (torch_acc - dep["accuracy"])
        checks.append({"name": "int8 accuracy within 0.5 pp of fp32 torch", "ok": drop <= INT8_ACCURACY_DROP_PP,
                       "detail": f"{100 * dep['accuracy']:.2f}% vs {100 * torch_acc:.2f}% ({-drop:+.2f} pp)"})
    # the latency model against this machine (information: the host profile is an estimate too)
    host_pred = get_profile("host").estimate_latency_ms(cost.features, prec)
    measured = bench[deployed_art.path]["p50_ms"]
    latency_model = {"host_estimate_ms": host_pred, "measured_p50_ms": measured, "ratio": host_pred / measured,
                     "artifact": deployed_art.path}

    return {
        "format": "edgekd-report", "format_version": 1,
        "run": {"created": utc_timestamp(), "quick": cfg.quick, "config": cfg.to_dict(),
                "fingerprint": cfg.fingerprint(), "versions": export_versions()},
        "target": {"profile": profile.to_dict(), "budget": budget.to_dict(), "precision": prec},
        "models": rows,
        "artifacts": artifacts,
        "deployed": dep,
        "budget": {"chosen": chosen, "plot": search.get("plot"), "feasible": search.get("feasible"),
                   "evaluated": search.get("total"), "ranked_by": search.get("ranked_by"),
                   "notes": search.get("notes"), "effective_limits": search.get("effective_limits")},
        "checks": checks,
        "latency_model": latency_model,
        "image_path": _image_path(bench, deployed_art.path),
    }


def _image_path(bench: dict[str, Any], artifact: str) -> dict[str, Any] | None:
    """The deployed artifact's image path as the bench step measured it: {artifact, image, runs, stages: {decode,
    preprocess, inference, total: {p50_ms, p90_ms, p99_ms, mean_ms, ...}}} (None when it was not measured)."""
    ip = (bench.get(artifact) or {}).get("image_path")
    if not ip:
        return None
    return {"artifact": artifact, "image": ip["image"], "decoded_shape": ip["decoded_shape"], "runs": ip["runs"],
            "stages": ip["stages"]}


def _deployable(manifest: Any, prec: str) -> Any:
    """The artifact the bundle deploys (what the board loads by default): the manifest's record, written by
    `edgekd convert`; bundles converted before it was recorded get the same rule applied here."""
    from edgekd_converters.bundle import deployable_artifact

    return manifest.deployed_artifact() or deployable_artifact(manifest, prec)


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) < 1e-9


def _load_ck(path: Path) -> dict[str, Any]:
    from edgekd.train.checkpoint import load_torch

    return load_torch(path)


def _deployed(bundle: Path, art: Any, manifest: Any) -> dict[str, Any]:
    """Accuracy and confusion matrix of the deployed artifact, measured through edgekd_runtime on the test split."""
    import edgekd_runtime
    from edgekd.export.samples import bundle_samples
    from edgekd.report.figures import confusion_matrix

    s = bundle_samples(manifest.extra.get("data"), manifest.input.size)
    rec = edgekd_runtime.load(bundle, backend=art.format, precision=art.precision)
    pred = rec.predict_proba(s.test_x).argmax(1)
    return {"path": art.path, "precision": art.precision, "accuracy": float(np.mean(pred == s.test_y)),
            "num_samples": int(len(s.test_y)), "split": s.split, "labels": list(manifest.labels),
            "confusion": confusion_matrix(s.test_y, pred, len(manifest.labels))}


def _teacher_row(teacher_ck: str, splits: Any, profile: Any, run_dir: Path,
                 scale: str | None = None) -> dict[str, Any] | None:
    """The teacher's accuracy, cost and fp32 ONNX latency on this machine (best effort for foreign teachers; an
    ONNX teacher is costed and timed as its own file)."""
    import edgekd_runtime
    from edgekd.budget.cost import file_cost
    from edgekd.export.onnx_export import export_onnx
    from edgekd.models.teachers import load_teacher
    from edgekd.train.device import resolve_device
    from edgekd.train.trainer import evaluate

    t = load_teacher(teacher_ck, splits.num_classes, scale=scale)
    acc, _ = evaluate(t.model, splits.test.x, splits.test.y, resolve_device("cpu"))
    row: dict[str, Any] = {"role": "teacher", "arch": t.name, "test_accuracy": acc,
                           "params": int(sum(p.numel() for p in t.model.parameters())),
                           "metrics": "teacher/metrics.jsonl" if (run_dir / "teacher/metrics.jsonl").is_file()
                           else None}
    onnx_path = Path(teacher_ck) if t.source == "onnx" else run_dir / "teacher" / "teacher.onnx"
    try:
        if t.source != "onnx":
            onnx_path.parent.mkdir(exist_ok=True)
            export_onnx(t.model, 28, onnx_path)
        c = file_cost(onnx_path)
        row["params"] = row["params"] or c.params
        row.update(macs=c.macs, flash_bytes=c.flash_bytes["fp32"], peak_ram_bytes=c.peak_ram_bytes["fp32"],
                   predicted_latency_ms=profile.estimate_latency_ms(c.features, "fp32"),
                   measured_latency_ms=edgekd_runtime.load(onnx_path).benchmark(runs=50, warmup=5).p50_ms,
                   note="fp32 ONNX (the teacher is not quantized)")
    except Exception as e:  # noqa: BLE001 - a foreign teacher that does not export still gets its accuracy row
        row["note"] = f"cost/latency unavailable: {str(e).splitlines()[0][:120]}"
    return row
