"""`edgekd run --task lines` end to end on a tiny slice of the embedded digit strings: the report's numbers are what
edgekd_runtime reads, its files are rendered, a re-run skips, bad input is refused with exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekd.cli import app

pytestmark = pytest.mark.tflite

STUDENT = "ctc-w4-d2-r24"
LINES = {"train_lines": 256, "val_lines": 32, "test_lines": 64, "min_len": 3, "max_len": 8, "test_min_len": 3,
         "test_max_len": 10}  # 256 lines calibrate int8 (>= 200 needed), 64 test lines of lengths 3-10
# One epoch of everything: the pipeline's mechanics, not its accuracy (benchmarks/pipeline.py --task lines measures
# that); --quick is given too, and the file's settings win over it.
TINY = f"""\
task: lines
lines: {json.dumps(LINES)}
teacher_arch: crnn-small
teacher_train: {{epochs: 1, batch_size: 32}}
student_train: {{epochs: 1, batch_size: 32}}
distill: {{transfer_views: 1}}
bench_runs: 5
"""


@pytest.fixture(autouse=True, scope="module")
def _mechanics_bars():
    """A one-epoch student reads near-ties everywhere, so int8 flips many of its (wrong) strings: the conversion
    bars are lifted for these mechanics tests (the default ones are tested in test_lines_export.py on a student
    that reads its lines)."""
    import edgekd.pipeline.lines_report as lines_report
    import edgekd_converters.parity as parity

    with pytest.MonkeyPatch.context() as mp:
        for prec in ("fp16", "int8"):
            mp.setitem(parity.SEQUENCE_TOLERANCES, prec, parity.SequenceTolerance(atol=math.inf,
                                                                                   min_string_agreement=0.0))
        mp.setattr(lines_report, "INT8_CER_INCREASE_PP", math.inf)
        yield


def _invoke(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    p.write_text(TINY)
    return p


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_config):
    out = tmp_path_factory.mktemp("runs") / "lines"
    res = _invoke(["run", "--quick", "--config", str(tiny_config), "--student", STUDENT, "--out", str(out)])
    return out, res


@pytest.fixture(scope="module")
def test_lines():
    from edgekd.data.lines import LineSpec, load_lines

    return load_lines(LineSpec(**LINES)).test


def test_report_numbers_are_what_the_runtime_reads(finished_run, test_lines):
    import edgekd_runtime
    from edgekd_runtime.lines import greedy_decode
    from edgekd_runtime.manifest import Manifest

    out, res = finished_run
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["task"] == "lines" and all(c["ok"] for c in rep["checks"]), rep["checks"]
    x = test_lines.x.astype(np.float32) / 255.0
    assert {a["path"] for a in rep["artifacts"]} == {"student.onnx", "student_float32.tflite",
                                                     "student_float16.tflite", "student_int8.tflite",
                                                     "student_int8.onnx"}
    for a in rep["artifacts"]:
        rec = edgekd_runtime.load(out / "bundle", backend=a["format"], precision=a["precision"])
        got = rec.evaluate(x, test_lines.texts)
        assert (a["string_accuracy"], a["cer"]) == (got["string_accuracy"], got["cer"]), a["path"]
        assert a["size_bytes"] == (out / "bundle" / a["path"]).stat().st_size and a["p50_ms"] > 0

    m = Manifest.load(out / "bundle")
    dep = rep["deployed"]
    assert dep["path"] == m.deployed == "student_int8.tflite" and dep["num_samples"] == 64
    rec = edgekd_runtime.load(out / "bundle")
    hyps = greedy_decode(rec.forward(x), rec.charset)
    assert dep["string_accuracy"] == np.mean([h == t for h, t in zip(hyps, test_lines.texts)])
    assert [s["reading"] for s in dep["samples"]] == hyps[:24]
    assert sum(v["n"] for v in dep["per_length"].values()) == 64
    assert set(dep["per_length"]) <= {str(k) for k in range(3, 11)}
    # the character confusion: rows hold every true character once, columns every character read
    conf = np.array(dep["confusion"]["matrix"])
    assert dep["confusion"]["labels"] == [*"0123456789", "∅"] and conf.shape == (11, 11)
    assert conf[:10].sum() == sum(map(len, test_lines.texts)) and conf[:, :10].sum() == sum(map(len, hyps))
    # confidence at the bundle's temperature; rejecting nothing keeps the string accuracy
    c = dep["confidence"]
    assert c["temperature"] == m.lines.confidence_temperature and c["coverage"][0]["reject_percent"] == 0
    assert c["coverage"][0]["accuracy"] == pytest.approx(dep["string_accuracy"])


def test_report_rows_and_the_8_character_line(finished_run):
    out, _ = finished_run
    rep = json.loads((out / "report.json").read_text())
    rows = {r["role"]: r for r in rep["models"]}
    assert set(rows) == {"teacher", "scratch", "distilled"} and rows["teacher"]["arch"] == "crnn-small"
    assert rows["distilled"]["arch"] == rows["scratch"]["arch"] == rep["budget"]["chosen"] == STUDENT
    for r in rows.values():
        assert 0 <= r["test_string_accuracy"] <= 1 and r["test_cer"] >= 0 and r["per_length"]
    int8 = next(a for a in rep["artifacts"] if a["path"] == "student_int8.tflite")
    assert int8["budget_ok"] is True and int8["size_bytes"] <= 32 * 1024
    lat = rep["line_latency"]
    assert lat["length"] == 8 and lat["width_px"] == 192 and lat["board"] == "rpi4" and lat["precision"] == "int8"
    assert lat["predicted_board_ms"] == rows["distilled"]["predicted_latency_ms"] <= 2.0
    assert lat["measured_inference_ms"] > 0 and lat["measured_total_ms"] >= lat["measured_inference_ms"]
    assert "(8 characters)" in lat["line"] and rep["image_path"]["artifact"] == "student_int8.tflite"


def test_report_files_are_rendered_and_rerendered(finished_run):
    out, _ = finished_run
    md = (out / "report.md").read_text()
    for section in ("Teacher vs student", "Accuracy per length", "Artifacts", "Latency of an 8-character line",
                    "Confidence you can act on", "Character confusion", "Test lines and their readings"):
        assert f"## {section}" in md, section
    for png in ("training_curves.png", "char_confusion.png", "coverage.png", "test_readings.png", "budget.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, png
        assert f"({png})" in md, png
    page = (out / "report.html").read_text()
    assert "<table>" in page and 'src="test_readings.png"' in page and "Accuracy per length" in page
    (out / "report.md").unlink()
    (out / "char_confusion.png").unlink()
    res = _invoke(["report", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.md").read_text() == md and (out / "char_confusion.png").is_file()


def test_report_json_prints_the_lines_report(finished_run):
    """`edgekd report RUN --json` on a lines run prints its report.json as written (it used to go through the digit
    report's typed loader, which refused the lines sections)."""
    out, _ = finished_run
    res = _invoke(["report", str(out), "--json"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed == json.loads((out / "report.json").read_text())
    assert printed["task"] == "lines" and printed["models"][0]["test_cer"] is not None


def test_rerun_skips_finished_steps(finished_run, tiny_config):
    out, _ = finished_run
    res = _invoke(["run", "--quick", "--config", str(tiny_config), "--student", STUDENT, "--out", str(out)])
    assert res.exit_code == 0, res.output
    for step in ("teacher:", "budget:", "distilled:", "scratch:", "bundle:"):
        assert any(line.startswith(step) and "(done, skipped)" in line for line in res.output.splitlines()), step
    assert "training" not in res.output
    assert json.loads((out / "report.json").read_text())["run"]["resumed"] is True


def test_other_configuration_is_refused_without_force(finished_run, tiny_config):
    out, _ = finished_run
    state = (out / "state.json").read_text()
    res = CliRunner().invoke(app, ["run", "--quick", "--config", str(tiny_config), "--student", STUDENT, "--seed",
                                   "7", "--out", str(out)])
    assert res.exit_code == 2 and "different configuration" in res.output and "--force" in res.output
    assert (out / "state.json").read_text() == state


@pytest.mark.parametrize("args, message", [
    (["--task", "bogus"], "unknown task 'bogus'; known tasks: digits, lines"),
    (["--task", "lines", "--student", "cnn-w16-d2-r28"], "reads single digits"),
    (["--task", "lines", "--student", "ctc-w8-d2-r32"], "takes lines 32 px high"),
    (["--student", "ctc-w8-d2-r24"], "reads text lines (CTC); pass --task lines"),
    (["--task", "lines", "--data", "npz"], "unknown line data source 'npz'"),
    (["--task", "lines", "--data", "/nonexistent"], "nor an existing folder of line images with a labels.tsv"),
    (["--task", "lines", "--teacher-scale", "0-1"], "teacher_scale is for digit teacher files"),
    (["--task", "lines", "--kd-mode", "online"], "--kd-mode online is for the digits task"),
    (["--task", "lines", "--deploy-teacher", "never"], "deploy_teacher never is for the digits task"),
])
def test_bad_inputs_exit_2_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()) and "Traceback" not in res.output
    assert not out.exists()


@pytest.mark.parametrize("yaml_text, message", [
    ("task: lines\naugment: {erase_p: 0.0}\n", "['augment'] are not for the lines task"),
    ("lines: {train_lines: 100}\n", "['lines'] are not for the digits task"),
    ("task: lines\nlines: {heigth: 24}\n", "unknown lines option(s) ['heigth']"),
])
def test_sections_of_the_other_task_are_refused(tmp_path, yaml_text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    res = CliRunner().invoke(app, ["run", "--config", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "run").exists()


def test_line_defaults_and_the_data_flags():
    from edgekd.pipeline import load_pipeline_config
    from edgekd.pipeline.tasks import DEFAULT_LINE_BUDGET, LINE_QUICK, LINE_RUN, QUICK_LINE_BUDGET

    cfg = load_pipeline_config(None, {"task": "lines", "data": {"source": None, "path": None, "seed": 3}})
    assert (cfg.task, cfg.teacher_arch, cfg.distill.loss, cfg.lines.seed, cfg.data.seed) == (
        "lines", "convctc", "blank_kd", 3, 0)
    assert cfg.budget == DEFAULT_LINE_BUDGET and cfg.teacher_train.epochs == LINE_RUN["teacher_epochs"]
    quick = load_pipeline_config(None, {"task": "lines", "quick": True})
    assert quick.lines.train_lines == LINE_QUICK["train_lines"] and quick.lines.test_lines == LINE_QUICK["test_lines"]
    assert quick.student_train.epochs == LINE_QUICK["student_epochs"]
    # --quick picks from a smaller budget (a smaller student, to fit its 2 minutes); a budget given still wins
    assert quick.budget == QUICK_LINE_BUDGET and QUICK_LINE_BUDGET.flash_bytes < DEFAULT_LINE_BUDGET.flash_bytes
    mine = load_pipeline_config(None, {"task": "lines", "quick": True, "budget": {"flash_kb": 64}})
    assert mine.budget.flash_bytes == 64 * 1024
    assert len({cfg.fingerprint(), quick.fingerprint(), load_pipeline_config().fingerprint()}) == 3
    # a digit run's fingerprint does not hash the lines task's fields (run directories made before keep theirs)
    from dataclasses import replace

    from edgekd.data.lines import LineSpec
    from edgekd.pipeline.config import digest

    digits = load_pipeline_config()
    assert replace(digits, lines=LineSpec(train_lines=7)).fingerprint() == digits.fingerprint()
    d = digits.to_dict()
    del d["task"], d["lines"]
    for section in ("teacher_train", "student_train"):
        for k in ("device", "num_threads", "compile"):
            d[section].pop(k, None)
    assert digits.fingerprint() == digest(d)


def test_char_confusion_counts_matches_substitutions_insertions_deletions():
    from edgekd.pipeline.lines_report import char_confusion

    labels, m = char_confusion(["123", "45", "7"], ["128", "445", ""], "0123456789")
    m = np.array(m)
    assert labels[-1] == "∅" and m.shape == (11, 11)
    assert m[1, 1] == m[2, 2] == m[5, 5] == 1 and m[4, 4] == 1  # matches
    assert m[3, 8] == 1  # substitution 3 -> 8
    assert m[10, 4] == 1  # an inserted 4
    assert m[7, 10] == 1  # a dropped 7
    assert m.sum() == 7


def test_a_fallback_artifact_over_the_budget_is_called_out():
    """int8 failed parity, so fp16 is deployed: the deploy check names it, and says when its file is over the
    budget (a float file of a student sized for int8); the failed artifact is listed with its agreement."""
    from types import SimpleNamespace

    from edgekd.pipeline.lines_report import conversion_checks

    failed = {"path": "student_int8.tflite", "parity": {"max_abs_diff": 0.9, "string_agreement": 0.984,
                                                         "cer_increase": 0.0001, "reference": "torch"}}
    manifest = SimpleNamespace(extra={"conversion": {"failed": [failed]}})
    fp16 = SimpleNamespace(precision="fp16", format="tflite", path="student_float16.tflite", size_bytes=50_380)
    over, within, unknown = (conversion_checks(manifest, fp16, "int8", fits) for fits in (False, True, None))
    assert [c["ok"] for c in over] == [False, False] and "98.40% of the lines" in over[0]["detail"]
    assert over[1]["detail"].endswith("instead, a 49.2 KiB file that does not fit the budget (see the artifacts' "
                                      "'within budget')")
    assert within[1]["detail"] == unknown[1]["detail"] == ("no passing int8 TFLite artifact; deployed "
                                                           "student_float16.tflite instead")
    int8 = SimpleNamespace(precision="int8", format="tflite", path="student_int8.tflite", size_bytes=30_000)
    assert conversion_checks(SimpleNamespace(extra={}), int8, "int8", False) == []
    # the digit report's checks are the same rule, with the top-1 parity numbers
    from edgekd.pipeline.results import _parity_detail
    from edgekd.pipeline.results import conversion_checks as shared

    digits = [c.to_dict() for c in shared(manifest, fp16, "int8", _parity_detail, False)]
    assert digits[1] == over[1] and "top-1 agreement" in digits[0]["detail"]
