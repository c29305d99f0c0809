"""Bad labelled-line data is refused when the data is read, before anything is written or trained: a labels.tsv that
is not UTF-8 or not file<TAB>text, an image listed twice, a text longer than a line of the spec's width can emit, a
line height no student takes, too few training lines to calibrate the int8 the run converts to; and each message
names the option of every command that gives a data path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.data import DataSpec, load_data
from edgekd.data.idx import DataFileError
from edgekd.data.line_labels import LABELS_FILE, ctc_frames_needed, read_labels_tsv
from edgekd.data.lines import LineSpec, load_lines
from edgekd.models.line_models import check_stages_fit, line_search_space
from edgekd.models.students import INPUT_SIZE_RANGE, StudentIdError, parse_student_id
from edgekd_converters.calibration import MIN_CALIBRATION_SAMPLES
from edgekd_runtime.errors import UserInputError


def _line_image(i: int) -> np.ndarray:
    """A light page with a dark bar of ink (its length varies with `i`)."""
    page = np.full((40, 160), 235, np.uint8)
    page[10:30, 8:40 + i % 100] = 20
    return page


def _folder(root: Path, n: int, texts: dict[int, str] | None = None, tsv: bytes | None = None) -> Path:
    """`n` line images l000.png.. with labels.tsv (a header, then one row each; `texts` overrides some texts, `tsv`
    replaces the whole file)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(_line_image(i)).save(root / f"l{i:03d}.png")
    rows = "".join(f"l{i:03d}.png\t{(texts or {}).get(i, str(1000 + i))}\n" for i in range(n))
    (root / LABELS_FILE).write_bytes(tsv if tsv is not None else ("file\ttext\n" + rows).encode())
    return root


def _cli(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def _refused(r, *needles: str) -> None:
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert r.stderr.startswith("error: ") and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


@pytest.fixture()
def no_training(monkeypatch):
    """Any training from here on fails the test."""
    import edgekd.train.line_pipeline as lp

    def fail(*a, **k):
        raise AssertionError("training started before the data was checked")

    for name in ("train_line_teacher", "distill_lines"):
        monkeypatch.setattr(lp, name, fail)


# ---- 1. too few training lines for the int8 calibration of `edgekd run` -------------------------------------------

@pytest.mark.parametrize("precision", [[], ["--precision", "fp32"]])
def test_run_refuses_a_folder_too_small_for_int8_calibration_before_training(tmp_path, no_training, precision):
    root = _folder(tmp_path / "lines", 60)  # 12 test, 6 val, 42 train
    out = tmp_path / "run"
    r = _cli(["run", "--task", "lines", "--quick", "--data", root, "--out", out, *precision])
    _refused(r, "42 training lines (of the 60 listed", f"at least {MIN_CALIBRATION_SAMPLES} training lines",
             "list at least 285 lines", "--precision only picks the deployed one")
    assert not out.exists()


def test_run_refuses_too_few_composed_training_lines(tmp_path, no_training):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: lines\nlines: {train_lines: 150, val_lines: 8, test_lines: 8}\n")
    out = tmp_path / "run"
    _refused(_cli(["run", "--config", cfg, "--out", out]), "lines.train_lines is 150",
             f"set it to at least {MIN_CALIBRATION_SAMPLES}")
    assert not out.exists()


# ---- 2. texts longer than the line's CTC frames -------------------------------------------------------------------

def test_ctc_frames_needed_counts_a_blank_between_repeats():
    assert [ctc_frames_needed(t) for t in ("7", "123", "1123", "1111", "1212")] == [1, 3, 5, 7, 4]


def test_a_text_the_line_cannot_emit_is_refused_with_its_row(tmp_path):
    # 64 px -> 16 frames: 16 different characters fit, 16 with 8 doubled pairs do not, nor 17
    root = _folder(tmp_path / "f", 6, {1: "1234567890123456", 2: "1122334455667788"})
    spec = LineSpec("folder", str(root), width=64)
    with pytest.raises(DataFileError, match=r"labels.tsv:4: the text of l002.png has 16 characters and needs 24 "
                                            r"CTC frames, but a line 64 px wide has 16 .*width: 96"):
        load_lines(spec)
    root = _folder(tmp_path / "g", 6, {1: "1234567890123456"})  # exactly as many frames as characters: kept
    s = load_lines(LineSpec("folder", str(root), width=64))
    assert "1234567890123456" in s.train.texts + s.val.texts + s.test.texts


def test_data_info_refuses_a_200_character_label_on_a_192_px_line(tmp_path):
    root = _folder(tmp_path / "f", 6, {3: "1" * 200})
    _refused(_cli(["data", "info", "--task", "lines", root, "--no-grid"]), "labels.tsv:5",
             "l003.png has 200 characters", "a line 192 px wide has 48")


def test_composed_lines_longer_than_the_frames_are_refused():
    with pytest.raises(UserInputError, match=r"up to 12 digits need up to 23 CTC frames .* has 8"):
        LineSpec(height=24, width=32)
    LineSpec(height=24, width=32, max_len=4, test_min_len=1, test_max_len=4)  # 7 frames of 8: fits


# ---- 3. malformed labels.tsv ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, tsv, needle", [
    ("three columns", b"file\ttext\nl000.png\t1\nl001.png\t2\textra\nl002.png\t3\n",
     "labels.tsv:3: expected 2 columns file<TAB>text, got 3"),
    ("listed twice", b"l000.png\t1\nl001.png\t2\n./l000.png\t9\nl002.png\t3\n",
     "labels.tsv:3: image l000.png is listed again (first on line 1, '1'; here '9')"),
    ("not utf-8", b"file\ttext\nl000.png\t1\nl001.png\t2\xe9\nl002.png\t3\n",
     "labels.tsv:3: byte 0xe9 is not UTF-8"),
])
def test_malformed_labels_are_refused_naming_file_and_line(tmp_path, case, tsv, needle):
    root = _folder(tmp_path / "f", 3, tsv=tsv)
    with pytest.raises(DataFileError) as e:
        read_labels_tsv(root)
    assert needle in str(e.value) and str(root / LABELS_FILE) in str(e.value)
    r = _cli(["data", "info", "--task", "lines", root, "--no-grid"])
    _refused(r, needle)


