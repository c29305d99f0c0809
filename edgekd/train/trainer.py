"""fit(): one training loop for teachers, scratch students and distillation, on CPU, one GPU or DDP (torchrun).

Each epoch writes `last.pt` (model, loss adapter, optimizer, scheduler, RNG states, epoch, best-so-far, history)
atomically; `resume=True` continues exactly from it. `metrics.jsonl` holds one record per epoch. The weights
returned are the final epoch's, or the best validation epoch's (`TrainConfig.select`; early stopping with
`patience` stops after that many epochs without a better validation score).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edgekd_runtime.atomic import atomic_write_text
from edgekd_runtime.errors import UserInputError

from .checkpoint import TRAIN_STATE_FORMAT, load_torch, rng_state, save_torch, set_rng_state, transfer_parameters
from .device import DistInfo, init_distributed, resolve_amp, resolve_device

if TYPE_CHECKING:
    import torch
    from torch import nn


SELECT = ("auto", "best", "last")  # TrainConfig.select
#: Seeds are whole numbers in [0, MAX_SEED]: numpy's generators refuse negative ones, its legacy global one larger.
MAX_SEED = 2**32 - 1


def is_real(value: Any) -> bool:
    """An int or float that is not a bool (True is no learning rate or epoch count)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_whole(name: str, value: Any, lo: int, about: str = "") -> int:
    """`value`, or a UserInputError: `name` must be a whole number >= `lo` (not a bool, not 1.5)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise UserInputError(f"{name} must be a whole number >= {lo}{' ' + about if about else ''}, got {value!r}")
    return value


def check_seed(seed: Any, name: str) -> int:
    """`seed`, or a UserInputError naming it (`name`: the option or config key): a whole number 0..MAX_SEED."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise UserInputError(f"{name} must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    return seed


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and runtime settings of one training run."""

    epochs: int = 10
    batch_size: int = 128  # global batch (split across DDP ranks)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adamw | sgd
    scheduler: str = "onecycle"  # onecycle | cosine | none
    device: str = "auto"
    amp: str = "auto"  # auto | bf16 | fp16 | off
    channels_last: bool = True  # NHWC activations and weights on CUDA and CPU (see CHANNELS_LAST_DEVICES)
    compile: bool = False
    seed: int = 0
    patience: int | None = None  # early stopping: epochs without a better val accuracy
    deterministic: bool = False
    num_threads: int | None = None
    # The weights fit() returns: "last" (the final epoch's), "best" (the best validation epoch's), or "auto": best
    # with early stopping (`patience`) or a task evaluator (lines: CER over thousands of validation characters),
    # else last. Why last for digits: the embedded val split has 500 digits (0.2 pp each), too few to rank the
    # late epochs of a decaying schedule; the best of them is mostly luck and sometimes an early, undertrained one.
    # On 5,000 held-out digits (benchmarks/kd_quality.py folds) the final weights were better for the teachers
    # (98.75 -> 99.11 % each, 99.08 -> 99.24 % for the 3-member ensemble) and the distilled students
    # (98.54 -> 98.78 / 98.66 % on two seeds).
    select: str = "auto"

    def __post_init__(self) -> None:
        self._check_numbers()
        if self.optimizer not in ("adamw", "sgd"):
            raise UserInputError(f"unknown optimizer {self.optimizer!r}; choose adamw or sgd")
        if self.scheduler not in ("onecycle", "cosine", "none"):
            raise UserInputError(f"unknown scheduler {self.scheduler!r}; choose onecycle, cosine or none")
        if self.select not in SELECT:
            raise UserInputError(f"unknown select {self.select!r}; choose {', '.join(SELECT)}")

    def _check_numbers(self) -> None:
        """Whole numbers where training counts (a bool is no count), finite rates; `patience` is the epochs
        without a better validation score after which training stops: 0 would stop after the first epoch."""
        check_whole("epochs", self.epochs, 1)
        check_whole("batch_size", self.batch_size, 1)
        check_seed(self.seed, "seed")
        if self.patience is not None:
            check_whole("patience", self.patience, 1, "(epochs without a better validation score before training "
                                                      "stops; leave it out for no early stopping)")
        if self.num_threads is not None:
            check_whole("num_threads (--threads)", self.num_threads, 1, "(CPU threads; leave it out for torch's "
                                                                        "default)")
        if not is_real(self.lr) or not math.isfinite(self.lr) or self.lr <= 0:
            raise UserInputError(f"lr (the peak learning rate) must be a finite number > 0, got {self.lr!r}")
        if not is_real(self.weight_decay) or not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise UserInputError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")

    def selects_best(self, evaluator: bool = False) -> bool:
        """Whether fit() returns the best validation epoch's weights (else the final epoch's)."""
        return self.select == "best" or (self.select == "auto" and (self.patience is not None or evaluator))


@dataclass
class FitResult:
    """What fit() returns: `model` holds the selected weights (TrainConfig.select; `kept` says which: "last" or
    "best"), `best_epoch` is their epoch and `best_val_acc` its validation score (accuracy, or the evaluator's
    val_score), None without validation."""

    model: "nn.Module"
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_acc: float | None = None
    stopped_early: bool = False
    kept: str = "last"


def evaluate(model: "nn.Module", x: np.ndarray, y: np.ndarray, device: "torch.device", input_size: int = 28,
             batch_size: int = 1024) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of `model` on uint8 canvases (resized to `input_size`)."""
    import torch
    import torch.nn.functional as F

    from .batches import model_input, resize_uint8

    if len(y) == 0:
        return float("nan"), float("nan")
    x = resize_uint8(x, input_size)
    was_training = model.training
    model.eval()
    correct, loss = 0, 0.0
    with torch.inference_mode():
        for s in range(0, len(y), batch_size):
            xb = model_input(torch.from_numpy(x[s:s + batch_size]).to(device))
            yb = torch.from_numpy(np.asarray(y[s:s + batch_size], np.int64)).to(device)
            out = model(xb).float()
            correct += int((out.argmax(1) == yb).sum())
            loss += float(F.cross_entropy(out, yb, reduction="sum"))
    model.train(was_training)
    return correct / len(y), loss / len(y)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and random (model initialisation happens after this)."""
    import random

    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _make_optimizer(params: list, cfg: TrainConfig, steps_per_epoch: int):
    import torch

    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch
    if cfg.scheduler == "onecycle" and total >= 10:  # one-cycle needs a few steps per phase
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.2)
    elif cfg.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def _prime_loss(loss_fn: "nn.Module", model: "nn.Module", source: Any) -> None:
    """Create lazily-sized loss parameters (FitNet's adapter) before the optimizer is built."""
    import torch

    for m in loss_fn.modules():
        if hasattr(m, "build") and getattr(m, "adapter", "x") is None:
            x, t = source.batch(0, torch.arange(min(2, source.n)))
            if t.get("teacher_features") is None:
                raise UserInputError("KD loss 'fitnet' needs a built-in teacher with features; use kd, mse or dkd")
            with torch.no_grad():
                _, f = model(x, with_features=True)
            m.build(f.shape[1], t["teacher_features"].shape[1])


@dataclass
class TrainState:
    """Where a training stands after an epoch (what last.pt carries besides the weights and optimizer):
    the last finished epoch, the per-epoch records, the best validation score and its weights, the epochs
    since it improved, and whether early stopping ended the run."""

    epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    best_acc: float = float("-inf")
    best_epoch: int = -1
    best_state: dict[str, Any] | None = None
    bad_epochs: int = 0
    stopped: bool = False

    def record(self, epoch: int, rec: dict[str, Any], score: float | None, model: "nn.Module",
               patience: int | None) -> bool:
        """Add the epoch's record; keep the weights when `score` is the best so far. True when the run stops
        early (`patience` epochs without a better score)."""
        if score is not None:
            if score > self.best_acc:
                self.best_acc, self.best_epoch, self.bad_epochs = score, epoch, 0
                self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                self.bad_epochs += 1
        self.epoch = epoch
        self.history.append(rec)
        self.stopped = patience is not None and self.bad_epochs >= patience
        return self.stopped


@dataclass
class TrainParts:
    """Everything one training run steps: the model (and `net`, its DDP/compiled wrapper that runs the
    batches), the loss, optimizer, scheduler, AMP scaler, the sampler that shards epochs across DDP ranks,
    and where it runs."""

    model: "nn.Module"
    net: "nn.Module"
    loss_fn: "nn.Module"
    opt: Any
    sched: Any
    scaler: Any
    sampler: Any
    device: "torch.device"
    di: DistInfo
    amp_dtype: Any
    local_bs: int
    steps: int
    cfg: TrainConfig


def fit(model: "nn.Module", source: Any, loss_fn: "nn.Module", cfg: TrainConfig, out_dir: str | Path, *,
        val: tuple[np.ndarray, np.ndarray] | None = None, input_size: int = 28, resume: bool = False,
        init_from: str | None = None, progress: bool = True, needs_features: bool = False,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
        evaluator: Callable[["nn.Module"], dict[str, float]] | None = None) -> FitResult:
    """Train `model` on batches from `source` with `loss_fn`; see the module docstring.

    Args:
        model: the network; its forward accepts `with_features=True` when `needs_features`.
        source: an OnlineSource or TransferSource (has `.n` and `.batch(epoch, idx)`).
        loss_fn: a KD loss module (edgekd.kd.build_loss).
        cfg: TrainConfig.
        out_dir: where last.pt and metrics.jsonl go (rank 0 writes).
        val: (x uint8 (N, 28, 28), y) for validation, best-checkpoint and early stopping.
        input_size: the model's input side (validation canvases are resized to it).
        resume: continue from out_dir/last.pt.
        init_from: warm-start from a model checkpoint (parameter transfer by name and shape).
        on_epoch_end: called on every rank after the epoch's checkpoint is written.
        evaluator: validation other than classification accuracy (the lines task): model -> a record with
            `val_score` (higher is better; selects the best epoch) and the metrics to log. Replaces `val`.
    """
    import torch.distributed as dist

    out_dir = Path(out_dir)
    last_path = out_dir / "last.pt"
    parts = setup_training(model, source, loss_fn, cfg, init_from)
    if resume and not last_path.is_file():
        raise UserInputError(f"--resume: no {last_path} to resume from; drop --resume to start fresh")
    state = restore_train_state(parts, last_path) if resume else TrainState()
    parts.net = _wrap_model(model, cfg, parts.di, parts.device)
    bar = _Progress(enabled=progress and parts.di.is_main)
    # a resumed run that had already stopped early trains no more
    for epoch in range(state.epoch + 1, cfg.epochs if not state.stopped else 0):
        rec = train_epoch(parts, source, epoch, bar, needs_features)
        score = validate(model, rec, parts.device, val, input_size, evaluator)
        stop = state.record(epoch, rec, score, model, cfg.patience)
        bar.end(rec)
        if parts.di.is_main:
            save_train_state(parts, state, out_dir)
        if parts.di.world > 1:
            dist.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch, rec)
        if stop:
            break
    return _result(model, state, cfg.selects_best(evaluator is not None))


