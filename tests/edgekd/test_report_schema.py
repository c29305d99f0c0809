"""The typed report (edgekd.report.schema): report.json files written before it load and save back unchanged,
a report round-trips through JSON, a malformed file is a clear error, and the renderer reads what the pipeline
writes (the budget's binding limit included). No training: reports written by earlier `edgekd run`s are fixtures."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parents[1] / "fixtures" / "reports"
# report_v1.json: written by `edgekd run --quick` before the report was typed; the other one before image_path
OLD_REPORTS = ["report_v1.json", "report_v1_before_image_path.json"]


def _old(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("name", OLD_REPORTS)
def test_old_report_files_load_and_save_back_unchanged(name):
    from edgekd.report.schema import Report

    d = _old(name)
    rep = Report.from_dict(d)
    assert rep.to_dict() == {"image_path": None, **d}  # the older file only lacks image_path (None = not measured)
    assert [m.role for m in rep.models] == ["teacher", "scratch", "distilled"]
    assert rep.model("distilled").test_accuracy == d["models"][2]["test_accuracy"]
    assert rep.deployed.path == d["deployed"]["path"] == "student_int8.tflite"
    assert rep.target.profile_name == "rpi4" and rep.target.profile_is_estimate is True
    assert rep.failed_checks == [] and len(rep.checks) == len(d["checks"])
    assert (rep.image_path is None) == ("image_path" not in d)


def test_a_report_round_trips_through_json_with_optional_parts_and_unknown_sections():
    from edgekd.report.schema import Check, ModelRow, Report

    rep = Report.from_dict(_old("report_v1.json"))
    # a foreign teacher that did not export: no cost fields, a note; and a section a newer task adds
    rep.models[0] = ModelRow(role="teacher", arch="yours.pt", test_accuracy=0.9, params=123, note="no export")
    rep.checks.append(Check("something", False, "went wrong"))
    rep.sections["lines"] = {"cer": 0.012, "per_length": {"8": 0.97}}
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["models"][0] == {"role": "teacher", "arch": "yours.pt", "test_accuracy": 0.9, "params": 123,
                              "metrics": None, "note": "no export"}
    assert d["lines"] == {"cer": 0.012, "per_length": {"8": 0.97}}
    back = Report.from_dict(d)
    assert back == rep
    assert [c.name for c in back.failed_checks] == ["something"]


def test_a_partial_report_loads_with_its_sections_absent():
    from edgekd.report.schema import Report

    rep = Report.from_dict({"checks": [{"name": "a", "ok": True}]})
    assert rep.run is None and rep.models == [] and rep.deployed is None and rep.checks[0].detail == ""


@pytest.mark.parametrize("change, where, what", [
    (lambda d: d["models"][1].update(cer=0.1), "models[1]", "unknown key(s) ['cer']"),
    (lambda d: d["deployed"].pop("confusion"), "deployed", "missing key(s) ['confusion']"),
    (lambda d: d.update(checks={"name": "x"}), "checks", "expected a list"),
    (lambda d: d.update(run=[1]), "run", "expected an object"),
    (lambda d: d.update(format_version=2), "report", "newer than this edgekd reads"),
    (lambda d: d.update(format="edgekd-run"), "report", "is not 'edgekd-report'"),
])
def test_a_malformed_report_is_an_error_naming_the_section_and_the_key(change, where, what):
    from edgekd.report.schema import Report, ReportFormatError

    d = copy.deepcopy(_old("report_v1.json"))
    change(d)
    with pytest.raises(ReportFormatError) as e:
        Report.from_dict(d)
    assert str(e.value).startswith(f"{where}: ") and what in str(e.value)


def test_edgekd_report_refuses_a_malformed_file_with_exit_2(tmp_path):
    from typer.testing import CliRunner

    from edgekd.cli import app

    d = _old("report_v1.json")
    d["artifacts"][0]["speed"] = 1
    (tmp_path / "report.json").write_text(json.dumps(d))
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert "report.json: artifacts[0]: unknown key(s) ['speed']" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "report.md").exists()


def test_the_budget_summary_names_the_chosen_students_binding_limit_and_the_page_shows_it():
    from edgekd.pipeline.results import _budget_summary
    from edgekd.report.render import _markdown
    from edgekd.report.schema import Report

    search = {"chosen": "b", "plot": "budget.png", "feasible": 1, "total": 2, "ranked_by": "capacity", "notes": [],
              "effective_limits": {"latency_ms": 1.0, "flash_bytes": 32768},
              "candidates": [{"student": "a", "usage_pct": {"latency_ms": 130.0, "flash_bytes": 99.0}},
                             {"student": "b", "usage_pct": {"latency_ms": 35.6, "flash_bytes": 80.4}}]}
    bud = _budget_summary(search)
    assert (bud.chosen, bud.binding, bud.binding_usage_pct, bud.feasible, bud.evaluated) == \
        ("b", "flash_bytes", 80.4, 1, 2)
    rep = Report.from_dict(_old("report_v1.json"))
    rep.budget = bud
    md = _markdown(rep, {})
    assert "1 of 2 candidate students fit; chosen: `b` (binding limit: flash_bytes, 80.4% used)." in md
    # a budget.json without candidates (or an old report) has no binding limit, and says nothing about one
    assert _budget_summary({**search, "candidates": []}).binding is None
    assert "binding limit" not in _markdown(Report.from_dict(_old("report_v1.json")), {})


def test_the_page_renders_the_old_reports_numbers(tmp_path):
    from edgekd.report.render import render_report

    d = _old("report_v1.json")
    (tmp_path / "report.json").write_text(json.dumps(d))
    md = render_report(tmp_path).read_text()
    dist = d["models"][2]
    assert f"**Deployed:** `student_int8.tflite` — {100 * d['deployed']['accuracy']:.2f}% test accuracy" in md
    assert f"| distilled | `{dist['arch']}` | {100 * dist['test_accuracy']:.2f}% | {dist['params']:,} |" in md
    assert "**Checks:** all passed." in md and "| stage | p50 (ms) |" in md
    assert f"ratio {d['latency_model']['ratio']:.2f}" in md
    assert (tmp_path / "confusion_matrix.png").is_file()


@pytest.mark.parametrize("won,lost,noise", [(14, 2, False), (6, 4, True)])
def test_the_kd_gain_round_trips_and_the_headline_gives_its_interval(won, lost, noise):
    import numpy as np

    from edgekd.report.render import _markdown
    from edgekd.report.schema import KDGain, Report
    from edgekd.report.stats import paired_gain

    scratch = np.array([0] * won + [1] * lost + [1] * 970 + [0] * (30 - won - lost))
    dist = np.array([1] * won + [0] * lost + [1] * 970 + [0] * (30 - won - lost))
    g = paired_gain(scratch, dist)
    rep = Report.from_dict(_old("report_v1.json"))
    rep.kd_gain = KDGain(g.gain.estimate, g.gain.low, g.gain.high, g.gain.level, g.gain.n, g.b_only, g.a_only,
                         g.within_noise, "online")
    assert Report.from_dict(json.loads(json.dumps(rep.to_dict()))) == rep
    md = _markdown(rep, {})
    ci = f"95 % CI {100 * g.gain.low:+.2f} .. {100 * g.gain.high:+.2f} pp"
    assert f"{ci} over 1,000 paired test digits, online KD" in md
    assert ("within noise" in md) is noise
