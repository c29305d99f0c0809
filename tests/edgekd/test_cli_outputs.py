"""An output path that cannot be written (`/proc/x`: not even root may make a file there) is refused with one
`error:` line and exit 2 before any data is read or trained on: `run --out`, `teacher train --out`,
`distill --out`, `data info --grid`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekd.cli import app

UNWRITABLE = Path("/proc/edgekd-x")  # /proc takes no new files, whatever the permission bits say

pytestmark = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")


@pytest.mark.parametrize("args, what", [
    (["run", "--quick", "--out", UNWRITABLE], "--out"),
    (["teacher", "train", "--out", UNWRITABLE], "--out"),
    (["distill", "--loss", "none", "--student", "linear-r16", "--out", UNWRITABLE], "--out"),
    (["data", "info", "--grid", UNWRITABLE.with_suffix(".png")], "--grid"),
])
def test_an_unwritable_output_is_refused_before_any_work(no_work, args, what):
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 2 and "Traceback" not in r.output, (r.output, r.exception)
    errors = [line for line in r.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"{what} /proc/edgekd-x" in errors[0] and "cannot write in /proc" in errors[0], \
        r.output


def test_check_writable_makes_a_file_to_know_and_leaves_nothing_behind(tmp_path):
    from edgekd_runtime.atomic import check_writable

    assert check_writable(tmp_path / "a" / "b", "--out", directory=True) == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []  # the probe file is gone, no folder was made


@pytest.mark.parametrize("args, mine", [
    (["teacher", "train"], "config.yaml"),
    (["distill", "--loss", "none", "--student", "linear-r16"], "student.pt"),
    (["teacher", "train"], "metrics.jsonl"),
])
def test_training_into_a_folder_never_overwrites_files_there(no_work, tmp_path, args, mine):
    """`teacher train` / `distill` write config.yaml, metrics.jsonl, last.pt and their checkpoint in --out: a
    folder already holding one of them (the user's own config, an earlier student) is refused unless --resume."""
    (tmp_path / mine).write_text("# mine")
    (tmp_path / "notes.txt").write_text("mine")  # other files are no obstacle
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert r.exit_code == 2 and f"already holds {mine}, which this command writes: pass --resume" in r.output, \
        r.output
    assert (tmp_path / mine).read_text() == "# mine" and sorted(p.name for p in tmp_path.iterdir()) == \
        sorted([mine, "notes.txt"])
