"""Online or cached distillation: which one a run uses, and why.

* `cached`: a fixed transfer set of V augmented views, the teacher run once per view (`TransferSource`). The
  teacher costs V forward passes over the training set in all; the student sees the same V views again and again.
* `online`: a fresh augmented view every step with the teacher run on it (`OnlineKDSource`, Beyer et al. 2022).
  The teacher's forward pass is paid on every step.
* `auto`: online when a GPU is present or when the teacher's forward pass costs no more than
  `ONLINE_MAX_COST_RATIO` times the student's training step in MACs (forward + backward, about 3x its forward
  MACs); cached otherwise.

Measured on 2 cores (benchmarks/kd_quality.py, all 5 folds, 5,000 held-out digits), the default teacher (`cnn`,
21.9 M MACs, 98.56 %) into the default budget's student (`cnn-w16-d2-r28`, a 3.1 M-MAC step, ratio 7.1), each
mode against its own scratch twin trained on the same views:
  * 20 student epochs: online +0.24 pp (95 % CI -0.22 .. +0.70), cached +0.50 pp (+0.06 .. +0.94, 44 % of the
    gap), distilled 97.64 / 97.92 %;
  * 60 epochs (the default since): online +0.60 pp (+0.19 .. +1.01; distilled 98.40 %, scratch 97.80 %, 79 % of
    the gap) at 2.7x a scratch epoch, cached +0.90 pp (+0.46 .. +1.34; distilled 98.36 %, scratch 97.46 %, 82 %)
    at 1.02x, and with other training seeds +0.64 pp (+0.21 .. +1.07; 98.30 vs 97.66 %, 71 %): +0.77 pp and 76 %
    of the gap on average. Cached with alpha 1.0: +0.78; T 2: +0.70; 16 views: +0.50; 100 epochs: +0.32.
  * 60 epochs from the default teacher since, three `cnn` averaged (`teacher_members`, 99.08 %): cached +1.08 pp
    (+0.66 .. +1.50; distilled 98.54 %, scratch 97.46 %, 67 % of the gap), +0.88 pp with other training seeds.
  * the same keeping every model's final weights instead of its best val epoch (`TrainConfig.select`; teacher
    99.24 %), 3 training seeds: cached +1.12 pp on average (+0.82 .. +1.42; distilled 98.77 %, scratch 97.65 %,
    70 % of the gap; the seeds +1.08 / +1.22 / +1.06 pp).
Both modes end at the same distilled accuracy and online costs 2.7x per epoch on a CPU, so that pair stays cached.
(MACs overstate a big teacher's wall time on a CPU, 7.1x in MACs was 2.7x in seconds; the ratio is a policy, not
a clock.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgekd_runtime.errors import UserInputError

if TYPE_CHECKING:
    import torch
    from torch import nn

KD_MODES = ("auto", "online", "cached")
ONLINE_MAX_COST_RATIO = 1.0
TRAIN_STEP_MACS_FACTOR = 3  # forward + backward (input and weight gradients) of a conv net, in forward passes
KD_MODE_HELP = ("online (fresh augmented views, teacher on every step), cached (fixed transfer set, teacher once per "
                "view) or auto (default: online on a GPU or when the teacher is cheap next to the student).")


@dataclass(frozen=True)
class KDModeChoice:
    """The mode a run uses and the reason, with the measured costs when `auto` compared them."""

    mode: str
    reason: str
    teacher_macs: int | None = None
    student_step_macs: int | None = None


def check_kd_mode(mode: str, task: str = "digits") -> str:
    """The KD mode, or a UserInputError: an unknown one, or one chosen for the lines task (which always distils
    over fresh compositions of its training lines, so the choice would be ignored)."""
    if mode not in KD_MODES:
        raise UserInputError(f"unknown KD mode {mode!r}; choose one of: {', '.join(KD_MODES)}")
    if task == "lines" and mode != "auto":
        raise UserInputError(f"--kd-mode {mode} is for the digits task; the lines task distils over fresh "
                             f"compositions of its training lines: leave kd_mode out for task lines")
    return mode


def forward_macs(model: "nn.Module", input_size: int) -> int | None:
    """MACs of one forward pass on a (1, 1, S, S) canvas counted by torch's FlopCounterMode, or None when the
    model cannot be counted (an ExportedProgram refuses eval(), some TorchScript ops have no formula)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = getattr(model, "training", False)
    try:
        if was_training:
            model.eval()  # a training-mode forward would move the BatchNorm statistics
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(torch.zeros(1, 1, input_size, input_size))
    except Exception:  # noqa: BLE001 - user teachers fail in many ways; the caller falls back to cached
        return None
    finally:
        if was_training:
            model.train()
    macs = int(fc.get_total_flops()) // 2
    return macs or None


def choose_kd_mode(requested: str, teacher: "nn.Module | None", student: "nn.Module", device: "torch.device",
                   student_size: int, teacher_size: int = 28) -> KDModeChoice:
    """Resolve `requested` (auto | online | cached) for this teacher, student and device; see the module doc."""
    check_kd_mode(requested)
    if requested != "auto":
        return KDModeChoice(requested, f"--kd-mode {requested}")
    if teacher is None:
        return KDModeChoice("cached", "no teacher: the fixed transfer set")
    if device.type == "cuda":
        return KDModeChoice("online", "a GPU is present: the teacher's forward pass per step is cheap there")
    t_macs = forward_macs(teacher, teacher_size)
    s_macs = forward_macs(student, student_size)
    if t_macs is None or s_macs is None:
        return KDModeChoice("cached", "the teacher's cost could not be counted: cached is the safe choice on CPU")
    step = TRAIN_STEP_MACS_FACTOR * s_macs
    ratio = t_macs / step
    mode = "online" if ratio <= ONLINE_MAX_COST_RATIO else "cached"
    cmp = "<=" if mode == "online" else ">"
    return KDModeChoice(mode, f"teacher forward {t_macs:,} MACs / student step {step:,} MACs = {ratio:.2f} {cmp} "
                              f"{ONLINE_MAX_COST_RATIO:g} on CPU", t_macs, step)
