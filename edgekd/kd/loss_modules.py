"""The digit classifiers' KD losses as nn.Module classes, registered by name in KD_LOSSES (`losses.py` declares
the names, so listing them needs no torch; this module is imported when one is built). Every class takes the
LossConfig, so `KD_LOSSES.get(name)(cfg)` builds any of them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekd_runtime.errors import UserInputError

from .losses import KD_LOSSES, LossBatch, LossConfig, digits_only, hard_ce, hard_loss, need_teacher, soft_kl


@KD_LOSSES.register(key="none")
class NoKD(nn.Module):
    """Scratch baseline: cross-entropy on the labels, no teacher."""

    needs_teacher = False

    def __init__(self, cfg: LossConfig | None = None) -> None:
        super().__init__()

    def forward(self, b: LossBatch) -> torch.Tensor:
        return hard_loss(b)


@KD_LOSSES.register(key="kd")
class HintonKD(nn.Module):
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531):
    alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)."""

    needs_teacher = True

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.t, self.alpha = cfg.temperature, cfg.alpha

    def forward(self, b: LossBatch) -> torch.Tensor:
        digits_only(b, "kd")
        soft = soft_kl(b.student_logits, need_teacher(b, "kd"), self.t)
        return self.alpha * soft + (1 - self.alpha) * hard_ce(b) if self.alpha < 1 else soft


@KD_LOSSES.register(key="mse")
class LogitMSE(nn.Module):
    """Ba & Caruana 2014, "Do Deep Nets Really Need to be Deep?" (NeurIPS): mean squared error between the
    student's and the teacher's logits (mean over classes and batch)."""

    needs_teacher = True

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()

    def forward(self, b: LossBatch) -> torch.Tensor:
        digits_only(b, "mse")
        return ((b.student_logits.float() - need_teacher(b, "mse")) ** 2).mean()


@KD_LOSSES.register(key="fitnet")
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

    def forward(self, b: LossBatch) -> torch.Tensor:
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


@KD_LOSSES.register(key="dkd")
class DecoupledKD(nn.Module):
    """Zhao et al. 2022, "Decoupled Knowledge Distillation" (CVPR): CE + alpha * TCKD + beta * NCKD, where TCKD
    is the KL between the binary (target / non-target) distributions and NCKD the KL between the distributions
    over the non-target classes, both at temperature T and scaled by T^2. The target is the dominant label."""

    needs_teacher = True

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.t, self.a, self.b = cfg.temperature, cfg.dkd_alpha, cfg.dkd_beta

    def forward(self, b: LossBatch) -> torch.Tensor:
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

    def forward(self, b: LossBatch) -> torch.Tensor:
        return sum(w * m(b) for w, m in zip(self.weights, self.terms))
