"""The built-in digit teachers as nn.Modules, registered by name in TEACHERS (`teachers.py` declares the names and
loads a user's teacher without torch at import; this module is imported when one is built)."""

from __future__ import annotations

import torch
from torch import nn

from .teachers import TEACHERS


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class ConvTeacher(nn.Module):
    """VGG-style stages of 3x3 conv + BN + ReLU with 2x2 max-pooling between them, global average pooling,
    a hidden layer (its output is the FitNet hint) and the classifier."""

    def __init__(self, stages: tuple[tuple[int, ...], ...], hidden: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, stage in enumerate(stages):
            if i:
                layers.append(nn.MaxPool2d(2))
            for c_out in stage:
                layers += _block(c_in, c_out)
                c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, hidden), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(hidden, num_classes)
        self.feature_dim = hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor, with_features: bool = False):
        feats = self.body(x)
        logits = self.head(self.drop(feats))
        return (logits, feats) if with_features is True else logits  # `is`: the ONNX tracer passes a tensor


@TEACHERS.register(key="cnn")
def cnn(num_classes: int) -> ConvTeacher:
    """The default teacher (about 160k parameters): conv32x2-pool-conv64x2-pool-conv128-GAP-fc128. Trained 40
    epochs with affine augmentation on the 3,500 embedded training digits it reaches about 98.6 % test accuracy."""
    return ConvTeacher(((32, 32), (64, 64), (128,)), 128, num_classes)


@TEACHERS.register(key="cnn-small")
def cnn_small(num_classes: int) -> ConvTeacher:
    """A small teacher for tests and quick runs."""
    return ConvTeacher(((8,), (16,), (32,)), 32, num_classes)
