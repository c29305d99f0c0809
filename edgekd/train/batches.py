"""Where training batches come from.

* `OnlineSource`: the labelled data, augmented per batch on the training device (teacher training, scratch runs).
* `OnlineKDSource`: online distillation: a fresh augmented view per step, the teacher run on the student's view.
* `TransferSource`: the fixed transfer set for distillation (`build_transfer_set`): V augmented views of the
  training data (affine + erasing + patch replacement + mixup/cutmix) made once, the teacher's logits on them
  computed once in inference mode (half precision on GPU) and cached. Epoch e trains on view e % V. With
  `cache_teacher=False` the teacher runs on every batch instead (the naive loop, for comparison).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.data.augment import AugmentConfig, apply_augment, draw_params
from edgekd_runtime.manifest import Normalization

if TYPE_CHECKING:
    import torch
    from torch import nn


def resize_uint8(x: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 (N, 28, 28) canvases with the runtime's `resize_canvas` (the one the board uses)."""
    if size == x.shape[-1]:
        return x
    from edgekd_runtime.pixels import as_canvases, to_uint8
    from edgekd_runtime.preprocess import resize_canvas

    return to_uint8(resize_canvas(as_canvases(x), size))


#: The input normalisation every model is trained with (MNIST's), applied by the runtime's one rule.
TRAIN_NORMALIZATION = Normalization()


def canvas_tensor(x_u8: "torch.Tensor") -> "torch.Tensor":
    """uint8 canvases (N, H, W) -> float canvases (N, 1, H, W) in [0, 1] (pixel / 255), on their device."""
    return x_u8.float().div_(255.0)[:, None]


def normalize(x: "torch.Tensor") -> "torch.Tensor":
    """Float canvases in [0, 1] -> the model's input (`TRAIN_NORMALIZATION`)."""
    return TRAIN_NORMALIZATION.apply(x)


def model_input(x_u8: "torch.Tensor") -> "torch.Tensor":
    """uint8 canvases (N, H, W) -> the model's normalised float input (N, 1, H, W)."""
    return normalize(canvas_tensor(x_u8))


class OnlineSource:
    """Labelled canvases on the device, augmented per batch with parameters drawn per (seed, epoch)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device: "torch.device", aug: AugmentConfig, seed: int,
                 input_size: int = 28) -> None:
        import torch

        x = resize_uint8(x, input_size)
        pin = device.type == "cuda"
        xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, np.int64))
        if pin:
            xt, yt = xt.pin_memory(), yt.pin_memory()
        self.x, self.y = xt.to(device, non_blocking=pin), yt.to(device, non_blocking=pin)
        self.aug, self.seed, self.device = aug, seed, device
        self.n = len(y)
        self._epoch, self._params = None, None

    def _params_for(self, epoch: int) -> dict[str, "torch.Tensor"]:
        if self._epoch != epoch:
            p = draw_params(self.aug, self.n, self.seed, epoch)
            self._params = {k: v.to(self.device) for k, v in p.items()}
            self._epoch = epoch
        return self._params

    def batch(self, epoch: int, idx: "torch.Tensor") -> tuple["torch.Tensor", dict[str, Any]]:
        x, targets = self.views(epoch, idx)
        return normalize(x), targets

    def views(self, epoch: int, idx: "torch.Tensor") -> tuple["torch.Tensor", dict[str, Any]]:
        """The augmented float canvases (B, 1, S, S) in [0, 1] of samples `idx` in `epoch`, and their labels."""
        idx = idx.to(self.device)
        x = canvas_tensor(self.x[idx])
        p = {k: v[idx] for k, v in self._params_for(epoch).items()}
        partner = p["partner"]
        partner_x = canvas_tensor(self.x[partner]) if self.aug.mixes else None
        x, lam = apply_augment(x, p, self.aug, partner_x)
        targets = {"y_a": self.y[idx]}
        if self.aug.mixes:
            targets.update(y_b=self.y[partner], lam=lam)
        return x, targets


class OnlineKDSource(OnlineSource):
    """Patient and consistent distillation (Beyer et al., CVPR 2022, "Knowledge distillation: A good teacher is
    patient and consistent"): every step draws a fresh augmented (and mixed) view of each sample, and the teacher
    and the student both see that same view; nothing is cached, so the student matches the teacher's function on
    a new view every epoch instead of on a fixed transfer set.

    Views are made at the teacher's 28x28 and, for a student of another resolution, stored as uint8 and resized
    with the runtime's `resize_canvas` (as the transfer set and the board do). Parameters are drawn per (seed,
    epoch), as in `OnlineSource`: a run is deterministic, rank- and resume-invariant.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, device: "torch.device", aug: AugmentConfig, seed: int,
                 teacher: "nn.Module", input_size: int = 28, with_features: bool = False) -> None:
        super().__init__(x, y, device, aug, seed, input_size=28)
        self.teacher, self.student_size, self.with_features = teacher, input_size, with_features

    def batch(self, epoch: int, idx: "torch.Tensor") -> tuple["torch.Tensor", dict[str, Any]]:
        import torch

        x, targets = self.views(epoch, idx)
        x_teacher = normalize(x)
        lg, ft = teacher_forward(self.teacher, x_teacher, self.with_features, self.device)
        targets["teacher_logits"] = lg
        if ft is not None:
            targets["teacher_features"] = ft
        if self.student_size == 28:
            return x_teacher, targets
        u8 = torch.round(x[:, 0] * 255).to(torch.uint8).cpu().numpy()
        small = torch.from_numpy(resize_uint8(u8, self.student_size)).to(self.device)
        return model_input(small), targets


