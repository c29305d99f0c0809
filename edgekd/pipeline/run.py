"""The whole pipeline behind `edgekd run`, one resumable step at a time.

Layout of a run directory::

    run.json, state.json, config.yaml          what made it, which steps are done
    teacher/teacher.pt, metrics.jsonl          the built-in teacher (absent with --teacher FILE)
    budget.json, budget.png                    the search over the student family
    distilled/student.pt, scratch/student.pt   the chosen student, with KD and from scratch
    bundle/                                    manifest.json + student.onnx + TFLite/ONNX-int8 artifacts
    bench.json                                 edgekd_runtime latency of every artifact on this machine
    report.json, report.md, report.html, *.png the report

The stages are the same for both tasks (`digits`, `lines`); what a stage does differently for a task is in
tasks.py, the lines task's report in lines_report.py (a lines run always deploys its distilled student).

`--force` replaces a run of another configuration by removing these (state.RUN_FILES / RUN_DIRS) and nothing else;
keep the two lists in step when the pipeline writes something new.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from edgekd.report.schema import Report
from edgekd_runtime.atomic import atomic_write_json, atomic_write_text, sha256_file
from edgekd_runtime.sysinfo import utc_timestamp

from . import tasks
from .config import PipelineConfig, digest, file_digest
from .deploy_choice import TEACHER, DeployChoice, check_policy, compare_on_val, cost_teacher, decide, plan
from .state import StepState, prepare_run_dir, refuse_foreign

Log = Callable[[str], None]


def run_pipeline(cfg: PipelineConfig, run_dir: str | Path, *, force: bool = False, progress: bool = True,
                 log: Log = print) -> Report | dict[str, Any]:
    """Run (or continue) the pipeline in `run_dir`; returns the report (report.json's content; a dict for the
    lines task, edgekd.pipeline.lines_report)."""
    import yaml

    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    cfg_dict = cfg.to_dict()
    # validate everything cheap before touching the run directory
    profile, budget = _profile_and_budget(cfg)
    check_inputs(cfg, run_dir)
    splits, about = tasks.load_splits(cfg)  # the data and a teacher file are read and checked before the run dir
    if cfg.teacher:
        _check_user_teacher(cfg, splits, log)
    resumed = prepare_run_dir(run_dir, cfg.fingerprint(), cfg_dict, force)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.file_dict(), sort_keys=False))
    state = StepState(run_dir)
    log(f"{'continuing' if resumed else 'starting'} run in {run_dir} (config {cfg.fingerprint()})")
    log(about)

    # the budget search is cheap and refuses a student or budget that does not fit: before the teacher trains
    search_key, search = _budget_step(cfg, profile, budget, splits.num_classes, run_dir, state, log)
    teacher_key, teacher_ck = _teacher_step(cfg, splits, run_dir, state, progress, log)
    choice, bundle = _train_and_deploy(cfg, splits, search_key, search, teacher_key, teacher_ck,
                                       {"budget": budget.to_dict(), "profile": profile.to_dict()}, run_dir, state,
                                       progress, log)
    bench = _bench_step(cfg, bundle, run_dir, log, splits.test)
    if cfg.task == "lines":
        from .lines_report import build_lines_report

        lines = build_lines_report(cfg, run_dir, splits, profile, budget, search, bundle, bench, teacher_ck)
        lines["run"].update(name=run_dir.name, wall_time_s=time.perf_counter() - t_start, resumed=resumed)
        return _write_report(run_dir, lines, log)

    from .results import RunContext, build_report

    rep = build_report(RunContext(cfg, run_dir, splits, profile, budget, search, bundle, bench, teacher_ck, choice))
    assert rep.run is not None
    rep.run.name, rep.run.wall_time_s, rep.run.resumed = run_dir.name, time.perf_counter() - t_start, resumed
    _write_report(run_dir, rep.to_dict(), log)
    return rep


def _write_report(run_dir: Path, rep: dict[str, Any], log: Log) -> dict[str, Any]:
    from edgekd.report import render_report

    atomic_write_json(run_dir / "report.json", rep)
    render_report(run_dir)
    log(f"report: {run_dir / 'report.md'}")
    return rep


def _train_dict(t: Any) -> dict[str, Any]:
    d = dict(t.__dict__)
    for k in ("device", "num_threads", "compile"):
        d.pop(k, None)
    return d


def _profile_and_budget(cfg: PipelineConfig):
    from edgekd.budget.profiles import resolve_profile

    return resolve_profile(cfg.target, cfg.profile, default="rpi4"), cfg.budget


def check_inputs(cfg: PipelineConfig, run_dir: Path) -> None:
    """Refuse what would otherwise fail only after the teacher has trained: the student id (grammar, family,
    task), the built-in teacher's name, the teacher scale, the deploy_teacher policy, the KD loss and its settings,
    the transfer views, the run directory and the teacher file."""
    from edgekd.models.foreign_teachers import parse_teacher_scale
    from edgekd.models.teachers import check_teacher_files
    from edgekd.train.device import resolve_amp, resolve_device
    from edgekd_runtime.atomic import check_writable
    from edgekd_runtime.errors import UserInputError

    tasks.check_task_inputs(cfg)
    parse_teacher_scale(cfg.teacher_scale)
    if not cfg.teacher:
        if cfg.teacher_scale:
            raise UserInputError(f"teacher scale {cfg.teacher_scale!r} is for a teacher file (--teacher FILE); the "
                                 f"built-in teacher trains on edgekd's own normalisation: leave it out")
    check_policy(cfg.deploy_teacher)
    for t in (cfg.teacher_train, cfg.student_train):  # a device that is not here is refused before --force clears
        resolve_amp(t.amp, resolve_device(t.device))
    d = cfg.distill
    if d.transfer_views < 1:
        raise UserInputError(f"distill.transfer_views must be >= 1, got {d.transfer_views}")
    check_writable(run_dir, "--out", directory=True)
    if cfg.teacher:
        check_teacher_files(cfg.teacher, cfg.task)  # a file that is no teacher, before the data is read


def _fresh_dir(d: Path) -> None:
    """Empty a step's folder for its redo: only what edgekd wrote there (`state.refuse_foreign`)."""
    if d.exists():
        refuse_foreign(d, "--out")
        shutil.rmtree(d)
    d.mkdir(parents=True)


