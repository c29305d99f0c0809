"""The line models (CTC) as nn.Modules, registered by name: the line student families in STUDENTS and the line
teachers in TEACHERS (`students.py` / `teachers.py` declare the names without torch; this module is imported when
one is built). See `line_models` for the id grammar and the frame rate."""

from __future__ import annotations

import torch
from torch import nn

from .ensemble import ProbabilityEnsemble
from .line_models import check_stages_fit, collapsed_height, stage_pools
from .students import STUDENTS, StudentSpec
from .teachers import TEACHERS


class LineNet(nn.Module):
    """A body (N, 1, H, W) -> (N, c, h, W/4), the height collapsed by a (h, 3) conv, a 1x1 classifier."""

    def __init__(self, body: nn.Module, channels: int, h: int, num_classes: int, hidden: int,
                 context: int = 0) -> None:
        super().__init__()
        self.body = body
        layers = [nn.Conv2d(channels, hidden, (h, 3), padding=(0, 1), bias=False), nn.BatchNorm2d(hidden),
                  nn.ReLU(inplace=True)]
        for _ in range(context):  # wider context along the line: (1, 5) convolutions over the frames
            layers += [nn.Conv2d(hidden, hidden, (1, 5), padding=(0, 2), bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU(inplace=True)]
        self.collapse = nn.Sequential(*layers)
        self.head = nn.Conv2d(hidden, num_classes, 1)
        self.feature_dim = hidden

    def forward(self, x: torch.Tensor, with_features: bool = False):
        feats = self.collapse(self.body(x))  # (N, hidden, 1, T)
        # NCHW -> NHWC then merge H (= 1) into T: the transpose onnx2tf folds into its own NHWC layout
        # (a Squeeze of the height axis does not survive that layout change)
        logits = self.head(feats).permute(0, 2, 3, 1).flatten(1, 2)  # (N, T, C)
        return (logits, feats.permute(0, 2, 3, 1).flatten(1, 2)) if with_features is True else logits


class CRNN(nn.Module):
    """CNN + bidirectional LSTM (Shi et al. 2016, "An End-to-End Trainable Neural Network for Image-based
    Sequence Recognition", TPAMI): conv stages, the height folded into the features, BiLSTM, classifier."""

    def __init__(self, widths: tuple[int, ...], hidden: int, height: int, num_classes: int) -> None:
        super().__init__()
        layers, c_in, h = [], 1, height
        for c_out, pool in zip(widths, stage_pools(len(widths))):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(pool)]
            c_in, h = c_out, h // pool[0]
        self.body = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Linear(c_in * h, hidden), nn.ReLU(inplace=True))
        self.rnn = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(2 * hidden, num_classes)
        self.feature_dim = 2 * hidden

    def forward(self, x: torch.Tensor, with_features: bool = False):
        f = self.body(x)  # (N, c, h, T)
        f = self.proj(f.flatten(1, 2).transpose(1, 2))  # (N, T, hidden)
        feats, _ = self.rnn(f)
        logits = self.head(self.drop(feats))
        return (logits, feats) if with_features is True else logits


class LineEnsemble(ProbabilityEnsemble):
    """An ensemble of line models: the mean of their per-frame CTC posteriors (`ensemble.ProbabilityEnsemble`)."""


def _conv(c_in: int, c_out: int, k: int = 3, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


def _check_height(spec: StudentSpec) -> int:
    check_stages_fit(spec.id)
    return collapsed_height(spec.input_size, spec.depth)


@STUDENTS.register(key="ctc")
def _ctc(spec: StudentSpec, num_classes: int) -> nn.Module:
    h = _check_height(spec)
    layers: list[nn.Module] = []
    c_in, c = 1, spec.width
    for pool in stage_pools(spec.depth):
        layers += _conv(c_in, c) + [nn.MaxPool2d(pool)]
        c_in, c = c, c * 2
    return LineNet(nn.Sequential(*layers), c_in, h, num_classes, 2 * c_in, spec.context)


@STUDENTS.register(key="dsctc")
def _dsctc(spec: StudentSpec, num_classes: int) -> nn.Module:
    h = _check_height(spec)
    layers: list[nn.Module] = _conv(1, spec.width)
    c = spec.width
    for i, pool in enumerate(stage_pools(spec.depth)):
        c_out = c * 2 if i < 3 else c
        layers += [nn.MaxPool2d(pool)] + _conv(c, c, groups=c) + _conv(c, c_out, k=1)
        c = c_out
    return LineNet(nn.Sequential(*layers), c, h, num_classes, 2 * c, spec.context)


def _crnn(widths: tuple[int, ...], hidden: int, num_classes: int, height: int) -> nn.Module:
    return CRNN(widths, hidden, height, num_classes)


@TEACHERS.register(key="crnn")
def crnn(num_classes: int, height: int = 24) -> nn.Module:
    """The default line teacher (about 0.45M parameters, 54M MACs per 192-px line): conv 24-48-96-128 + BiLSTM 128
    (CRNN)."""
    return _crnn((24, 48, 96, 128), 128, num_classes, height)


@TEACHERS.register(key="convctc")
def convctc(num_classes: int, height: int = 24) -> nn.Module:
    """A convolution-only line teacher (about 0.69M parameters, 72M MACs per 192-px line): conv 32-64-128 stages,
    the height collapsed into 192 channels, two (1, 5) context convolutions over the frames. Its CTC spikes come
    from local evidence like the students', so frame-level KD does not have to move them."""
    layers: list[nn.Module] = []
    c_in, h = 1, height
    for c, pool in zip((32, 64, 128), stage_pools(3)):
        layers += _conv(c_in, c) + [nn.MaxPool2d(pool)]
        c_in, h = c, h // pool[0]
    return LineNet(nn.Sequential(*layers), c_in, h, num_classes, 192, context=2)


@TEACHERS.register(key="crnn-small")
def crnn_small(num_classes: int, height: int = 24) -> nn.Module:
    """A small line teacher for tests and quick runs."""
    return _crnn((8, 16, 32), 32, num_classes, height)
