"""Decode what users call an image (a path, a PIL image, a numpy array) into one grayscale array: 8-bit levels
(`load_levels`, what the digit preprocessing takes; an 8-bit camera frame is used as it is) or float32 in [0, 1]
(`load_gray`).

Handles what real files throw at a board: RGBA with transparency, 16-bit scans, palette and CMYK images,
EXIF-rotated phone photos, huge images (JPEG decoded at 1/2..1/8 scale by libjpeg; other formats decoded
once at full size in their compact mode, then box-downscaled; never materialised as float at full size;
refused from the header's dimensions, before any pixel is decoded, when decoding would take more than
`decode_budget_bytes()`), NaN arrays, 1x1 images.
Every failure is an `ImageError` naming the image and the fix.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, Union

import numpy as np

from .errors import ImageError, UserInputError
from .pixels import full_scale

ImageLike = Union[str, os.PathLike, "Any", np.ndarray]  # path, PIL.Image.Image or array

#: Longest side kept for processing; bigger images are box-downscaled while decoding.
MAX_WORK_SIDE_PX = 1024
#: Smallest side accepted: below this there is nothing to recognise.
MIN_SIDE_PX = 8
#: Refuse images above this many pixels outright (about 20000x20000): Pillow's decompression-bomb guard, checked
#: when the header is read; `decode_budget_bytes()` is the finer, memory-based bound checked after it.
MAX_PIXELS = 400_000_000
#: Peak memory a file's pixels may take while they are decoded, converted and downscaled: a quarter of the
#: smallest supported board's RAM (Raspberry Pi Zero 2 W, 512 MB), so a huge PNG is an ImageError, not an OOM
#: kill. `EDGEKD_MAX_DECODE_MIB` overrides it (e.g. on a workstation reading large scans).
DECODE_BUDGET_BYTES = 128 << 20
DECODE_BUDGET_ENV = "EDGEKD_MAX_DECODE_MIB"
#: Peak bytes per pixel of the decoded size while `load_gray` decodes, converts and box-reduces a file of each
#: Pillow mode (measured with ru_maxrss on 16 MP images: Pillow keeps RGB in 4 bytes, `reduce` premultiplies
#: RGBA/LA into a full-size copy, palette images are converted once); other modes count as 16.
DECODE_BYTES_PER_PIXEL = {"1": 2.1, "L": 1.2, "P": 2.1, "RGB": 4.6, "RGBA": 8.1, "LA": 8.1, "PA": 8.1, "CMYK": 8.1,
                          "YCbCr": 8.1, "LAB": 8.1, "HSV": 8.1, "I;16": 6.2, "I;16L": 6.2, "I;16B": 6.2,
                          "I;16N": 6.2, "F": 12.1, "I": 16.1}
_WORST_BYTES_PER_PIXEL = 16.1  # also WebP (libwebp decodes into a buffer of its own) and palette + transparency
#: The image files edgekd reads (every command and folder reader, the converters' calibration folders included).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm")

_PIL_LOCK = threading.Lock()
_EXIF_ORIENTATION = 0x0112


def has_image_suffix(path: Union[str, "os.PathLike[str]"]) -> bool:
    """Whether `path` has the suffix of an image edgekd reads (`IMAGE_SUFFIXES`, any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def describe(image: Any) -> str:
    """A short name for an image in error messages."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, np.ndarray):
        return f"array{tuple(image.shape)} {image.dtype}"
    size = getattr(image, "size", None)
    if isinstance(size, tuple) and len(size) == 2:  # a PIL image: "PNG image 960x160", not "PngImageFile image"
        return f"{getattr(image, 'format', None) or 'PIL'} image {size[0]}x{size[1]}"
    return f"{type(image).__name__} image"


def load_gray(image: ImageLike, max_side_px: int = MAX_WORK_SIDE_PX) -> np.ndarray:
    """Any supported image -> float32 (H, W) grayscale in [0, 1], longest side <= `max_side_px`.

    Raises:
        ImageError: missing/unreadable/empty file, unsupported array shape, NaN/inf values, image too small.
    """
    gray = _load(image, max_side_px)
    return gray.astype(np.float32) / np.float32(255.0) if gray.dtype == np.uint8 else gray


def load_levels(image: ImageLike, max_side_px: int = MAX_WORK_SIDE_PX) -> np.ndarray:
    """Any supported image -> uint8 (H, W) grey levels, longest side <= `max_side_px`: what the preprocessing
    works on. An 8-bit grey array within the size (a camera frame) is returned as it is, not copied; RGB is
    weighted 0.299/0.587/0.114 as in `load_gray`; 16-bit and float images are rounded to the nearest level.

    Raises:
        ImageError: as `load_gray`.
    """
    gray = _load(image, max_side_px)
    if gray.dtype == np.uint8:
        return gray
    from .imageops import to_levels

    return to_levels(gray)


def _load(image: ImageLike, max_side_px: int) -> np.ndarray:
    """`load_gray` in the image's own precision: uint8 levels for 8-bit grey or RGB, else float32 in [0, 1]."""
    if type(image) is np.ndarray and image.dtype == np.uint8 and image.ndim == 2 and \
            MIN_SIDE_PX <= min(image.shape) and max(image.shape) <= max_side_px:
        return image  # an 8-bit grey camera frame: nothing to decode, convert or check
    if isinstance(image, (str, os.PathLike)):
        gray = _from_path(Path(image), max_side_px)
    elif isinstance(image, np.ndarray):
        gray = _from_array(image, describe(image), max_side_px)
    elif hasattr(image, "mode") and hasattr(image, "size") and hasattr(image, "convert"):
        gray = _from_pil(image, describe(image), max_side_px)
    else:
        raise ImageError(f"cannot use a value of type {type(image).__name__} as an image; pass a file path, a PIL "
                         f"image or a numpy array (HxW or HxWxC)")
    h, w = gray.shape
    if min(h, w) < MIN_SIDE_PX:
        raise ImageError(f"{describe(image)}: image is {w}x{h} px, too small to hold handwriting; "
                         f"use an image at least {MIN_SIDE_PX}x{MIN_SIDE_PX} px (28x28 or larger is best)")
    return gray


def _from_path(path: Path, max_side_px: int) -> np.ndarray:
    from PIL import ImageOps

    with _opened(path, max_side_px) as (im, _):
        im.load()
        if im.getexif().get(_EXIF_ORIENTATION, 1) != 1:  # phone photos: turn them upright
            upright = ImageOps.exif_transpose(im)  # (a copy: only made when there is something to turn)
            return _from_pil(upright, str(path), max_side_px)
        return _from_pil(im, str(path), max_side_px)


def upright_size(path: Union[str, "os.PathLike[str]"]) -> tuple[int, int]:
    """The (width, height) in pixels of the image file at `path` as `load_gray` turns it (EXIF orientation
    applied), from its header, nothing decoded; refused as `load_gray` refuses it (`ImageError`) when decoding
    would exceed the budget. A PNG's orientation is read only from an eXIf chunk before its pixel data (where
    Pillow and cameras write it): looking past the pixels would decode the whole image (1.2 ms of a 1000x200
    line photo's 10); one after them reads as upright here, and `lines` then goes by the loaded image's shape."""
    with _opened(Path(path), MAX_WORK_SIDE_PX) as (im, (width_px, height_px)):
        in_header = im.format != "PNG" or "exif" in im.info
        turned = in_header and im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    return (height_px, width_px) if turned else (width_px, height_px)


@contextlib.contextmanager
def _opened(path: Path, max_side_px: int) -> Iterator[tuple[Any, tuple[int, int]]]:
    """`(im, (width, height))`: the image file at `path` opened with Pillow, its size as its header declares it, and
    nothing decoded yet: a readable regular file (`check_readable`), within MAX_PIXELS and the decode budget (judged
    at the JPEG draft scale for `max_side_px`). Pillow's errors, raised here or in the `with` body, become
    ImageErrors naming the file; library warnings are silenced (the two limits are the guards)."""
    from PIL import Image, UnidentifiedImageError

    if check_readable(path, ImageError, "image").st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes); re-save or re-copy the image")
    try:
        with _PIL_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # set before Image.open: its DecompressionBombWarning must not escape
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_PIXELS
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = old
            with im:
                size = im.size
                if im.format in ("JPEG", "MPO"):  # libjpeg decodes at 1/2..1/8 scale: no full-size buffer
                    im.draft("L", (max_side_px, max_side_px))
                _check_decode_memory(im, path)  # from the header (and the draft scale): nothing decoded yet
                yield im, size
    except UserInputError:  # ours (the decode budget, an ImageError from the body): already says what to do
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: more than {MAX_PIXELS:,} pixels; downscale the image first") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read; use PNG, JPEG, BMP, TIFF or WebP") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise ImageError(f"{path}: cannot decode the image ({e}); the file is truncated or corrupt, "
                         f"re-save or re-copy it") from None