def _teacher_step(cfg: PipelineConfig, splits: Any, run_dir: Path, state: StepState, progress: bool,
                  log: Log) -> tuple[str, str]:
    """The teacher (trained here: `teacher_members` built-in networks, or the user's file, checked by
    `_check_user_teacher`). Returns (input hash, reference: a path, or the members' paths joined by commas, as
    `load_teacher` reads an ensemble)."""
    if cfg.teacher:
        path = Path(cfg.teacher).expanduser()
        log(f"teacher: {path} (yours)")
        key = file_digest(cfg.teacher)
        return (key if cfg.teacher_scale is None else digest({"file": key, "scale": cfg.teacher_scale})), str(path)
    members = {"members": cfg.teacher_members} if cfg.teacher_members > 1 else {}  # (one: the keys of before)
    key = digest({"data": tasks.data_dict(cfg), "arch": cfg.teacher_arch, "train": _train_dict(cfg.teacher_train),
                  **members})
    out = run_dir / "teacher"
    cks = [out / "teacher.pt"] + [out / f"member{i}" / "teacher.pt" for i in range(1, cfg.teacher_members)]
    ref = ",".join(map(str, cks))
    if state.done("teacher", key) and all(ck.is_file() for ck in cks):
        log(f"teacher: {ref} (done, skipped)")
        return key, ref
    started = state.started_with("teacher", key)
    if not started:
        _fresh_dir(out)
    state.start("teacher", key)
    for i, ck in enumerate(cks):
        if started and ck.is_file():
            continue  # a member that finished before the run was interrupted
        resume = started and (ck.parent / "last.pt").is_file()
        log(f"teacher: {'resuming' if resume else 'training'} built-in {cfg.teacher_arch!r} "
            f"({cfg.teacher_train.epochs} epochs)" + (f", member {i + 1} of {len(cks)}" if len(cks) > 1 else ""))
        seeded = replace(cfg, teacher_train=replace(cfg.teacher_train, seed=cfg.teacher_train.seed + i))
        tasks.train_task_teacher(seeded, splits, ck.parent, resume, progress)
    state.finish("teacher", key)
    return key, ref


