"""Deterministic stratified train/val/test splits."""

from __future__ import annotations

import numpy as np

from edgekd_runtime.errors import UserInputError

# The most classes edgekd takes (data, --num-classes): more than any handwriting task it targets (CJK character
# sets have ~7,000). A label beyond it is a damaged file, and sizing names, counts or a model head by it would
# exhaust memory.
MAX_CLASSES = 10_000


def stratified_indices(y: np.ndarray, num_classes: int, fractions: tuple[float, ...], seed: int,
                       limit_per_class: int | None = None) -> list[np.ndarray]:
    """Split indices of `y` per class into len(fractions)+1 parts (the last part takes the rest).

    Each class is shuffled with a generator seeded from (seed, class), so adding a class does not move the others.
    Every part of every class gets at least one sample when the class has enough of them.
    """
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)
        rng = np.random.default_rng([seed, c])
        idx = idx[rng.permutation(len(idx))]
        if limit_per_class is not None:
            idx = idx[:limit_per_class]
        n = len(idx)
        start = 0
        for k, f in enumerate(fractions):
            take = int(round(f * n))
            if f > 0 and take == 0 and n - start > 1:
                take = 1
            parts[k].append(idx[start:start + take])
            start += take
        parts[-1].append(idx[start:])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def check_num_classes(num_classes: int, where: str) -> int:
    """Refuse a class count above MAX_CLASSES before anything (class names, a model head, a cost) is sized by it."""
    if num_classes > MAX_CLASSES:
        raise UserInputError(f"{where}: {num_classes:,} classes is more than edgekd supports (MAX_CLASSES = "
                             f"{MAX_CLASSES:,}); pass the real number of classes, labelled 0..C-1")
    return num_classes


def label_classes(y: np.ndarray, where: str) -> int:
    """The class count that integer labels imply (max + 1), checked (no samples, a negative label, more than
    MAX_CLASSES) before class names or counts are made for it: one stray label of 10^9 is an error, not 10^9
    classes."""
    if y.size == 0:
        raise UserInputError(f"{where}: no samples found")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0:
        raise UserInputError(f"{where}: label {lo} is negative; labels must be class indices 0..C-1")
    if hi >= MAX_CLASSES:
        raise UserInputError(f"{where}: label {hi:,} would make {hi + 1:,} classes, more than edgekd supports "
                             f"(MAX_CLASSES = {MAX_CLASSES:,}); labels must be class indices 0..C-1 (a damaged "
                             f"or mislabelled file?)")
    return hi + 1


def check_classes(y: np.ndarray, class_names: list[str], where: str) -> None:
    """Refuse fewer than 2 classes, more than MAX_CLASSES, labels out of range and classes with no samples (an
    empty class cannot be learned or tested)."""
    check_num_classes(len(class_names), where)
    if y.size == 0:
        raise UserInputError(f"{where}: no samples found")
    if len(class_names) < 2:
        raise UserInputError(f"{where}: needs at least 2 classes to learn to tell apart, found "
                             f"{len(class_names)} ({class_names}); add samples of the other classes")
    if y.min() < 0 or y.max() >= len(class_names):
        raise UserInputError(f"{where}: labels must be in 0..{len(class_names) - 1}, found {y.min()}..{y.max()}")
    counts = np.bincount(y, minlength=len(class_names))
    empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        more = f" and {len(empty) - 10:,} more" if len(empty) > 10 else ""
        raise UserInputError(f"{where}: class(es) {empty[:10]}{more} have no samples; add samples or remove the "
                             f"class")
