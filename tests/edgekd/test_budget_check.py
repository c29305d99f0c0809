"""After export/conversion, real file sizes are checked against the budget and a breaking artifact is flagged."""

from __future__ import annotations

import json

import pytest

from edgekd.budget.check import check_bundle
from edgekd.budget.search import Budget
from edgekd_runtime.errors import BudgetError
from edgekd_runtime.manifest import Artifact, InputSpec, Manifest
from edgekd_runtime.profile import DeviceProfile


def _bundle(tmp_path, budget: Budget | None, profile: DeviceProfile | None = None):
    from edgekd.export.onnx_export import export_onnx
    from edgekd.models.students import build_student

    export_onnx(build_student("mlp-w16-d1-r16", 10).eval(), 16, tmp_path / "student.onnx")
    m = Manifest(name="mlp-w16-d1-r16", labels=[str(i) for i in range(10)], input=InputSpec(shape=(1, 1, 16, 16)),
                 artifacts=[Artifact.from_file(tmp_path, "student.onnx", "fp32")],
                 budget={"budget": budget.to_dict()} if budget else None,
                 profile=(profile or DeviceProfile.rpi4()).to_dict() if budget else None)
    m.save(tmp_path)
    return tmp_path


def test_a_file_over_the_flash_limit_is_flagged_in_the_manifest(tmp_path):
    b = _bundle(tmp_path, Budget(flash_bytes=10 * 1024, latency_ms=5.0, precision="fp32"))
    real = (b / "student.onnx").stat().st_size
    assert real > 10 * 1024  # 16*256 + 16*10 + 26 floats
    (c,) = check_bundle(b, measure=True)
    assert c.flash_ok is False and c.budget_ok is False and c.file_bytes == real
    assert c.latency_ok is True and c.latency_source == "profile prediction"
    assert c.measured_host_latency_ms is not None and c.measured_host_latency_ms > 0
    assert abs(c.predicted_flash_bytes - real) / real < 0.25
    d = json.loads((b / "manifest.json").read_text())
    assert d["artifacts"][0]["budget_ok"] is False
    assert d["extra"]["budget_check"]["all_ok"] is False
    assert "flash limit" in d["extra"]["budget_check"]["artifacts"][0]["problems"][0]


def test_a_fitting_artifact_passes_and_no_budget_means_no_check(tmp_path):
    (tmp_path / "a").mkdir()
    b = _bundle(tmp_path / "a", Budget(flash_bytes=64 * 1024, precision="fp32"))
    (c,) = check_bundle(b, measure=False)
    assert c.budget_ok and c.flash_ok and c.latency_ok is None and c.measured_host_latency_ms is None
    (tmp_path / "n").mkdir()
    assert check_bundle(_bundle(tmp_path / "n", None)) == []


def test_malformed_budget_record_is_a_budget_error(tmp_path):
    b = _bundle(tmp_path, Budget(flash_bytes=64 * 1024, precision="fp32"))
    d = json.loads((b / "manifest.json").read_text())
    d["budget"] = {"budget": {"flash": 3}}
    (b / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(BudgetError, match="unknown field"):
        check_bundle(b, measure=False)


def test_the_latency_check_holds_prediction_plus_the_profile_margin_as_the_search_did(tmp_path):
    from edgekd.budget.cost import student_cost

    rpi4 = DeviceProfile.rpi4()
    pred = rpi4.estimate_latency_ms(student_cost("mlp-w16-d1-r16", 10).features, "fp32")
    limit = pred * 1.1  # the prediction fits, the prediction + 20 % does not
    (tmp_path / "plain").mkdir()
    (c,) = check_bundle(_bundle(tmp_path / "plain", Budget(latency_ms=limit, precision="fp32")), measure=False)
    assert c.latency_ok is True and c.latency_source == "profile prediction"
    assert c.predicted_latency_ms == pytest.approx(pred, rel=1e-4)
    (tmp_path / "margin").mkdir()
    margined = rpi4.with_(latency_margin_pct={"fp32": 20.0, "int8": 5.0})
    b = _bundle(tmp_path / "margin", Budget(latency_ms=limit, precision="fp32"), margined)
    (c,) = check_bundle(b, measure=False)
    assert c.latency_ok is False and c.latency_source == "profile prediction + 20.0 % margin"
    assert c.predicted_latency_ms == pytest.approx(pred, rel=1e-4)  # the prediction itself is unchanged
    assert c.latency_bound_ms == pytest.approx(1.2 * pred, rel=1e-4)
    assert c.problems() == [f"latency {1.2 * pred:.4g} ms (profile prediction + 20.0 % margin) > limit {limit:.4g} ms"]
