"""Collect a finished run's numbers into its report (report.json): models, artifacts, the deployed student,
checks. `build_report(RunContext) -> Report`, one function per part of the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edgekd.report.schema import (
    ArtifactRow,
    BudgetSummary,
    Check,
    Deployed,
    ImagePath,
    KDGain,
    LatencyModelCheck,
    ModelRow,
    Report,
    RunInfo,
    Target,
)
from edgekd_runtime.errors import WrongTaskError

from .config import PipelineConfig
from .deploy_choice import STUDENT, DeployChoice

if TYPE_CHECKING:
    from edgekd.budget.cost import ModelCost
    from edgekd.budget.search import Budget
    from edgekd.data.spec import Splits
    from edgekd_runtime.manifest import Artifact, Manifest
    from edgekd_runtime.profile import DeviceProfile

INT8_ACCURACY_DROP_PP = 0.5  # the converters issue's bound for int8 vs fp32 torch


@dataclass(frozen=True)
class RunContext:
    """What the pipeline's steps produced, which the report is built from.

    Attributes:
        cfg: the run's resolved configuration.
        run_dir: the run directory (metrics paths in the report are relative to it).
        splits: the data; the report's test split is `splits.test`.
        profile: the target board; budget: the limits and the deployed precision.
        search: the budget search's result as budget.json holds it (`SearchResult.to_dict()` + `plot`).
        bundle: the converted bundle directory.
        bench: artifact path -> `LatencyReport.to_dict(samples=False)` (bench.json's `artifacts`).
        teacher_ck: the teacher checkpoint or file the students were distilled from.
        choice: which model is deployed and why (`deploy_choice`).
    """

    cfg: PipelineConfig
    run_dir: Path
    splits: Splits
    profile: DeviceProfile
    budget: Budget
    search: dict[str, Any]
    bundle: Path
    bench: dict[str, dict[str, Any]]
    teacher_ck: str
    choice: DeployChoice


def build_report(ctx: RunContext) -> Report:
    from edgekd.budget.cost import file_cost, student_cost
    from edgekd.export.bundle import ONNX_NAME
    from edgekd_runtime.manifest import Manifest

    prec = ctx.budget.precision
    cost = student_cost(ctx.search["chosen"], ctx.splits.num_classes)
    # the deployed model's cost: the chosen student's, or the teacher's exported graph when it is deployed
    deployed_cost = cost if ctx.choice.model == STUDENT else file_cost(ctx.bundle / ONNX_NAME)
    manifest = Manifest.load(ctx.bundle)
    deployed_art = _deployable(manifest, prec)
    deployed = _deployed(ctx.bundle, deployed_art, manifest)
    models = _model_rows(ctx, cost, deployed_cost, ctx.bench[deployed_art.path]["p50_ms"], deployed_art.path)
    artifacts, budget_checks = _artifact_rows(ctx)
    fits = next((r.budget_ok for r in artifacts if r.path == deployed_art.path), None)
    checks = conversion_checks(manifest, deployed_art, prec, _parity_detail, fits) + budget_checks
    torch_acc = (Manifest.load(ctx.bundle).extra or {}).get("torch_accuracy")
    checks += _accuracy_checks(deployed, deployed_art.accuracy, torch_acc, prec)
    return Report(run=_run_info(ctx.cfg), target=Target(ctx.profile.to_dict(), ctx.budget.to_dict(), prec),
                  models=models, artifacts=artifacts, deployed=deployed, budget=_budget_summary(ctx.search),
                  checks=checks, latency_model=_latency_model(deployed_cost, prec, ctx.bench, deployed_art.path),
                  image_path=_image_path(ctx.bench, deployed_art.path),
                  deployment=ctx.choice,
                  kd_gain=_kd_gain(ctx) if ctx.choice.students_trained and ctx.cfg.task == "digits" else None)


def _kd_gain(ctx: RunContext) -> KDGain:
    """The distilled student against its scratch twin on the test split, paired digit by digit."""
    import torch

    from edgekd.report.stats import paired_gain
    from edgekd.train.batches import predict_labels
    from edgekd.train.checkpoint import load_student_checkpoint

    hits, mode = {}, None
    for role in ("scratch", "distilled"):
        model, ck = load_student_checkpoint(ctx.run_dir / role / "student.pt")
        pred = predict_labels(model, ctx.splits.test.x, torch.device("cpu"), int(ck.get("input_size") or 28))
        hits[role] = pred == ctx.splits.test.y
        mode = mode or (ck.get("metrics") or {}).get("kd_mode")
    g = paired_gain(hits["scratch"], hits["distilled"])
    return KDGain(g.gain.estimate, g.gain.low, g.gain.high, g.gain.level, g.gain.n, g.b_only, g.a_only,
                  g.within_noise, mode)


def _run_info(cfg: PipelineConfig) -> RunInfo:
    from edgekd.export.bundle import export_versions
    from edgekd_runtime.sysinfo import utc_timestamp

    return RunInfo(created=utc_timestamp(), quick=cfg.quick, config=cfg.to_dict(), fingerprint=cfg.fingerprint(),
                   versions=export_versions())


def _parity_detail(par: dict[str, Any]) -> str:
    return (f"max abs diff {par.get('max_abs_diff', float('nan')):.2e}, top-1 agreement "
            f"{100 * par.get('top1_agreement', 0):.2f}% vs {par.get('reference', '?')}")


def conversion_checks(manifest: Manifest, deployed_art: Artifact, prec: str,
                      parity_detail: Callable[[dict[str, Any]], str], fits: bool | None = None) -> list[Check]:
    """Artifacts that failed parity (left out of the bundle; `parity_detail` words their numbers, top-1 or strings)
    and a deployed artifact that is not the budget's precision as TFLite; a fallback over the budget (`fits` False:
    a float file of a model sized for int8) says so. The one rule for both tasks' reports."""
    checks = [Check(f"parity: {f.get('path')}", False,
                    "left out of the bundle: " + parity_detail(f.get("parity") or {}))
              for f in (manifest.extra.get("conversion") or {}).get("failed", [])]
    if deployed_art.precision != prec or deployed_art.format != "tflite":
        over = "" if fits is not False else (f", a {deployed_art.size_bytes / 1024:.1f} KiB file that does not fit "
                                             f"the budget (see the artifacts' 'within budget')")
        checks.append(Check(f"deploy {prec} TFLite", False,
                            f"no passing {prec} TFLite artifact; deployed {deployed_art.path} instead{over}"))
    return checks


