"""`edgekd distill --teacher T --student ID`: distill a teacher into a student (or `--loss none`: scratch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edgekd.train.kd_mode import KD_MODE_HELP
from edgekd_runtime.cli_support import handle_errors

from .budget_cmd import budget_options
from .teacher_cmd import (
    RUN_OPTS,
    check_out,
    prepare_out,
    report,
    resolve_task_config,
    resumable,
    resume_hint,
    task_overrides,
    train_overrides,
)

BUDGET_OPTS = budget_options()  # the `edgekd budget` flags: --target/--profile/--latency-ms/.../--precision


def choose_student(student: Optional[str], budget_request: Optional[dict[str, Any]] = None) -> tuple[str, dict | None]:
    """The student id to train: `--student`, or the one `edgekd.budget.search` picks for `budget_request`
    (the `edgekd budget` flags as a dict, plus num_classes). Returns (student_id, budget record or None)."""
    from edgekd_runtime.errors import UserInputError

    if student and budget_request:
        raise UserInputError(f"give --student {student} or the budget flags (--target/--profile ...), not both: "
                             f"the budget search picks the student")
    if student:
        return student, None
    if budget_request:
        from .budget_cmd import run_search

        res = run_search(**budget_request)
        c = res.chosen
        return c.student_id, {"budget": res.budget.to_dict(), "profile": res.profile.to_dict(),
                              "effective_limits": dict(res.limits), "chosen": c.to_dict(),
                              "ranked_by": res.ranked_by, "feasible": len(res.feasible),
                              "candidates": len(res.candidates)}
    raise UserInputError("give --student ID (e.g. dscnn-w8-d3-r28) or a budget (--target rpi4 --latency-ms 2 ...); "
                         "`edgekd budget` lists ids that fit a board")


def check_distill_inputs(cfg: Any, out: Path, resume: bool) -> None:
    """What `edgekd distill` refuses before reading any data or teacher: a bad --student (grammar, family, task,
    line height), a bad or other-task KD loss, a KD loss without --teacher or with one that is no readable file
    of the task's kinds, and an --out it cannot use."""
    from edgekd.kd import check_loss
    from edgekd.models.line_models import check_task
    from edgekd.models.students import parse_student_id
    from edgekd.models.teachers import check_teacher_files
    from edgekd.train.kd_mode import check_kd_mode
    from edgekd_runtime.errors import UserInputError

    lines = cfg.task == "lines"
    if cfg.student:
        parse_student_id(cfg.student)
        check_task(cfg.student, cfg.task, cfg.lines.height if lines else None)
    d = cfg.distill
    check_loss(d.loss_config(), cfg.task)
    check_kd_mode(d.kd_mode, cfg.task)
    if d.loss.strip() != "none" and not cfg.teacher:
        raise UserInputError(f"give --teacher FILE (edgekd teacher train{' --task lines' if lines else ''} writes "
                             f"one), or --loss none")
    if cfg.teacher_scale is not None:
        from edgekd.models.foreign_teachers import parse_teacher_scale

        if lines:
            raise UserInputError("--teacher-scale is for digit teacher files; line teachers take edgekd's "
                                 "normalisation")
        parse_teacher_scale(cfg.teacher_scale)
    if d.loss.strip() != "none":
        check_teacher_files(cfg.teacher, cfg.task)
    check_out(out, resume)


