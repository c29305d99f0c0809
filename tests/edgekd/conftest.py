"""Shared fixtures for the training-core tests: tiny data, one CPU thread, deterministic settings."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_splits():
    """200 real digits (20 per class) from the embedded source: 140 train / 20 val / 40 test."""
    from edgekd.data import DataSpec, load_data

    return load_data(DataSpec("embedded", seed=0, limit_per_class=20))


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    """Write an IDX file (uint8 data) the way MNIST/EMNIST ship them."""
    arr = np.ascontiguousarray(arr, np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def idx_writer():
    return write_idx


@pytest.fixture()
def no_work(monkeypatch):
    """Training, or reading the data, from here on fails the test: what a refusal must come before."""
    import edgekd.data
    import edgekd.data.lines
    import edgekd.train.pipeline

    def fail(*a, **k):
        raise AssertionError("work started before the inputs were checked")

    for mod, name in ((edgekd.train.pipeline, "train_teacher"), (edgekd.train.pipeline, "distill"),
                      (edgekd.data, "load_data"), (edgekd.data.lines, "load_lines")):
        monkeypatch.setattr(mod, name, fail)
