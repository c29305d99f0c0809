"""Reading MNIST-family IDX files (MNIST, EMNIST, Fashion-MNIST, KMNIST), gzipped or not."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from edgekd_runtime.errors import UserInputError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataFileError(UserInputError):
    """A data file that is missing, truncated or not in the expected format."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally .gz) into a numpy array; raises DataFileError on a corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"IDX file {path} not found")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataFileError(f"IDX file {path} is not a readable gzip file ({e}); re-download or gunzip it") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataFileError(f"{path} is not an IDX file (bad magic number); expected MNIST/EMNIST *-idx?-ubyte files")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(f"IDX file {path} is truncated (header)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataFileError(f"IDX file {path} is truncated or padded: header says shape {shape} "
                            f"({expected} bytes of data) but it holds {len(raw) - header}; re-download it")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _stem(p: Path) -> str:
    return p.name[:-3] if p.name.endswith(".gz") else p.name


def find_idx_pairs(root: Path) -> list[tuple[Path, Path, str]]:
    """Find (images, labels, split) file pairs in a directory: split is 'train', 'test' or 'all'."""
    files = [p for p in sorted(root.iterdir()) if p.is_file() and "idx" in p.name]
    images = [p for p in files if re.search(r"images?[-_.]idx3", _stem(p)) or "idx3" in _stem(p)]
    pairs = []
    for img in images:
        s = _stem(img)
        want = s.replace("images", "labels").replace("image", "label").replace("idx3", "idx1")
        lab = next((p for p in files if _stem(p) == want), None)
        if lab is None:
            raise DataFileError(f"no labels file for {img} in {root} (looked for {want}[.gz])")
        split = "test" if re.search(r"(t10k|test)", s) else "train" if "train" in s else "all"
        pairs.append((img, lab, split))
    if not pairs:
        raise DataFileError(f"no IDX image files (*-images-idx3-ubyte[.gz]) in {root}")
    return pairs


def read_mapping(root: Path, prefix_hint: str) -> dict[int, str] | None:
    """Read an EMNIST `*-mapping.txt` file (lines `label ascii_code`) when one is in `root`."""
    maps = sorted(root.glob("*mapping.txt"))
    if not maps:
        return None
    chosen = next((m for m in maps if prefix_hint and m.name.startswith(prefix_hint)), maps[0])
    out: dict[int, str] = {}
    for n, line in enumerate(chosen.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            out[int(parts[0])] = chr(int(parts[1]))
        except (ValueError, IndexError):
            raise DataFileError(f"{chosen}:{n}: expected 'label ascii_code', got {line!r}") from None
    return out
