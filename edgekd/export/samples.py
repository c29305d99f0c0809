"""The real samples a bundle is checked on, rebuilt from the checkpoint's DataSpec: training canvases for
int8 calibration and the test split for parity and accuracy, at the student's input resolution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekd_runtime.errors import ManifestError, UserInputError
from edgekd_runtime.manifest import Normalization
from edgekd_runtime.pixels import as_canvases


@dataclass(frozen=True)
class BundleSamples:
    """Canvases (N, R, R) float32 in [0, 1] and int64 labels."""

    calib: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    split: str  # which split test_x came from ("test", or "val" when the spec has no test split)


def bundle_samples(data: dict[str, Any] | None, input_size: int, calib_samples: int = 500,
                   seed: int = 0) -> BundleSamples:
    """Load the data described by `data` (a DataSpec dict) and return calibration and test canvases."""
    from edgekd.data import DataSpec, load_data
    from edgekd_converters.calibration import subsample
    from edgekd_runtime.preprocess import resize_canvas

    if not data:
        raise ManifestError("the bundle/checkpoint records no data spec (extra.data); re-export it from a "
                            "checkpoint made by `edgekd distill`")
    splits = load_data(DataSpec.from_dict(dict(data)))
    test, name = eval_split(splits, f"data {data}")

    def canvases(x: np.ndarray) -> np.ndarray:
        x = as_canvases(x, what=f"data {data}")
        return x if input_size == x.shape[-1] else resize_canvas(x, input_size).astype(np.float32)

    train_x = subsample(splits.train.x, calib_samples, seed)
    return BundleSamples(canvases(train_x), canvases(test.x), test.y.astype(np.int64), name)


def eval_split(splits: Any, what: str) -> tuple[Any, str]:
    """The split an export is checked on (digits or lines): (split, "test"), or (split, "val") when the data has
    no test split; neither is a UserInputError naming `what`."""
    test, name = (splits.test, "test") if len(splits.test) else (splits.val, "val")
    if len(test) == 0:
        raise UserInputError(f"{what}: no test or validation samples to check the export on; set a "
                             f"test_fraction > 0")
    return test, name


def normalise(canvases: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(N, R, R) canvases -> (N, 1, R, R) model input (the runtime's `Normalization.apply`)."""
    return Normalization(mean, std).apply(canvases)[:, None]