def _model_rows(ctx: RunContext, cost: ModelCost, deployed_cost: ModelCost, measured_ms: float,
                deployed_path: str) -> list[ModelRow]:
    """The teacher, then (when they were trained) the student trained from scratch and the distilled one (same
    architecture, so when a student is deployed its measured latency is both students'). The deployed model's row
    shows the deployed precision's cost and the deployed artifact's latency."""
    prec, chosen = ctx.budget.precision, ctx.search["chosen"]
    teacher = _teacher_row(ctx.teacher_ck, ctx.splits, ctx.profile, ctx.run_dir, ctx.cfg.teacher_scale)
    if ctx.choice.model != STUDENT:
        teacher.flash_bytes = deployed_cost.flash_bytes[prec]
        teacher.peak_ram_bytes = deployed_cost.peak_ram_bytes[prec]
        teacher.predicted_latency_ms = ctx.profile.estimate_latency_ms(deployed_cost.features, prec)
        teacher.measured_latency_ms, teacher.note = measured_ms, f"deployed ({deployed_path})"
    rows = [teacher]
    student_ms = measured_ms if ctx.choice.model == STUDENT else None
    for role in ("scratch", "distilled") if ctx.choice.students_trained else ():
        metrics = _load_ck(ctx.run_dir / role / "student.pt")["metrics"]
        rows.append(ModelRow(role=role, arch=chosen, test_accuracy=metrics.get("test_acc"), params=cost.params,
                             macs=cost.macs, flash_bytes=cost.flash_bytes[prec],
                             peak_ram_bytes=cost.peak_ram_bytes[prec],
                             predicted_latency_ms=ctx.profile.estimate_latency_ms(cost.features, prec),
                             measured_latency_ms=student_ms, metrics=f"{role}/metrics.jsonl",
                             epochs_run=metrics.get("epochs_run"), epoch_time_s=metrics.get("epoch_time_s")))
    return rows


