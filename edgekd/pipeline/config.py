"""The resolved configuration of one `edgekd run` (a frozen dataclass; the file's schema is `edgekd.config`'s,
the one every command reads: `train` applies to both stages, `teacher_train` / `student_train` on top of it).

With `task: lines` the run trains CTC line recognizers on the `lines` data (edgekd.data.lines.LineSpec), from the
lines task's defaults (edgekd.pipeline.tasks.line_defaults: the convctc teacher, blank_kd, the line budget); the
`data` and `augment` sections are the digits task's and are refused there, as `lines` is for digits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgekd.budget.search import Budget
from edgekd.config import ConfigError, apply_layer, check_task_name, read_yaml
from edgekd.data.augment import AugmentConfig
from edgekd.data.lines import LineSpec
from edgekd.data.spec import DataSpec
from edgekd.train.pipeline import DistillOptions
from edgekd.train.trainer import TrainConfig

# A realistic default for a Raspberry Pi 4 reading handwritten digits in forms: about a millisecond per digit at
# int8 with XNNPACK and a model that fits in 32 KiB of flash (a Pi has far more; the limit keeps OTA updates small
# and the cache warm, and it makes the budget visibly bind).
DEFAULT_BUDGET = Budget.from_cli(latency_ms=1.0, flash_kb=32.0, precision="int8")
# --quick: about 35 s on 2 CPU cores (measured 2026-12-01), and still a student that beats its scratch twin and
# converts cleanly
# (measured: teacher 95.6%, scratch 96.0%, distilled 96.6%, int8 TFLite 96.6%). With a 3-epoch teacher the soft
# targets are less trustworthy, so the hard labels get half the weight.
QUICK = {"teacher_epochs": 3, "student_epochs": 5, "transfer_views": 2, "alpha": 0.5, "bench_runs": 50,
         "teacher_members": 1}
#: The built-in digit teacher is this many `teacher_arch` networks (seeds seed, seed + 1, ...) averaged
#: (edgekd.models.ensemble: 98.56 % -> 99.08 % on 5,000 held-out digits with 3; 99.24 % with final weights); 8 at
#: most.
MAX_TEACHER_MEMBERS = 8
#: Per task, the config sections that belong to the other one (`data`, `augment`: digits; `lines`: lines).
OTHER_TASK_SECTIONS = {"lines": ("data", "augment"), "digits": ("lines",)}


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that determines a run's outputs (the run directory is not part of it)."""

    data: DataSpec = field(default_factory=DataSpec)
    teacher: str | None = None
    teacher_scale: str | None = None
    teacher_arch: str = "cnn"
    teacher_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, batch_size=64))
    teacher_members: int = 3  # the built-in digit teacher: an ensemble of this many (see MAX_TEACHER_MEMBERS)
    # 60 student epochs: KD's gain on held-out digits grows with the schedule (benchmarks/kd_quality.py, 5 folds,
    # one teacher: +0.50 pp at 20 epochs, +0.90 / +0.64 pp at 60 for two training seeds; 100 gave +0.32; from the
    # 3-member teacher +1.08 / +0.88 pp, and with final weights +1.12 pp over 3 seeds), see train/kd_mode.py
    student_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=60, batch_size=64))
    augment: AugmentConfig | None = None
    distill: DistillOptions = field(default_factory=DistillOptions)
    target: str | None = "rpi4"
    profile: str | None = None
    budget: Budget = DEFAULT_BUDGET
    student: str | None = None
    bench_runs: int = 200
    quick: bool = False
    deploy_teacher: str = "auto"  # when the teacher fits the budget: see edgekd.pipeline.deploy_choice
    task: str = "digits"
    lines: LineSpec = field(default_factory=LineSpec)  # the data of the lines task (`data` is the digits')

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "budget": self.budget.cli_units()}  # as a config file writes it

    def file_dict(self) -> dict[str, Any]:
        """`to_dict` without the other task's sections: what a run writes to its config.yaml, which `--config`
        reads back as this configuration."""
        d = self.to_dict()
        for k in OTHER_TASK_SECTIONS[self.task]:
            d.pop(k)
        return d

    def fingerprint(self) -> str:
        """A hash of everything that changes outputs (stable across runs and machines)."""
        d = self.to_dict()
        if self.task == "digits":  # digit runs keep the fingerprint they had before the lines task existed
            d.pop("task"), d.pop("lines")
        else:
            d.pop("data")
        for section in ("teacher_train", "student_train"):  # where it runs does not change what it computes
            for k in ("device", "num_threads", "compile"):
                d[section].pop(k, None)
        if d.get("teacher"):
            d["teacher"] = file_digest(d["teacher"])
        if d.get("profile"):
            d["profile"] = file_digest(d["profile"])
        return digest(d)


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str) -> str:
    """The sha256 of a file (of each, for teacher files joined by commas), or "missing:PATH"."""
    from edgekd_runtime.atomic import sha256_file

    if "," in path:  # an ensemble of teacher files
        from edgekd.models.teachers import teacher_files

        return digest([file_digest(part) for part in teacher_files(path)])
    p = Path(path).expanduser()
    return sha256_file(p) if p.is_file() else f"missing:{path}"


