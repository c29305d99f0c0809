"""Calibration and evaluation samples: load them (.npy or an image folder), check them, and turn them into
model inputs.

A "canvas" is an image before normalisation: float32 in [0, 1], shape (N, H, W) or (N, H, W, C). uint8 arrays
(0..255) are accepted and scaled. Normalisation `(canvas - mean) / std` is applied by `to_model_input`, so
the same canvases serve the ONNX model (NCHW or NHWC) and onnx2tf's calibration (always NHWC).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgekd_runtime.images import IMAGE_SUFFIXES, has_image_suffix
from edgekd_runtime.manifest import Normalization
from edgekd_runtime.pixels import as_canvases

from .errors import CalibrationDataError
from .model_info import OnnxModelInfo

MIN_CALIBRATION_SAMPLES = 200
#: How many of the given calibration canvases int8 is calibrated on by default (a seeded draw; `max_calib_samples`)
MAX_CALIBRATION_SAMPLES = 500


def load_samples(path: str | os.PathLike, info: OnnxModelInfo, preprocess: str = "mnist") -> np.ndarray:
    """Load canvases from a `.npy` file or a folder of images (searched recursively).

    Args:
        path: `.npy` array or image folder.
        info: the model the samples are for (its input height/width/channels).
        preprocess: for image folders: "mnist" (the runtime's handwriting procedure: crop ink, centre, light
            on dark) or "resize" (grayscale/RGB, resized to the input size, scaled to [0, 1]).

    Returns:
        (N, H, W, C) float32 canvases, checked by `check_canvases`.
    """
    p = Path(path)
    if p.is_dir():
        x = _load_folder(p, info, preprocess)
    elif p.suffix == ".npy" and p.is_file():
        x = _load_npy(p, "array")
    elif not p.exists():
        raise CalibrationDataError(f"{p}: no such file or folder; pass a .npy array of images or an image folder")
    else:
        raise CalibrationDataError(f"{p}: unsupported calibration source; pass a .npy array (N, H, W[, C]) or a "
                                   f"folder of images")
    return check_canvases(x, info, source=str(p))


def check_canvases(x: np.ndarray, info: OnnxModelInfo, source: str = "samples",
                   min_samples: int = 0) -> np.ndarray:
    """Validate canvases against the model's input and return them as (N, H, W, C) float32 in [0, 1].

    Accepts (N, H, W) for one channel, (N, H, W, C) or (N, C, H, W); uint8 is scaled by 1/255.
    """
    x = np.asarray(x)
    h, w, c = info.height, info.width, info.channels
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise CalibrationDataError(f"{source}: dtype {x.dtype} is not float or uint8; pass images scaled to "
                                   f"[0, 1] (float) or 0..255 (uint8)")
    if x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
        x = x[..., None]
    elif x.ndim == 4 and x.shape[1:] == (h, w, c):
        pass
    elif x.ndim == 4 and x.shape[1:] == (c, h, w):
        x = np.transpose(x, (0, 2, 3, 1))
    else:
        want = f"(N, {h}, {w})" if c == 1 else f"(N, {h}, {w}, {c})"
        raise CalibrationDataError(f"{source}: shape {list(x.shape)} does not fit the model input "
                                   f"{list(info.input_shape)} ({info.layout}); expected {want}, (N, {h}, {w}, {c}) "
                                   f"or (N, {c}, {h}, {w})")
    x = as_canvases(x, None, f"{source}: calibration canvases", CalibrationDataError)  # uint8 / 255, [0, 1]
    if len(x) < min_samples:
        raise CalibrationDataError(f"{source}: {len(x)} samples; int8 calibration needs at least {min_samples} "
                                   f"representative training samples: pass more")
    return np.clip(x, 0.0, 1.0)


def to_model_input(canvases: np.ndarray, info: OnnxModelInfo, mean: float, std: float) -> np.ndarray:
    """(N, H, W, C) canvases -> normalised float32 batch in the ONNX model's layout."""
    x = Normalization(mean, std).apply(canvases)
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)) if info.layout == "NCHW" else x)


def subsample(x: np.ndarray, max_samples: int, seed: int = 0) -> np.ndarray:
    """At most `max_samples` rows, drawn without replacement with a fixed seed (all rows if fewer)."""
    if len(x) <= max_samples:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(len(x), size=max_samples, replace=False))
    return x[idx]


def load_labels(path: str | os.PathLike, num_samples: int) -> np.ndarray:
    """Integer labels from a `.npy` file, one per sample."""
    p = Path(path)
    y = _load_npy(p, "array of labels")
    if y.ndim != 1 or len(y) != num_samples or not np.issubdtype(y.dtype, np.integer):
        raise CalibrationDataError(f"{p}: labels must be a 1-D integer array with one entry per sample "
                                   f"({num_samples}); got dtype {y.dtype}, shape {list(y.shape)}")
    return y.astype(np.int64)


def _load_npy(p: Path, what: str) -> np.ndarray:
    """A numeric array from a .npy file; a file that is not one, or that holds pickled Python objects (never
    loaded: unpickling runs code), is a CalibrationDataError saying so."""
    try:
        with open(p, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise CalibrationDataError(f"{p}: cannot be read ({e.strerror or e}); check the path") from None
    if magic != b"\x93NUMPY":
        raise CalibrationDataError(f"{p}: not a .npy file (no NUMPY header); save the {what} with numpy.save")
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise CalibrationDataError(f"{p}: holds Python objects (a pickled object array), which edgekd does not "
                                       f"load; save a numeric {what} with numpy.save") from None
        raise CalibrationDataError(f"{p}: not a readable .npy {what} ({e}); save it with numpy.save") from None
    except OSError as e:
        raise CalibrationDataError(f"{p}: cannot be read ({e.strerror or e}); check the path") from None


def _load_folder(folder: Path, info: OnnxModelInfo, preprocess: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(f for f in folder.rglob("*") if has_image_suffix(f) and f.is_file())
    if not files:
        raise CalibrationDataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder or below")
    if preprocess not in ("mnist", "resize"):
        raise CalibrationDataError(f"preprocess {preprocess!r} is not one of: mnist, resize")
    if preprocess == "mnist" and info.channels != 1:
        raise CalibrationDataError(f"{folder}: the mnist preprocessing makes 1-channel canvases but the model "
                                   f"takes {info.channels} channels; use --preprocess resize")
    out = []
    for f in files:
        try:
            if preprocess == "mnist":
                from edgekd_runtime.preprocess import preprocess as mnist_preprocess

                out.append(np.asarray(mnist_preprocess(str(f), size=info.height), dtype=np.float32))
            else:
                with Image.open(f) as im:
                    im = im.convert("L" if info.channels == 1 else "RGB").resize((info.width, info.height))
                    out.append(np.asarray(im, dtype=np.float32) / 255.0)
        except (UnidentifiedImageError, OSError) as e:
            raise CalibrationDataError(f"{f}: cannot read this image ({e}); remove it from {folder}") from None
    return np.stack(out)
