"""Knowledge-distillation losses (a registry). Each is an nn.Module called as `loss(batch) -> scalar tensor`.

Specs: a name (`kd`), or a weighted sum (`kd+0.5*fitnet`, `0.7*kd+0.3*mse`). `none` is the scratch baseline
(cross-entropy on the labels only). Hard-label terms use the (possibly mixed) labels: lam * CE(y_a) +
(1 - lam) * CE(y_b).
"""

from __future__ import annotations

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
        if self.temperature <= 0:
            raise UserInputError(f"KD temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserInputError(f"KD alpha must be in [0, 1], got {self.alpha}")


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


def _modules():
    from torch import nn

    class NoKD(nn.Module):
        """Scratch baseline: cross-entropy on the labels, no teacher."""

        needs_teacher = False

        def forward(self, b: LossBatch) -> "torch.Tensor":
            return hard_loss(b)

    class HintonKD(nn.Module):
        """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531):
        alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)."""

        needs_teacher = True

        def __init__(self, cfg: LossConfig) -> None:
            super().__init__()
            self.t, self.alpha = cfg.temperature, cfg.alpha

        def forward(self, b: LossBatch) -> "torch.Tensor":
            digits_only(b, "kd")
            soft = soft_kl(b.student_logits, need_teacher(b, "kd"), self.t)
            return self.alpha * soft + (1 - self.alpha) * hard_ce(b) if self.alpha < 1 else soft

    class LogitMSE(nn.Module):
        """Ba & Caruana 2014, "Do Deep Nets Really Need to be Deep?" (NeurIPS): mean squared error between the
        student's and the teacher's logits (mean over classes and batch)."""

        needs_teacher = True

        def __init__(self, cfg: LossConfig) -> None:
            super().__init__()

        def forward(self, b: LossBatch) -> "torch.Tensor":
            digits_only(b, "mse")
            return ((b.student_logits.float() - need_teacher(b, "mse")) ** 2).mean()

    class FitNetHint(nn.Module):
        """Romero et al. 2015, "FitNets: Hints for Thin Deep Nets" (ICLR): 0.5 * ||adapter(s_feat) - t_feat||^2
        (mean over the batch and units), with a learned 1x1 adapter from the student's pooled features to the
        teacher's. The adapter is created on the first call (its sizes come from the features) and trained with
        the student."""

        needs_teacher = True
        needs_features = True

        def __init__(self, cfg: LossConfig) -> None:
            super().__init__()
            self.weight = cfg.fitnet_weight
            self.adapter: nn.Module | None = None

        def build(self, student_dim: int, teacher_dim: int) -> None:
            self.adapter = nn.Conv2d(student_dim, teacher_dim, kernel_size=1, bias=False)

        def forward(self, b: LossBatch) -> "torch.Tensor":
            digits_only(b, "fitnet")
            if b.student_features is None or b.teacher_features is None:
                raise UserInputError("KD loss 'fitnet' needs features from a built-in teacher and student "
                                     "(a TorchScript / ExportedProgram teacher has no `features`); use kd, mse or dkd")
            s, t = b.student_features.float().flatten(1), b.teacher_features.float().flatten(1)
            if self.adapter is None:
                self.build(s.shape[1], t.shape[1])
                self.adapter.to(s.device)
            mapped = self.adapter(s[:, :, None, None]).flatten(1)
            return self.weight * 0.5 * ((mapped - t) ** 2).mean()

    class DecoupledKD(nn.Module):
        """Zhao et al. 2022, "Decoupled Knowledge Distillation" (CVPR): CE + alpha * TCKD + beta * NCKD, where TCKD
        is the KL between the binary (target / non-target) distributions and NCKD the KL between the distributions
        over the non-target classes, both at temperature T and scaled by T^2. The target is the dominant label."""

        needs_teacher = True

        def __init__(self, cfg: LossConfig) -> None:
            super().__init__()
            self.t, self.a, self.b = cfg.temperature, cfg.dkd_alpha, cfg.dkd_beta

        def forward(self, b: LossBatch) -> "torch.Tensor":
            import torch
            import torch.nn.functional as F

            digits_only(b, "dkd")
            s, t = b.student_logits.float(), need_teacher(b, "dkd")
            y = b.y_a if b.lam is None or b.y_b is None else torch.where(b.lam >= 0.5, b.y_a, b.y_b)
            gt = F.one_hot(y, s.shape[1]).bool()
            p_s, p_t = F.softmax(s / self.t, 1), F.softmax(t / self.t, 1)
            bin_s = torch.stack([(p_s * gt).sum(1), (p_s * ~gt).sum(1)], 1).clamp_min(1e-12)
            bin_t = torch.stack([(p_t * gt).sum(1), (p_t * ~gt).sum(1)], 1).clamp_min(1e-12)
            tckd = F.kl_div(bin_s.log(), bin_t, reduction="batchmean") * self.t**2
            log_q_s = F.log_softmax(s / self.t - 1000.0 * gt, 1)
            q_t = F.softmax(t / self.t - 1000.0 * gt, 1)
            nckd = F.kl_div(log_q_s, q_t, reduction="batchmean") * self.t**2
            return hard_ce(b) + self.a * tckd + self.b * nckd

    class WeightedSum(nn.Module):
        """A weighted sum of KD losses, e.g. `kd+0.5*fitnet`."""

        def __init__(self, terms: list[tuple[float, nn.Module]]) -> None:
            super().__init__()
            self.weights = [w for w, _ in terms]
            self.terms = nn.ModuleList([m for _, m in terms])
            self.needs_teacher = any(getattr(m, "needs_teacher", False) for m in self.terms)
            self.needs_features = any(getattr(m, "needs_features", False) for m in self.terms)

        def forward(self, b: LossBatch) -> "torch.Tensor":
            return sum(w * m(b) for w, m in zip(self.weights, self.terms))

    return NoKD, HintonKD, LogitMSE, FitNetHint, DecoupledKD, WeightedSum


KD_LOSSES.register(lambda cfg: _modules()[0](), key="none")
KD_LOSSES.register(lambda cfg: _modules()[1](cfg), key="kd")
KD_LOSSES.register(lambda cfg: _modules()[2](cfg), key="mse")
KD_LOSSES.register(lambda cfg: _modules()[3](cfg), key="fitnet")
KD_LOSSES.register(lambda cfg: _modules()[4](cfg), key="dkd")

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
    from .ctc_losses import LINE_LOSSES

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
    return _modules()[5](terms)


from . import ctc_losses  # noqa: E402,F401  registers the line (CTC) losses: frame_kd, blank_kd, seq_kd
