"""KD losses for CTC line recognizers (registered in KD_LOSSES beside the classification losses).

Logits are (N, T, C) with the CTC blank at class 0; teacher and student share the frame rate (every line model
emits one frame per 4 pixel columns), so frames can be compared one to one.

* `frame_kd`: frame-level KL at temperature T (Hinton KD applied to every frame), plus (1 - alpha) CTC.
* `blank_kd`: blank-aware KD. Plain frame KL is dominated by blank frames and forces the student to put its
  spikes exactly where the teacher does (PaddleOCR's PP-OCRv4 distillation and Takashima et al. 2018 make this
  point). Here the frame term only counts frames where the teacher emits a character (weighted by the teacher's
  non-blank probability), and an alignment-free "bag of characters" term matches the expected character counts
  over the line (sum over time of the non-blank probabilities, as a distribution over the charset).
* `seq_kd`: sequence-level KD (Kim & Rush 2016, "Sequence-Level Knowledge Distillation", EMNLP; for CTC,
  Takashima et al. 2019, ICASSP): the teacher's greedy-decoded strings are the CTC targets, so the student
  learns the teacher's mode on every transfer line, including lines whose labels are unknown or were changed by
  augmentation.

`alpha` weighs the teacher term against CTC on the labels (`alpha * teacher + (1 - alpha) * CTC(labels)`), as in
`kd`.

The classes are registered by name in KD_LOSSES; `losses.py` declares the names (no torch needed to list them)
and this module is imported when one is built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekd_runtime.errors import UserInputError

from .losses import KD_LOSSES, LINE_LOSSES, LossBatch, LossConfig, need_teacher

__all__ = ["LINE_LOSSES", "BlankAwareKD", "FrameKD", "SequenceKD", "char_bag_kl", "ctc", "frame_kl"]


def ctc(logits: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """CTC loss of (N, T, C) logits against padded targets (N, L) with blank 0, every frame used (lines are
    fixed-width: the padding is part of the line and reads as blank). Mean over the batch of the per-line loss
    divided by its target length (torch's `reduction="mean"`); impossible alignments count as zero."""
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, N, C)
    n, t = logits.shape[0], logits.shape[1]
    input_lengths = torch.full((n,), t, dtype=torch.long, device=logits.device)
    return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean",
                      zero_infinity=True)


def frame_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)) per frame, summed over classes, averaged over frames (weighted by
    `weights` (N, T) when given: sum(w * kl) / sum(w))."""
    t = temperature
    log_p_s = F.log_softmax(student.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher.float() / t, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1) * t * t  # (N, T)
    if weights is None:
        return kl.mean()
    return (weights * kl).sum() / weights.sum().clamp_min(1e-6)


def char_bag_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL between the teacher's and the student's "bag of characters" per line: the non-blank probabilities
    (at temperature T) summed over time and normalised over the charset. Mean over lines, times T^2."""
    t = temperature
    bag_s = F.softmax(student.float() / t, dim=-1)[..., 1:].sum(1)  # (N, C - 1)
    bag_t = F.softmax(teacher.float() / t, dim=-1)[..., 1:].sum(1)
    p_s = bag_s / bag_s.sum(-1, keepdim=True).clamp_min(1e-6)
    p_t = bag_t / bag_t.sum(-1, keepdim=True).clamp_min(1e-6)
    return (p_t * (p_t.clamp_min(1e-8).log() - p_s.clamp_min(1e-8).log())).sum(-1).mean() * t * t


def _lines_only(b: LossBatch, name: str) -> None:
    if not b.is_lines:
        raise UserInputError(f"KD loss {name!r} is for CTC line recognizers (--task lines); for digits use kd, "
                             f"mse, fitnet, dkd or none")


def _mix(alpha: float, soft: torch.Tensor, b: LossBatch) -> torch.Tensor:
    return alpha * soft + (1 - alpha) * ctc(b.student_logits, b.y_a, b.target_lengths) if alpha < 1 else soft


@KD_LOSSES.register(key="frame_kd")
class FrameKD(nn.Module):
    """Frame-level KD for CTC: Hinton KD on every frame (Hinton et al. 2015, arXiv:1503.02531; for CTC
    Senior et al. 2015 / Takashima et al. 2018), alpha * T^2 * KL + (1 - alpha) * CTC."""

    needs_teacher = True

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.t, self.alpha = cfg.temperature, cfg.alpha

    def forward(self, b: LossBatch) -> torch.Tensor:
        _lines_only(b, "frame_kd")
        return _mix(self.alpha, frame_kl(b.student_logits, need_teacher(b, "frame_kd"), self.t), b)


@KD_LOSSES.register(key="blank_kd")
class BlankAwareKD(nn.Module):
    """Blank-aware KD for CTC (see the module doc): frame KL on the teacher's character frames + the
    alignment-free bag-of-characters KL. After Takashima et al. 2018 ("An Investigation of a Knowledge
    Distillation Method for CTC Acoustic Models", ICASSP), who find frame-level KD misled by the blank frames,
    and PaddleOCR's PP-OCRv4 recognizer distillation (2023)."""

    needs_teacher = True

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.t, self.alpha = cfg.temperature, cfg.alpha

    def forward(self, b: LossBatch) -> torch.Tensor:
        _lines_only(b, "blank_kd")
        t_logits = need_teacher(b, "blank_kd")
        with torch.no_grad():
            non_blank = 1.0 - torch.softmax(t_logits.float(), -1)[..., 0]  # (N, T)
        soft = frame_kl(b.student_logits, t_logits, self.t, non_blank)
        soft = soft + char_bag_kl(b.student_logits, t_logits, self.t)
        return _mix(self.alpha, soft, b)


@KD_LOSSES.register(key="seq_kd")
class SequenceKD(nn.Module):
    """Sequence-level KD (Kim & Rush 2016, EMNLP; Takashima et al. 2019, ICASSP): CTC against the teacher's
    greedy-decoded strings, alpha * CTC(teacher strings) + (1 - alpha) * CTC(labels)."""

    needs_teacher = True
    needs_teacher_strings = True

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.alpha = cfg.alpha

    def forward(self, b: LossBatch) -> torch.Tensor:
        _lines_only(b, "seq_kd")
        if b.teacher_targets is None or b.teacher_target_lengths is None:
            raise UserInputError("KD loss 'seq_kd' needs the teacher's decoded strings; give --teacher")
        soft = ctc(b.student_logits, b.teacher_targets, b.teacher_target_lengths)
        return _mix(self.alpha, soft, b)
