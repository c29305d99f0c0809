"""The resolved configuration of one `edgekd run` (a frozen dataclass, YAML with `safe_load`, CLI overrides).

A YAML file may hold any of these keys (every one optional)::

    data:          {source: embedded, path: null, seed: 0, val_fraction: 0.1, test_fraction: 0.2}
    teacher:       null            # a TorchScript / ExportedProgram / checkpoint file; null = train the built-in
    teacher_arch:  cnn
    teacher_train: {epochs: 40, batch_size: 64, lr: 0.003}
    student_train: {epochs: 20, batch_size: 64, lr: 0.003}
    augment:       {...}           # the transfer set's augmentation (edgekd.data.augment.AugmentConfig)
    distill:       {loss: kd, temperature: 4.0, alpha: 0.9, transfer_views: 8}
    target:        rpi4            # or profile: board.json (made by `edgekd-rt calibrate` on the board)
    budget:        {latency_ms: 1.0, flash_kb: 32, ram_kb: null, macs: null, params: null, precision: int8}
    student:       null            # force a student id instead of the budget search
    bench_runs:    200
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgekd.config import ConfigError, merge_section, read_yaml
from edgekd.data.augment import AugmentConfig
from edgekd.data.spec import DataSpec
from edgekd.train.pipeline import DistillOptions
from edgekd.train.trainer import TrainConfig

# A realistic default for a Raspberry Pi 4 reading handwritten digits in forms: about a millisecond per digit at
# int8 with XNNPACK and a model that fits in 32 KiB of flash (a Pi has far more; the limit keeps OTA updates small
# and the cache warm, and it makes the budget visibly bind).
DEFAULT_BUDGET: dict[str, Any] = {"latency_ms": 1.0, "flash_kb": 32.0, "ram_kb": None, "macs": None, "params": None,
                                  "precision": "int8"}
BUDGET_KEYS = tuple(DEFAULT_BUDGET)
# --quick: about 35 s on 2 CPU cores (measured 2026-12-01), and still a student that beats its scratch twin and
# converts cleanly
# (measured: teacher 95.6%, scratch 96.0%, distilled 96.6%, int8 TFLite 96.6%). With a 3-epoch teacher the soft
# targets are less trustworthy, so the hard labels get half the weight.
QUICK = {"teacher_epochs": 3, "student_epochs": 5, "transfer_views": 2, "alpha": 0.5, "bench_runs": 50}


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that determines a run's outputs (the run directory is not part of it)."""

    data: DataSpec = field(default_factory=DataSpec)
    teacher: str | None = None
    teacher_arch: str = "cnn"
    teacher_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, batch_size=64))
    student_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, batch_size=64))
    augment: AugmentConfig | None = None
    distill: DistillOptions = field(default_factory=DistillOptions)
    target: str | None = "rpi4"
    profile: str | None = None
    budget: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_BUDGET))
    student: str | None = None
    bench_runs: int = 200
    quick: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        """A hash of everything that changes outputs (stable across runs and machines)."""
        d = self.to_dict()
        for section in ("teacher_train", "student_train"):  # where it runs does not change what it computes
            for k in ("device", "num_threads", "compile"):
                d[section].pop(k, None)
        if d.get("teacher"):
            d["teacher"] = _file_digest(d["teacher"])
        if d.get("profile"):
            d["profile"] = _file_digest(d["profile"])
        return digest(d)


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_digest(path: str) -> str:
    from edgekd_runtime.atomic import sha256_file

    p = Path(path)
    return sha256_file(p) if p.is_file() else f"missing:{path}"


_SECTIONS = {"data": DataSpec, "teacher_train": TrainConfig, "student_train": TrainConfig, "augment": AugmentConfig,
             "distill": DistillOptions}
_SCALARS = {"teacher": str, "teacher_arch": str, "target": str, "profile": str, "student": str, "bench_runs": int,
            "quick": bool}


def quick_defaults() -> PipelineConfig:
    """The defaults of `--quick`: a short run to try the pipeline (explicit settings still win)."""
    base = PipelineConfig()
    return replace(base, quick=True,
                   teacher_train=replace(base.teacher_train, epochs=QUICK["teacher_epochs"]),
                   student_train=replace(base.student_train, epochs=QUICK["student_epochs"]),
                   distill=replace(base.distill, transfer_views=QUICK["transfer_views"], alpha=QUICK["alpha"]),
                   bench_runs=QUICK["bench_runs"])


def load_pipeline_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults (or `--quick`'s), then the YAML file, then CLI overrides (None values ignored)."""
    layers = [(read_yaml(path) if path else {}, f"config file {path}"), (overrides or {}, "command line")]
    quick = any(bool(layer.get("quick")) for layer, _ in layers)
    cfg = quick_defaults() if quick else PipelineConfig()
    for layer, where in layers:
        cfg = _apply(cfg, layer, where)
    if cfg.profile and "target" not in {k for layer, _ in layers for k, v in layer.items() if v is not None}:
        cfg = replace(cfg, target=None)  # --profile FILE replaces the default target
    if cfg.bench_runs < 1:
        raise ConfigError(f"bench_runs must be >= 1, got {cfg.bench_runs}")
    return cfg


def _apply(cfg: PipelineConfig, layer: dict[str, Any], where: str) -> PipelineConfig:
    known = set(_SECTIONS) | set(_SCALARS) | {"budget"}
    unknown = sorted(set(layer) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    for key, value in layer.items():
        if value is None:
            continue
        if key in _SCALARS:
            try:
                value = _SCALARS[key](value)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: {key} must be a {_SCALARS[key].__name__}, got {value!r}") from None
            cfg = replace(cfg, **{key: value})
        elif key == "budget":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: budget must be a mapping with keys {list(BUDGET_KEYS)}")
            bad = sorted(set(value) - set(BUDGET_KEYS))
            if bad:
                raise ConfigError(f"{where}: unknown budget key(s) {bad}; known: {list(BUDGET_KEYS)}")
            # In a file, `flash_kb: null` removes that limit; on the command line None means "not given".
            keep_none = where.startswith("config file")
            cfg = replace(cfg, budget={**cfg.budget, **{k: v for k, v in value.items() if v is not None or keep_none}})
        else:
            cfg = replace(cfg, **{key: merge_section(getattr(cfg, key), _SECTIONS[key], key, value, where)})
    return cfg
