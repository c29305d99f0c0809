"""Proxy ranking: train the most capable feasible students briefly from scratch and rank by validation accuracy.

A few epochs on a subset is enough to tell a student that learns from one that is too small (the ordering, not
the final accuracy, is what the search needs). Runs on CPU in seconds per epoch on the embedded digits.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from edgekd_runtime.errors import UserInputError


def proxy_ranker(epochs: int, top_k: int = 6, data_source: str = "embedded", seed: int = 0,
                 limit_per_class: int | None = 300,
                 log: Callable[[str], None] | None = None) -> Callable[[Sequence], Mapping[str, float]]:
    """A `proxy` callable for `search`: trains the `top_k` most capable feasible candidates for `epochs`."""
    if epochs < 1 or top_k < 1:
        raise UserInputError(f"--proxy-epochs must be >= 1 and top-k >= 1 (got {epochs}, {top_k})")

    def rank(feasible: Sequence) -> Mapping[str, float]:
        from edgekd.data import DataSpec, load_data

        splits = load_data(DataSpec(source=data_source, seed=seed, limit_per_class=limit_per_class))
        out = {}
        for c in list(feasible)[:top_k]:
            out[c.student_id] = train_and_score(c.student_id, splits, epochs, seed)
            if log:
                log(f"proxy {c.student_id}: val accuracy {out[c.student_id]:.3f} after {epochs} epoch(s)")
        return out

    return rank


def _canvases(x: np.ndarray, size: int) -> np.ndarray:
    from edgekd_runtime.pixels import as_canvases
    from edgekd_runtime.preprocess import resize_canvas

    x = as_canvases(x, what="proxy training canvases")
    return resize_canvas(x, size) if size != x.shape[-1] else x


def train_and_score(student_id: str, splits, epochs: int, seed: int = 0, batch_size: int = 64) -> float:
    """Train `student_id` from scratch (Adam, cross-entropy) and return its validation accuracy."""
    import torch
    import torch.nn.functional as F

    from edgekd.models.students import build_student
    from edgekd.train.batches import normalize

    from .cost import student_resolution

    torch.manual_seed(seed)
    r = student_resolution(student_id)
    model = build_student(student_id, splits.num_classes)
    norm = lambda a: normalize(torch.from_numpy(_canvases(a, r)[:, None]))  # noqa: E731
    xt, yt = norm(splits.train.x), torch.from_numpy(np.asarray(splits.train.y, dtype=np.int64))
    xv, yv = norm(splits.val.x), torch.from_numpy(np.asarray(splits.val.y, dtype=np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=g).split(batch_size):
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(xv).argmax(1) == yv).float().mean())
