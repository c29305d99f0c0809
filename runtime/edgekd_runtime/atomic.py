"""Atomic file writes: write to a temporary file in the same directory, fsync, then rename over the target.

A crash leaves either the old file or the new one, never a half-written file that looks valid.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`, on error removed."""
    import tempfile  # here, not at import: a board process that only reads (predict, bench) never loads it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_writable(path: str | os.PathLike, what: str, directory: bool = False) -> Path:
    """Refuse, before any work is done, an output `path` (a file, or a `directory`) that cannot be written: the
    wrong kind of thing already there, a file where a parent folder must be, or a folder without write access.
    `what` names it for the message (e.g. "--grid")."""
    from .errors import UserInputError

    p = Path(path).expanduser()
    if p.exists() and p.is_dir() != directory:
        kind = "is not a directory" if directory else "is a directory"
        raise UserInputError(f"{what} {p}: exists and {kind}; choose another path")
    anc = p if p.exists() else p.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise UserInputError(f"{what} {p}: {anc} is a file, not a directory; choose another path")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UserInputError(f"{what} {p}: cannot write in {anc} (permission denied); choose a writable path")
    return p


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy scalars and arrays
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()
