"""All-or-nothing output directories: build in a hidden sibling, rename into place only when everything passed.

Every staging directory carries the pid of the process that made it in its name (`{prefix}{pid}-XXXX{suffix}`),
so the next one made beside it can delete those that a killed process (SIGKILL, power cut) left behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

from .errors import OutputExistsError


def check_output_dir(out_dir: str | os.PathLike, force: bool, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Refuse an existing output path unless `force` (and never replace a file with a directory). With `force`,
    only a bundle edgekd wrote is replaced: never a folder holding one of the command's `inputs` or any file that
    is not the bundle's own (`Manifest.own_files`); edgekd does not delete files it did not make."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a directory; pass a new directory for --out")
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: already exists; pass --force to replace it, or choose another --out")
    if out.exists():
        _refuse_foreign(out, inputs)
    return out


def _refuse_foreign(out: Path, inputs: Sequence[str | os.PathLike]) -> None:
    """Refuse to replace `out` unless it is empty or a bundle holding only its own files and none of `inputs`."""
    from edgekd_runtime.errors import ManifestError
    from edgekd_runtime.manifest import Manifest

    keep = "choose another --out (nothing was deleted; edgekd does not delete files it did not make, even with " \
           "--force)"
    root = out.resolve()
    for p in inputs:
        if root == Path(p).resolve() or root in Path(p).resolve().parents:
            raise OutputExistsError(f"{out}: holds {p}, an input of this command, which --force would delete with "
                                    f"the folder; {keep}")
    entries = list(out.iterdir())
    if not entries:
        return
    try:
        own = Manifest.load(out).own_files()
    except ManifestError:
        raise OutputExistsError(f"{out}: is not a bundle edgekd wrote (no readable manifest.json); {keep}") from None
    foreign = sorted(e.name for e in entries if e.name not in own or e.is_symlink() or not e.is_file())
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputExistsError(f"{out}: holds {shown}, which edgekd did not write there; move them out or {keep}")


@contextlib.contextmanager
def staged_directory(out_dir: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces `out_dir` (atomically per rename), on error
    it is deleted and `out_dir` is left exactly as it was."""
    out = check_output_dir(out_dir, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = make_stage(out.parent, f".{out.name}.", ".tmp")
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


@contextlib.contextmanager
def work_directory(beside: Path, prefix: str) -> Iterator[Path]:
    """A scratch directory `{prefix}{pid}-XXXX` for a converter's intermediate files, made next to its outputs
    (`beside`, itself a staging directory) rather than in the system temp directory, and deleted on exit. A
    process killed on the way leaves it inside its stage, which the next run clears, and the next scratch
    directory made in `beside` clears those of dead processes too."""
    beside.mkdir(parents=True, exist_ok=True)
    work = make_stage(beside, prefix)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def make_stage(parent: Path, prefix: str, suffix: str = "") -> Path:
    """A new hidden staging directory `{prefix}{pid}-XXXX{suffix}` in `parent`, after removing the stale ones
    (same prefix and suffix) that interrupted processes left there."""
    remove_stale_stages(parent, prefix, suffix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", suffix=suffix, dir=parent))


def remove_stale_stages(parent: Path, prefix: str, suffix: str = "", min_age_s: float = 60.0) -> None:
    """Delete the staging directories in `parent` whose process is gone.

    A stage whose name holds no pid (made by an older version) is stale once it is older than `min_age_s`.
    Stages of live processes, this one included, are left alone.
    """
    for d in parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        if not d.is_dir() or d.is_symlink():
            continue
        owner = d.name[len(prefix):].split("-", 1)[0]
        if owner.isdigit():
            if _alive(int(owner)):
                continue
        elif time.time() - d.stat().st_mtime < min_age_s:
            continue
        shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but is not ours (PermissionError), or cannot tell: keep its stage
    return True
