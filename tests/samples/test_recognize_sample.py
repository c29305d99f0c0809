"""samples/recognize run as a subprocess on folders of real MNIST digits written by the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from latency_stats import LatencySummary, percentile
from samples_support import RECOGNIZE, board_env, save_digit


def _run(*args: str, timeout_s: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECOGNIZE), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout_s, env=env or os.environ)


def _jsonl(stdout: str) -> tuple[list[dict], dict]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert "summary" in lines[-1], stdout
    return lines[:-1], lines[-1]["summary"]


@pytest.fixture(scope="module")
def clear_folder(digit_model, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """20 clear held-out digits as files: plain PNG, dark-on-white JPEG, 4x and 8x upscaled, BMP."""
    folder = tmp_path_factory.mktemp("digits")
    expected: dict[str, int] = {}
    variants = [(".png", 1, False), (".jpg", 4, True), (".png", 8, False), (".bmp", 4, True)]
    for i, (canvas, label) in enumerate(digit_model.clear_digits(per_class=2)):
        suffix, scale, invert = variants[i % len(variants)]
        path = save_digit(folder / f"digit_{i:02d}{suffix}", canvas, scale=scale, invert=invert)
        expected[str(path)] = label
    return folder, expected


def test_clear_digits_in_a_folder_get_correct_labels(digit_model, clear_folder):
    folder, expected = clear_folder
    done = _run(digit_model.bundle, folder, "--json")
    assert done.returncode == 0, done.stderr
    results, summary = _jsonl(done.stdout)
    assert sorted(r["source"] for r in results) == sorted(expected)
    for r in results:
        assert r["label"] == str(expected[r["source"]]), r
        assert r["probability"] >= 0.5 and len(r["top_k"]) == 3 and r["top_k"][0]["label"] == r["label"]
        assert 0 < r["latency_ms"] <= r["total_ms"]
    assert summary["count"] == summary["recognised"] == 20 and summary["errors"] == 0
    lat = summary["latency_ms"]
    assert lat["count"] == 20 and 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["p99_ms"] == pytest.approx(percentile([r["latency_ms"] for r in results], 99))


def test_follows_the_bundles_deployed_artifact(digit_model, clear_folder, tmp_path):
    """A bundle that records a deployed artifact other than its first one: the sample loads that one."""
    import shutil

    folder, _ = clear_folder
    bundle = tmp_path / "bundle"
    shutil.copytree(digit_model.bundle, bundle)
    shutil.copyfile(bundle / "student.onnx", bundle / "student_copy.onnx")
    m = json.loads((bundle / "manifest.json").read_text())
    m["artifacts"].append({**m["artifacts"][0], "path": "student_copy.onnx"})
    m["deployed"] = "student_copy.onnx"
    (bundle / "manifest.json").write_text(json.dumps(m))
    done = _run(bundle, folder / "digit_00.png", "--json")
    assert done.returncode == 0, done.stderr
    _, summary = _jsonl(done.stdout)
    assert summary["model"]["artifact"] == "student_copy.onnx" and summary["model"]["deployed"] is True
    done = _run(digit_model.bundle, folder / "digit_00.png")  # a bundle without the record: its first artifact
    assert done.returncode == 0 and "model: student.onnx (fp32, onnxruntime " in done.stdout


def test_a_model_that_outputs_nan_stops_with_one_error_line_and_exit_2(digit_model, clear_folder, tmp_path):
    import shutil

    from samples_support import write_logreg_onnx

    from edgekd_runtime.manifest import Artifact, Manifest

    folder, _ = clear_folder
    bundle = tmp_path / "nan_bundle"
    shutil.copytree(digit_model.bundle, bundle)
    write_logreg_onnx(bundle / "student.onnx", digit_model.weights * np.float32("nan"), digit_model.bias)
    m = Manifest.load(bundle)
    m.artifacts = [Artifact.from_file(bundle, "student.onnx", "fp32")]
    m.save(bundle)
    done = _run(bundle, folder, "--json")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: ") and "NaN scores" in done.stderr and "Traceback" not in done.stderr
    assert "NaN" not in done.stdout  # no answer was printed


def test_runs_where_torch_tensorflow_and_onnx_cannot_be_imported(digit_model, clear_folder, tmp_path):
    env = board_env(tmp_path / "blocked")
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode == 1 and "not installed on the board" in probe.stderr  # the blockers work
    folder, expected = clear_folder
    done = _run(digit_model.bundle, folder, "--json", env=env)
    assert done.returncode == 0, done.stderr
    results, _ = _jsonl(done.stdout)
    assert {r["source"]: int(r["label"]) for r in results} == expected


def test_unpicked_heldout_digits_reach_the_models_accuracy(digit_model, tmp_path):
    """100 held-out digits NOT filtered for clarity: the sample through the runtime matches numpy's model."""
    for i in range(100):
        save_digit(tmp_path / f"{i:03d}_{digit_model.test_y[i]}.png", digit_model.test_x[i], scale=2)
    done = _run(digit_model.bundle, tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    results, _ = _jsonl(done.stdout)
    hits = sum(r["label"] == Path(r["source"]).stem.split("_")[1] for r in results)
    assert len(results) == 100
    print(f"recognize sample: {hits}/100 unpicked held-out digits correct")
    assert hits >= 80, f"{hits}/100 correct; the numpy model scores {digit_model.heldout_accuracy:.3f} held out"


def test_human_output_lists_label_confidence_top3_latency_and_summary(digit_model, clear_folder):
    folder, expected = clear_folder
    first = sorted(expected)[0]
    done = _run(digit_model.bundle, first, folder / "digit_01.jpg")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    row = lines[0].split()
    assert row[0] == first and row[1] == str(expected[first]) and row[2].endswith("%") and row[3] == "top-3:"
    assert lines[0].endswith(" ms")
    assert "2 images, 2 recognised, 0 errors" in done.stdout
    assert "model latency: p50 " in done.stdout and "p99 " in done.stdout


def test_broken_files_get_clean_errors_and_the_rest_is_still_recognised(digit_model, clear_folder, tmp_path):
    from PIL import Image

    folder, expected = clear_folder
    good = sorted(expected)[:3]
    for p in good:
        (tmp_path / Path(p).name).write_bytes(Path(p).read_bytes())
    (tmp_path / "truncated.png").write_bytes(Path(good[0]).read_bytes()[:120])
    (tmp_path / "text.png").write_text("this is not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    Image.new("L", (64, 64), 0).save(tmp_path / "blank.png")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")

    done = _run(digit_model.bundle, tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert sorted(e.split(": ")[1] for e in errors) == sorted(
        str(tmp_path / n) for n in ("truncated.png", "text.png", "empty.jpg", "blank.png"))
    assert any("empty" in e for e in errors if "empty.jpg" in e)
    assert "7 images, 3 recognised, 4 errors" in done.stdout
    for p in good:
        assert f"{tmp_path / Path(p).name}  " in done.stdout

    done = _run(digit_model.bundle, tmp_path, "--json")
    results, summary = _jsonl(done.stdout)
    failed = {Path(r["source"]).name: r["error_type"] for r in results if "error" in r}
    assert failed == {"truncated.png": "ImageError", "text.png": "ImageError", "empty.jpg": "ImageError",
                      "blank.png": "BlankImageError"}
    assert summary["errors"] == 4 and summary["recognised"] == 3


@pytest.mark.parametrize("args, words", [
    (["{bundle}", "{missing}"], "no such file or folder"),
    (["{bundle}"], "nothing to recognise"),
    (["{bundle}", "{empty_dir}"], "folder has no images"),
    (["{bundle}", "{image}", "--watch"], "--watch takes exactly one folder"),
    (["{bundle}", "{image}", "--camera", "0"], "either image paths or --camera"),
    (["{missing}", "{image}"], "missing"),
    (["{image}", "{image}"], "digit_00.png"),
])
def test_bad_usage_exits_2_with_a_message_and_no_traceback(digit_model, clear_folder, tmp_path, args, words):
    (tmp_path / "empty").mkdir()
    values = {"bundle": digit_model.bundle, "missing": tmp_path / "missing", "empty_dir": tmp_path / "empty",
              "image": sorted(clear_folder[1])[0]}
    done = _run(*[a.format(**values) for a in args])
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: ") and words in done.stderr and "Traceback" not in done.stderr


def test_watch_recognises_files_dropped_into_the_folder(digit_model, clear_folder, tmp_path):
    from samples_support import save_digit as save

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    save(inbox / "old.png", digit_model.clear_digits(1)[0][0])
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen([sys.executable, str(RECOGNIZE), str(digit_model.bundle), str(inbox), "--watch",
                                 "--new-only", "--interval-s", "0.1", "--limit", "2", "--duration-s", "60",
                                 "--json"], stdout=subprocess.PIPE, stderr=err_file, text=True)
    try:
        deadline = time.monotonic() + 60
        while "watching" not in err_path.read_text():  # the model is loaded and the folder listed
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.05)
        picked = digit_model.clear_digits(1)
        for name, idx in (("new_a.png", 3), ("new_b.png", 8)):
            tmp = tmp_path / name
            save(tmp, picked[idx][0])
            os.replace(tmp, inbox / name)  # appear at once, as a copy tool that renames would do
            time.sleep(0.3)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    err = err_path.read_text()
    assert proc.returncode == 0, err
    results, summary = _jsonl(out)
    assert [(Path(r["source"]).name, r["label"]) for r in results] == [("new_a.png", "3"), ("new_b.png", "8")]
    assert summary["recognised"] == 2


def test_watch_stops_after_duration_and_reports_existing_files(digit_model, tmp_path):
    save_digit(tmp_path / "a.png", digit_model.clear_digits(1)[6][0])
    t0 = time.monotonic()
    done = _run(digit_model.bundle, tmp_path, "--watch", "--interval-s", "0.1", "--duration-s", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert 0.9 < time.monotonic() - t0 < 60
    results, summary = _jsonl(done.stdout)
    assert [r["label"] for r in results] == ["6"] and summary["count"] == 1


FAKE_CAMERA = '''
"""sitecustomize of the sample's process: OpenCV as installed (the runtime's preprocessing runs on it), with a
stand-in for its VideoCapture (there is no camera in CI): frames are the digits in FRAMES_NPY, upscaled 8x, dark
ink on white paper, BGR, with a blank frame after each digit."""
import os

import cv2
import numpy as np

class VideoCapture:
    def __init__(self, device):
        self.frames = np.load(os.environ["FRAMES_NPY"])
        self.device, self.n, self.released = device, 0, False

    def isOpened(self):
        return self.device == 0

    def read(self):
        i, blank = divmod(self.n, 2)
        self.n += 1
        if i >= len(self.frames):
            return False, None
        gray = np.full((28, 28), 255, np.uint8) if blank else 255 - self.frames[i]
        big = np.kron(gray, np.ones((8, 8), np.uint8))
        frame = np.full((300, 400), 255, np.uint8)
        frame[38:262, 88:312] = big
        return True, np.repeat(frame[..., None], 3, axis=2)

    def release(self):
        self.released = True


cv2.VideoCapture = VideoCapture
'''


def test_camera_frames_via_opencv_are_recognised(digit_model, tmp_path):
    picked = digit_model.clear_digits(1)
    np.save(tmp_path / "frames.npy", np.stack([picked[i][0] for i in (2, 5, 9)]))
    (tmp_path / "sitecustomize.py").write_text(FAKE_CAMERA)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "FRAMES_NPY": str(tmp_path / "frames.npy")}
    done = _run(digit_model.bundle, "--camera", "0", "--interval-s", "0.01", "--limit", "6", "--json", env=env)
    assert done.returncode == 0, done.stderr
    results, summary = _jsonl(done.stdout)
    assert [r.get("label") for r in results] == ["2", None, "5", None, "9", None]
    assert all(r["error_type"] == "BlankImageError" for r in results if "error" in r)
    assert summary == {**summary, "count": 6, "recognised": 3, "no_digit": 3, "errors": 0}

    done = _run(digit_model.bundle, "--camera", "3", env=env)  # a device the fake cannot open
    assert done.returncode == 2 and "OpenCV cannot open it" in done.stderr
    for crop in ("0", "5"):  # outside (0, 1]: refused before the camera opens
        done = _run(digit_model.bundle, "--camera", "0", "--crop", crop, env=env)
        assert done.returncode == 2 and "--crop" in done.stderr and "Traceback" not in done.stderr, crop


def test_camera_without_opencv_or_picamera2_says_what_to_install(digit_model, tmp_path):
    (tmp_path / "cv2.py").write_text("raise ImportError('no OpenCV here')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = _run(digit_model.bundle, "--camera", "auto", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "pip install opencv-python-headless" in done.stderr


def test_help_is_fast_and_documents_the_modes():
    t0 = time.monotonic()
    done = _run("--help")
    assert done.returncode == 0 and "--camera" in done.stdout and "--watch" in done.stdout
    assert time.monotonic() - t0 < 20


def test_percentile_and_summary_match_numpy():
    rng = np.random.default_rng(1)
    values = list(rng.exponential(2.0, size=257))
    for q in (0, 1, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    s = LatencySummary.of([1.0, 2.0, 3.0, 4.0])
    assert (s.count, s.p50_ms, s.mean_ms, s.max_ms) == (4, 2.5, 2.5, 4.0)
    assert s.p99_ms == pytest.approx(3.97)
    assert LatencySummary.of([]).to_dict()["p99_ms"] is None
    with pytest.raises(ValueError):
        percentile(values, 101)
