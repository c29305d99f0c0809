"""The one configuration schema of edgekd: frozen dataclasses, a YAML file (`yaml.safe_load`), CLI flags on top.

Every command that takes `--config` (`edgekd run`, `edgekd teacher train`, `edgekd distill`) reads the same file;
each uses the keys it needs and ignores the others (so a file written for `edgekd run` works for `edgekd
distill`, and one file can serve `teacher train` and `distill`). Every key is optional; an unknown key is an
error naming it and the file::

    task:          digits          # or lines (CTC text lines; every command): `lines` replaces `data`
    data:          {source: embedded, path: null, seed: 0, val_fraction: 0.1, test_fraction: 0.2}
    lines:         {source: embedded, path: null, seed: 0, height: 24, width: 192, train_lines: 4000}
    train:         {epochs: 10, batch_size: 128, lr: 0.003, device: auto, amp: auto, patience: null,
                    select: auto}  # the weights kept: last, best (val) or auto (best for lines / early stopping)
    teacher_train: {epochs: 40}    # on top of `train` for the teacher (edgekd run, edgekd teacher train)
    student_train: {epochs: 60}    # on top of `train` for the student (edgekd run, edgekd distill)
    augment:       {rotation_deg: 12, erase_p: 0.25, mixup_p: 0.2}
    distill:       {loss: kd, temperature: 4.0, alpha: 0.9, dkd_alpha: 1.0, dkd_beta: 8.0, fitnet_weight: 1.0,
                    transfer_views: 8, cache_teacher: true, kd_mode: auto}   # kd_mode: online | cached | auto
    teacher:       null            # an ONNX / TFLite / TorchScript / ExportedProgram / checkpoint file; null = train
                                   # the built-in
    teacher_scale: null            # the input a teacher file takes: 0-1, 0-255 or MEAN,STD (null: MNIST's)
    teacher_arch:  cnn
    teacher_members: 3             # edgekd run: the built-in digit teacher is an ensemble of this many (1-8)
    init_from:     null            # distill: start the student from these weights
    student:       null            # a student id instead of the budget search
    target:        rpi4            # or profile: board.json (made by `edgekd-rt calibrate` on the board)
    profile:       null
    budget:        {latency_ms: 1.0, flash_kb: 32, ram_kb: null, macs: null, params: null, precision: int8}
    bench_runs:    200             # edgekd run
    deploy_teacher: auto           # edgekd run: auto, compare or never (when the teacher itself fits the budget)
    quick:         false           # edgekd run: a short run

In a file, a budget limit set to null removes that limit; on the command line a flag left out changes nothing.
A command resolves the file into its own view: `RunConfig` here (one training stage: teacher train, distill) or
`edgekd.pipeline.config.PipelineConfig` (edgekd run). The resolved config is saved next to the outputs
(`config.yaml`) so a run can be repeated.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, get_args, get_type_hints

from edgekd.budget.search import Budget
from edgekd.data.augment import AugmentConfig
from edgekd.data.lines import LineSpec
from edgekd.data.spec import DataSpec
from edgekd.train.pipeline import DistillOptions
from edgekd.train.trainer import TrainConfig, check_seed
from edgekd_runtime.atomic import atomic_write_text
from edgekd_runtime.errors import BudgetError, UserInputError

# The schema: section -> the dataclass its mapping fills; scalar key -> its type; the budget (in CLI units).
SECTIONS: dict[str, type] = {"data": DataSpec, "lines": LineSpec, "train": TrainConfig, "teacher_train": TrainConfig,
                             "student_train": TrainConfig, "augment": AugmentConfig, "distill": DistillOptions}
SCALARS: dict[str, type] = {"task": str, "teacher": str, "teacher_scale": str, "teacher_arch": str,
                            "init_from": str, "student": str, "target": str, "profile": str, "bench_runs": int,
                            "quick": bool, "deploy_teacher": str, "teacher_members": int}
BUDGET_KEYS = ("latency_ms", "flash_kb", "ram_kb", "macs", "params", "precision")
KEYS = (*SECTIONS, *SCALARS, "budget")
TASKS = ("digits", "lines")
CLI = "command line"  # the `where` of the flags' layer (a file's is "config file PATH")


class ConfigError(UserInputError):
    """A config file that is missing, not YAML, or has unknown keys / bad values."""


def check_task_name(task: str) -> str:
    """The task name, or a ConfigError listing the known ones (the one home of this rule)."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    return task


