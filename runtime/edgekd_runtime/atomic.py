"""Atomic file writes: write to a temporary file in the same directory, fsync, then rename over the target.

A crash leaves either the old file or the new one, never a half-written file that looks valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`, on error removed.

    The new file gets the mode of the file it replaces, or for a new file what `open()` would give (0666 less
    the umask), never the temporary file's private 0600. A symbolic link at `path` is replaced by the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp(path)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _new_temp(path: Path) -> Path:
    """An empty, new file next to `path` (a hidden, random name) with the mode `atomic_path` promises."""
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode) & 0o777  # the file (a link's target) replaced
    except OSError:
        mode = None
    for _ in range(100):  # (not tempfile.mkstemp: it makes 0600 files, and a read-only process never loads it)
        tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0666 less the umask
        except FileExistsError:
            continue
        try:
            if mode is not None:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name next to {path}")


def check_writable(path: str | os.PathLike, what: str, directory: bool = False) -> Path:
    """Refuse, before any work is done, an output `path` (a file, or a `directory`) that cannot be written: the
    wrong kind of thing already there, a file where a parent folder must be, or a folder where no file can be made
    (its permissions, or a read-only mount or /proc, which permission bits do not show to root).
    `what` names it for the message (e.g. "--grid")."""
    from .errors import UserInputError

    p = Path(path).expanduser()
    if p.exists() and p.is_dir() != directory:
        kind = "is not a directory" if directory else "is a directory"
        raise UserInputError(f"{what} {p}: exists and {kind}; choose another path")
    anc = p if p.exists() and directory else p.parent  # a file is written (replaced) in its folder
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise UserInputError(f"{what} {p}: {anc} is a file, not a directory; choose another path")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UserInputError(f"{what} {p}: cannot write in {anc} (permission denied); choose a writable path")
    try:  # permission bits do not stop root, but /proc or a read-only mount does: a file made and removed there
        os.unlink(_new_temp(anc / ".edgekd-probe"))
    except OSError as e:
        raise UserInputError(f"{what} {p}: cannot write in {anc} ({e.strerror or e}); choose a writable path") from None
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