def test_a_utf8_bom_before_the_header_is_read(tmp_path):
    root = _folder(tmp_path / "f", 3, tsv="\ufefffile\ttext\nl000.png\t1\nl001.png\t2\nl002.png\t3\n".encode())
    rows = read_labels_tsv(root)
    assert [(r.path.name, r.text, r.line) for r in rows] == [("l000.png", "1", 2), ("l001.png", "2", 3),
                                                             ("l002.png", "3", 4)]


# ---- 4. the line heights are the students' -------------------------------------------------------------------------

def test_line_heights_are_the_heights_students_take():
    lo, hi = INPUT_SIZE_RANGE
    for h in (lo, hi):
        LineSpec(height=h, width=max(192, h * 4))
        parse_student_id(f"ctc-w4-d2-r{h}")
    for h in (lo - 1, hi + 1, 100):
        with pytest.raises(UserInputError, match=f"line height must be {lo}..{hi} px"):
            LineSpec(height=h, width=400)
        with pytest.raises(StudentIdError, match="out of range"):
            parse_student_id(f"ctc-w4-d2-r{h}")


def test_the_search_space_holds_only_students_whose_stages_fit_the_height():
    for h in range(INPUT_SIZE_RANGE[0], INPUT_SIZE_RANGE[1] + 1, 4):
        for sid in line_search_space(h):
            check_stages_fit(sid)
    assert "dsctc-w8-d4-c1-r8" not in line_search_space(8) and "dsctc-w8-d4-c1-r16" in line_search_space(16)


@pytest.mark.parametrize("yaml_lines, extra, needle", [
    ("{height: 100, width: 400}", [], "line height must be 8..64 px"),
    ("{height: 8, train_lines: 300}", ["--student", "ctc-w4-d4-r8"], "4 stages do not fit a line of height 8"),
])
def test_run_refuses_a_line_height_no_student_takes_before_writing(tmp_path, no_training, yaml_lines, extra,
                                                                   needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task: lines\nlines: {yaml_lines}\n")
    out = tmp_path / "run"
    _refused(_cli(["run", "--quick", "--config", cfg, "--out", out, *extra]), needle)
    assert not out.exists()


# ---- 5. messages name the option of every command ------------------------------------------------------------------

def test_a_missing_path_names_every_command_s_option(tmp_path):
    both = ("--data PATH (edgekd run)", "--data-path PATH (teacher train, distill)", "--path PATH (data info)")
    _refused(_cli(["data", "info", "idx", "--no-grid"]), "data source 'idx' needs a path", *both, "data.path")
    _refused(_cli(["data", "info", "--task", "lines", "folder", "--no-grid"]), *both, "lines.path in the YAML")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: lines\nlines: {source: folder}\n")
    _refused(_cli(["run", "--config", cfg, "--out", tmp_path / "run"]), *both, "lines.path in the YAML")
    with pytest.raises(UserInputError, match=r"--path PATH \(data info\)"):
        load_data(DataSpec("npz"))
