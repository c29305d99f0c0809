"""Data: sources (a registry), deterministic stratified splits, batched augmentation and the transfer set.

    from edgekd.data import DataSpec, load_data
    splits = load_data(DataSpec("embedded", seed=0))   # splits.train.x uint8 (N, 28, 28), .y int64
"""

from __future__ import annotations

import numpy as np

from edgekd_runtime.errors import UserInputError

from .sources import SOURCES, RawData
from .spec import DataSpec, Split, Splits
from .split import check_classes, stratified_indices

__all__ = ["DataSpec", "Split", "Splits", "load_data", "SOURCES", "RawData"]


def load_data(spec: DataSpec) -> Splits:
    """Load `spec.source` and split it deterministically (same spec, same splits), stratified by class."""
    raw = SOURCES.get(spec.source)(spec)
    where = f"data source {spec.source!r}" + (f" at {spec.path}" if spec.path else "")
    check_classes(raw.y, raw.class_names, where)
    if raw.test_mask is not None:  # the source has its own test split: keep it, carve val out of train
        pool = np.flatnonzero(~raw.test_mask)
        val_i, train_i = stratified_indices(raw.y[pool], len(raw.class_names), (spec.val_fraction,), spec.seed,
                                            spec.limit_per_class)
        val_i, train_i = pool[val_i], pool[train_i]
        test_all = np.flatnonzero(raw.test_mask)
        (test_i,) = stratified_indices(raw.y[test_all], len(raw.class_names), (), spec.seed, spec.limit_per_class)
        test_i = test_all[test_i]
    else:
        test_i, val_i, train_i = stratified_indices(raw.y, len(raw.class_names),
                                                    (spec.test_fraction, spec.val_fraction), spec.seed,
                                                    spec.limit_per_class)
    if len(train_i) == 0:
        raise UserInputError(f"{where}: nothing left for training after the split; lower val/test fractions")
    check_classes(raw.y[train_i], raw.class_names, f"{where} (training split)")
    pick = lambda i: Split(raw.x[i], raw.y[i])  # noqa: E731
    return Splits(pick(train_i), pick(val_i), pick(test_i), list(raw.class_names), spec)