def quick_defaults() -> PipelineConfig:
    """The defaults of `--quick`: a short run to try the pipeline (explicit settings still win)."""
    base = PipelineConfig()
    return replace(base, quick=True,
                   teacher_train=replace(base.teacher_train, epochs=QUICK["teacher_epochs"]),
                   student_train=replace(base.student_train, epochs=QUICK["student_epochs"]),
                   distill=replace(base.distill, transfer_views=QUICK["transfer_views"], alpha=QUICK["alpha"]),
                   bench_runs=QUICK["bench_runs"], teacher_members=QUICK["teacher_members"])


def load_pipeline_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults (or `--quick`'s), then the YAML file, then CLI overrides (None values ignored)."""
    file_values, overrides = read_yaml(path) if path else {}, dict(overrides or {})
    task = check_task_name(overrides.get("task") or file_values.get("task") or "digits")
    if task == "lines" and "data" in overrides:  # --data/--seed name the lines' source for the lines task
        overrides["lines"] = overrides.pop("data")
    _check_task_sections(task, file_values, f"config file {path}")
    _check_task_sections(task, overrides, "command line")
    quick = any(bool(layer.get("quick")) for layer in (file_values, overrides))
    if task == "lines":
        from .tasks import line_defaults

        cfg = line_defaults(quick)
    else:
        cfg = quick_defaults() if quick else PipelineConfig()
    cfg = apply_layer(cfg, file_values, f"config file {path}", none_removes_limit=True)
    cfg = apply_layer(cfg, overrides, "command line", none_removes_limit=False)
    given = {k for layer in (file_values, overrides) for k, v in layer.items() if v is not None}
    if cfg.profile and "target" not in given:
        cfg = replace(cfg, target=None)  # --profile FILE replaces the default target
    if cfg.bench_runs < 1:
        raise ConfigError(f"bench_runs must be >= 1, got {cfg.bench_runs}")
    _check_teacher_members(cfg)
    return cfg


def _check_teacher_members(cfg: PipelineConfig) -> None:
    n = cfg.teacher_members
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_TEACHER_MEMBERS:
        raise ConfigError(f"teacher_members must be a whole number from 1 to {MAX_TEACHER_MEMBERS}, got {n!r}")
    if cfg.task == "lines" and n != 1:
        raise ConfigError(f"teacher_members {n}: the lines task trains one teacher; ensemble line teachers by "
                          f"passing their files to --teacher separated by commas")


def _check_task_sections(task: str, layer: dict[str, Any], where: str) -> None:
    """Refuse the sections of the other task (`OTHER_TASK_SECTIONS`)."""
    other = [k for k in OTHER_TASK_SECTIONS[task] if layer.get(k) is not None]
    if other:
        raise ConfigError(f"{where}: section(s) {other} are not for the {task} task (task: lines reads its data "
                          f"from `lines`, digits from `data`); remove them or set the task")
