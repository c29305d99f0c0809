"""Run directory bookkeeping: which configuration made it, and which steps finished with which inputs.

`run.json` records the configuration's fingerprint; `state.json` records, per step, the hash of its inputs and
whether it finished. Running the same command again skips finished steps whose input hash is unchanged and
resumes an unfinished training from its `last.pt`; a step whose inputs changed is redone from scratch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edgekd_runtime.atomic import atomic_write_json
from edgekd_runtime.errors import UserInputError

RUN_FORMAT = "edgekd-run"


class RunDirError(UserInputError):
    """The output directory holds something else (another configuration, or not a run at all)."""


def prepare_run_dir(run_dir: Path, fingerprint: str, config: dict[str, Any], force: bool) -> bool:
    """Create or reuse `run_dir`. Returns True when an earlier run with this configuration is continued."""
    marker = run_dir / "run.json"
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} is a file; pass a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not marker.is_file():
            raise RunDirError(f"--out {run_dir} exists and is not an edgekd run directory; choose another --out "
                              f"(edgekd will not delete files it did not make, even with --force)")
        try:
            old = json.loads(marker.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("fingerprint") == fingerprint:
            return True
        if not force:
            raise RunDirError(f"--out {run_dir} holds a run with a different configuration (fingerprint "
                              f"{old.get('fingerprint')} vs {fingerprint}); pass --force to replace it, or choose "
                              f"another --out")
        for child in run_dir.iterdir():  # only a directory edgekd made gets here
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"format": RUN_FORMAT, "fingerprint": fingerprint, "config": config})
    return False


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
