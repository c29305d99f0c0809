"""An ensemble of teachers: the mean of their class posteriors, returned as log-probabilities, which serve as
logits (their softmax is the mean posterior). One module for digit teachers, (N, C), and line teachers, (N, T, C)
per-frame CTC posteriors (members must then share the frame rate: every line model here does).

Why the built-in digit teacher is an ensemble (`PipelineConfig.teacher_members`): a single `cnn` trained on the
embedded data's 3,500 training digits is a high-variance teacher (97.3-99.3 % on held-out folds depending on the
seed); three of them average to 99.08 % on 5,000 held-out digits against 98.56 % for one (99.24 % against 99.11 %
with every member's final weights, the default since), and distilling the default student from them gained more
than from one (benchmarks/kd_quality.py, see edgekd/train/kd_mode.py).
"""

from __future__ import annotations

import torch
from torch import nn


class ProbabilityEnsemble(nn.Module):
    """The mean of the members' softmax over the last axis, as log-probabilities."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor:
        outs = [m(x) for m in self.members]
        probs = torch.stack([(o[0] if isinstance(o, (tuple, list)) else o).float().softmax(-1) for o in outs])
        return probs.mean(0).clamp_min(1e-12).log()