def check_readable(path: Union[str, "os.PathLike[str]"], error: type[UserInputError], what: str
                   ) -> os.stat_result:
    """The `os.stat` of `path`, an input file (`what`: "image", "model", ...) about to be read, once it is known
    to be a regular file this process may read; else `error` saying why not and what to do: no such file, a
    dangling symbolic link or a loop of them, permission denied, or not a regular file (a directory, a named pipe
    that would block the read forever, a device, a socket). Every file the runtime reads goes through it."""
    import stat

    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISREG(st.st_mode):
            os.close(os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))  # read permission (also for root)
            return st
    except OSError as e:
        raise error(f"{p}: {_unreadable(p, e, what)}") from None
    kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode)
            else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device")
    raise error(f"{p}: is {kind}, not a regular file; pass the {what} file itself")


def _unreadable(path: Path, e: OSError, what: str) -> str:
    """Why `check_readable` cannot stat or open `path` (`e`), and what to do."""
    import errno

    if e.errno == errno.ENOENT and os.path.islink(path):
        return f"a symbolic link to {os.readlink(path)}, which does not exist; fix the link or pass the {what} " \
               f"file itself"
    if e.errno == errno.ENOENT:
        return "no such file; check the path"
    if e.errno == errno.ENOTDIR:
        return "no such file (a part of its path is a file, not a folder); check the path"
    if e.errno == errno.ELOOP:
        return f"a symbolic link loop (links that lead back to each other): it cannot be resolved; point the link " \
               f"at the {what} file itself"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read: permission denied; check its permissions and those of the folders above it (ls -l)"
    return f"cannot be read ({e.strerror}); check the path"


