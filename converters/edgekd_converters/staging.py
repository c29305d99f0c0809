"""All-or-nothing output directories: build in a hidden sibling, rename into place only when everything passed."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputExistsError


def check_output_dir(out_dir: str | os.PathLike, force: bool) -> Path:
    """Refuse an existing output path unless `force` (and never replace a file with a directory)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a directory; pass a new directory for --out")
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: already exists; pass --force to replace it, or choose another --out")
    return out


@contextlib.contextmanager
def staged_directory(out_dir: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces `out_dir` (atomically per rename), on error
    it is deleted and `out_dir` is left exactly as it was."""
    out = check_output_dir(out_dir, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield stage
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(stage, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