def _check_user_teacher(cfg: PipelineConfig, splits: Any, log: Log) -> None:
    """Load the user's teacher file and check it (class count, a batch, the declared input scaling on the val
    split, which warns) before anything is written."""
    t = tasks.check_user_teacher(cfg, str(Path(cfg.teacher).expanduser()), splits)
    scale = "" if cfg.teacher_scale is None else f", input scale {cfg.teacher_scale}"
    log(f"teacher file: {cfg.teacher} ({t.source}{scale}) checked")


def _teacher_identity(cfg: PipelineConfig) -> str:
    """What the teacher's cost depends on: its file and declared input scaling, or the built-in architecture."""
    if not cfg.teacher:
        return cfg.teacher_arch if cfg.teacher_members == 1 else f"{cfg.teacher_arch} x{cfg.teacher_members}"
    return digest({"file": file_digest(cfg.teacher), "scale": cfg.teacher_scale})


def _teacher_to_cost(cfg: PipelineConfig, num_classes: int) -> Any:
    """The teacher, to cost it (weights do not change a cost, so the built-in architecture is costed before it
    trains; a user's file as `load_teacher` reads it, with its declared input scaling)."""
    from edgekd.models.teachers import TEACHERS, Teacher, load_teacher

    if cfg.teacher:
        return load_teacher(str(Path(cfg.teacher).expanduser()), num_classes, cfg.teacher_arch, cfg.teacher_scale)
    if cfg.teacher_members > 1:  # costed as what it is: every member runs
        from edgekd.models.ensemble import ProbabilityEnsemble

        nets = [TEACHERS.get(cfg.teacher_arch)(num_classes) for _ in range(cfg.teacher_members)]
        return Teacher(ProbabilityEnsemble(nets).eval(), _teacher_identity(cfg), "built-in", False)
    return Teacher(TEACHERS.get(cfg.teacher_arch)(num_classes), cfg.teacher_arch, "built-in", True)


def _budget_step(cfg: PipelineConfig, profile: Any, budget: Any, num_classes: int, run_dir: Path, state: StepState,
                 log: Log) -> tuple[str, dict[str, Any]]:
    from edgekd.budget.plot import plot_search
    from edgekd.budget.search import teacher_candidate

    key = digest({"profile": profile.to_dict(), "budget": budget.to_dict(), "student": cfg.student,
                  "classes": num_classes, "teacher": _teacher_identity(cfg), **tasks.search_key(cfg)})
    out = run_dir / "budget.json"
    if state.done("budget", key) and out.is_file():
        import json

        res = json.loads(out.read_text())
        log(f"budget: {res['chosen']} (done, skipped)")
        return key, res
    state.start("budget", key)
    result = tasks.search_students(cfg, profile, budget, num_classes)
    cost, note = (None, "is not a deployment candidate for lines") if cfg.task == "lines" else (
        cost_teacher(_teacher_to_cost(cfg, num_classes), cfg.teacher))
    if cost is not None:
        result = teacher_candidate(result, cost.name, cost)
    plot_search(result, run_dir / "budget.png")
    res = {**result.to_dict(), "plot": "budget.png", "teacher_note": note}
    atomic_write_json(out, res)
    c = result.chosen
    margin = f" ({c.bound_ms:.3f} ms with the margin)" if c.bound_ms != c.latency_ms else ""
    log(f"budget: chose {c.student_id} for {profile.name} ({budget.precision}): {c.latency_ms:.3f} ms predicted"
        f"{margin}, {c.flash_bytes / 1024:.1f} KiB flash; {res['feasible']}/{res['total']} candidates fit")
    t = result.teacher
    log(f"budget: the teacher {note}" if t is None else
        f"budget: the teacher {t.student_id} {'fits' if t.feasible else 'does not fit'}: {t.cost.params:,} params, "
        f"{t.latency_ms:.3f} ms predicted, {t.flash_bytes / 1024:.1f} KiB flash")
    state.finish("budget", key)
    return key, res