def predict_labels(model: "nn.Module", x: np.ndarray, device: "torch.device", input_size: int = 28,
                   batch_size: int = 1024) -> np.ndarray:
    """Top-1 class of `model` (eval mode) for each uint8 (N, 28, 28) canvas, resized to `input_size`: int64 (N,).
    Per-sample predictions are what paired statistics (edgekd.report.stats) need."""
    import torch

    from edgekd.models.teachers import to_eval

    x = resize_uint8(x, input_size)
    was_training = getattr(model, "training", False)
    model = to_eval(model)  # an ExportedProgram's module refuses .eval(); it is frozen in eval mode
    out = []
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            out.append(model(model_input(torch.from_numpy(x[s:s + batch_size]).to(device))).argmax(1).cpu())
    if was_training:
        model.train()
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


@dataclass
class TransferSet:
    """V fixed views: uint8 canvases at the teacher's 28x28 and at the student's resolution, mixed labels."""

    views: np.ndarray  # uint8 (V, N, 28, 28)
    student_views: np.ndarray  # uint8 (V, N, R, R)
    y_a: np.ndarray  # int64 (N,)
    y_b: np.ndarray  # int64 (V, N)
    lam: np.ndarray  # float32 (V, N)


def build_transfer_set(x: np.ndarray, y: np.ndarray, aug: AugmentConfig, views: int, seed: int,
                       input_size: int, chunk: int = 2048) -> TransferSet:
    """Make `views` augmented copies of (x, y) once (CPU, deterministic from `seed`)."""
    import torch

    n = len(y)
    xt = canvas_tensor(torch.from_numpy(np.ascontiguousarray(x)))
    yt = torch.from_numpy(np.asarray(y, np.int64))
    out = np.empty((views, n, 28, 28), np.uint8)
    y_b = np.empty((views, n), np.int64)
    lam = np.empty((views, n), np.float32)
    for v in range(views):
        p = draw_params(aug, n, seed + 1_000, v)
        for s in range(0, n, chunk):
            sl = slice(s, min(s + chunk, n))
            pb = {k: t[sl] for k, t in p.items()}
            xa, la = apply_augment(xt[sl], pb, aug, xt[pb["partner"]] if aug.mixes else None)
            out[v, sl] = torch.round(xa[:, 0] * 255).to(torch.uint8).numpy()
            lam[v, sl] = la.numpy()
            y_b[v, sl] = yt[pb["partner"]].numpy()
    student = np.stack([resize_uint8(out[v], input_size) for v in range(views)])
    return TransferSet(out, student, np.asarray(y, np.int64), y_b, lam)