def _artifact_rows(ctx: RunContext) -> tuple[list[ArtifactRow], list[Check]]:
    """Every artifact with its latency here, and the budget check after conversion (real file sizes vs the
    limits, for the deployed precision) and the parity check of each."""
    from edgekd.budget.check import check_bundle
    from edgekd_runtime.manifest import Manifest

    prec = ctx.budget.precision
    budget_checks = {c.path: c for c in check_bundle(ctx.bundle, measure=False)}  # flags budget_ok in the manifest
    rows, checks = [], []
    for a in Manifest.load(ctx.bundle).artifacts:
        b = ctx.bench.get(a.path, {})
        rows.append(ArtifactRow(path=a.path, format=a.format, precision=a.precision, size_bytes=a.size_bytes,
                                accuracy=a.accuracy, parity=a.parity, p50_ms=b.get("p50_ms"), p99_ms=b.get("p99_ms"),
                                budget_ok=a.budget_ok))
        c = budget_checks.get(a.path)
        if c is not None and a.precision == prec:  # the budget is for the deployed precision
            detail = "; ".join(c.problems()) or (
                f"{a.size_bytes / 1024:.1f} KiB file, {c.predicted_ram_bytes / 1024:.1f} KiB peak RAM"
                + (f", {c.predicted_latency_ms:.3f} ms predicted on {ctx.profile.name}"
                   if c.predicted_latency_ms is not None else ""))
            checks.append(Check(f"budget after conversion: {a.path}", c.budget_ok, detail))
        if a.parity:
            checks.append(Check(f"parity: {a.path}", bool(a.parity.get("passed")), _parity_detail(a.parity)))
    return rows, checks


def _accuracy_checks(dep: Deployed, manifest_acc: float | None, torch_acc: float | None, prec: str) -> list[Check]:
    """The deployed artifact's accuracy as the manifest records it = as edgekd_runtime measures it now; for int8,
    within INT8_ACCURACY_DROP_PP of the fp32 torch model."""
    checks = [Check("deployed accuracy = runtime measurement", _close(dep.accuracy, manifest_acc),
                    f"manifest {manifest_acc}, edgekd_runtime now {dep.accuracy}")]
    if prec == "int8" and torch_acc is not None:
        drop = 100 * (torch_acc - dep.accuracy)
        checks.append(Check("int8 accuracy within 0.5 pp of fp32 torch", drop <= INT8_ACCURACY_DROP_PP,
                            f"{100 * dep.accuracy:.2f}% vs {100 * torch_acc:.2f}% ({-drop:+.2f} pp)"))
    return checks


def _latency_model(cost: ModelCost, prec: str, bench: dict[str, dict[str, Any]], artifact: str) -> LatencyModelCheck:
    """The latency model against this machine (information: the host profile is an estimate too)."""
    from edgekd.budget.profiles import get_profile

    host_pred = get_profile("host").estimate_latency_ms(cost.features, prec)
    measured = bench[artifact]["p50_ms"]
    return LatencyModelCheck(host_estimate_ms=host_pred, measured_p50_ms=measured, ratio=host_pred / measured,
                             artifact=artifact)


def _budget_summary(search: dict[str, Any]) -> BudgetSummary:
    """budget.json's headline, with the chosen student's binding limit (the one it uses most of)."""
    row = next((c for c in search.get("candidates") or [] if c.get("student") == search["chosen"]), None)
    usage = (row or {}).get("usage_pct") or {}
    binding = max(usage, key=lambda k: usage[k]) if usage else None
    return BudgetSummary(chosen=search["chosen"], plot=search.get("plot"), feasible=search.get("feasible"),
                         evaluated=search.get("total"), ranked_by=search.get("ranked_by"), notes=search.get("notes"),
                         effective_limits=search.get("effective_limits"), binding=binding,
                         binding_usage_pct=usage[binding] if binding else None, teacher=_teacher_candidate(search))


