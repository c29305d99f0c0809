"""Device profiles and `edgekd-rt calibrate`: the fit, a real calibration on this machine, the CLI, and that it
all runs without torch, tensorflow or onnx (the board has none of them)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekd_runtime.calibrate import (
    CalibrationConfig,
    calibrate,
    fit_coefficients,
    leave_one_out_ms,
    load_suite,
    nnls,
    residual_margin_pct,
)
from edgekd_runtime.errors import CalibrationError, ProfileError
from edgekd_runtime.profile import COEFFICIENTS, DeviceProfile, LatencyCoefficients, OpFeatures

FAST = dict(warmup=2, min_runs=5, min_time_ms=10.0)


def test_nnls_matches_scipy_and_stays_non_negative():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.normal(size=(30, 6))
        b = rng.normal(size=30)
        x = nnls(a, b)
        assert (x >= 0).all()
        scipy_opt = pytest.importorskip("scipy.optimize")
        ref, _ = scipy_opt.nnls(a, b)
        assert np.linalg.norm(a @ x - b) == pytest.approx(np.linalg.norm(a @ ref - b), rel=1e-6, abs=1e-9)


def test_fit_recovers_known_coefficients_from_the_suite_features():
    true = LatencyCoefficients(per_invoke_ms=0.02, per_layer_us=3.0, conv_ns_per_mac=0.2, dwconv_ns_per_mac=0.9,
                               dense_ns_per_mac=0.4, elementwise_ns_per_elem=1.5, conv_ns_per_position=25.0,
                               pointwise_ns_per_mac=0.1, io_ns_per_elem=0.3, activation_ns_per_elem=0.6)
    feats = [m.features for m in load_suite(quick=False)]
    coef, err = fit_coefficients(feats, [true.latency_ms(f) for f in feats])
    for name in COEFFICIENTS:
        assert getattr(coef, name) == pytest.approx(getattr(true, name), rel=1e-5)
    assert err["max_ape_pct"] < 1e-3 and err["samples"] == len(feats)
    # exact data: a model left out is predicted exactly too, so there is nothing to cover
    assert err["loo_max_ape_pct"] < 1e-3 and err["margin_pct"] == 0.0


def test_residual_margin_is_the_quantile_of_under_predictions_rounded_up():
    measured = [1.0] * 10
    # under-predictions measured / predicted - 1: 0.0 (x5, the over-predictions count as 0 under), 5, 10, 20,
    # 25, 50 %
    predicted = [1.0, 1.0, 1.25, 1.5, 2.0, 1 / 1.05, 1 / 1.10, 1 / 1.20, 1 / 1.25, 1 / 1.50]
    under = sorted(m / p - 1 for m, p in zip(measured, predicted))
    # numpy's linear 90 % quantile of 10 values: 0.1 of the way from the 9th (25 %) to the 10th (50 %) = 27.5 %
    assert under[8] + 0.1 * (under[9] - under[8]) == pytest.approx(0.275)
    assert residual_margin_pct(measured, predicted) == 27.5
    assert residual_margin_pct(measured, predicted, quantile=0.5) == pytest.approx(2.5)  # between 0 and 5 %
    assert residual_margin_pct([2.0, 4.0], [2.0, 4.0]) == 0.0
    assert residual_margin_pct([1.0, 1.0], [1.0, 1 / 1.1234], quantile=1.0) == 12.4  # rounded up to 0.1 %
    with pytest.raises(CalibrationError, match="matching positive"):
        residual_margin_pct([1.0, 0.0], [1.0, 1.0])


def _synthetic_table():
    """The suite's features, "measured" as a known model times a fixed +-15 % pattern: every 4th model 15 %
    slower than the model says, every 4th 15 % faster, the rest exact."""
    true = LatencyCoefficients(per_invoke_ms=0.02, per_layer_us=3.0, conv_ns_per_mac=0.2, dwconv_ns_per_mac=0.9,
                               dense_ns_per_mac=0.4, elementwise_ns_per_elem=1.5, conv_ns_per_position=25.0,
                               pointwise_ns_per_mac=0.1, io_ns_per_elem=0.3, activation_ns_per_elem=0.6)
    feats = [m.features for m in load_suite(quick=False)]
    pattern = [1.15, 1.0, 0.85, 1.0]
    return feats, [true.latency_ms(f) * pattern[i % 4] for i, f in enumerate(feats)]


def test_fit_margin_comes_from_its_leave_one_out_residuals():
    feats, measured = _synthetic_table()
    coef, err = fit_coefficients(feats, measured)
    # the margin is the 90 % quantile of the under-predictions of each model by a fit on all the others
    # (computed here with fit_coefficients itself, one model left out at a time)
    loo = []
    for i in range(len(feats)):
        c, _ = fit_coefficients(feats[:i] + feats[i + 1:], measured[:i] + measured[i + 1:])
        loo.append(c.latency_ms(feats[i]))
    np.testing.assert_allclose(leave_one_out_ms(np.array([LatencyCoefficients.design_row(f) for f in feats]),
                                                np.array(measured)), loo, rtol=1e-9)
    assert err["margin_pct"] == residual_margin_pct(measured, loo)
    assert err["margin_quantile"] == 0.9
    # the pattern makes a quarter of the models 15 % slower than the model: the margin must cover about that,
    # and more than the in-sample fit shows (it was fitted to those very points)
    in_sample = residual_margin_pct(measured, [coef.latency_ms(f) for f in feats])
    assert 10.0 < err["margin_pct"] < 40.0 and err["margin_pct"] >= in_sample
    assert err["loo_median_ape_pct"] >= err["median_ape_pct"]


def test_profile_margin_bounds_predictions_and_round_trips(tmp_path):
    base = DeviceProfile.rpi4()
    assert base.latency_margin("int8") == 0.0  # the built-in estimates record none
    p = base.with_(latency_margin_pct={"int8": 12.5})
    f = OpFeatures(conv_macs=100_000, layers=3, conv_positions=400, activation_elems=3_000)
    assert p.latency_bound_ms(f, "int8") == pytest.approx(1.125 * p.estimate_latency_ms(f, "int8"), rel=1e-12)
    assert p.latency_bound_ms(f, "fp32") == p.estimate_latency_ms(f, "fp32")
    q = DeviceProfile.load(p.save(tmp_path / "m.json"))
    assert q == p and q.latency_margin_pct == {"int8": 12.5} and q != base
    with pytest.raises(ProfileError, match="latency_margin_pct.int8 = -1"):
        base.with_(latency_margin_pct={"int8": -1})
    with pytest.raises(ProfileError, match="precision 'int4'"):
        base.with_(latency_margin_pct={"int4": 5.0})


def test_a_profile_written_before_the_activation_term_reads_it_as_zero(tmp_path):
    d = DeviceProfile.rpi4().to_dict()
    for c in d["latency"].values():
        c.pop("activation_ns_per_elem")
    d.pop("latency_margin_pct")
    d["format_version"] = 1
    path = tmp_path / "old.json"
    path.write_text(json.dumps(d))
    old = DeviceProfile.load(path)
    assert old == DeviceProfile.rpi4() and old.coefficients("int8").activation_ns_per_elem == 0.0


def test_suite_covers_every_op_class_and_ships_its_files():
    from edgekd_runtime.calibrate import SUITE_DIR

    quick, full = load_suite(quick=True), load_suite(quick=False)
    assert len(quick) >= 12 and len(full) > len(quick)
    assert {m.group for m in quick} == {"conv", "dwconv", "dense", "elementwise", "layers", "composite"}
    for m in full:
        for fmt, precs in (("onnx", ("fp32", "int8")), ("tflite", ("fp32", "fp16", "int8"))):
            for p in precs:
                assert (SUITE_DIR / m.files[fmt][p]).stat().st_size > 100
    # a rank-deficient suite could not separate the classes
    rows = np.array([LatencyCoefficients.design_row(m.features) for m in quick])
    assert np.linalg.matrix_rank(rows / rows.max(axis=0)) == rows.shape[1] == len(COEFFICIENTS)


def test_profile_json_round_trip_and_estimate_by_hand(tmp_path):
    p = DeviceProfile.rpi4()
    path = p.save(tmp_path / "rpi4.json")
    q = DeviceProfile.load(path)
    assert q == p and q.to_dict() == p.to_dict()
    c = p.coefficients("fp32")
    f = OpFeatures(conv_macs=1_000_000, dwconv_macs=10_000, dense_macs=5_000, elementwise_elems=2_000, layers=7,
                   conv_positions=900, pointwise_macs=30_000, io_elems=794)
    by_hand = (c.per_invoke_ms + 7 * c.per_layer_us / 1e3 + (1e6 * c.conv_ns_per_mac + 1e4 * c.dwconv_ns_per_mac
               + 5e3 * c.dense_ns_per_mac + 2e3 * c.elementwise_ns_per_elem + 900 * c.conv_ns_per_position
               + 3e4 * c.pointwise_ns_per_mac + 794 * c.io_ns_per_elem) / 1e6)
    assert p.estimate_latency_ms(f, "fp32") == pytest.approx(by_hand, rel=1e-12)
    assert p.estimate_latency_ms(f.to_dict(), "fp32") == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.update(format="x"), "not an edgekd device profile"),
    (lambda d: d.update(format_version=99), "format_version 99"),
    (lambda d: d.pop("latency"), "missing field(s) latency"),
    (lambda d: d["latency"].update(int4=d["latency"]["fp32"]), "int4"),
    (lambda d: d["latency"]["fp32"].pop("per_layer_us"), "per_layer_us"),
    (lambda d: d["latency"]["fp32"].update(conv_ns_per_mac=float("nan")), "conv_ns_per_mac"),
    (lambda d: d.update(cores=0), "cores = 0"),
    (lambda d: d.update(backend="cuda"), "backend 'cuda'"),
])
def test_malformed_profiles_are_profile_errors(tmp_path, mutate, needle):
    d = DeviceProfile.rpi4().to_dict()
    mutate(d)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ProfileError) as ei:
        DeviceProfile.load(path)
    assert needle in str(ei.value) and str(path) in str(ei.value)


def test_missing_precision_and_unknown_features_are_clear():
    p = DeviceProfile.rpi4().with_(latency={"fp32": DeviceProfile.rpi4().coefficients("fp32")})
    with pytest.raises(ProfileError, match="no latency model for precision 'int8'.*calibrate"):
        p.estimate_latency_ms(OpFeatures(layers=1), "int8")
    with pytest.raises(ProfileError, match="unknown feature"):
        p.estimate_latency_ms({"flops": 3}, "fp32")


@pytest.mark.tflite
def test_calibrate_on_this_machine_gives_a_valid_profile(tmp_path):
    prof = calibrate(CalibrationConfig(backend="tflite", threads=1, precisions=("fp32", "int8"), **FAST),
                     name="this-host")
    assert not prof.estimate and prof.backend == "tflite" and prof.threads == 1
    cal = prof.calibration
    assert cal["backend"] == "tflite" and cal["threads"] == 1 and cal["cpu"] and cal["date"].endswith("Z")
    for p in ("fp32", "int8"):
        fit = cal["fit"][p]
        assert fit["samples"] == len(load_suite(True))
        assert math.isfinite(fit["median_ape_pct"]) and fit["median_ape_pct"] < 100
        measured = fit["measured_ms"]
        assert all(0 < v < 1000 for v in measured.values())
        # the fitted model orders a big conv above a tiny dense layer, as measured
        big, small = "conv3x3_64to128_14s2", "chain_dense16_x2"
        assert measured[big] > measured[small]
        assert prof.estimate_latency_ms(_features(big), p) > prof.estimate_latency_ms(_features(small), p)
    q = DeviceProfile.load(prof.save(tmp_path / "h.json"))
    assert q == prof and q.calibration["fit"]["fp32"]["samples"] == cal["fit"]["fp32"]["samples"]
    # the safety margin comes from the fit's own residuals, and the profile says so
    assert prof.latency_margin_pct == {p: cal["fit"][p]["margin_pct"] for p in ("fp32", "int8")}
    assert all(v >= 0 for v in prof.latency_margin_pct.values())
    assert any("leave-one-out" in s and "margin" in s for s in prof.sources)


def _features(name: str) -> OpFeatures:
    return next(m.features for m in load_suite(False) if m.name == name)


def test_calibrate_onnxruntime_backend():
    prof = calibrate(CalibrationConfig(backend="onnx", threads=1, precisions=("fp32",), **FAST))
    assert prof.backend == "onnx" and prof.precisions == ("fp32",)
    assert prof.calibration["backend_version"].startswith("onnxruntime")


@pytest.mark.parametrize("kw, needle", [
    ({"backend": "gpu"}, "backend 'gpu'"),
    ({"backend": "onnx", "precisions": ("fp16",)}, "cannot be calibrated on backend onnx"),
    ({"threads": 0}, "threads = 0"),
    ({"precisions": ()}, "(none)"),
])
def test_bad_calibration_config(kw, needle):
    with pytest.raises(ProfileError) as ei:
        CalibrationConfig(**kw)
    assert needle in str(ei.value)


# ---- CLI --------------------------------------------------------------------------------------------------------
runner = CliRunner()


def _app():
    from edgekd_runtime.cli import app

    return app


def test_cli_calibrate_writes_a_profile(tmp_path):
    out = tmp_path / "board.json"
    r = runner.invoke(_app(), ["calibrate", "--out", str(out), "--backend", "onnx", "--threads", "1",
                               "--precision", "fp32", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["name"] == "board" and d["backend"] == "onnx" and list(d["latency"]) == ["fp32"]
    assert DeviceProfile.load(out).to_dict() == d
    r = runner.invoke(_app(), ["calibrate", "--out", str(tmp_path / "b2.json"), "--backend", "onnx",
                               "--threads", "1", "--precision", "fp32", "--name", "lab-pi"])
    assert r.exit_code == 0 and "lab-pi" in r.stdout and "wrote" in r.stdout
    assert "margin %" in r.stdout and "leave-one-out under-predictions" in " ".join(r.stdout.split())


@pytest.mark.parametrize("args, needle", [
    (["--backend", "cuda"], "backend 'cuda'"),
    (["--backend", "onnx", "--precision", "fp16"], "cannot be calibrated"),
    (["--precision", "int4"], "int4"),
])
def test_cli_calibrate_bad_options_exit_2(tmp_path, args, needle):
    out = tmp_path / "x.json"
    r = runner.invoke(_app(), ["calibrate", "--out", str(out), *args])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_cli_calibrate_out_is_a_directory(tmp_path):
    r = runner.invoke(_app(), ["calibrate", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "is a directory" in r.output


def test_calibrate_runs_without_torch_tensorflow_or_onnx(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "tensorflow", "onnx", "edgekd", "scipy"):
                    raise ImportError(name + " is blocked (a board has none)")
        sys.meta_path.insert(0, Blocker())
        from edgekd_runtime.calibrate import CalibrationConfig, calibrate
        p = calibrate(CalibrationConfig(backend="onnx", threads=1, precisions=("fp32",), warmup=1, min_runs=3,
                                        min_time_ms=5.0))
        p.save({str(tmp_path / 'p.json')!r})
        print("OK", sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "onnx")))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "OK []" in r.stdout
    assert DeviceProfile.load(tmp_path / "p.json").backend == "onnx"