def _result(model: "nn.Module", state: TrainState, best: bool) -> FitResult:
    """The FitResult with the selected weights loaded: the best validation epoch's (`best`) or the final one's."""
    kept = "best" if best and state.best_state is not None else "last"
    if kept == "best":
        model.load_state_dict(state.best_state)
        epoch, score = state.best_epoch, state.best_acc
    else:
        last = state.history[-1] if state.history else {}
        epoch, score = state.epoch, last.get("val_score", last.get("val_acc"))
    model.eval()
    return FitResult(model, state.history, epoch, score if epoch >= 0 else None, state.stopped, kept)


#: Devices where `TrainConfig.channels_last` trains in NHWC. On CPU (oneDNN) it is faster too: a training step of the
#: convctc line teacher 1.36x, the ctc-w16-d2-c2-r24 line student 1.5-1.9x, the digits' cnn teacher and dscnn student
#: 1.44x (2 threads, x86-64 AVX2, batch 64; 20 teacher epochs of the lines run: 274 -> ~185 s).
CHANNELS_LAST_DEVICES = ("cuda", "cpu")


def uses_channels_last(cfg: TrainConfig, device: "torch.device") -> bool:
    """Whether the model and its batches go channels-last (NHWC) on `device`."""
    return cfg.channels_last and device.type in CHANNELS_LAST_DEVICES