def _train_and_deploy(cfg: PipelineConfig, splits: Any, search_key: str, search: dict[str, Any], teacher_key: str,
                      teacher_ck: str, extra: dict[str, Any], run_dir: Path, state: StepState, progress: bool,
                      log: Log) -> tuple[DeployChoice | None, Path]:
    """Train the students unless the teacher, fitting the budget, is deployed without them (`deploy_choice`), then
    export, convert and check the deployed model into the bundle. Returns (the decision, the bundle)."""
    from edgekd.models.teachers import load_teacher

    student_ck = run_dir / "distilled" / "student.pt"
    if cfg.task == "lines":  # the lines task deploys its distilled student (no teacher candidate)
        dist_key = _students_step(cfg, splits, search["chosen"], teacher_key, teacher_ck, extra, run_dir, state,
                                  progress, log)
        key = digest({"student": dist_key, "checkpoint": sha256_file(student_ck)})
        return None, _export_convert(key, run_dir, state, log, _student_export(student_ck))
    choice = plan(search, bool(cfg.student), cfg.deploy_teacher)
    dist_key = None
    if choice.students_trained:
        dist_key = _students_step(cfg, splits, search["chosen"], teacher_key, teacher_ck, extra, run_dir, state,
                                  progress, log)
    teacher = load_teacher(teacher_ck, splits.num_classes, cfg.teacher_arch, cfg.teacher_scale)
    choice = decide(choice, search, compare_on_val(teacher, student_ck if dist_key else None, splits))
    log(f"deploy: the {choice.model}: {choice.reason}")
    if choice.model == TEACHER:
        return choice, _export_convert(digest({"teacher": teacher_key, "budget": search_key}), run_dir, state, log,
                                       _teacher_export(cfg, splits, teacher_ck, extra, choice))
    key = digest({"student": dist_key, "checkpoint": sha256_file(student_ck)})
    return choice, _export_convert(key, run_dir, state, log, _student_export(student_ck))


def _students_step(cfg: PipelineConfig, splits: Any, student_id: str, teacher_key: str, teacher_ck: str,
                   extra: dict[str, Any], run_dir: Path, state: StepState, progress: bool, log: Log) -> str:
    """The distilled student and its scratch twin (same architecture, same data, loss none). Returns the distilled
    student's input hash."""
    common = {"data": tasks.data_dict(cfg), "train": _train_dict(cfg.student_train), "student": student_id,
              "augment": None if cfg.augment is None else cfg.augment.__dict__}
    dist_key = digest({**common, "teacher": teacher_key, "distill": cfg.distill.__dict__})
    _train_student("distilled", dist_key, cfg, splits, student_id, teacher_ck, cfg.distill, run_dir, state, progress,
                   log, extra)
    # the scratch twin sees the same data as the distilled student: the same fresh views (online) or transfer set
    kd_mode = _resolved_kd_mode(run_dir / "distilled" / "student.pt")
    scratch_key = digest({**common, "transfer_views": cfg.distill.transfer_views, "kd_mode": kd_mode})
    _train_student("scratch", scratch_key, cfg, splits, student_id, None,
                   replace(cfg.distill, loss="none", kd_mode=kd_mode), run_dir, state, progress, log, extra)
    return dist_key


def _resolved_kd_mode(student_ck: Path) -> str:
    """The KD mode (online or cached) the distilled student trained with, as its checkpoint records it."""
    from edgekd.train.checkpoint import load_torch

    return str((load_torch(student_ck).get("metrics") or {}).get("kd_mode", "cached"))


def _train_student(role: str, key: str, cfg: PipelineConfig, splits: Any, student_id: str, teacher_ck: str | None,
                   opts: Any, run_dir: Path, state: StepState, progress: bool, log: Log,
                   extra: dict[str, Any]) -> None:
    out = run_dir / role
    if state.done(role, key) and (out / "student.pt").is_file():
        log(f"{role}: {out / 'student.pt'} (done, skipped)")
        return
    resume = state.started_with(role, key) and (out / "last.pt").is_file()
    if not resume:
        _fresh_dir(out)
    state.start(role, key)
    teacher = None if teacher_ck is None else tasks.load_task_teacher(cfg, teacher_ck, splits)
    log(f"{role}: {'resuming' if resume else 'training'} {student_id} with loss {opts.loss!r} "
        f"({cfg.student_train.epochs} epochs, KD mode {opts.kd_mode})")
    tasks.train_task_student(cfg, splits, student_id, out, teacher, opts, resume, progress, extra)
    state.finish(role, key)


