"""Training jobs of the `lines` task: train a line teacher, distill a CTC line student (or train it from scratch).

Batches come from `LineSource`: views of the training lines (for the embedded data, each view is a fresh
composition of the training digits; for a fixed folder of lines, view 0 is the data and later views are lightly
re-rendered copies). A teacher trains on a new view every epoch. Distillation uses `transfer_views` fixed views
with the teacher's logits (and its greedy-decoded strings, for `seq_kd`) computed once and cached, as for digits;
the scratch baseline trains on the very same views.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgekd.data.lines import LineSplit, LineSplits, encode_texts
from edgekd_runtime.errors import UserInputError

from .checkpoint import model_checkpoint, save_torch
from .ctc_metrics import evaluate_lines, greedy_paths, line_logits
from .pipeline import DistillOptions
from .trainer import FitResult, TrainConfig, fit, seed_everything

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_LINE_TEACHER = "convctc"
# 60 epochs: test CER 1.49 % and 1.38 % for seeds 0 and 1 (1.64 % at 40 epochs, still improving); see the README
DEFAULT_LINE_TEACHER_EPOCHS = 60
# blank_kd at T 4, alpha 0.5: the best of the three CTC losses in benchmarks/kd_lines_quality.py (see the README)
DEFAULT_LINE_LOSS, DEFAULT_LINE_TEMPERATURE, DEFAULT_LINE_ALPHA = "blank_kd", 4.0, 0.5
# The line students' peak learning rate (one-cycle, batch 64; the digits' 3e-3 is the TrainConfig default). Measured on
# ctc-w8-d2-c2-r24, 40 epochs over 8 views, 2,000 test strings: from scratch 3.63 / 4.02 % CER (seeds 0 / 1) at 3e-3,
# 3.28 % at 6e-3, 3.21 / 3.54 % at 1e-2; distilled from the default run's 20-epoch teacher (seed 0) 3.31 % at 3e-3,
# 2.88 % at 1e-2.
DEFAULT_LINE_STUDENT_LR = 1e-2
MAX_KEPT_VIEW_BYTES = 512 * 2**20  # views of training lines kept in memory at once (uint8 canvases)


def line_task_fields(splits: LineSplits) -> dict[str, Any]:
    """What a lines checkpoint records for export and the board (the contract of the lines task)."""
    from edgekd.models.line_models import FRAME_STRIDE

    return {"task": "lines", "charset": splits.charset, "blank": 0, "input_height": splits.spec.height,
            "width_policy": {"kind": "fixed", "width": splits.spec.width, "frame_stride": FRAME_STRIDE},
            "max_len": splits.spec.width // FRAME_STRIDE // 2}


def check_teacher_charset(ref: str, charset: str) -> None:
    """Refuse a line teacher (one file, or an ensemble's separated by commas) whose edgekd checkpoint records
    another charset than the data's, naming the characters that differ. Files that record none (TorchScript,
    ExportedProgram) are left to the loader, which checks their output size."""
    from edgekd.models.teachers import TeacherMismatchError, teacher_files

    from .checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_torch

    for part in teacher_files(ref):
        try:
            ck = load_torch(Path(part).expanduser())
        except CheckpointError:
            continue  # no torch checkpoint: the loader says what it is
        theirs = ck.get("charset") if isinstance(ck, dict) and ck.get("format") == CHECKPOINT_FORMAT else None
        if isinstance(theirs, str) and theirs != charset:
            raise TeacherMismatchError(f"line teacher {part} reads the characters {theirs!r}, the data's lines "
                                       f"{charset!r}: {_charset_difference(theirs, charset)}; distill from a teacher "
                                       f"trained on these lines (edgekd teacher train --task lines with the same "
                                       f"--data), or use lines of the teacher's characters")


def _charset_difference(teacher: str, data: str) -> str:
    """What differs between two charsets, in words: the characters only one has, or the order (the class index)."""
    unread, unused = [c for c in data if c not in teacher], [c for c in teacher if c not in data]
    said = ([f"the teacher cannot read {''.join(unread)!r}"] if unread else []) + \
        ([f"the data has no {''.join(unused)!r}"] if unused else [])
    return "; ".join(said) or "the same characters in another order (each character's class index differs)"


class LineSource:
    """Batches of line canvases + CTC targets (+ the teacher's logits and strings) from views of the training set.

    Args:
        make_view: view index -> LineSplit (all views have the same number of lines).
        num_views: epoch e trains on view e % num_views.
        teacher: the teacher module (on `device`) or None; its outputs are cached for every view when `cache`.
    """

    def __init__(self, make_view: Callable[[int], LineSplit], num_views: int, charset: str, device: "torch.device",
                 teacher: "nn.Module | None" = None, cache: bool = True) -> None:
        self.make_view, self.num_views, self.charset, self.device = make_view, num_views, charset, device
        self.teacher = teacher
        first = make_view(0)
        self.n = len(first)
        self._views: dict[int, dict[str, Any]] = {}
        self.cache = cache and teacher is not None
        # Views are made up front when they fit in memory (always with a cached teacher), so that an epoch's time
        # is training alone and a KD epoch compares with a scratch epoch; else one at a time, when first used.
        self.keep_all = self.cache or num_views * first.x.nbytes <= MAX_KEPT_VIEW_BYTES
        self._view(0, first)
        if self.keep_all:
            for v in range(1, num_views):
                self._view(v)

    def _view(self, v: int, split: LineSplit | None = None) -> dict[str, Any]:
        import torch

        if v not in self._views:
            if not self.keep_all:
                self._views.clear()  # one view in memory at a time
            split = split or self.make_view(v)
            tg, ln = encode_texts(split.texts, self.charset, "training lines")
            d = {"x": torch.from_numpy(split.x).to(self.device), "y": torch.from_numpy(tg).to(self.device),
                 "len": torch.from_numpy(ln).to(self.device)}
            if self.cache:
                d["t_logits"] = line_logits(self.teacher, d["x"], self.device)
                d["t_seq"], d["t_len"] = greedy_paths(d["t_logits"])
            self._views[v] = d
        return self._views[v]

    def batch(self, epoch: int, idx: "torch.Tensor") -> tuple["torch.Tensor", dict[str, Any]]:
        from .batches import model_input

        d = self._view(epoch % self.num_views)
        idx = idx.to(self.device)
        x_u8 = d["x"][idx]
        tgt: dict[str, Any] = {"y_a": d["y"][idx], "target_lengths": d["len"][idx]}
        if self.teacher is not None:
            lg = d["t_logits"][idx] if self.cache else line_logits(self.teacher, x_u8, self.device)
            seq, n = (d["t_seq"][idx], d["t_len"][idx]) if self.cache else greedy_paths(lg)
            tgt.update(teacher_logits=lg, teacher_targets=seq, teacher_target_lengths=n)
        return model_input(x_u8), tgt


def _line_hooks(splits: LineSplits, device: "torch.device") -> dict[str, Any]:
    """fit()'s evaluator: val CER selects the best epoch."""

    def evaluator(model: "nn.Module") -> dict[str, float]:
        m = evaluate_lines(model, splits.val, splits.charset, device)
        return {"val_cer": m.cer, "val_acc": m.string_acc, "val_loss": m.loss, "val_score": -m.cer}

    return {"evaluator": evaluator}


def train_line_teacher(splits: LineSplits, cfg: TrainConfig, out_dir: str | Path, arch: str = DEFAULT_LINE_TEACHER,
                       resume: bool = False, progress: bool = True, on_epoch_end: Callable | None = None,
                       resolved_config: dict | None = None) -> dict[str, Any]:
    """Train a built-in line teacher on a fresh view of the training lines every epoch; writes teacher.pt."""
    from edgekd.kd import build_loss
    from edgekd.models.line_models import check_task
    from edgekd.models.teachers import TEACHERS

    from .device import resolve_device

    check_task(arch, "lines")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model = TEACHERS.get(arch)(splits.num_classes, height=splits.spec.height)
    source = LineSource(splits.train_view, cfg.epochs, splits.charset, device)
    res = fit(model, source, build_loss("none"), cfg, out_dir, resume=resume, progress=progress,
              on_epoch_end=on_epoch_end, **_line_hooks(splits, device))
    return _finish_lines("teacher", arch, res, splits, cfg, out_dir, resolved_config, "teacher.pt")


def distill_lines(splits: LineSplits, student_id: str, cfg: TrainConfig, out_dir: str | Path, *,
                  teacher: Any = None, opts: DistillOptions | None = None,
                  resume: bool = False, init_from: str | None = None, progress: bool = True,
                  on_epoch_end: Callable | None = None, resolved_config: dict | None = None,
                  budget: dict | None = None, profile: dict | None = None) -> dict[str, Any]:
    """Distill a line teacher (a LineTeacher, or None with loss `none`) into the line student `student_id`."""
    opts = opts or DistillOptions(DEFAULT_LINE_LOSS, DEFAULT_LINE_TEMPERATURE, DEFAULT_LINE_ALPHA)
    from edgekd.kd import build_loss
    from edgekd.models.line_models import check_task
    from edgekd.models.students import build_student, count_params

    from .device import resolve_device

    check_task(student_id, "lines", splits.spec.height)
    loss_fn = build_loss(opts.loss_config())
    needs_teacher = getattr(loss_fn, "needs_teacher", False)
    if needs_teacher and teacher is None:
        raise UserInputError(f"KD loss {opts.loss!r} needs a teacher: pass --teacher, or --loss none for scratch")
    if opts.transfer_views < 1:
        raise UserInputError(f"transfer_views must be >= 1, got {opts.transfer_views}")
    seed_everything(cfg.seed)
    model = build_student(student_id, splits.num_classes)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    tmodel = teacher.model.to(device) if (teacher is not None and needs_teacher) else None
    source = LineSource(splits.train_view, opts.transfer_views, splits.charset, device, tmodel, opts.cache_teacher)
    t1 = time.perf_counter()
    res = fit(model, source, loss_fn, cfg, out_dir, resume=resume, init_from=init_from, progress=progress,
              on_epoch_end=on_epoch_end, **_line_hooks(splits, device))
    extra = {"params": count_params(model), "transfer_set_s": t1 - t0, "loss": opts.loss,
             "teacher": getattr(teacher, "name", None)}
    return _finish_lines("student", student_id, res, splits, cfg, out_dir, resolved_config, "student.pt", extra,
                         budget, profile)


def _finish_lines(kind: str, arch: str, res: FitResult, splits: LineSplits, cfg: TrainConfig, out_dir: str | Path,
                  resolved: dict | None, filename: str, extra: dict | None = None, budget: dict | None = None,
                  profile: dict | None = None) -> dict[str, Any]:
    from .device import init_distributed, resolve_device

    device = next(res.model.parameters()).device
    test = evaluate_lines(res.model, splits.test, splits.charset, device)
    hist = res.history
    metrics = {"test_cer": test.cer, "test_string_acc": test.string_acc,
               "test_per_length": test.to_dict()["per_length"], "test_loss": test.loss,
               "best_val_cer": -res.best_val_acc if res.best_val_acc is not None else None,
               "best_epoch": res.best_epoch, "weights": res.kept, "epochs_run": len(hist),
               "stopped_early": res.stopped_early, "epoch_time_s": [h["epoch_time_s"] for h in hist], **(extra or {})}
    if init_distributed(resolve_device(cfg.device).type).is_main:
        ck = model_checkpoint(kind, arch, res.model, num_classes=splits.num_classes, labels=list(splits.charset),
                              input_size=splits.spec.height, data=splits.spec.to_dict(), metrics=metrics,
                              config=resolved or {"train": cfg.__dict__}, budget=budget, profile=profile,
                              task=line_task_fields(splits))
        save_torch(ck, Path(out_dir) / filename)
    metrics["checkpoint"] = str(Path(out_dir) / filename)
    return metrics
