"""Run directory bookkeeping: which configuration made it, and which steps finished with which inputs.

`run.json` records the configuration's fingerprint; `state.json` records, per step, the hash of its inputs and
whether it finished. Running the same command again skips finished steps whose input hash is unchanged and
resumes an unfinished training from its `last.pt`; a step whose inputs changed is redone from scratch.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from edgekd_runtime.atomic import atomic_write_json
from edgekd_runtime.errors import UserInputError

RUN_FORMAT = "edgekd-run"
MARKER = "run.json"
# What the pipeline writes in a run directory (the layout in run.py's docstring): with --force, these and nothing
# else are removed. The folders are edgekd's own working areas (a step that is redone empties its folder).
RUN_FILES = ("state.json", "config.yaml", "budget.json", "budget.png", "bench.json", "report.json", "report.md",
             "report.html", "training_curves.png", "confusion_matrix.png",
             "char_confusion.png", "coverage.png", "test_readings.png")  # the last three: task lines
RUN_DIRS = ("teacher", "distilled", "scratch", "bundle")


#: What edgekd writes inside its own folders (a run's RUN_DIRS, the --out of `teacher train` and `distill`):
#: checkpoints, metrics, configs, models and plots, a teacher's member<N>/ folders, and the hidden temporaries of
#: atomic writes and staged folders. Anything else there is the user's: edgekd refuses to delete such a folder.
OWN_SUFFIXES = (".pt", ".jsonl", ".json", ".yaml", ".onnx", ".tflite", ".png")
_HIDDEN_OWN = re.compile(r"^\.(.+\.(tmp|old)|convert-.*)$")


class RunDirError(UserInputError):
    """The output directory holds something else (another configuration, or not a run at all)."""


def foreign_entries(folder: Path) -> list[str]:
    """The entries of `folder` (and of its member<N>/ folders) that edgekd does not write there (OWN_SUFFIXES),
    as paths relative to `folder`; symbolic links are never edgekd's."""
    out = []
    for child in sorted(folder.iterdir()):
        if child.is_symlink():
            out.append(child.name)
        elif child.is_dir() and re.fullmatch(r"member\d+", child.name):
            out += [f"{child.name}/{n}" for n in foreign_entries(child)]
        elif not (_HIDDEN_OWN.match(child.name) or (child.is_file() and child.suffix in OWN_SUFFIXES)):
            out.append(child.name)
    return out


def refuse_foreign(folder: Path, what: str) -> None:
    """RunDirError, before anything is deleted, when `folder` holds files edgekd did not write (`foreign_entries`)."""
    foreign = foreign_entries(folder) if folder.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise RunDirError(f"{what} {folder}: holds {shown}, which edgekd did not write; move them out or choose "
                          f"another --out (nothing was deleted: edgekd does not delete files it did not make)")


def prepare_run_dir(run_dir: Path, fingerprint: str, config: dict[str, Any], force: bool) -> bool:
    """Create or reuse `run_dir`. Returns True when an earlier run with this configuration is continued."""
    marker = run_dir / MARKER
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} is a file; pass a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        old = read_marker(run_dir)
        if old["fingerprint"] == fingerprint:
            return True
        if not force:
            raise RunDirError(f"--out {run_dir} holds a run with a different configuration (fingerprint "
                              f"{old['fingerprint']} vs {fingerprint}); pass --force to replace it, or choose "
                              f"another --out")
        clear_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"format": RUN_FORMAT, "fingerprint": fingerprint, "config": config})
    return False


def read_marker(run_dir: Path) -> dict[str, Any]:
    """run.json as edgekd wrote it ({"format": "edgekd-run", "fingerprint": str, ...}); anything else means
    `run_dir` is not an edgekd run directory (RunDirError)."""
    marker = run_dir / MARKER

    def refuse(why: str) -> RunDirError:
        return RunDirError(f"--out {run_dir} exists and is not an edgekd run directory ({why}); choose another "
                           f"--out (edgekd will not delete files it did not make, even with --force)")

    if marker.is_symlink() or not marker.is_file():
        raise refuse(f"no {MARKER} written by edgekd")
    try:
        old = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise refuse(f"its {MARKER} is unreadable: {type(e).__name__}") from None
    if not isinstance(old, dict) or old.get("format") != RUN_FORMAT or not isinstance(old.get("fingerprint"), str):
        raise refuse(f"its {MARKER} has no \"format\": \"{RUN_FORMAT}\" and fingerprint: edgekd run did not write it")
    return old


def _owned_entries(run_dir: Path) -> list[Path]:
    """The entries of `run_dir` that edgekd wrote: RUN_FILES, RUN_DIRS and the hidden temporaries of atomic
    writes and staged folders (`.NAME.*.tmp`, `.NAME.*.old`) that an interrupted process left."""
    names = (*RUN_FILES, *RUN_DIRS, MARKER)
    owned = []
    for child in run_dir.iterdir():
        n = child.name
        temp = n.endswith((".tmp", ".old")) and any(n.startswith(f".{x}.") for x in names)
        if (n in names and n != MARKER) or temp:
            owned.append(child)
    return owned


def clear_run_dir(run_dir: Path) -> None:
    """Remove what an earlier edgekd run wrote in `run_dir` (see RUN_FILES/RUN_DIRS), nothing else; symbolic
    links are never followed. Everything is checked first, so a refusal deletes nothing; run.json stays (it is
    rewritten next), so a run directory that could not be fully cleared is still recognised as one."""
    owned = _owned_entries(run_dir)
    for p in owned:
        if p.is_symlink():
            raise RunDirError(f"--out {run_dir}: {p.name} is a symbolic link, which edgekd never makes; remove it or "
                              f"choose another --out (nothing was deleted)")
        want_dir = p.name in RUN_DIRS or p.name.endswith(".old") or (p.name.endswith(".tmp") and p.is_dir())
        if p.is_dir() != want_dir:
            raise RunDirError(f"--out {run_dir}: {p.name} is a {'folder' if p.is_dir() else 'file'}, which edgekd "
                              f"does not make there; move it or choose another --out (nothing was deleted)")
        if p.name in RUN_DIRS:
            refuse_foreign(p, "--out")
    owned.sort(key=lambda p: p.name != "state.json")  # first: a half-cleared run never claims finished steps
    for p in owned:
        try:
            shutil.rmtree(p) if p.is_dir() else p.unlink()  # rmtree removes links inside, never follows them
        except OSError as e:
            raise RunDirError(f"--out {run_dir}: cannot remove {p} ({e.strerror or e}); fix its permissions or "
                              f"choose another --out") from None


class StepState:
    """Per-step input hashes and completion, persisted atomically after every change."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "state.json"
        try:
            self.steps: dict[str, dict[str, Any]] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except json.JSONDecodeError:
            self.steps = {}

    def done(self, step: str, key: str) -> bool:
        s = self.steps.get(step) or {}
        return s.get("key") == key and bool(s.get("done"))

    def started_with(self, step: str, key: str) -> bool:
        return (self.steps.get(step) or {}).get("key") == key

    def start(self, step: str, key: str) -> None:
        self.steps[step] = {"key": key, "done": False}
        self._save()

    def finish(self, step: str, key: str, **info: Any) -> None:
        self.steps[step] = {"key": key, "done": True, **info}
        self._save()

    def info(self, step: str) -> dict[str, Any]:
        return dict(self.steps.get(step) or {})

    def _save(self) -> None:
        atomic_write_json(self.path, self.steps)