def decode_budget_bytes() -> int:
    """`DECODE_BUDGET_BYTES`, or `EDGEKD_MAX_DECODE_MIB` MiB when that is set."""
    raw = os.environ.get(DECODE_BUDGET_ENV)
    if raw is None or not raw.strip():
        return DECODE_BUDGET_BYTES
    try:
        mib = float(raw)
    except ValueError:
        mib = float("nan")
    if not 0 < mib < float("inf"):
        raise ImageError(f"{DECODE_BUDGET_ENV}={raw!r} is not a positive number of MiB; unset it for the default "
                         f"{DECODE_BUDGET_BYTES >> 20} MiB")
    return int(mib * (1 << 20))


def _check_decode_memory(im: Any, path: Path) -> None:
    """Refuse, from the declared size and mode, an image whose decoding would take more than the budget."""
    width_px, height_px = im.size
    per_px = DECODE_BYTES_PER_PIXEL.get(im.mode, _WORST_BYTES_PER_PIXEL)
    if im.format == "WEBP" or (im.mode == "P" and "transparency" in im.info):
        per_px = _WORST_BYTES_PER_PIXEL
    need, budget = width_px * height_px * per_px, decode_budget_bytes()
    if need > budget:
        max_px = int(budget / per_px)
        raise ImageError(f"{path}: a {width_px}x{height_px} px {im.format or ''} image ({im.mode}) would take about "
                         f"{need / (1 << 20):,.0f} MiB to decode, over the {budget / (1 << 20):.4g} MiB limit "
                         f"({DECODE_BUDGET_ENV}; the default is a quarter of a 512 MB Raspberry Pi Zero 2 W); "
                         f"downscale it to at most {max_px:,} pixels (about {int(max_px ** 0.5)}x"
                         f"{int(max_px ** 0.5)}) first")