def _teacher_candidate(search: dict[str, Any]) -> dict[str, Any]:
    """The teacher as the search costed it: {name, feasible, params, macs, flash_bytes, ram_bytes, latency_ms,
    latency_bound_ms, capacity, violated, usage_pct}, or {name: None, note} when it could not be costed."""
    t = search.get("teacher")
    if t is None:
        return {"name": None, "note": search.get("teacher_note")}
    keys = ("feasible", "params", "macs", "flash_bytes", "ram_bytes", "latency_ms", "latency_bound_ms", "capacity",
            "violated", "usage_pct")
    return {"name": t["student"], **{k: t.get(k) for k in keys}}


def _image_path(bench: dict[str, dict[str, Any]], artifact: str) -> ImagePath | None:
    """The deployed artifact's image path as the bench step measured it (None when it was not measured)."""
    ip = (bench.get(artifact) or {}).get("image_path")
    if not ip:
        return None
    return ImagePath(artifact=artifact, image=ip["image"], decoded_shape=ip["decoded_shape"], runs=ip["runs"],
                     stages=ip["stages"])


def _deployable(manifest: Manifest, prec: str) -> Artifact:
    """The artifact the bundle deploys (what the board loads by default): the manifest's record, written by
    `edgekd convert`; bundles converted before it was recorded get the same rule applied here."""
    from edgekd_converters.bundle import deployable_artifact

    return manifest.deployed_artifact() or deployable_artifact(manifest, prec)


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) < 1e-9


def _load_ck(path: Path) -> dict[str, Any]:
    from edgekd.train.checkpoint import load_torch

    return load_torch(path)


def _deployed(bundle: Path, art: Artifact, manifest: Manifest) -> Deployed:
    """Accuracy and confusion matrix of the deployed artifact, measured through edgekd_runtime on the test split."""
    import edgekd_runtime
    from edgekd.export.samples import bundle_samples
    from edgekd.report.figures import confusion_matrix

    s = bundle_samples(manifest.extra.get("data"), manifest.input.size)
    rec = edgekd_runtime.load(bundle, backend=art.format, precision=art.precision)
    if not isinstance(rec, edgekd_runtime.Recognizer):
        raise WrongTaskError(f"{bundle}: a text-line bundle; this report measures a digit classifier")
    pred = rec.predict_proba(s.test_x).argmax(1)
    return Deployed(path=art.path, precision=art.precision, accuracy=float(np.mean(pred == s.test_y)),
                    num_samples=int(len(s.test_y)), split=s.split, labels=list(manifest.labels),
                    confusion=confusion_matrix(s.test_y, pred, len(manifest.labels)))


def _teacher_row(teacher_ck: str, splits: Splits, profile: DeviceProfile, run_dir: Path,
                 scale: str | None = None) -> ModelRow:
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
    row = ModelRow(role="teacher", arch=t.name, test_accuracy=acc,
                   params=int(sum(p.numel() for p in t.model.parameters())),
                   metrics="teacher/metrics.jsonl" if (run_dir / "teacher/metrics.jsonl").is_file() else None)
    onnx_path = Path(teacher_ck) if t.source == "onnx" else run_dir / "teacher" / "teacher.onnx"
    try:
        if t.source != "onnx":
            onnx_path.parent.mkdir(exist_ok=True)
            export_onnx(t.model, 28, onnx_path)
        c = file_cost(onnx_path)
        row.params = row.params or c.params
        predicted = profile.estimate_latency_ms(c.features, "fp32")
        measured = edgekd_runtime.load(onnx_path).benchmark(runs=50, warmup=5).p50_ms
        # all or nothing: a teacher that cannot be timed has no cost figures either
        row.macs, row.flash_bytes, row.peak_ram_bytes = c.macs, c.flash_bytes["fp32"], c.peak_ram_bytes["fp32"]
        row.predicted_latency_ms, row.measured_latency_ms = predicted, measured
        row.note = "fp32 ONNX (the teacher is not quantized)"
    except Exception as e:  # noqa: BLE001 - a foreign teacher that does not export still gets its accuracy row
        row.note = f"cost/latency unavailable: {str(e).splitlines()[0][:120]}"
    return row
