"""The digit student families as nn.Modules, registered by name in STUDENTS (`students.py` declares the names and
parses ids without torch; this module is imported when a student is built)."""

from __future__ import annotations

import torch
from torch import nn

from .students import STUDENTS, StudentIdError, StudentSpec


class Student(nn.Module):
    """A body that yields a feature vector and a linear head; `features` serves FitNet-style hints."""

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """Logits (N, C); with `with_features`, also the pooled features (N, F) (one call works under DDP)."""
        feats = self.body(x)
        logits = self.head(feats)
        return (logits, feats) if with_features is True else logits  # `is`: the ONNX tracer passes a tensor


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1, groups: int = 1, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


@STUDENTS.register(key="linear")
def _linear(spec: StudentSpec, num_classes: int) -> Student:
    return Student(nn.Flatten(), spec.input_size**2, num_classes)


@STUDENTS.register(key="mlp")
def _mlp(spec: StudentSpec, num_classes: int) -> Student:
    layers: list[nn.Module] = [nn.Flatten()]
    dim = spec.input_size**2
    for _ in range(spec.depth):
        layers += [nn.Linear(dim, spec.width), nn.ReLU(inplace=True)]
        dim = spec.width
    return Student(nn.Sequential(*layers), dim, num_classes)


@STUDENTS.register(key="cnn")
def _cnn(spec: StudentSpec, num_classes: int) -> Student:
    layers: list[nn.Module] = []
    c_in, c_out, side = 1, spec.width, spec.input_size
    for _ in range(spec.depth):
        layers += conv_bn_relu(c_in, c_out) + [nn.MaxPool2d(2)]
        c_in, c_out, side = c_out, c_out * 2, side // 2
    if side < 1:
        raise StudentIdError(f"student id {spec.id!r}: {spec.depth} pooling stages do not fit a "
                             f"{spec.input_size}x{spec.input_size} input; use fewer stages")
    layers.append(nn.Flatten())
    return Student(nn.Sequential(*layers), c_in * side * side, num_classes)


@STUDENTS.register(key="dscnn")
def _dscnn(spec: StudentSpec, num_classes: int) -> Student:
    layers: list[nn.Module] = conv_bn_relu(1, spec.width, stride=1)
    c = spec.width
    for i in range(spec.depth):
        stride = 2 if i < 3 else 1  # three downsamplings at most: 28 -> 14 -> 7 -> 4
        c_out = c * 2 if i < 3 else c
        layers += conv_bn_relu(c, c, stride=stride, groups=c)  # depthwise 3x3
        layers += conv_bn_relu(c, c_out, k=1)  # pointwise 1x1
        c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Student(nn.Sequential(*layers), c, num_classes)
