"""Batched augmentation on the training device, drawn per (seed, epoch, sample) so it is rank- and resume-invariant.

Label-preserving: affine (rotation, scale, shear, translation) and an optional smooth elastic warp, all in one
`grid_sample`. Transfer-set only ("distillation data", the teacher labels the result): random erasing/masking,
random patch replacement from another image, mixup and cutmix.

Random parameters for the whole data set are drawn on the CPU from a generator seeded by (seed, epoch) and then
indexed by sample: the same sample gets the same augmentation in a 1-process run, a DDP run and a resumed run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from edgekd_runtime.errors import UserInputError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; zero disables a transform. Probabilities are per sample."""

    rotation_deg: float = 12.0
    scale_delta: float = 0.12  # scale drawn from [1 - d, 1 + d]
    shear_deg: float = 10.0
    translate_frac: float = 0.1  # of the image side
    elastic_px: float = 0.0  # amplitude of a smooth random displacement, in pixels
    erase_p: float = 0.0
    patch_p: float = 0.0
    mixup_p: float = 0.0
    cutmix_p: float = 0.0
    mix_alpha: float = 1.0  # Beta(alpha, alpha) for mixup / cutmix

    def __post_init__(self) -> None:
        for k in ("erase_p", "patch_p", "mixup_p", "cutmix_p"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise UserInputError(f"augment {k} must be a probability in [0, 1], got {getattr(self, k)}")
        if self.mixup_p + self.cutmix_p > 1.0:
            raise UserInputError("augment mixup_p + cutmix_p must be <= 1")
        if min(self.rotation_deg, self.scale_delta, self.shear_deg, self.translate_frac, self.elastic_px) < 0:
            raise UserInputError("augment strengths must be >= 0")

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(0.0, 0.0, 0.0, 0.0)

    @classmethod
    def transfer(cls) -> "AugmentConfig":
        """The default transfer set for distillation: affine + erasing + patch replacement + mixup/cutmix."""
        return cls(erase_p=0.25, patch_p=0.25, mixup_p=0.2, cutmix_p=0.2)

    @property
    def mixes(self) -> bool:
        return self.patch_p > 0 or self.mixup_p > 0 or self.cutmix_p > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def draw_params(cfg: AugmentConfig, n: int, seed: int, epoch: int) -> dict[str, "torch.Tensor"]:
    """Draw augmentation parameters for `n` samples from a CPU generator seeded by (seed, epoch)."""
    import torch

    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + 17) % (2**63))
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    p: dict[str, torch.Tensor] = {
        "angle": (u(n) * 2 - 1) * math.radians(cfg.rotation_deg),
        "scale": 1 + (u(n) * 2 - 1) * cfg.scale_delta,
        "shear": (u(n) * 2 - 1) * math.radians(cfg.shear_deg),
        "shift": (u(n, 2) * 2 - 1) * cfg.translate_frac * 2,  # affine_grid coordinates span 2
        "elastic": (torch.randn(n, 2, 4, 4, generator=g) * cfg.elastic_px / 14.0),
        "erase": (u(n) < cfg.erase_p), "erase_box": u(n, 4),
        "patch": (u(n) < cfg.patch_p), "patch_box": u(n, 4),
        "partner": torch.randint(0, max(n, 1), (n,), generator=g),
    }
    r = u(n)
    p["mix_kind"] = (r < cfg.mixup_p).long() + 2 * ((r >= cfg.mixup_p) & (r < cfg.mixup_p + cfg.cutmix_p)).long()
    p["lam"] = _beta_from_uniform(u(n), u(n), max(cfg.mix_alpha, 1e-3))
    p["cut_box"] = u(n, 2)
    return p


def _beta_from_uniform(u1: "torch.Tensor", u2: "torch.Tensor", alpha: float) -> "torch.Tensor":
    """Beta(alpha, alpha) draw from two uniforms via the Kumaraswamy approximation (exact for alpha = 1)."""
    import torch

    # Kumaraswamy(a, b) with a = b = alpha: close to Beta(alpha, alpha) in shape, and fully generator-driven.
    x = (1 - (1 - u1.clamp(1e-6, 1 - 1e-6)) ** (1 / alpha)) ** (1 / alpha)
    return torch.where(u2 < 0.5, x, 1 - x)


