"""`edgekd-rt bench --image`: the image path's stages (decode, preprocess, inference) and their total, each with
benchmark_model's statistics; a bad image is a clear exit 2. No assertion on how fast anything is."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from rt_support import bars_image, digit_canvas, handwriting_photo, make_line_bundle
from typer.testing import CliRunner

import edgekd_runtime as rt
from edgekd_runtime.bench import IMAGE_STAGES, run_image_benchmark, time_stages
from edgekd_runtime.cli import app
from edgekd_runtime.errors import BlankImageError, ImageError

runner = CliRunner()
STAT_KEYS = {"mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"}


@pytest.fixture()
def photo(tmp_path):
    p = tmp_path / "photo.png"
    Image.fromarray(handwriting_photo(digit_canvas())).save(p)
    return p


def _check_stages(doc: dict, runs: int) -> None:
    stages = doc["stages"]
    assert list(stages) == [*IMAGE_STAGES, "total"]
    for s in stages.values():
        assert set(s) == STAT_KEYS
        assert 0 <= s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert stages["total"]["p50_ms"] >= stages["inference"]["p50_ms"]
    assert stages["total"]["p99_ms"] >= stages["inference"]["p99_ms"]
    # the stages add up: a run's total is its three stages back to back
    assert stages["total"]["mean_ms"] == pytest.approx(sum(stages[k]["mean_ms"] for k in IMAGE_STAGES), rel=1e-9)
    samples = doc["samples_ms"]
    assert all(len(samples[k]) == runs for k in stages)
    np.testing.assert_allclose(np.sum([samples[k] for k in IMAGE_STAGES], axis=0), samples["total"], rtol=1e-9)


def test_cli_bench_image_json_has_the_four_stages(lin_onnx, photo):
    r = runner.invoke(app, ["bench", str(lin_onnx), "--image", str(photo), "--runs", "5", "--warmup", "1", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["runs"] == 5 and len(doc["samples_ms"]) == 5  # the interpreter-only report is still there
    path = doc["image_path"]
    assert path["image"] == str(photo) and path["decoded_shape"] == [480, 640] and path["canvas_shape"] == [28, 28]
    assert path["runs"] == 5 and path["warmup_runs"] == 1
    _check_stages(path, 5)


def test_cli_bench_image_table_and_unchanged_without_image(lin_onnx, photo):
    r = runner.invoke(app, ["bench", str(lin_onnx), "--image", str(photo), "-n", "3", "-w", "0"])
    assert r.exit_code == 0, r.output
    for stage in (*IMAGE_STAGES, "total", "p50 / p90 / p99 / mean"):
        assert stage in r.stdout
    r = runner.invoke(app, ["bench", str(lin_onnx), "-n", "3", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["image_path"] is None
    r = runner.invoke(app, ["bench", str(lin_onnx), "-n", "3"])
    assert r.exit_code == 0 and "decode" not in r.stdout


def test_the_timed_chain_is_what_predict_reads(lin_onnx, photo):
    rec = rt.load(lin_onnx)
    gray = rec.load_image(photo)
    assert gray.dtype == np.uint8 and gray.shape == (480, 640)  # 8-bit levels: what the preprocessing takes
    np.testing.assert_array_equal(rec.canvas(gray), rec.canvas(photo))


def test_a_line_bundle_times_line_preprocessing_and_the_model(tmp_path):
    d = make_line_bundle(tmp_path / "lines")
    img = tmp_path / "line.png"
    Image.fromarray(bars_image([(50, 80), (200, 230)])).save(img)
    rec = rt.load(d)
    np.testing.assert_array_equal(rec.canvas(rec.load_image(img))[0], rec.canvas(img)[0])
    r = runner.invoke(app, ["bench", str(d), "--image", str(img), "--runs", "4", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["image_path"]["canvas_shape"][0] == 24 and "lines" in doc
    _check_stages(doc["image_path"], 4)


@pytest.mark.parametrize("bad, says", [("missing", "no such file"), ("corrupt", "cannot decode"),
                                       ("text", "not an image"), ("blank", "no ink")])
def test_a_bad_image_is_a_clear_error_exit_2(lin_onnx, tmp_path, bad, says):
    p = tmp_path / f"{bad}.png"
    if bad == "corrupt":
        Image.fromarray(handwriting_photo(digit_canvas())).save(p)
        p.write_bytes(p.read_bytes()[:2000])  # truncated
    elif bad == "text":
        p.write_text("not a picture")
    elif bad == "blank":
        Image.fromarray(np.full((480, 640), 200, np.uint8)).save(p)
    r = runner.invoke(app, ["bench", str(lin_onnx), "--image", str(p), "--runs", "3", "--json"])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and str(p) in r.stderr and says in r.stderr.lower()
    assert "Traceback" not in r.output and r.stdout == ""


def test_library_errors_and_arguments(lin_onnx, photo, tmp_path):
    rec = rt.load(lin_onnx)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((100, 100), 255, np.uint8)).save(blank)
    with pytest.raises(BlankImageError):
        run_image_benchmark(rec, blank, runs=2)
    with pytest.raises(ImageError):
        run_image_benchmark(rec, tmp_path / "none.png", runs=2)
    with pytest.raises(Exception, match="runs=0"):
        run_image_benchmark(rec, photo, runs=0)
    rep = run_image_benchmark(rec, photo, runs=3, warmup=0)
    assert rep.stages["total"].mean_ms > 0 and rec.first_inference_ms is not None


def test_time_stages_chains_the_calls_and_counts_each_run():
    seen, ticks = [], []
    t = time_stages((lambda v: v + 1, lambda v: seen.append(v) or v * 10), 1, 4, progress=ticks.append)
    assert t.shape == (4, 2) and (t >= 0).all()
    assert seen == [2, 2, 2, 2] and ticks == [1, 2, 3, 4]
    assert time_stages((abs,), -1, 0).shape == (0, 1)
