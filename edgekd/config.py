"""Run configuration: frozen dataclasses, a YAML file (`yaml.safe_load`) and CLI overrides on top.

A YAML file has one section per dataclass; every key is optional::

    data:    {source: embedded, path: null, seed: 0, val_fraction: 0.1, test_fraction: 0.2}
    train:   {epochs: 10, batch_size: 128, lr: 0.003, device: auto, amp: auto, patience: null}
    augment: {rotation_deg: 12, erase_p: 0.25, mixup_p: 0.2}
    distill: {loss: kd, temperature: 4.0, alpha: 0.9, transfer_views: 8, cache_teacher: true}
    student: dscnn-w8-d3-r28
    teacher: runs/teacher/teacher.pt
    task: digits                     # or lines (CTC text lines); then `lines` replaces `data`:
    lines:   {source: embedded, path: null, seed: 0, height: 24, width: 192, train_lines: 4000}

The resolved config is saved next to the outputs (`config.yaml`) so a run can be repeated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edgekd.data.augment import AugmentConfig
from edgekd.data.lines import LineSpec
from edgekd.data.spec import DataSpec
from edgekd.train.pipeline import DistillOptions
from edgekd.train.trainer import TrainConfig
from edgekd_runtime.atomic import atomic_write_text
from edgekd_runtime.errors import UserInputError

_SECTIONS = {"data": DataSpec, "train": TrainConfig, "augment": AugmentConfig, "distill": DistillOptions,
             "lines": LineSpec}
_SCALARS = ("student", "teacher", "teacher_arch", "init_from", "task")
TASKS = ("digits", "lines")


class ConfigError(UserInputError):
    """A config file that is missing, not YAML, or has unknown keys / bad values."""


def check_task_name(task: str) -> str:
    """The task name, or a ConfigError listing the known ones (the one home of this rule)."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    return task


@dataclass(frozen=True)
class RunConfig:
    """Everything one `edgekd teacher train` / `edgekd distill` run needs."""

    data: DataSpec = field(default_factory=DataSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig | None = None  # None: the command's default (affine for teachers, transfer set for KD)
    distill: DistillOptions = field(default_factory=DistillOptions)
    student: str | None = None
    teacher: str | None = None
    teacher_arch: str | None = None
    init_from: str | None = None
    task: str = "digits"
    lines: LineSpec = field(default_factory=LineSpec)

    def __post_init__(self) -> None:
        check_task_name(self.task)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    def save(self, path: str | Path) -> None:
        import yaml

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config with safe_load; errors name the file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    try:
        obj = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections (data, train, ...), "
                          f"got {type(obj).__name__}")
    return obj


def resolve_config(file_values: dict[str, Any] | None = None,
                   overrides: dict[str, dict[str, Any] | Any] | None = None,
                   base: RunConfig | None = None) -> RunConfig:
    """Start from `base` (defaults), apply the file's values, then the CLI's overrides (None values ignored)."""
    cfg = base or RunConfig()
    for layer, where in ((file_values or {}, "config file"), (overrides or {}, "command line")):
        unknown = sorted(set(layer) - set(_SECTIONS) - set(_SCALARS))
        if unknown:
            raise ConfigError(f"{where}: unknown section(s) {unknown}; known: {sorted(_SECTIONS) + list(_SCALARS)}")
        for key, value in layer.items():
            if key in _SCALARS:
                if value is not None:
                    cfg = replace(cfg, **{key: str(value)})
                continue
            if value is None:
                continue
            cfg = replace(cfg, **{key: merge_section(getattr(cfg, key), _SECTIONS[key], key, value, where)})
    return cfg


def merge_section(current: Any, cls: type, key: str, value: Any, where: str) -> Any:
    """`current` (an instance of the frozen dataclass `cls`, or None) updated with the mapping `value`.

    None values mean "not given"; unknown keys and bad values are ConfigErrors naming `where` and the known keys.
    """
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: section {key!r} must be a mapping, got {value!r}")
    names = {f.name for f in fields(cls)}
    bad = sorted(set(value) - names)
    if bad:
        raise ConfigError(f"{where}: unknown {key} option(s) {bad}; known: {sorted(names)}")
    try:
        return replace(current or cls(), **{k: v for k, v in value.items() if v is not None})
    except TypeError as e:
        raise ConfigError(f"{where}: bad {key} value: {e}") from None