@dataclass(frozen=True)
class RunConfig:
    """What one training stage (`edgekd teacher train`, `edgekd distill`) needs: `train` is the file's `train`
    with the stage's own section (`teacher_train` / `student_train`) on top, then the flags."""

    data: DataSpec = field(default_factory=DataSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig | None = None  # None: the command's default (affine for teachers, transfer set for KD)
    distill: DistillOptions = field(default_factory=DistillOptions)
    student: str | None = None
    teacher: str | None = None
    teacher_scale: str | None = None  # the input a teacher file takes (edgekd.models.foreign_teachers)
    teacher_arch: str | None = None
    init_from: str | None = None
    task: str = "digits"
    lines: LineSpec = field(default_factory=LineSpec)
    target: str | None = None  # distill: the board and budget of a search (instead of --student)
    profile: str | None = None
    budget: Budget | None = None

    def __post_init__(self) -> None:
        check_task_name(self.task)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["budget"] = self.budget.cli_units() if self.budget is not None else None
        return d

    def save(self, path: str | Path) -> None:
        import yaml

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file with safe_load and check it against the schema; errors name the file and the key."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    try:
        obj = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {_yaml_problem(e)}; fix the syntax there") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections (data, train, ...), "
                          f"got {type(obj).__name__}")
    check_keys(obj, f"config file {p}")
    return obj


def _yaml_problem(e: Exception) -> str:
    """A YAML parser error in one line: where (line, column of the file) and what (PyYAML's words)."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    return where + (f"{what} ({context})" if context else what)


def check_keys(layer: Mapping[str, Any], where: str) -> None:
    """Refuse a key the schema does not have, and a section key its dataclass does not have."""
    unknown = sorted(set(layer) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(KEYS)}")
    for key, value in layer.items():
        if value is not None and (key in SECTIONS or key == "budget"):
            _check_section(key, value, where)


def _check_section(key: str, value: Any, where: str) -> None:
    known = BUDGET_KEYS if key == "budget" else [f.name for f in fields(SECTIONS[key])]
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: section {key!r} must be a mapping, got {value!r}")
    bad = sorted(set(value) - set(known))
    if bad:
        raise ConfigError(f"{where}: unknown {key} option(s) {bad}; known: {sorted(known)}")


def apply_layer(cfg: Any, layer: Mapping[str, Any], where: str, none_removes_limit: bool,
                stage: str | None = None) -> Any:
    """`cfg` (a RunConfig or PipelineConfig) with one layer of values applied: None values mean "not given",
    except budget limits in a file (`none_removes_limit`), where null removes the limit. For a one-stage config
    (`stage` = "teacher" or "student") the stage's `*_train` section goes on top of `train`."""
    check_keys(layer, where)
    names = {f.name for f in fields(cfg)}
    for key in [k for k in KEYS if layer.get(k) is not None]:  # schema order: `train` before `*_train`
        value = layer[key]
        if key == "budget" and "budget" in names:
            cfg = replace(cfg, budget=merge_budget(cfg.budget, value, where, none_removes_limit))
        elif key in SCALARS and key in names:
            cfg = replace(cfg, **{key: _scalar(key, value, where)})
        for target in _section_targets(key, stage, names) if key in SECTIONS else ():
            cfg = replace(cfg, **{target: merge_section(getattr(cfg, target), key, value, where)})
    return cfg


def _section_targets(key: str, stage: str | None, names: set[str]) -> list[str]:
    """The fields of a resolved config that section `key` fills: `train` fills both stages of a two-stage config,
    a stage's own `*_train` section the `train` of a one-stage config; a section the config lacks, nothing."""
    if stage is not None and key == f"{stage}_train":
        return ["train"]
    if key == "train" and "train" not in names:
        return [t for t in ("teacher_train", "student_train") if t in names]
    return [key] if key in names else []


def _scalar(key: str, value: Any, where: str) -> Any:
    kind = SCALARS[key]
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a name or path that YAML read as a number (teacher_arch: 1)
    check_value_type(value, kind, f"{where}: {key}")
    return value


def merge_section(current: Any, key: str, value: Mapping[str, Any], where: str) -> Any:
    """`current` (an instance of section `key`'s frozen dataclass, or None) updated with the mapping `value`.

    None values mean "not given"; unknown keys and bad values are ConfigErrors naming `where` and the known keys.
    """
    _check_section(key, value, where)
    given = {k: v for k, v in value.items() if v is not None}
    cli = where == CLI  # a flag's message names no section (but data.seed and train.seed are told apart)
    at = where if cli else f"{where}, section {key}"
    hints = get_type_hints(SECTIONS[key])
    for name, v in given.items():
        what = f"{where}: {key}.{name}" if cli else f"{at}: {name}"
        check_value_type(v, hints[name], what)
        if name == "seed":
            check_seed(v, what)
    try:
        return replace(current or SECTIONS[key](), **given)
    except (TypeError, UserInputError) as e:
        raise ConfigError(f"{at}: {e}") from None