def setup_training(model: "nn.Module", source: Any, loss_fn: "nn.Module", cfg: TrainConfig,
                   init_from: str | None = None) -> TrainParts:
    """Threads, device (and the DDP process group under torchrun), AMP, the model and loss on the device
    (warm-started from `init_from`), the epoch sampler, optimizer, scheduler and scaler."""
    import torch
    from torch.utils.data import DistributedSampler

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    device = resolve_device(cfg.device)
    di: DistInfo = init_distributed(device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    amp_dtype = resolve_amp(cfg.amp, device)
    if init_from:
        transfer_parameters(model, init_from)
    model.to(device)
    if uses_channels_last(cfg, device):
        model.to(memory_format=torch.channels_last)
    loss_fn.to(device)
    _prime_loss(loss_fn, model, source)
    loss_fn.to(device)
    sampler = DistributedSampler(range(source.n), num_replicas=di.world, rank=di.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    local_bs = max(1, cfg.batch_size // di.world)
    steps = -(-len(sampler) // local_bs)
    params = [p for p in model.parameters() if p.requires_grad] + [p for p in loss_fn.parameters()]
    opt, sched = _make_optimizer(params, cfg, steps)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return TrainParts(model, model, loss_fn, opt, sched, scaler, sampler, device, di, amp_dtype, local_bs, steps,
                      cfg)


def _wrap_model(model: "nn.Module", cfg: TrainConfig, di: DistInfo, device: "torch.device") -> "nn.Module":
    """The module that runs the batches: DDP across ranks under torchrun, torch.compile'd with cfg.compile."""
    import torch

    net = model
    if di.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    return net


def restore_train_state(parts: TrainParts, last_path: Path) -> TrainState:
    """Load last.pt into the model, loss, optimizer, scheduler, scaler and the RNGs; return where it stood."""
    st = load_torch(last_path, TRAIN_STATE_FORMAT)
    parts.model.load_state_dict(st["model"])
    parts.loss_fn.load_state_dict(st["loss"])
    parts.opt.load_state_dict(st["optimizer"])
    parts.sched.load_state_dict(st["scheduler"])
    if st.get("scaler"):
        parts.scaler.load_state_dict(st["scaler"])
    set_rng_state(st["rng"])
    return TrainState(epoch=int(st["epoch"]), history=list(st["history"]), best_acc=float(st["best_acc"]),
                      best_epoch=int(st["best_epoch"]), best_state=st.get("best_state"),
                      bad_epochs=int(st["bad_epochs"]), stopped=bool(st.get("stopped")))


def save_train_state(parts: TrainParts, state: TrainState, out_dir: Path) -> None:
    """Write out_dir/last.pt (everything `restore_train_state` needs to continue exactly) and metrics.jsonl
    (one record per epoch so far), each atomically."""
    save_torch({"format": TRAIN_STATE_FORMAT, "epoch": state.epoch, "model": _cpu(parts.model.state_dict()),
                "loss": _cpu(parts.loss_fn.state_dict()), "optimizer": parts.opt.state_dict(),
                "scheduler": parts.sched.state_dict(),
                "scaler": parts.scaler.state_dict() if parts.scaler.is_enabled() else None,
                "rng": rng_state(), "history": state.history, "best_acc": state.best_acc,
                "best_epoch": state.best_epoch, "bad_epochs": state.bad_epochs, "best_state": state.best_state,
                "stopped": state.stopped, "config": asdict(parts.cfg)},
               out_dir / "last.pt")
    atomic_write_text(out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state.history))


def train_epoch(parts: TrainParts, source: Any, epoch: int, bar: _Progress | None = None,
                needs_features: bool = False) -> dict[str, Any]:
    """One pass over this rank's shard of the epoch; returns the epoch's record (train loss and accuracy summed
    over all ranks, learning rate, time, samples/s)."""
    import torch
    import torch.distributed as dist

    bar = bar or _Progress(enabled=False)
    p = parts
    p.net.train()
    p.sampler.set_epoch(epoch)
    order = torch.tensor(list(p.sampler), dtype=torch.long).to(p.device)  # one copy per epoch, not per batch
    sums = torch.zeros(3, dtype=torch.float64, device=p.device)  # loss*n, correct, n
    t0 = time.perf_counter()
    bar.start(epoch, p.cfg.epochs, p.steps)
    for j in range(p.steps):
        idx = order[j * p.local_bs:(j + 1) * p.local_bs]
        if len(idx) == 0:
            continue
        loss, logits, tgt = _train_step(p, source, epoch, idx, needs_features)
        with torch.no_grad():
            sums[0] += loss.detach().double() * len(idx)  # on the device: no sync per batch
            sums[1] += _batch_correct(logits, tgt)
            sums[2] += len(idx)
        bar.step(sums, len(idx) * p.di.world)
    if p.di.world > 1:
        dist.all_reduce(sums)
    dt = time.perf_counter() - t0
    return {"epoch": epoch, "train_loss": float(sums[0] / sums[2]), "train_acc": float(sums[1] / sums[2]),
            "lr": float(p.opt.param_groups[0]["lr"]), "epoch_time_s": dt, "samples_per_s": float(sums[2]) / dt}


def _train_step(p: TrainParts, source: Any, epoch: int, idx: "torch.Tensor",
                needs_features: bool) -> tuple["torch.Tensor", "torch.Tensor", dict[str, Any]]:
    """Forward (under AMP), loss, backward, optimizer and scheduler step on one batch; (loss, logits, targets)."""
    import torch

    from edgekd.kd.losses import LossBatch

    x, tgt = source.batch(epoch, idx)
    if uses_channels_last(p.cfg, p.device):
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(p.device.type, dtype=p.amp_dtype or torch.bfloat16, enabled=p.amp_dtype is not None):
        out = p.net(x, with_features=True) if needs_features else p.net(x)
        logits, feats = out if needs_features else (out, None)
        loss = p.loss_fn(LossBatch(logits, tgt["y_a"], tgt.get("y_b"), tgt.get("lam"), tgt.get("teacher_logits"),
                                   feats, tgt.get("teacher_features"), tgt.get("target_lengths"),
                                   tgt.get("teacher_targets"), tgt.get("teacher_target_lengths")))
    p.opt.zero_grad(set_to_none=True)
    p.scaler.scale(loss).backward()
    p.scaler.step(p.opt)
    p.scaler.update()
    p.sched.step()
    return loss, logits, tgt


def validate(model: "nn.Module", rec: dict[str, Any], device: "torch.device",
             val: tuple[np.ndarray, np.ndarray] | None, input_size: int,
             evaluator: Callable[["nn.Module"], dict[str, float]] | None) -> float | None:
    """Add the validation metrics to the epoch's record `rec`; return the score that selects the best epoch
    (the evaluator's `val_score`, else the validation accuracy; None without validation data)."""
    if evaluator is not None:
        rec.update(evaluator(model))
        return rec["val_score"]
    if val is not None and len(val[1]):
        rec["val_acc"], rec["val_loss"] = evaluate(model, val[0], val[1], device, input_size)
        return rec["val_acc"]
    return None


def _batch_correct(logits: "torch.Tensor", tgt: dict[str, Any]) -> "torch.Tensor":
    """Samples of the batch read right: exact greedy string matches for lines (targets with lengths), else top-1
    hits against the dominant label of each (possibly mixed) sample."""
    import torch

    if tgt.get("target_lengths") is not None:
        from .ctc_metrics import exact_matches

        return exact_matches(logits, tgt["y_a"], tgt["target_lengths"])

    y_dom = tgt["y_a"] if tgt.get("lam") is None else torch.where(tgt["lam"] >= 0.5, tgt["y_a"], tgt["y_b"])
    return (logits.argmax(1) == y_dom).sum()


def _cpu(sd: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    return {k: v.detach().cpu() for k, v in sd.items()}


class _Progress:
    """A rich progress bar per epoch with running loss, accuracy and samples/s (rank 0 only)."""

    REFRESH_S = 0.2

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.p = None

    def start(self, epoch: int, epochs: int, steps: int) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(TextColumn("epoch {task.fields[ep]}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.4f}  "
                                     "{task.fields[sps]:.0f} samples/s"),
                          TimeElapsedColumn(), transient=True)
        self.p.start()
        self.task = self.p.add_task("train", total=steps, ep=f"{epoch + 1}/{epochs}", loss=0.0, acc=0.0,
                                    sps=0.0)
        self.t0, self.n, self.shown = time.perf_counter(), 0, float("-inf")  # the first batch is always shown

    def step(self, sums: "torch.Tensor", n: int) -> None:
        """Advance one batch; `sums` = (loss*n, correct, n) so far on this rank. The numbers are read off the
        device (a sync) at most every REFRESH_S, not per batch, so a watched GPU run is not slowed down."""
        if self.p is None:
            return
        self.n += n
        now = time.perf_counter()
        if now - self.shown < self.REFRESH_S:
            self.p.update(self.task, advance=1)
            return
        loss_n, correct, seen = sums.tolist()
        self.shown = now
        self.p.update(self.task, advance=1, loss=loss_n / max(seen, 1), acc=correct / max(seen, 1),
                      sps=self.n / max(now - self.t0, 1e-9))

    def end(self, rec: dict[str, Any]) -> None:
        if self.p is None:
            return
        self.p.stop()
        self.p = None
        from rich.console import Console

        val = f"  val_acc {rec['val_acc']:.4f}" if "val_acc" in rec else ""
        Console(stderr=True).print(f"epoch {rec['epoch'] + 1}: loss {rec['train_loss']:.4f}  "
                                   f"acc {rec['train_acc']:.4f}{val}  {rec['samples_per_s']:.0f} samples/s")
