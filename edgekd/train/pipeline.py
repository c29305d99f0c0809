"""The two training jobs behind the CLI: train a teacher, distill a student (or train it from scratch)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgekd.data import DataSpec, Splits, load_data
from edgekd.data.augment import AugmentConfig
from edgekd.kd.losses import LossConfig
from edgekd_runtime.errors import UserInputError

from .checkpoint import model_checkpoint, save_torch
from .trainer import FitResult, TrainConfig, evaluate, fit, seed_everything


@dataclass(frozen=True)
class DistillOptions:
    """What distillation adds to training: loss, transfer set and teacher caching."""

    loss: str = "kd"
    temperature: float = 4.0
    alpha: float = 0.9
    dkd_alpha: float = 1.0  # DKD's TCKD weight
    dkd_beta: float = 8.0  # DKD's NCKD weight
    fitnet_weight: float = 1.0
    transfer_views: int = 8  # fixed augmented views of the training set (the transfer set, cached mode)
    cache_teacher: bool = True
    kd_mode: str = "auto"  # online | cached | auto (edgekd.train.kd_mode; digits: lines keep their transfer set)

    def __post_init__(self) -> None:
        self.loss_config()  # the loss's numbers (temperature, alpha, weights) are LossConfig's to check

    def loss_config(self) -> LossConfig:
        """The KD loss's settings (the one place DistillOptions maps onto LossConfig)."""
        return LossConfig(spec=self.loss, temperature=self.temperature, alpha=self.alpha, dkd_alpha=self.dkd_alpha,
                          dkd_beta=self.dkd_beta, fitnet_weight=self.fitnet_weight)


def train_teacher(data: DataSpec | Splits, cfg: TrainConfig, out_dir: str | Path, arch: str = "cnn",
                  aug: AugmentConfig | None = None, resume: bool = False, progress: bool = True,
                  on_epoch_end: Callable | None = None, resolved_config: dict | None = None) -> dict[str, Any]:
    """Train a built-in teacher architecture; writes out_dir/teacher.pt. Returns its metrics."""
    from edgekd.kd import build_loss
    from edgekd.models.line_models import check_task
    from edgekd.models.teachers import TEACHERS

    from .batches import OnlineSource
    from .device import resolve_device

    check_task(arch, "digits")

    splits = data if isinstance(data, Splits) else load_data(data)
    seed_everything(cfg.seed)
    model = TEACHERS.get(arch)(splits.num_classes)
    source = OnlineSource(splits.train.x, splits.train.y, resolve_device(cfg.device), aug or AugmentConfig(), cfg.seed)
    res = fit(model, source, build_loss("none"), cfg, out_dir, val=(splits.val.x, splits.val.y), resume=resume,
              progress=progress, on_epoch_end=on_epoch_end)
    return _finish("teacher", arch, res, splits, cfg, out_dir, 28, resolved_config, "teacher.pt")


