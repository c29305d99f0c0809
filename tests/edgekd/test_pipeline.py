"""`edgekd run` end to end on a small slice of the embedded digits: report consistency, re-run, resume, --force."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekd.cli import app

pytestmark = pytest.mark.slow

STUDENT = "cnn-w16-d2-r28"  # what the default budget picks for rpi4
# A small run: 2,000 digits, the small teacher, few epochs, no mixing in the transfer set (it needs more epochs).
# The budget search still runs (over one candidate); --quick is given too, and the file's settings win over it.
SMALL = """\
data: {limit_per_class: 200}
teacher_arch: cnn-small
teacher_members: 2
teacher_train: {epochs: 8, batch_size: 32, lr: 0.01}
student_train: {epochs: 6, batch_size: 32, lr: 0.01}
augment: {erase_p: 0.0, patch_p: 0.0, mixup_p: 0.0, cutmix_p: 0.0}
distill: {transfer_views: 2, alpha: 0.5}
bench_runs: 20
"""

# The pipeline's int8 bars (parity >= 99 % top-1 agreement; the deployed int8 model within 0.5 pp of torch) are judged
# on the 400 held-out digits, and this small run's student (92-95 % accurate) is unsure of a few dozen of them: how
# many flip in int8 depends on the CPU and on how training rounded there. Measured on an AVX2 CPU without VNNI, where
# onnxruntime's u8*s8 pair sums saturate at int16 in the first conv: ONNX int8 97.75 %, TFLite int8 99.00 %, i.e.
# on the edge. These tests are about the pipeline's mechanics (report, re-run, resume), so the runs get explicit,
# looser bars; the default ones are tested on models with a clear margin in tests/converters and test_convert.py.
MECHANICS_MIN_TOP1 = 0.90
MECHANICS_INT8_DROP_PP = 5.0
# the same bars for `edgekd run` in a subprocess: python -c LOOSENED_EDGEKD run ...
LOOSENED_EDGEKD = ("import edgekd_converters.parity as p, edgekd.pipeline.results as r; "
                   f"p.TOLERANCES['int8'] = p.Tolerance(atol=float('inf'), min_top1_agreement={MECHANICS_MIN_TOP1}); "
                   f"r.INT8_ACCURACY_DROP_PP = {MECHANICS_INT8_DROP_PP}; from edgekd.cli import main; main()")


@pytest.fixture(autouse=True, scope="module")
def _mechanics_int8_bars():
    import edgekd.pipeline.results as results
    import edgekd_converters.parity as parity

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(parity.TOLERANCES, "int8", parity.Tolerance(atol=math.inf, min_top1_agreement=MECHANICS_MIN_TOP1))
        mp.setattr(results, "INT8_ACCURACY_DROP_PP", MECHANICS_INT8_DROP_PP)
        yield


def _invoke(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "small.yaml"
    p.write_text(SMALL)
    return p


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_config):
    out = tmp_path_factory.mktemp("runs") / "small"
    t0 = time.perf_counter()
    res = _invoke(["run", "--quick", "--config", str(small_config), "--student", STUDENT, "--out", str(out)])
    return out, res, time.perf_counter() - t0


def _canvases(bundle: Path):
    from edgekd.export.samples import bundle_samples
    from edgekd_runtime.manifest import Manifest

    m = Manifest.load(bundle)
    s = bundle_samples(m.extra["data"], m.input.size)
    return m, s.test_x, s.test_y


def test_run_writes_a_consistent_report(finished_run):
    import edgekd_runtime

    out, res, _ = finished_run
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert {m["role"] for m in rep["models"]} == {"teacher", "scratch", "distilled"}
    assert all(c["ok"] for c in rep["checks"]), rep["checks"]
    m, x, y = _canvases(out / "bundle")
    assert len(y) == 400  # 20% of 2,000

    # every artifact's accuracy in report.json is what edgekd_runtime measures on the test split, exactly
    paths = {a["path"] for a in rep["artifacts"]}
    assert paths == {"student.onnx", "student_float32.tflite", "student_float16.tflite", "student_int8.tflite",
                     "student_int8.onnx"}
    for a in rep["artifacts"]:
        rec = edgekd_runtime.load(out / "bundle", backend=a["format"], precision=a["precision"])
        assert a["accuracy"] == rec.evaluate(x, y), a["path"]
        assert a["size_bytes"] == (out / "bundle" / a["path"]).stat().st_size
        assert a["p50_ms"] > 0 and a["p99_ms"] >= a["p50_ms"]
        assert a["parity"]["passed"] is True

    dep = rep["deployed"]
    assert dep["path"] == m.deployed == "student_int8.tflite"
    assert edgekd_runtime.load(out / "bundle").model_path.name == dep["path"]  # the board's default: the budget's
    rec = edgekd_runtime.load(out / "bundle", backend="tflite", precision="int8")
    pred = rec.predict_proba(x).argmax(1)
    assert dep["accuracy"] == float(np.mean(pred == y))
    conf = np.array(dep["confusion"])
    assert conf.shape == (10, 10) and conf.sum() == len(y) and np.trace(conf) == int(np.sum(pred == y))

    # models: the students' rows agree with the chosen architecture and the artifacts
    rows = {r["role"]: r for r in rep["models"]}
    assert rows["distilled"]["arch"] == rows["scratch"]["arch"] == STUDENT == m.name
    assert rows["distilled"]["test_accuracy"] == pytest.approx(m.extra["torch_accuracy"], abs=1e-9)
    from edgekd.models.students import build_student, count_params
    from edgekd.models.teachers import TEACHERS

    assert rows["teacher"]["arch"] == "ensemble(cnn-small+cnn-small)"  # teacher_members: 2, seeds 0 and 1
    assert rows["teacher"]["params"] == 2 * count_params(TEACHERS.get("cnn-small")(10))
    assert (out / "teacher" / "teacher.pt").is_file() and (out / "teacher" / "member1" / "teacher.pt").is_file()
    assert rows["distilled"]["params"] == count_params(build_student(STUDENT, 10))
    int8 = next(a for a in rep["artifacts"] if a["path"] == "student_int8.tflite")
    assert int8["budget_ok"] is True and int8["size_bytes"] <= 32 * 1024
    assert abs(rows["distilled"]["flash_bytes"] - int8["size_bytes"]) <= 0.15 * int8["size_bytes"]
    # the manifest carries the same budget verdict
    assert next(a for a in m.artifacts if a.path == "student_int8.tflite").budget_ok is True
    # the deployed artifact's image path on a photo of a test digit: stages that add up, in bench.json too
    ip = rep["image_path"]
    assert ip["artifact"] == dep["path"] and ip["decoded_shape"] == [480, 640] and ip["runs"] == 20
    st = ip["stages"]
    assert list(st) == ["decode", "preprocess", "inference", "total"]
    assert all(s["p50_ms"] <= s["p99_ms"] for s in st.values()) and st["total"]["p50_ms"] >= st["inference"]["p50_ms"]
    assert st["total"]["mean_ms"] == pytest.approx(sum(st[k]["mean_ms"] for k in ("decode", "preprocess", "inference")))
    bench = json.loads((out / "bench.json").read_text())["artifacts"]
    assert bench[dep["path"]]["image_path"]["stages"] == st


def test_report_files_are_rendered(finished_run):
    out, _, _ = finished_run
    md = (out / "report.md").read_text()
    assert "Teacher vs student" in md and "student_int8.tflite" in md and "rpi4" in md
    assert "## Image path" in md and "| decode |" in md and "| total |" in md
    for png in ("training_curves.png", "confusion_matrix.png", "budget.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, png
        assert f"({png})" in md


def test_report_rerender_reproduces_the_page(finished_run):
    out, _, _ = finished_run
    before = (out / "report.md").read_text()
    (out / "report.md").unlink()
    (out / "confusion_matrix.png").unlink()
    res = _invoke(["report", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.md").read_text() == before
    assert (out / "confusion_matrix.png").is_file()


def test_rerun_skips_finished_steps(finished_run, small_config):
    out, first, first_s = finished_run
    t0 = time.perf_counter()
    res = _invoke(["run", "--quick", "--config", str(small_config), "--student", STUDENT, "--out", str(out)])
    assert res.exit_code == 0, res.output
    for step in ("teacher:", "budget:", "distilled:", "scratch:", "bundle:"):
        assert any(line.startswith(step) and "(done, skipped)" in line for line in res.output.splitlines()), step
    assert "training" not in res.output
    assert time.perf_counter() - t0 < first_s
    rep = json.loads((out / "report.json").read_text())
    assert rep["run"]["resumed"] is True


def test_other_configuration_is_refused_without_force(finished_run, small_config):
    out, _, _ = finished_run
    state = (out / "state.json").read_text()
    res = CliRunner().invoke(app, ["run", "--quick", "--config", str(small_config), "--student", STUDENT,
                                   "--seed", "7", "--out", str(out)])
    assert res.exit_code == 2
    assert "different configuration" in res.output and "--force" in res.output
    assert "Traceback" not in res.output
    assert (out / "state.json").read_text() == state  # nothing touched


def test_force_replaces_only_an_edgekd_run(tmp_path):
    from edgekd.pipeline.state import RunDirError, prepare_run_dir

    run = tmp_path / "run"
    assert prepare_run_dir(run, "aaa", {}, force=False) is False
    (run / "teacher").mkdir()
    (run / "teacher" / "teacher.pt").write_bytes(b"x")
    assert prepare_run_dir(run, "aaa", {}, force=False) is True  # same config: continue
    with pytest.raises(RunDirError, match="--force"):
        prepare_run_dir(run, "bbb", {}, force=False)
    assert prepare_run_dir(run, "bbb", {}, force=True) is False
    assert not (run / "teacher").exists()  # the old run's outputs are gone
    assert json.loads((run / "run.json").read_text())["fingerprint"] == "bbb"

    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(RunDirError, match="not an edgekd run directory"):
        prepare_run_dir(other, "aaa", {}, force=True)
    assert (other / "thesis.tex").read_text() == "precious"


def test_interrupted_run_resumes_training(tmp_path, small_config):
    """Kill `edgekd run` in the middle of the distillation; the same command finishes it from last.pt."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(small_config.read_text().replace("student_train: {epochs: 6", "student_train: {epochs: 7"))
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", LOOSENED_EDGEKD, "run", "--config", str(cfg), "--student", STUDENT, "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    last, metrics_file = out / "distilled" / "last.pt", out / "distilled" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    try:
        # an epoch ends with last.pt, then metrics.jsonl: killed on last.pt alone, a loaded machine could be caught
        # between the two writes (seen here: last.pt and no metrics.jsonl)
        while not metrics_file.is_file():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "distillation never finished an epoch"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert last.is_file()
    metrics = metrics_file.read_text().splitlines()
    assert 1 <= len(metrics) < 7

    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    log = res.stdout
    assert "teacher: " in log and "(done, skipped)" in log.split("teacher: ")[1].splitlines()[0]
    assert "distilled: resuming" in log
    epochs = [json.loads(line)["epoch"] for line in (out / "distilled" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(7))  # each epoch once: continued, not restarted
    rep = json.loads((out / "report.json").read_text())
    assert rep["deployed"]["accuracy"] > 0.5


def test_bad_config_is_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget: {latency_ms: 1.0, flash_mb: 3}\n")
    res = CliRunner().invoke(app, ["run", "--config", str(bad), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "flash_mb" in res.output
    assert not (tmp_path / "r").exists()  # refused before anything is written

    res = CliRunner().invoke(app, ["run", "--latency-ms", "-1", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "latency" in res.output
    res = CliRunner().invoke(app, ["run", "--target", "rpi9", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "rpi4" in res.output
    assert not (tmp_path / "r").exists()


def test_config_layers():
    from edgekd.pipeline import load_pipeline_config

    cfg = load_pipeline_config(None, {"budget": {"flash_kb": 64, "latency_ms": None}, "quick": True})
    assert cfg.budget.flash_bytes == 64 * 1024 and cfg.budget.latency_ms == 1.0  # None on the CLI = not given
    assert cfg.student_train.epochs == 5 and cfg.teacher_train.epochs == 3 and cfg.distill.alpha == 0.5
    assert cfg.fingerprint() != load_pipeline_config(None, {"quick": True}).fingerprint()
    # where training runs does not change what it computes, so it does not change the fingerprint
    assert load_pipeline_config(None, {"student_train": {"device": "cpu"}}).fingerprint() == \
        load_pipeline_config(None, {}).fingerprint()


@pytest.mark.parametrize("members, task, message", [
    (0, "digits", "from 1 to 8"), (9, "digits", "from 1 to 8"),
    ("two", "digits", "teacher_members must be a whole number"),
    (2, "lines", "the lines task trains one teacher")])
def test_teacher_members_out_of_range_is_a_config_error(members, task, message):
    from edgekd.pipeline.config import load_pipeline_config
    from edgekd_runtime.errors import UserInputError

    with pytest.raises(UserInputError, match=message):
        load_pipeline_config(None, {"teacher_members": members, "task": task})


def test_teacher_members_default_three_and_quick_one():
    from edgekd.pipeline.config import load_pipeline_config

    assert load_pipeline_config(None, {}).teacher_members == 3
    assert load_pipeline_config(None, {"quick": True}).teacher_members == 1
    assert load_pipeline_config(None, {"task": "lines"}).teacher_members == 1
