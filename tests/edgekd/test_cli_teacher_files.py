"""A --teacher that is no readable file, an ONNX file as a line teacher, and a line teacher of another charset are
refused with one `error:` line that says so (exit 2): not "not found", not a torch unpickling error, not tensor
shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_checks import refused


@pytest.mark.parametrize("command", [["distill", "--student", "linear-r16"], ["run", "--quick"]])
def test_a_directory_as_teacher_is_a_directory_not_missing(tmp_path, no_work, command):
    line = refused([*command, "--teacher", tmp_path, "--out", tmp_path / "o"], f"teacher {tmp_path}",
                    "is a directory")
    assert "not found" not in line and not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", [["distill", "--student", "ctc-w8-d2-c1-r24"], ["run", "--quick"]])
def test_an_onnx_line_teacher_is_refused_as_a_kind_not_as_corrupt(tmp_path, no_work, command):
    onnx = tmp_path / "t.onnx"
    onnx.write_bytes(b"\x08\x07")  # any ONNX file: the kind is refused by its name, before it is read
    line = refused([*command, "--task", "lines", "--teacher", onnx, "--out", tmp_path / "o"],
                    ".onnx files are digit teachers only", "edgekd line checkpoint")
    assert "corrupt" not in line and not (tmp_path / "o").exists()


def _line_folder(root, texts):
    from PIL import Image

    root.mkdir()
    for i, _ in enumerate(texts):
        img = np.full((24, 96), 255, np.uint8)
        img[6:18, 4:20 + 8 * (i % 5)] = 0
        Image.fromarray(img).save(root / f"l{i}.png")
    (root / "labels.tsv").write_text("file\ttext\n" + "".join(f"l{i}.png\t{t}\n" for i, t in enumerate(texts)))
    return root


def test_a_line_teacher_of_another_charset_names_the_characters(tmp_path):
    teacher = tmp_path / "teacher.pt"
    torch.save({"format": "edgekd-checkpoint", "kind": "teacher", "task": "lines", "charset": "0123456789"}, teacher)
    data = _line_folder(tmp_path / "lines", ["A1", "B2", "C3", "12", "A3", "B1", "C2", "31", "AB", "C0"] * 2)
    line = refused(["distill", "--task", "lines", "--teacher", teacher, "--data", "folder", "--data-path", data,
                     "--student", "ctc-w8-d2-c1-r24", "--out", tmp_path / "o"],
                    "reads the characters '0123456789'", "the teacher cannot read 'ABC'")
    assert "shape" not in line and not (tmp_path / "o").exists()


def test_charset_difference_in_words():
    from edgekd.train.line_pipeline import _charset_difference

    assert _charset_difference("0123", "012A") == "the teacher cannot read 'A'; the data has no '3'"
    assert "another order" in _charset_difference("0123", "1023")