def _box_mask(box: "torch.Tensor", size: int, min_frac: float, max_frac: float) -> "torch.Tensor":
    """(B, 4) uniforms -> (B, 1, S, S) bool rectangle masks with sides in [min_frac, max_frac] of `size`."""
    import torch

    w = (min_frac + box[:, 0] * (max_frac - min_frac)) * size
    h = (min_frac + box[:, 1] * (max_frac - min_frac)) * size
    x0 = box[:, 2] * (size - w)
    y0 = box[:, 3] * (size - h)
    r = torch.arange(size, device=box.device, dtype=box.dtype)
    in_x = (r[None, :] >= x0[:, None]) & (r[None, :] < (x0 + w)[:, None])
    in_y = (r[None, :] >= y0[:, None]) & (r[None, :] < (y0 + h)[:, None])
    return (in_y[:, :, None] & in_x[:, None, :])[:, None]


def apply_augment(x: "torch.Tensor", params: dict[str, "torch.Tensor"], cfg: AugmentConfig,
                  partner_x: "torch.Tensor | None" = None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Augment a batch of canvases.

    Args:
        x: (B, 1, S, S) float canvases in [0, 1] on the training device.
        params: `draw_params(...)` indexed by the batch's sample indices (already on x's device).
        cfg: the augmentation config the params were drawn for.
        partner_x: (B, 1, S, S) canvases of each sample's partner (for patch/mixup/cutmix), or None.

    Returns:
        The augmented batch and lam (B,): the weight of the sample's own label (1 unless mixed).
    """
    import torch
    import torch.nn.functional as F

    b, _, s, _ = x.shape
    lam = torch.ones(b, device=x.device, dtype=x.dtype)
    if cfg.mixes and partner_x is not None:
        patch = params["patch"][:, None, None, None] & _box_mask(params["patch_box"], s, 0.25, 0.5)
        x = torch.where(patch, partner_x, x)
        kind = params["mix_kind"]
        lam_mix = params["lam"].to(x.dtype)
        mixup = (kind == 1)[:, None, None, None]
        x = torch.where(mixup, lam_mix[:, None, None, None] * x + (1 - lam_mix[:, None, None, None]) * partner_x, x)
        side = torch.sqrt(1 - lam_mix).clamp(0, 1)
        cut_box = torch.stack([side, side, params["cut_box"][:, 0], params["cut_box"][:, 1]], 1)
        cut = (kind == 2)[:, None, None, None] & _box_mask(cut_box, s, 0.0, 1.0)
        x = torch.where(cut, partner_x, x)
        cut_frac = cut.flatten(1).float().mean(1).to(x.dtype)
        lam = torch.where(kind == 1, lam_mix, torch.where(kind == 2, 1 - cut_frac, lam))
    if cfg.rotation_deg or cfg.scale_delta or cfg.shear_deg or cfg.translate_frac or cfg.elastic_px:
        a, sc, sh = params["angle"], params["scale"], params["shear"]
        cos, sin = torch.cos(a), torch.sin(a)
        theta = torch.stack([
            torch.stack([cos / sc, (-sin + cos * torch.tan(sh)) / sc, params["shift"][:, 0]], 1),
            torch.stack([sin / sc, (cos + sin * torch.tan(sh)) / sc, params["shift"][:, 1]], 1),
        ], 1).to(x.dtype)
        grid = F.affine_grid(theta, [b, 1, s, s], align_corners=False)
        if cfg.elastic_px:
            flow = F.interpolate(params["elastic"].to(x.dtype), size=(s, s), mode="bicubic", align_corners=False)
            grid = grid + flow.permute(0, 2, 3, 1)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.erase_p:
        erase = params["erase"][:, None, None, None] & _box_mask(params["erase_box"], s, 0.2, 0.45)
        x = x.masked_fill(erase, 0.0)
    return x.clamp(0, 1), lam
