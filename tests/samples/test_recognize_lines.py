"""samples/recognize in line mode, run as a subprocess with the trained line bundle of tests/conftest.py: strings
written as pen strokes in files, folders and camera frames, `--pattern`, and issue 12's bad input (a blank page, a
photo without a text line, a 20,000-px-wide image, a pattern no string of the charset can match, a digit bundle
given a pattern, a corrupt lines manifest): one clear message each and exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from samples_support import (
    RECOGNIZE,
    blank_paper_photo,
    blob_photo,
    board_env,
    line_image,
    line_strokes,
    very_wide_line,
)

TEXTS = ("171", "1234", "7171")


def _run(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECOGNIZE), *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env or os.environ)


def _jsonl(stdout: str) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert "summary" in rows[-1], stdout
    return rows[:-1], rows[-1]["summary"]


@pytest.fixture(scope="module")
def line_folder(tmp_path_factory) -> Path:
    """The strings as files: white on black PNG (as the pad draws), dark on white JPEG, and a 2x PNG."""
    folder = tmp_path_factory.mktemp("lines")
    for i, text in enumerate(TEXTS):
        img = line_image(line_strokes(text))
        if i == 0:
            Image.fromarray(img).save(folder / f"{i}_{text}.png")
        elif i == 1:
            Image.fromarray(255 - img).save(folder / f"{i}_{text}.jpg", quality=92)
        else:
            big = Image.fromarray(img).resize((2 * img.shape[1], 2 * img.shape[0]), Image.Resampling.BILINEAR)
            big.save(folder / f"{i}_{text}.png")
    return folder


def test_a_folder_of_written_lines_is_read_on_a_board_without_torch(line_bundle, line_folder, tmp_path):
    done = _run(line_bundle, line_folder, "--json", env=board_env(tmp_path / "blocked"))
    assert done.returncode == 0, done.stderr
    results, summary = _jsonl(done.stdout)
    assert [r["text"] for r in results] == list(TEXTS)
    for r in results:
        assert [c["char"] for c in r["characters"]] == list(r["text"])
        xs = [c["x0"] for c in r["characters"]]
        assert xs == sorted(xs) and all(0 < c["probability"] <= 1 for c in r["characters"])
        assert 0 < r["confidence"] <= 1 and r["latency_ms"] > 0 and r["total_ms"] >= r["latency_ms"]
    assert summary == {**summary, "count": 3, "recognised": 3, "errors": 0, "no_text": 0, "pattern": None}
    assert summary["model"]["artifact"] == "student.onnx" and summary["latency_ms"]["count"] == 3

    done = _run(line_bundle, *sorted(line_folder.iterdir()))
    assert done.returncode == 0, done.stderr
    for text in TEXTS:
        assert f"  {text} " in done.stdout
    assert "3 images, 3 lines read, 0 errors" in done.stdout and "model latency per line: p50" in done.stdout


def test_a_pattern_constrains_every_reading(line_bundle, line_folder):
    done = _run(line_bundle, line_folder, "--pattern", r"\d{3}", "--json")
    assert done.returncode == 0, done.stderr
    results, summary = _jsonl(done.stdout)
    assert [len(r["text"]) for r in results] == [3, 3, 3] and results[0]["text"] == "171"
    assert summary["pattern"] == r"\d{3}"


def test_a_watched_folder_of_lines_is_read_and_announced(line_bundle, line_folder):
    done = _run(line_bundle, line_folder, "--watch", "--interval-s", "0.1", "--duration-s", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert f"watching {line_folder}" in done.stderr  # as in digit mode
    results, summary = _jsonl(done.stdout)
    assert summary["count"] == 3 and results[0]["text"] == "171"


@pytest.mark.parametrize("args, says", [
    (["--pattern", "[a-z]+"], "no reading over the model's characters '0123456789' can match pattern '[a-z]+'"),
    (["--pattern", "("], "pattern '('"),
])
def test_a_bad_pattern_stops_before_the_first_image(line_bundle, line_folder, args, says):
    done = _run(line_bundle, line_folder, *args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and says in done.stderr
    assert "Traceback" not in done.stderr


def test_a_digit_bundle_given_a_pattern_exits_2(digit_model, line_folder):
    done = _run(digit_model.bundle, line_folder, "--pattern", r"\d{3}")
    assert done.returncode == 2 and "--pattern constrains text lines" in done.stderr
    assert "single-digit bundle" in done.stderr and "Traceback" not in done.stderr


def test_bad_images_get_one_error_line_each_and_the_rest_is_read(line_bundle, line_folder, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(line_folder, folder)
    bad = {"blank_pad.png": (line_image([]), "no ink found"),
           "blank_page.png": (blank_paper_photo(), "no ink found"),
           "thumb.png": (blob_photo(), "no text line found"),
           "wide.png": (very_wide_line(20_000, 200), "split it into shorter lines")}
    for name, (img, _) in bad.items():
        Image.fromarray(img).save(folder / name)
    done = _run(line_bundle, folder, "--json")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    results, summary = _jsonl(done.stdout)
    by_name = {Path(r["source"]).name: r for r in results}
    for name, (_, says) in bad.items():
        assert says in by_name[name]["error"], by_name[name]
        assert "\n" not in by_name[name]["error"]
    assert sorted(r["text"] for r in results if "text" in r) == sorted(TEXTS)
    assert summary == {**summary, "count": 7, "recognised": 3, "errors": 4}
    done = _run(line_bundle, folder)
    assert done.returncode == 2 and sum(line.startswith("error: ") for line in done.stderr.splitlines()) == 4
    assert f"error: {folder / 'wide.png'}: " in done.stderr


def test_a_corrupt_lines_manifest_is_one_error_line_and_exit_2(line_bundle, line_folder, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(line_bundle, corrupt)
    manifest = json.loads((corrupt / "manifest.json").read_text())
    manifest["lines"]["charset"] = "00"
    (corrupt / "manifest.json").write_text(json.dumps(manifest))
    done = _run(corrupt, line_folder)
    assert done.returncode == 2 and "distinct characters" in done.stderr and "manifest.json" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""


FAKE_LINE_CAMERA = '''
"""sitecustomize of the sample's process: OpenCV as installed (the runtime's preprocessing runs on it), with a
stand-in for its VideoCapture: 400x1200 BGR frames, each line of FRAMES_NPY written dark on white across the
middle of the frame (wider than a square crop keeps), then a blank frame."""
import os

import cv2
import numpy as np

class VideoCapture:
    def __init__(self, device):
        self.lines, self.n = np.load(os.environ["FRAMES_NPY"]), 0

    def isOpened(self):
        return True

    def read(self):
        i, blank = divmod(self.n, 2)
        self.n += 1
        if i >= len(self.lines):
            return False, None
        frame = np.full((400, 1200), 235, np.uint8)
        if not blank:
            frame[120:280, 120:1080] = 235 - (0.9 * self.lines[i]).astype(np.uint8)
        return True, np.repeat(frame[..., None], 3, axis=2)

    def release(self):
        pass


cv2.VideoCapture = VideoCapture
'''


def test_camera_frames_are_read_whole_and_frames_without_a_line_are_counted(line_bundle, tmp_path):
    np.save(tmp_path / "lines.npy", np.stack([line_image(line_strokes(t)) for t in ("171", "1234")]))
    (tmp_path / "sitecustomize.py").write_text(FAKE_LINE_CAMERA)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "FRAMES_NPY": str(tmp_path / "lines.npy")}
    done = _run(line_bundle, "--camera", "0", "--interval-s", "0.01", "--limit", "4", "--json", env=env)
    assert done.returncode == 0, done.stderr
    results, summary = _jsonl(done.stdout)
    assert [r.get("text") for r in results] == ["171", None, "1234", None]
    assert all(r["error_type"] == "BlankImageError" for r in results if "error" in r)
    assert summary == {**summary, "count": 4, "recognised": 2, "no_text": 2, "errors": 0}