def _from_pil(im: Any, name: str, max_side_px: int) -> np.ndarray:

    if im.width == 0 or im.height == 0:
        raise ImageError(f"{name}: image is empty ({im.width}x{im.height}); pass a real image")
    mode = im.mode
    if mode == "P":  # straight to 8-bit grey when there is no transparency: a third of the memory of RGB
        im = im.convert("RGBA" if "transparency" in im.info else "L")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode == "PA":
        im = im.convert("LA")
    factor = -(-max(im.size) // max_side_px)
    if factor > 1 and im.mode in ("L", "LA", "RGB", "RGBA"):  # box-average while still 8-bit
        im = im.reduce(factor)
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):  # native uint16 (65535 = white): box-reduced band by band, not as float
        arr = arr.astype(np.uint16, copy=False)
    elif im.mode == "I":
        arr = arr.astype(np.float32) / np.float32(full_scale(arr, name))
    return _from_array(arr, name, max_side_px)


def _from_array(a: np.ndarray, name: str, max_side_px: int) -> np.ndarray:
    if a.size == 0:
        raise ImageError(f"{name}: array is empty; pass an HxW or HxWxC image")
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 2, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW -> HWC
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ImageError(f"{name}: shape {a.shape} is not an image; pass HxW (gray), HxWx3 (RGB) or HxWx4 "
                         f"(RGBA), one image at a time (use predict_batch for several)")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ImageError(f"{name}: dtype {a.dtype} is not numeric; pass uint8, uint16 or float pixels")
    factor = -(-max(a.shape[:2]) // max_side_px)
    if factor > 1:
        a = _block_mean(a, factor)
    if a.dtype == np.uint8 and (a.ndim == 2 or a.shape[2] == 3):  # 8-bit grey or RGB: stays 8-bit
        return a if a.ndim == 2 else _rgb_levels(a)
    scale = full_scale(a, name)
    a = a.astype(np.float32, copy=False) / np.float32(scale)
    if a.ndim == 3:
        a = _to_gray(a)
    return np.clip(a, 0.0, 1.0, out=a if a.flags.writeable else None)


def _rgb_levels(a: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxW uint8 grey, 0.299 R + 0.587 G + 0.114 B (rounded)."""
    from .imageops import cv

    cv2 = cv()
    return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)


def _to_gray(a: np.ndarray) -> np.ndarray:
    """HxWxC float in [0,1] -> HxW. Alpha is composited over white paper; if that leaves nothing (ink drawn
    only through alpha, e.g. white strokes on transparency), the alpha channel itself becomes the ink."""
    c = a.shape[2]
    color = a[:, :, :3] if c >= 3 else a[:, :, :1]
    gray = color @ np.array([0.299, 0.587, 0.114], np.float32) if c >= 3 else color[:, :, 0]
    if c in (2, 4):
        alpha = a[:, :, -1]
        composited = gray * alpha + (1.0 - alpha)
        if float(np.ptp(composited)) < 0.05 and float(np.ptp(alpha)) >= 0.05:
            return 1.0 - alpha  # strokes exist only in alpha: dark where opaque
        gray = composited
    return gray.astype(np.float32, copy=False)


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Downscale by an integer factor with box averaging, band by band (bounded extra memory)."""
    h, w = a.shape[0] // k * k, a.shape[1] // k * k
    out = np.empty((h // k, w // k) + a.shape[2:], np.float32)
    band = max(1, (1 << 22) // (k * w * (a.shape[2] if a.ndim == 3 else 1)))  # ~16 MB of float32 per band
    for r0 in range(0, h // k, band):
        r1 = min(h // k, r0 + band)
        blk = a[r0 * k:r1 * k, :w].astype(np.float32)
        out[r0:r1] = blk.reshape((r1 - r0, k, w // k, k) + a.shape[2:]).mean(axis=(1, 3))
    if np.issubdtype(a.dtype, np.integer):  # keep the integer scale for full_scale
        return out.round().astype(a.dtype) if a.dtype in (np.uint8, np.uint16) else out
    return out
