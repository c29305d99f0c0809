"""What differs between the tasks in `edgekd run`'s stages: `digits` (one digit per image) and `lines` (a string
per image, CTC).

run.py keeps the stages, their order, their input keys, resume/skip and the run directory's bookkeeping, which are
the same for every task; each function here does one stage's task-specific part for the resolved PipelineConfig.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from edgekd.budget.search import Budget
from edgekd_runtime.errors import UserInputError

from .config import PipelineConfig

# The default line budget: a Raspberry Pi 4 reading a line of up to 192 px (about 12 digits) in 2.5 ms at int8, in a
# model file of at most 100 KiB. It picks ctc-w16-d2-c2-r24 (84k parameters; 2.05 ms and 96 KiB predicted, a 94.5 KiB
# file). The 40 KiB budget before picked ctc-w8-d2-c2-r24 (21k), whose int8 read the same strings as torch on
# 98.1-98.9 % of the test lines with every PTQ and QAT variant tried (benchmarks/line_int8.py), under the 99 % rule,
# so the run deployed an fp16 file over the budget. Distilled from the same 20-epoch teacher (40 epochs, 2,000 test
# strings; int8 by onnxruntime MinMax, 8-bit weights, 2,000 calibration lines): w8 3.05 % CER / 82.8 % strings, int8
# agreement 98.80 %; ctc-w12-d2-c2-r24 (47k) 2.61 % / 84.7 %, 98.95 %; w16 2.24 % / 86.7 %, 99.20 %. At these sizes
# the board's predicted latency hardly grows (per-layer and per-position costs dominate), the file does.
DEFAULT_LINE_BUDGET = Budget.from_cli(latency_ms=2.5, flash_kb=100.0, precision="int8")
# --quick picks from the former 40 KiB budget: its ctc-w8-d2-c2-r24 trains an epoch in about half the time
QUICK_LINE_BUDGET = Budget.from_cli(latency_ms=2.5, flash_kb=40.0, precision="int8")
# The default `edgekd run --task lines` fits 10 minutes on 2 CPU cores (see benchmarks/pipeline.py): a convctc
# teacher of LINE_RUN["teacher_epochs"] epochs (a fresh composition of the 4,000 training lines each; 60 epochs,
# 1.4-1.5 % CER, take half an hour), the student's 40 epochs over 8 transfer views with blank_kd at T 4, alpha 0.5.
# Measured 2026-12-01 on an idle 2-core machine (benchmarks/pipeline.py), student ctc-w16-d2-c2-r24 at the line
# students' rate (DEFAULT_LINE_STUDENT_LR), training channels-last on the CPU (trainer.CHANNELS_LAST_DEVICES: without
# it the same run took 672 s): 528 s (1,004 s of CPU) for the whole run; teacher 1.83 % test CER / 89.2 % strings,
# scratch 2.40 % / 86.0 %, distilled 2.06 % / 87.8 %, int8 TFLite deployed (99.45 % string agreement). The teacher
# trains 20 epochs: at 15 (2.65 % CER) it was behind the w16 student and KD hurt (distilled 2.46 % vs scratch 2.38 %);
# KD pays only from a teacher well ahead of the student (with the w8 student and a 10-epoch teacher, 3.90 % distilled
# vs 3.63 % scratch).
LINE_RUN = {"teacher_epochs": 20, "student_epochs": 40, "transfer_views": 8, "bench_runs": 200}
# --quick: 500 test lines, a few epochs, the QUICK_LINE_BUDGET student. A CTC model must first get past emitting only
# blanks: with 3 teacher epochs of 2,000 lines and 4 student epochs every model still read (nearly) nothing (CER
# 87-100 %). With 4,000 lines, 3 teacher and 8 student epochs over 1 view: measured 2026-12-01 on an idle 2-core
# machine, ctc-w8-d2-c2-r24, channels-last: 94 s (162 s of CPU); the 3-epoch teacher (8.76 % CER) is behind both
# students (scratch 8.06 %, distilled 7.51 %), and int8 misses the 99 % agreement of those unsure students, so the run
# deploys fp16 and says so: it checks the pipeline, not distillation.
LINE_QUICK = {"teacher_epochs": 3, "student_epochs": 8, "transfer_views": 1, "bench_runs": 50,
              "train_lines": 4000, "test_lines": 500}
# the string length whose latency the report gives (predicted on the board, measured here through read())
REPORT_LINE_LENGTH = 8


def line_defaults(quick: bool = False) -> PipelineConfig:
    """The defaults of `edgekd run --task lines` (`quick`: of `--quick` too); explicit settings still win."""
    from edgekd.train import line_pipeline as lp

    k = LINE_QUICK if quick else LINE_RUN
    base = PipelineConfig()
    lines = base.lines
    if quick:
        lines = replace(lines, train_lines=LINE_QUICK["train_lines"], test_lines=LINE_QUICK["test_lines"])
    return replace(base, task="lines", quick=quick, lines=lines, teacher_arch=lp.DEFAULT_LINE_TEACHER,
                   teacher_train=replace(base.teacher_train, epochs=k["teacher_epochs"]),
                   student_train=replace(base.student_train, epochs=k["student_epochs"], lr=lp.DEFAULT_LINE_STUDENT_LR),
                   distill=replace(base.distill, loss=lp.DEFAULT_LINE_LOSS, temperature=lp.DEFAULT_LINE_TEMPERATURE,
                                   alpha=lp.DEFAULT_LINE_ALPHA, transfer_views=k["transfer_views"]),
                   budget=QUICK_LINE_BUDGET if quick else DEFAULT_LINE_BUDGET, bench_runs=k["bench_runs"],
                   teacher_members=1)


def data_dict(cfg: PipelineConfig) -> dict[str, Any]:
    """The data spec that makes the task's splits (part of every training step's input key)."""
    return cfg.lines.to_dict() if cfg.task == "lines" else cfg.data.to_dict()


def line_height(cfg: PipelineConfig) -> int | None:
    return cfg.lines.height if cfg.task == "lines" else None


def check_task_inputs(cfg: PipelineConfig) -> None:
    """The student id, the built-in teacher and the KD loss are of the run's task; the sections that do not
    apply to it are not set."""
    from edgekd.kd import check_loss
    from edgekd.models.line_models import check_task
    from edgekd.models.students import parse_student_id
    from edgekd.models.teachers import TEACHERS
    from edgekd.train.kd_mode import check_kd_mode

    if cfg.student:
        parse_student_id(cfg.student)
        check_task(cfg.student, cfg.task, line_height(cfg))
    if not cfg.teacher:
        TEACHERS.get(cfg.teacher_arch)
        check_task(cfg.teacher_arch, cfg.task)
    d = cfg.distill
    check_loss(d.loss_config(), cfg.task)
    check_kd_mode(d.kd_mode, cfg.task)
    if cfg.task == "lines" and cfg.deploy_teacher != "auto":
        raise UserInputError(f"deploy_teacher {cfg.deploy_teacher} is for the digits task; a lines run always "
                             f"deploys its distilled student: leave it out for task lines")
    if cfg.task == "lines":
        from edgekd.data.lines import LINE_SOURCES

        LINE_SOURCES.get(cfg.lines.source)
    if cfg.task == "lines" and cfg.teacher_scale is not None:
        raise UserInputError("teacher_scale is for digit teacher files; a line teacher takes edgekd's normalised "
                             "line canvases: leave it out for task lines")
    if cfg.task == "lines" and cfg.augment is not None:
        raise UserInputError("the augment section is for the digits task; the lines task trains on fresh "
                             "compositions of the training lines instead: remove augment for task lines")


def load_splits(cfg: PipelineConfig) -> tuple[Any, str]:
    """(the task's splits, a line for the log)."""
    if cfg.task == "lines":
        from edgekd.data.lines import load_lines

        s = load_lines(cfg.lines)
        check_calibration_data(cfg, s)
        return s, (f"data: lines ({cfg.lines.source}) — {len(s.train)} train lines per view / {len(s.val)} val / "
                   f"{len(s.test)} test, charset {s.charset!r}, {s.spec.height}x{s.spec.width} px canvases")
    from edgekd.data import load_data

    s = load_data(cfg.data)
    return s, (f"data: {cfg.data.source} — {len(s.train)} train / {len(s.val)} val / {len(s.test)} test, "
               f"{s.num_classes} classes")


def check_calibration_data(cfg: PipelineConfig, splits: Any) -> None:
    """Refuse, before anything trains, line splits too small to calibrate int8 on: the run converts the deployed
    model to every precision (int8 TFLite/ONNX besides fp32/fp16, whatever the budget's precision), and the
    converters calibrate int8 on the training lines (edgekd_converters' MIN_CALIBRATION_SAMPLES at least)."""
    from edgekd.data.line_labels import folder_lines_for_train
    from edgekd_converters.calibration import MIN_CALIBRATION_SAMPLES

    n = len(splits.train)
    if n >= MIN_CALIBRATION_SAMPLES:
        return
    spec = cfg.lines
    if spec.source == "embedded":
        what, fix = f"lines.train_lines is {n}", f"set it to at least {MIN_CALIBRATION_SAMPLES}"
    else:
        total = n + len(splits.val) + len(splits.test)
        what = f"line folder {spec.path}: {n} training lines (of the {total} listed; the rest are val/test)"
        fix = (f"list at least {folder_lines_for_train(MIN_CALIBRATION_SAMPLES, spec)} lines in labels.tsv (or "
               f"lower lines.val_fraction/test_fraction)")
    raise UserInputError(f"{what}, but `edgekd run` converts the student to int8 too (every precision goes into the "
                         f"bundle; --precision only picks the deployed one) and int8 calibration needs at least "
                         f"{MIN_CALIBRATION_SAMPLES} training lines: {fix}; or train without converting with "
                         f"`edgekd teacher train` / `edgekd distill --task lines`")


def search_key(cfg: PipelineConfig) -> dict[str, Any]:
    """What the budget search depends on beyond the board, the budget and the classes."""
    return {"task": "lines", "height": cfg.lines.height, "width": cfg.lines.width} if cfg.task == "lines" else {}


def search_students(cfg: PipelineConfig, profile: Any, budget: Any, num_classes: int) -> Any:
    """The budget search over the task's students (line students costed per line of the reference width)."""
    from edgekd.budget.search import search

    if cfg.task != "lines":
        return search(budget, profile, candidates=[cfg.student] if cfg.student else None, num_classes=num_classes)
    from functools import partial

    from edgekd.budget.cost import student_cost
    from edgekd.models.line_models import line_search_space

    return search(budget, profile, candidates=[cfg.student] if cfg.student else line_search_space(cfg.lines.height),
                  num_classes=num_classes, cost_fn=partial(student_cost, line_width=cfg.lines.width))


def load_task_teacher(cfg: PipelineConfig, ref: str, splits: Any) -> Any:
    """A teacher file (or the trained checkpoint) as an `edgekd.models.teachers.Teacher` of the run's task."""
    if cfg.task == "lines":
        from edgekd.models.line_models import load_line_teacher

        return load_line_teacher(ref, splits.num_classes, splits.spec.height, splits.spec.width, cfg.teacher_arch)
    from edgekd.models.teachers import load_teacher

    return load_teacher(ref, splits.num_classes, cfg.teacher_arch, cfg.teacher_scale)


def check_user_teacher(cfg: PipelineConfig, ref: str, splits: Any) -> Any:
    """The user's teacher file, loaded and checked before anything is written (digits: its class count, a batch
    and the declared input scaling on the val split; lines: its CTC output shape)."""
    if cfg.task == "lines":
        return load_task_teacher(cfg, ref, splits)
    from edgekd.models.teachers import load_checked_teacher

    return load_checked_teacher(ref, splits, cfg.teacher_arch, cfg.teacher_scale)


def train_task_teacher(cfg: PipelineConfig, splits: Any, out: Path, resume: bool, progress: bool) -> None:
    """Train the built-in teacher `cfg.teacher_arch` into out/teacher.pt."""
    if cfg.task == "lines":
        from edgekd.train.line_pipeline import train_line_teacher

        train_line_teacher(splits, cfg.teacher_train, out, arch=cfg.teacher_arch, resume=resume, progress=progress,
                           resolved_config=cfg.to_dict())
        return
    from edgekd.train.pipeline import train_teacher

    train_teacher(splits, cfg.teacher_train, out, arch=cfg.teacher_arch, resume=resume, progress=progress)


def train_task_student(cfg: PipelineConfig, splits: Any, student_id: str, out: Path, teacher: Any, opts: Any,
                       resume: bool, progress: bool, extra: dict[str, Any]) -> None:
    """Distill `teacher` into `student_id` (or train it from scratch: teacher None, loss none) into out/student.pt;
    both roles train on the same views of the training data."""
    kw = dict(teacher=teacher, opts=opts, resume=resume, progress=progress, resolved_config=cfg.to_dict(),
              budget=extra["budget"], profile=extra["profile"])
    if cfg.task == "lines":
        from edgekd.train.line_pipeline import distill_lines

        distill_lines(splits, student_id, cfg.student_train, out, **kw)
        return
    from edgekd.train.pipeline import distill

    distill(splits, student_id, cfg.student_train, out, aug=cfg.augment, **kw)


def bench_photo(cfg: PipelineConfig, test: Any, path: Path) -> str:
    """Write the photo the bench step times the deployed artifact's image path on to `path` (PNG); returns what it
    shows. Digits: the first test digit drawn as a 640x480 photo. Lines: the first test line of
    REPORT_LINE_LENGTH characters (else the nearest length) as a photo of dark ink on light paper."""
    from PIL import Image

    if cfg.task == "lines":
        import numpy as np

        from edgekd.data.line_photos import render_line_photo

        i = int(np.argmin([abs(len(t) - REPORT_LINE_LENGTH) + k * 1e-9 for k, t in enumerate(test.texts)]))
        photo = render_line_photo(test.x[i], [i, 2026])
        Image.fromarray(photo).save(path)
        return (f"test line #{i} {test.texts[i]!r} ({len(test.texts[i])} characters) as a {photo.shape[1]}x"
                f"{photo.shape[0]} PNG photo (dark ink on light paper)")
    from edgekd.data.digit_photos import PHOTO_HEIGHT_PX, PHOTO_WIDTH_PX, render_digit_photo

    Image.fromarray(render_digit_photo(test.x[0])).save(path)
    return f"test digit #0 (class {int(test.y[0])}) as a {PHOTO_WIDTH_PX}x{PHOTO_HEIGHT_PX} PNG photo"
