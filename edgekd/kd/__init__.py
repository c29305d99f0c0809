"""Knowledge-distillation losses: `build_loss("kd+0.5*fitnet")`, `LossBatch`, `LossConfig`, the KD_LOSSES registry."""

from .losses import KD_LOSSES, LossBatch, LossConfig, build_loss, check_loss, hard_ce, soft_kl

__all__ = ["KD_LOSSES", "LossBatch", "LossConfig", "build_loss", "check_loss", "hard_ce", "soft_kl"]
