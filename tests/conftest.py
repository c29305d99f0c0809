"""Fixtures shared by the test folders: a real (tiny, trained) text-line student and its exported bundle, built
once per session for the export tests and the sample apps alike (lines_support)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def line_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lines checkpoint of lines_support's student (CTC on embedded digit strings, ~20 s on one core)."""
    torch = pytest.importorskip("torch")
    from lines_support import make_line_student_checkpoint

    torch.set_num_threads(1)
    return make_line_student_checkpoint(tmp_path_factory.mktemp("line_student") / "student.pt")


@pytest.fixture(scope="session")
def line_bundle(line_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`edgekd export` of that checkpoint: a line-recognition bundle with a dynamic-width student.onnx."""
    from edgekd.export import export_bundle

    out = tmp_path_factory.mktemp("line_export") / "bundle"
    export_bundle(line_ckpt, out)
    return out
