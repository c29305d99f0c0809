"""A sample grid PNG: a few samples of each class, one row per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd_runtime.atomic import atomic_path


def sample_grid(x: np.ndarray, y: np.ndarray, num_classes: int, path: str | Path, per_class: int = 10,
                max_classes: int = 64) -> Path:
    """Write a (classes x per_class) grid of uint8 28x28 canvases to `path` (PNG, atomically)."""
    from PIL import Image

    rows = min(num_classes, max_classes)
    grid = np.zeros((rows * 30, per_class * 30), np.uint8)
    for c in range(rows):
        idx = np.flatnonzero(y == c)[:per_class]
        for j, i in enumerate(idx):
            grid[c * 30 + 1:c * 30 + 29, j * 30 + 1:j * 30 + 29] = x[i]
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return path