def distill(data: DataSpec | Splits, student_id: str, cfg: TrainConfig, out_dir: str | Path, *,
            teacher: Any = None, opts: DistillOptions = DistillOptions(), aug: AugmentConfig | None = None,
            resume: bool = False, init_from: str | None = None, progress: bool = True,
            on_epoch_end: Callable | None = None, resolved_config: dict | None = None,
            budget: dict | None = None, profile: dict | None = None) -> dict[str, Any]:
    """Distill `teacher` (an edgekd.models.teachers.Teacher, or None with loss 'none') into `student_id`.

    Writes out_dir/student.pt (the DESIGN checkpoint), last.pt and metrics.jsonl. Returns the metrics, including
    the transfer-set build time and the teacher-cache time.
    """
    from edgekd.kd import build_loss
    from edgekd.models.line_models import check_task
    from edgekd.models.students import build_student, count_params

    from .device import resolve_device
    from .kd_mode import check_kd_mode, choose_kd_mode

    check_task(student_id, "digits")

    splits = data if isinstance(data, Splits) else load_data(data)
    loss_fn = build_loss(opts.loss_config())
    needs_teacher = getattr(loss_fn, "needs_teacher", False)
    needs_features = getattr(loss_fn, "needs_features", False)
    if needs_teacher and teacher is None:
        raise UserInputError(f"KD loss {opts.loss!r} needs a teacher: pass --teacher, or --loss none for scratch")
    if needs_features and not teacher.has_features:
        raise UserInputError(f"KD loss {opts.loss!r} needs teacher features; a {teacher.source} teacher has none. "
                             "Use kd, mse or dkd")
    if opts.transfer_views < 1:
        raise UserInputError(f"transfer_views must be >= 1, got {opts.transfer_views}")
    check_kd_mode(opts.kd_mode)
    seed_everything(cfg.seed)
    model = build_student(student_id, splits.num_classes)
    r = model.input_size
    device = resolve_device(cfg.device)
    tmodel = teacher.model.to(device) if (teacher is not None and needs_teacher) else None
    choice = choose_kd_mode(opts.kd_mode, tmodel, model, device, r)
    t0 = time.perf_counter()
    source, t1 = _student_source(splits, choice.mode, aug or AugmentConfig.transfer(), opts, cfg.seed, r, device,
                                 tmodel, needs_features)
    t2 = time.perf_counter()
    res = fit(model, source, loss_fn, cfg, out_dir, val=(splits.val.x, splits.val.y), input_size=r, resume=resume,
              init_from=init_from, progress=progress, needs_features=needs_features, on_epoch_end=on_epoch_end)
    extra = {"params": count_params(model), "transfer_set_s": t1 - t0, "teacher_cache_s": t2 - t1,
             "loss": opts.loss, "teacher": getattr(teacher, "name", None), "kd_mode": choice.mode,
             "kd_mode_reason": choice.reason}
    return _finish("student", student_id, res, splits, cfg, out_dir, r, resolved_config, "student.pt",
                   extra, budget, profile)


def _student_source(splits: Splits, mode: str, aug: AugmentConfig, opts: DistillOptions, seed: int, r: int,
                    device: Any, tmodel: Any, needs_features: bool) -> tuple[Any, float]:
    """The student's batches for `mode` (online or cached) and the time the views were ready (perf_counter)."""
    from .batches import OnlineKDSource, OnlineSource, TransferSource, build_transfer_set

    x, y = splits.train.x, splits.train.y
    if mode == "online":
        if tmodel is None:  # the scratch twin of an online run: the same fresh views, no teacher
            return OnlineSource(x, y, device, aug, seed, input_size=r), time.perf_counter()
        return OnlineKDSource(x, y, device, aug, seed, tmodel, r, needs_features), time.perf_counter()
    ts = build_transfer_set(x, y, aug, opts.transfer_views, seed, r)
    t1 = time.perf_counter()
    return TransferSource(ts, device, tmodel, with_features=needs_features, cache_teacher=opts.cache_teacher), t1


def _finish(kind: str, arch: str, res: FitResult, splits: Splits, cfg: TrainConfig, out_dir: str | Path,
            input_size: int, resolved: dict | None, filename: str, extra: dict | None = None,
            budget: dict | None = None, profile: dict | None = None) -> dict[str, Any]:
    from .device import init_distributed, resolve_device

    device = next(res.model.parameters()).device
    test_acc, test_loss = evaluate(res.model, splits.test.x, splits.test.y, device, input_size)
    hist = res.history
    metrics = {"test_acc": test_acc, "test_loss": test_loss, "best_val_acc": res.best_val_acc,
               "best_epoch": res.best_epoch, "weights": res.kept, "epochs_run": len(hist),
               "stopped_early": res.stopped_early, "epoch_time_s": [h["epoch_time_s"] for h in hist], **(extra or {})}
    if init_distributed(resolve_device(cfg.device).type).is_main:
        ck = model_checkpoint(kind, arch, res.model, num_classes=splits.num_classes, labels=splits.class_names,
                              input_size=input_size, data=splits.spec.to_dict(), metrics=metrics,
                              config=resolved or {"train": cfg.__dict__}, budget=budget, profile=profile)
        save_torch(ck, Path(out_dir) / filename)
    metrics["checkpoint"] = str(Path(out_dir) / filename)
    return metrics
