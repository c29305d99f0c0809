"""`edgekd run --out DIR [--force]`: a run directory is recognised by its own marker's content, and --force removes
only what edgekd wrote there, never following symbolic links. Fast: no training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.pipeline.state import RUN_DIRS, RUN_FILES, RunDirError, prepare_run_dir


def _user_files(d: Path) -> dict[str, bytes]:
    """Files a user keeps in `d` (not edgekd's): a document, a folder with notes, a file edgekd writes elsewhere."""
    (d / "notes").mkdir(parents=True, exist_ok=True)
    files = {"thesis.tex": b"precious", "notes/todo.txt": b"keep me", "teacher.pt": b"my own teacher",
             ".hidden.tmp": b"not an edgekd temporary"}
    for name, data in files.items():
        (d / name).write_bytes(data)
    return files


def _assert_kept(d: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (d / name).read_bytes() == data, name


def _edgekd_run(d: Path, fingerprint: str = "aaa") -> None:
    """A run directory as the pipeline leaves it: its marker, every file and folder, and interrupted temporaries."""
    assert prepare_run_dir(d, fingerprint, {}, force=False) is False
    for name in RUN_FILES:
        (d / name).write_text("x")
    for name in RUN_DIRS:
        (d / name).mkdir()
        (d / name / "last.pt").write_bytes(b"x")
    (d / ".state.json.k2j3.tmp").write_text("half")
    (d / ".bundle.999999-ab12.tmp").mkdir()


@pytest.mark.parametrize("marker", [b"{not json", b"{}", b"[1, 2]", b'{"fingerprint": "bbb"}',
                                    b'{"format": "edgekd-run"}', b'{"format": "other", "fingerprint": "b"}',
                                    b"\xff\xfe\x00", None])
def test_force_refuses_a_folder_whose_marker_edgekd_did_not_write(tmp_path, marker):
    d = tmp_path / "mine"
    d.mkdir()
    files = _user_files(d)
    if marker is None:
        (d / "run.json").mkdir()  # not even a file
    else:
        (d / "run.json").write_bytes(marker)
    with pytest.raises(RunDirError, match="not an edgekd run directory"):
        prepare_run_dir(d, "bbb", {}, force=True)
    _assert_kept(d, files)
    assert (d / "run.json").exists()


def test_force_removes_what_edgekd_wrote_and_nothing_else(tmp_path):
    d = tmp_path / "run"
    _edgekd_run(d)
    files = _user_files(d)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.bin").write_bytes(b"elsewhere")
    (d / "link").symlink_to(outside, target_is_directory=True)  # the user's link, at the top
    (d / "teacher" / "member1").mkdir()  # a teacher's members and what atomic writes leave inside edgekd's folders
    (d / "teacher" / "member1" / "teacher.pt").write_bytes(b"x")
    (d / "distilled" / ".student.pt.5f3a.tmp").write_bytes(b"half")
    assert prepare_run_dir(d, "bbb", {}, force=True) is False
    assert json.loads((d / "run.json").read_text())["fingerprint"] == "bbb"
    _assert_kept(d, files)
    assert (d / "link").is_symlink() and (outside / "data.bin").read_bytes() == b"elsewhere"
    left = sorted(p.name for p in d.iterdir())
    assert left == sorted(["run.json", "link", "notes", *(n for n in files if "/" not in n)])


@pytest.mark.parametrize("name, make", [
    ("teacher", lambda p, target: p.symlink_to(target, target_is_directory=True)),  # a folder edgekd owns, linked
    ("report.json", lambda p, target: p.symlink_to(target / "data.bin")),
    ("bundle", lambda p, target: p.write_text("a file where edgekd makes a folder")),
    ("state.json", lambda p, target: p.mkdir()),
])
def test_force_refuses_entries_edgekd_never_makes_before_deleting_anything(tmp_path, name, make):
    d = tmp_path / "run"
    _edgekd_run(d)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.bin").write_bytes(b"elsewhere")
    target = d / name
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    make(target, outside)
    before = sorted(p.name for p in d.iterdir())
    with pytest.raises(RunDirError, match=f"{name} is a .*nothing was deleted"):
        prepare_run_dir(d, "bbb", {}, force=True)
    assert sorted(p.name for p in d.iterdir()) == before and (d / "budget.json").is_file()
    assert (outside / "data.bin").read_bytes() == b"elsewhere"


@pytest.mark.parametrize("inside", ["bundle/my_notes.txt", "teacher/mine.txt", "teacher/member1/plot.jpg",
                                    "scratch/link"])
def test_force_refuses_files_of_yours_inside_edgekds_folders_and_deletes_nothing(tmp_path, inside):
    """The folders a run writes (teacher/, distilled/, scratch/, bundle/) are emptied with --force or when a step
    is redone; a file there that edgekd does not write (not a checkpoint, metrics, config, model or plot) stops
    it, before anything is deleted."""
    d = tmp_path / "run"
    _edgekd_run(d)
    path = d / inside
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(tmp_path) if inside.endswith("link") else path.write_text("mine")
    before = sorted(str(p.relative_to(d)) for p in d.rglob("*"))
    with pytest.raises(RunDirError, match=f"holds {inside.split('/', 1)[1]}, which edgekd did not write.*nothing "
                                          f"was deleted"):
        prepare_run_dir(d, "bbb", {}, force=True)
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*")) == before


def test_a_file_that_cannot_be_removed_is_an_error_not_a_traceback(tmp_path, monkeypatch):
    import edgekd.pipeline.state as state

    d = tmp_path / "run"
    _edgekd_run(d)

    def refuse(path, *a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(state.shutil, "rmtree", refuse)
    with pytest.raises(RunDirError, match="cannot remove .*Permission denied"):
        prepare_run_dir(d, "bbb", {}, force=True)
    assert not (d / "state.json").exists()  # removed first: a half-cleared run never claims finished steps
    assert json.loads((d / "run.json").read_text())["fingerprint"] == "aaa"  # still recognised as a run


def test_cli_run_force_on_a_folder_that_is_not_a_run_exits_2_and_deletes_nothing(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    files = _user_files(d)
    (d / "run.json").write_text("{}")
    r = CliRunner().invoke(app, ["run", "--quick", "--out", str(d), "--force"])
    assert r.exit_code == 2, r.output
    assert "not an edgekd run directory" in r.output and "Traceback" not in r.output
    assert r.output.strip().count("\n") == 0 and r.output.startswith("error: ")
    _assert_kept(d, files)


def test_cli_run_force_checks_every_input_before_clearing_the_earlier_run(tmp_path):
    d = tmp_path / "run"
    _edgekd_run(d)
    before = sorted(str(p.relative_to(d)) for p in d.rglob("*"))
    r = CliRunner().invoke(app, ["run", "--quick", "--out", str(d), "--device", "cuda:7", "--force"])
    assert r.exit_code == 2 and "not available here" in r.output, r.output
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*")) == before  # the earlier run is still whole
