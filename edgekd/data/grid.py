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


def line_grid(x: np.ndarray, texts: list[str], path: str | Path, rows: int = 16) -> Path:
    """Write the first `rows` line canvases (uint8 (N, H, W)) stacked, each with its transcription printed in the
    margin on its left, to `path` (PNG, atomically)."""
    from PIL import Image, ImageDraw

    n = min(rows, len(x))
    h, w = x.shape[1], x.shape[2]
    label_w = 8 * max((len(t) for t in texts[:n]), default=1) + 8
    img = Image.new("L", (label_w + w, n * (h + 2)), 40)
    draw = ImageDraw.Draw(img)
    for i in range(n):
        img.paste(Image.fromarray(x[i]), (label_w, i * (h + 2)))
        draw.text((4, i * (h + 2) + max(0, h // 2 - 6)), texts[i], fill=255)
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