def register(app: typer.Typer) -> None:
    @app.command("distill", help="Distill a teacher into a student (KD losses: kd, mse, fitnet, dkd, sums; "
                                 "none = scratch). Writes OUT/student.pt, metrics.jsonl, config.yaml.")
    @handle_errors
    def distill(
        teacher: Optional[str] = typer.Option(None, "--teacher", help="teacher.pt, TorchScript, .pt2, state_dict, "
                                              "or an ONNX / TFLite file from any framework."),
        teacher_scale: Optional[str] = typer.Option(None, "--teacher-scale", help="The input a teacher file takes: "
                                                    "0-1, 0-255 or MEAN,STD of pixels/255 (default MNIST's)."),
        student: Optional[str] = typer.Option(None, "--student", help="Student id, e.g. dscnn-w8-d3-r28."),
        out: Path = typer.Option(Path("runs/student"), "--out", help="Output directory."),
        config: Optional[Path] = RUN_OPTS["config"],
        teacher_arch: Optional[str] = typer.Option(None, "--teacher-arch",
                                                   help="Architecture of a state_dict teacher."),
        task: Optional[str] = RUN_OPTS["task"],
        loss: Optional[str] = typer.Option(None, help="KD loss spec: kd, mse, fitnet, dkd, none, 'kd+0.5*fitnet'; "
                                                      "lines: frame_kd, blank_kd, seq_kd, none, sums."),
        temperature: Optional[float] = typer.Option(None, help="KD temperature T."),
        alpha: Optional[float] = typer.Option(None, help="Weight of the soft term in kd."),
        views: Optional[int] = typer.Option(None, "--views", help="Transfer-set views (fixed augmented copies)."),
        no_cache: bool = typer.Option(False, "--no-cache-teacher", help="Run the teacher on every batch."),
        kd_mode: Optional[str] = typer.Option(None, "--kd-mode", help=KD_MODE_HELP),
        source: Optional[str] = RUN_OPTS["source"],
        data_path: Optional[str] = RUN_OPTS["data_path"],
        data_seed: Optional[int] = RUN_OPTS["data_seed"],
        epochs: Optional[int] = typer.Option(None, help="Epochs (default: edgekd run's, 60 for digits, 40 for "
                                                        "lines)."),
        batch_size: Optional[int] = RUN_OPTS["batch_size"],
        lr: Optional[float] = RUN_OPTS["lr"],
        device: Optional[str] = RUN_OPTS["device"],
        amp: Optional[str] = RUN_OPTS["amp"],
        seed: Optional[int] = RUN_OPTS["seed"],
        patience: Optional[int] = RUN_OPTS["patience"],
        compile_: bool = RUN_OPTS["compile_"],
        threads: Optional[int] = RUN_OPTS["threads"],
        init_from: Optional[str] = typer.Option(None, "--init-from", help="Warm-start from a student checkpoint."),
        resume: bool = RUN_OPTS["resume"],
        quiet: bool = RUN_OPTS["quiet"],
        json_out: bool = RUN_OPTS["json_out"],
        target: Optional[str] = BUDGET_OPTS["target"],
        profile: Optional[Path] = BUDGET_OPTS["profile"],
        latency_ms: Optional[float] = BUDGET_OPTS["latency_ms"],
        flash_kb: Optional[float] = BUDGET_OPTS["flash_kb"],
        ram_kb: Optional[float] = BUDGET_OPTS["ram_kb"],
        macs: Optional[float] = BUDGET_OPTS["macs"],
        params: Optional[float] = BUDGET_OPTS["params"],
        precision: Optional[str] = BUDGET_OPTS["precision"],
    ) -> None:
        cfg = resolve_task_config(config, {
            **task_overrides(task, source, data_path, data_seed),
            "train": train_overrides(epochs, batch_size, lr, device, amp, seed, patience, compile_, threads),
            "distill": {"loss": loss, "temperature": temperature, "alpha": alpha, "transfer_views": views,
                        "cache_teacher": False if no_cache else None, "kd_mode": kd_mode},
            "student": student, "teacher": teacher, "teacher_scale": teacher_scale, "teacher_arch": teacher_arch,
            "init_from": init_from})
        from edgekd.config import budget_request as flags_over_file
        budget_request = flags_over_file(cfg, target=target, profile=profile, latency_ms=latency_ms, flash_kb=flash_kb,
                                         ram_kb=ram_kb, macs=macs, params=params, precision=precision)
        check_distill_inputs(cfg, out, resume)
        run = _distill_lines if cfg.task == "lines" else _distill_digits
        with resumable(lambda: resume_hint(out)):
            run(cfg, budget_request, out, resume, quiet, json_out)


def _distill_digits(cfg: Any, budget_request: Optional[dict[str, Any]], out: Path, resume: bool, quiet: bool,
                    json_out: bool) -> None:
    """`edgekd distill` (digits): load the data, choose the student, load and check the teacher, distill."""
    from edgekd.data import load_data
    from edgekd.models.line_models import check_task
    from edgekd.models.students import parse_student_id
    from edgekd.models.teachers import load_checked_teacher
    from edgekd.train.pipeline import distill

    splits = load_data(cfg.data)
    if budget_request:
        budget_request["num_classes"] = splits.num_classes
    student_id, budget = choose_student(cfg.student, budget_request)
    parse_student_id(student_id)
    check_task(student_id, "digits")
    t = None
    if cfg.distill.loss.strip() != "none":
        t = load_checked_teacher(cfg.teacher, splits, cfg.teacher_arch, cfg.teacher_scale)
    prepare_out(out, resume)
    cfg.save(out / "config.yaml")
    profile_record = budget.pop("profile") if budget else None  # checkpoint keeps budget and profile apart
    m = distill(splits, student_id, cfg.train, out, teacher=t, opts=cfg.distill, aug=cfg.augment, resume=resume,
                init_from=cfg.init_from, progress=not (quiet or json_out), resolved_config=cfg.to_dict(),
                budget=budget, profile=profile_record)
    report(m, f"student {student_id} ({cfg.distill.loss}) -> {m['checkpoint']}", json_out)


def _distill_lines(cfg: Any, budget_request: Optional[dict[str, Any]], out: Path, resume: bool, quiet: bool,
                   json_out: bool) -> None:
    """`edgekd distill --task lines`: load the lines, choose the line student, load the line teacher, distill."""
    from edgekd.data.lines import load_lines
    from edgekd.models.line_models import check_task, load_line_teacher
    from edgekd.models.students import parse_student_id
    from edgekd.train.line_pipeline import check_teacher_charset, distill_lines

    splits = load_lines(cfg.lines)
    if budget_request:
        budget_request.update(num_classes=splits.num_classes, task="lines", line_height=splits.spec.height,
                              line_width=splits.spec.width)
    student_id, budget = choose_student(cfg.student, budget_request)
    parse_student_id(student_id)
    check_task(student_id, "lines", splits.spec.height)  # before anything is written
    t = None
    if cfg.distill.loss.strip() != "none":
        check_teacher_charset(cfg.teacher, splits.charset)
        t = load_line_teacher(cfg.teacher, splits.num_classes, splits.spec.height, splits.spec.width,
                              arch=cfg.teacher_arch)
    prepare_out(out, resume)
    cfg.save(out / "config.yaml")
    profile_record = budget.pop("profile") if budget else None
    m = distill_lines(splits, student_id, cfg.train, out, teacher=t, opts=cfg.distill, resume=resume,
                      init_from=cfg.init_from, progress=not (quiet or json_out), resolved_config=cfg.to_dict(),
                      budget=budget, profile=profile_record)
    report(m, f"line student {student_id} ({cfg.distill.loss}) -> {m['checkpoint']}", json_out)