def teacher_outputs(teacher: "nn.Module", x_uint8: "torch.Tensor", with_features: bool, device: "torch.device",
                    batch_size: int | None = None) -> tuple["torch.Tensor", "torch.Tensor | None"]:
    """Run the teacher in inference mode (half precision on GPU) on uint8 canvases; logits (and features).

    Default batch: 1024 on GPU; 256 on CPU, where larger batches spill the activations out of cache (the default
    teacher over 7,000 canvases on 2 cores: 2.4 s at 256, 3.3 s at 1024).
    """
    import torch

    batch_size = batch_size or (1024 if device.type == "cuda" else 256)

    logits, feats = [], []
    for s in range(0, len(x_uint8), batch_size):
        xb = model_input(x_uint8[s:s + batch_size].to(device, non_blocking=True))
        lg, ft = teacher_forward(teacher, xb, with_features, device)
        logits.append(lg)
        if ft is not None:
            feats.append(ft)
    return torch.cat(logits), (torch.cat(feats) if feats else None)


def teacher_forward(teacher: "nn.Module", x: "torch.Tensor", with_features: bool, device: "torch.device"
                    ) -> tuple["torch.Tensor", "torch.Tensor | None"]:
    """The teacher on one normalised batch, in inference mode (half precision on GPU): float32 logits (and
    features)."""
    import torch

    half = torch.float16 if device.type == "cuda" else None
    with torch.inference_mode(), torch.autocast(device.type, dtype=half or torch.bfloat16, enabled=half is not None):
        out = teacher(x, with_features=True) if with_features else teacher(x)
        lg, ft = out if with_features else (out, None)
    # clones made outside inference mode are ordinary tensors a loss may save for its backward pass
    return lg.float().clone(), (ft.float().clone() if ft is not None else None)


class TransferSource:
    """Batches from a TransferSet, with the teacher's outputs cached per view (or computed per batch)."""

    def __init__(self, ts: TransferSet, device: "torch.device", teacher: "nn.Module | None",
                 with_features: bool = False, cache_teacher: bool = True) -> None:
        import torch

        self.device, self.teacher, self.with_features = device, teacher, with_features
        pin = device.type == "cuda"
        to_dev = lambda a: (torch.from_numpy(np.ascontiguousarray(a)).pin_memory() if pin  # noqa: E731
                            else torch.from_numpy(np.ascontiguousarray(a))).to(device, non_blocking=pin)
        self.views, self.student_views = to_dev(ts.views), to_dev(ts.student_views)
        self.y_a, self.y_b, self.lam = to_dev(ts.y_a), to_dev(ts.y_b), to_dev(ts.lam)
        self.num_views, self.n = ts.views.shape[0], ts.views.shape[1]
        self.cache_teacher = cache_teacher and teacher is not None
        self.t_logits = self.t_feats = None
        if self.cache_teacher:
            lg, ft = zip(*(teacher_outputs(teacher, self.views[v], with_features, device)
                           for v in range(self.num_views)))
            self.t_logits = torch.stack(lg)
            self.t_feats = torch.stack(ft) if with_features else None

    def batch(self, epoch: int, idx: "torch.Tensor") -> tuple["torch.Tensor", dict[str, Any]]:
        v = epoch % self.num_views
        idx = idx.to(self.device)
        x = model_input(self.student_views[v, idx])
        targets: dict[str, Any] = {"y_a": self.y_a[idx], "y_b": self.y_b[v, idx], "lam": self.lam[v, idx]}
        if self.teacher is not None:
            if self.cache_teacher:
                targets["teacher_logits"] = self.t_logits[v, idx]
                if self.with_features:
                    targets["teacher_features"] = self.t_feats[v, idx]
            else:
                lg, ft = teacher_outputs(self.teacher, self.views[v, idx], self.with_features, self.device)
                targets["teacher_logits"] = lg
                if ft is not None:
                    targets["teacher_features"] = ft
        return x, targets