def _student_export(ck: Path) -> Callable[[Path], Any]:
    from edgekd.export.bundle import export_bundle

    return lambda bundle: export_bundle(ck, bundle, force=True)


def _teacher_export(cfg: PipelineConfig, splits: Any, teacher_ck: str, extra: dict[str, Any],
                    choice: DeployChoice) -> Callable[[Path], Any]:
    """Export the teacher itself as the bundle, checked and recorded as a student's would be."""
    from edgekd.export.teacher_bundle import export_teacher_bundle

    metrics = {"val_accuracy": choice.teacher_val_accuracy, "deployed_because": choice.reason}
    return lambda bundle: export_teacher_bundle(teacher_ck, bundle, data=splits.spec.to_dict(),
                                                labels=list(splits.class_names), budget=extra["budget"],
                                                profile=extra["profile"], metrics=metrics, arch=cfg.teacher_arch,
                                                scale=cfg.teacher_scale, force=True)


def _export_convert(key: str, run_dir: Path, state: StepState, log: Log, export: Callable[[Path], Any]) -> Path:
    """Export the deployed model with `export(bundle_dir)`, then convert and check it (same for both models)."""
    from edgekd.export.convert import convert_exported_bundle

    bundle = run_dir / "bundle"
    if state.done("convert", key) and (bundle / "manifest.json").is_file():
        log(f"bundle: {bundle} (done, skipped)")
        return bundle
    state.start("convert", key)
    t0 = time.perf_counter()
    export(bundle)
    log(f"export: {bundle / 'student.onnx'} ({time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    manifest, report = convert_exported_bundle(bundle, force=True, strict=False)
    log(f"convert: {', '.join(a.path for a in manifest.artifacts)} ({time.perf_counter() - t0:.1f} s)")
    for f in report.failed:  # kept out of the bundle and flagged in the report, never shipped silently
        log(f"convert: {f.name} FAILED parity and was left out ({f.parity.to_dict()})")
    state.finish("convert", key)
    return bundle


def _bench_step(cfg: PipelineConfig, bundle: Path, run_dir: Path, log: Log, test: Any) -> dict[str, Any]:
    """Latency of every artifact on this machine through edgekd_runtime (always re-measured: it is cheap), and
    the deployed artifact's image path (decode, preprocess, inference) on a photo of a test digit or line
    (`tasks.bench_photo`), `cfg.bench_runs` times."""
    import tempfile

    from edgekd.bench import bench_bundle

    def show(path: str, rep: Any) -> None:
        log(f"bench: {path:28s} p50 {rep.p50_ms:.3f} ms  p99 {rep.p99_ms:.3f} ms  ({rep.backend} {rep.delegate}, "
            f"{rep.threads} thread(s))")
        if rep.image_path is not None:
            st = rep.image_path.stages
            what = "line" if cfg.task == "lines" else "digit"
            log(f"bench: {path} on a photo of a test {what}, p50: decode {st['decode'].p50_ms:.2f} ms, preprocess "
                f"{st['preprocess'].p50_ms:.2f} ms, inference {st['inference'].p50_ms:.3f} ms, total "
                f"{st['total'].p50_ms:.2f} ms")

    with tempfile.TemporaryDirectory(prefix="edgekd_bench_") as tmp:
        photo = Path(tmp) / "test_photo.png"
        what = tasks.bench_photo(cfg, test, photo)
        reports = bench_bundle(bundle, cfg.bench_runs, on_result=show, image=photo)
    for r in reports.values():
        if r.image_path is not None:
            r.image_path.image = what
    out = {p: r.to_dict(samples=False) for p, r in reports.items()}
    atomic_write_json(run_dir / "bench.json", {"created": utc_timestamp(), "artifacts": out})
    return out