#: How a message names what a value should be, per Python type of the schema.
KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def check_value_type(value: Any, hint: Any, what: str) -> None:
    """Refuse a value whose type the schema's annotation `hint` (int, float, str, bool, X | None) does not allow:
    a bool is no number, 1.5 no whole number, and a string no number (YAML reads 1e-3 as the string '1e-3').
    Annotations of other types are not checked here."""
    kinds = [k for k in (get_args(hint) or (hint,)) if k is not type(None)]
    if not kinds or any(k not in KIND_WORDS for k in kinds):
        return
    if isinstance(value, bool):
        ok = bool in kinds
    else:
        ok = any(isinstance(value, k) for k in kinds) or (float in kinds and isinstance(value, int))
    if not ok:
        raise ConfigError(f"{what} must be {' or '.join(KIND_WORDS[k] for k in kinds)}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A wrong value as a message shows it; a string that reads as a number says why YAML kept it text."""
    if isinstance(value, bool):
        return str(value).lower()  # as YAML writes it
    if not isinstance(value, str):
        return repr(value)
    m = re.fullmatch(r"([+-]?\d+)(\.\d*)?[eE]([+-]?)(\d+)", value.strip())
    if m and not (m[2] and m[3]):  # YAML 1.1 floats need a dot and a signed exponent: 1e-3 and 1.0e3 are text
        why = "without a dot" if not m[2] else "without a sign in the exponent"
        fixed = f"{m[1]}{m[2] if m[2] and len(m[2]) > 1 else '.0'}e{m[3] or '+'}{m[4]}"
        return f"the string {value!r} (YAML reads {value} {why} as text: write {fixed})"
    try:
        float(value)
    except ValueError:
        return f"the string {value!r}"
    return f"the string {value!r} (a number in quotes is text in YAML: write it without the quotes)"


def merge_budget(current: Budget | None, value: Mapping[str, Any], where: str, none_removes_limit: bool) -> Budget:
    """`current` with the limits in `value` (CLI units: latency_ms, flash_kb, ...) applied."""
    given = {k: v for k, v in value.items() if v is not None or (none_removes_limit and k != "precision")}
    merged = {**(current.cli_units() if current is not None else {}), **given}
    try:
        return Budget.from_cli(**merged)
    except BudgetError as e:
        raise ConfigError(f"{where}: budget: {e}") from None


def resolve_config(file_values: dict[str, Any] | None = None,
                   overrides: dict[str, dict[str, Any] | Any] | None = None,
                   base: RunConfig | None = None, stage: str = "student", path: str | Path | None = None) -> RunConfig:
    """Start from `base` (defaults), apply the file's values, then the CLI's overrides (None values ignored)."""
    cfg = base or RunConfig()
    cfg = apply_layer(cfg, file_values or {}, f"config file {path}" if path else "config file",
                      none_removes_limit=True, stage=stage)
    return apply_layer(cfg, overrides or {}, CLI, none_removes_limit=False, stage=stage)


def budget_request(cfg: RunConfig, **flags: Any) -> dict[str, Any] | None:
    """The budget search of `edgekd distill`: the budget flags over the file's target/profile/budget (a flag left
    out changes nothing; a given `--precision` wins, else the file's, else int8). None when neither asks for a
    search, or the file names its `student` and no flag asks (then the student id says which)."""
    given = {k: v for k, v in flags.items() if v is not None and k != "precision"}
    if not given and (cfg.student or (cfg.target is None and cfg.profile is None and cfg.budget is None)):
        return None  # a file's `student` wins over its board and budget (they are for `edgekd run`'s check)
    limits = cfg.budget.cli_units() if cfg.budget is not None else {}
    board = {} if "target" in given or "profile" in given else {
        "target": cfg.target, "profile": Path(cfg.profile) if cfg.profile else None}
    req: dict[str, Any] = {"target": None, "profile": None, **board, **{k: limits.get(k) for k in BUDGET_KEYS}}
    flag_precision = flags.get("precision")
    req["precision"] = flag_precision or limits.get("precision", "int8")
    return {**req, **given}
