"""Knowledge-distillation losses (a registry). Each is an nn.Module called as `loss(batch) -> scalar tensor`.

This module needs no torch: it names the losses (KD_LOSSES), parses specs and holds the batch and config types;
the nn.Module classes live in `loss_modules` (digits) and `ctc_losses` (lines), imported on first use.

Specs: a name (`kd`), or a weighted sum (`kd+0.5*fitnet`, `0.7*kd+0.3*mse`). `none` is the scratch baseline
(cross-entropy on the labels only). Hard-label terms use the (possibly mixed) labels: lam * CE(y_a) +
(1 - lam) * CE(y_b).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from edgekd_runtime.errors import UserInputError
from edgekd_runtime.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

KD_LOSSES: Registry[Callable[..., "nn.Module"]] = Registry("KD loss")


@dataclass(frozen=True)
class LossConfig:
    """Hyper-parameters shared by the KD losses."""

    spec: str = "kd"
    temperature: float = 4.0
    alpha: float = 0.9  # weight of the soft (teacher) term in `kd`
    dkd_alpha: float = 1.0  # TCKD weight
    dkd_beta: float = 8.0  # NCKD weight
    fitnet_weight: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise UserInputError(f"KD temperature must be > 0 (a finite number), got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserInputError(f"KD alpha must be in [0, 1], got {self.alpha}")
        for name in ("dkd_alpha", "dkd_beta", "fitnet_weight"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise UserInputError(f"KD {name} must be a finite number >= 0, got {getattr(self, name)}")


@dataclass
class LossBatch:
    """What a loss may look at. Teacher fields are None for the scratch baseline."""

    student_logits: "torch.Tensor"
    y_a: "torch.Tensor"
    y_b: "torch.Tensor | None" = None
    lam: "torch.Tensor | None" = None
    teacher_logits: "torch.Tensor | None" = None
    student_features: "torch.Tensor | None" = None
    teacher_features: "torch.Tensor | None" = None
    # lines (CTC): logits are (N, T, C), y_a the padded targets (N, L) and target_lengths (N,); sequence-level KD
    # adds the teacher's decoded strings the same way.
    target_lengths: "torch.Tensor | None" = None
    teacher_targets: "torch.Tensor | None" = None
    teacher_target_lengths: "torch.Tensor | None" = None

    @property
    def is_lines(self) -> bool:
        return self.target_lengths is not None


def hard_loss(b: LossBatch) -> "torch.Tensor":
    """The task's loss on the labels: CTC for lines, cross-entropy for digits."""
    if b.is_lines:
        from .ctc_losses import ctc

        return ctc(b.student_logits, b.y_a, b.target_lengths)
    return hard_ce(b)


def digits_only(b: LossBatch, name: str) -> None:
    """Refuse a classification-only loss on a lines batch, naming the line losses."""
    if b.is_lines:
        raise UserInputError(f"KD loss {name!r} is for digit classifiers; for text lines use frame_kd, blank_kd, "
                             f"seq_kd or none (sums like 'frame_kd+seq_kd' work too)")


def hard_ce(b: LossBatch) -> "torch.Tensor":
    """Cross-entropy on the (possibly mixed) labels, mean over the batch."""
    import torch.nn.functional as F

    s = b.student_logits.float()
    ce = F.cross_entropy(s, b.y_a, reduction="none")
    if b.y_b is not None and b.lam is not None:
        ce = b.lam * ce + (1 - b.lam) * F.cross_entropy(s, b.y_b, reduction="none")
    return ce.mean()


def need_teacher(b: LossBatch, name: str) -> "torch.Tensor":
    if b.teacher_logits is None:
        raise UserInputError(f"KD loss {name!r} needs teacher outputs; give --teacher or use --loss none")
    return b.teacher_logits.float()


def soft_kl(student_logits: "torch.Tensor", teacher_logits: "torch.Tensor", temperature: float) -> "torch.Tensor":
    """T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes and averaged over the batch."""
    import torch.nn.functional as F

    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * t * t


LINE_LOSSES = ("frame_kd", "blank_kd", "seq_kd")  # the KD losses for CTC logits (the others take class logits)
# The loss classes need torch: they live in these modules, imported when one of their names is first built.
KD_LOSSES.declare("edgekd.kd.loss_modules", "none", "kd", "mse", "fitnet", "dkd")
KD_LOSSES.declare("edgekd.kd.ctc_losses", *LINE_LOSSES)

_TERM = re.compile(r"^\s*(?:(?P<w>\d*\.?\d+(?:e-?\d+)?)\s*\*\s*)?(?P<name>[a-z_]+)\s*$")


def parse_loss_spec(spec: str) -> list[tuple[float, str]]:
    """`kd+0.5*fitnet` -> [(1.0, "kd"), (0.5, "fitnet")]; a bad spec or an unknown name is a UserInputError."""
    terms = []
    for part in spec.split("+"):
        m = _TERM.match(part)
        if not m:
            raise UserInputError(f"bad KD loss spec {spec!r}: write a name or a sum like 'kd+0.5*fitnet'; "
                                 f"known losses: {', '.join(KD_LOSSES.names())}")
        KD_LOSSES.get(m.group("name"))  # an unknown name lists the known ones
        terms.append((float(m.group("w") or 1.0), m.group("name")))
    return terms


def check_loss(cfg: LossConfig, task: str) -> None:
    """Refuse, before any training, a loss spec `build_loss` would refuse, or a loss of the other task (digit
    losses need class logits, line losses CTC frames; `none` is for both)."""
    for _, name in parse_loss_spec(cfg.spec):
        if name != "none" and (name in LINE_LOSSES) != (task == "lines"):
            fits = sorted(n for n in KD_LOSSES.names() if n == "none" or (n in LINE_LOSSES) == (task == "lines"))
            other = "text lines (--task lines)" if name in LINE_LOSSES else "digits (no --task lines)"
            raise UserInputError(f"KD loss {name!r} is for {other}, not the {task} task; for {task} use one of: "
                                 f"{', '.join(fits)}")


def build_loss(cfg: LossConfig | str = "kd") -> "nn.Module":
    """Build the loss for `cfg.spec`: one registered name or a `+`-separated weighted sum of them."""
    if isinstance(cfg, str):
        cfg = LossConfig(spec=cfg)
    terms = [(w, KD_LOSSES.get(name)(cfg)) for w, name in parse_loss_spec(cfg.spec)]
    if len(terms) == 1 and terms[0][0] == 1.0:
        return terms[0][1]
    from .loss_modules import WeightedSum

    return WeightedSum(terms)
