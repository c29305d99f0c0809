"""Parity numbers and the per-precision tolerances (pure numpy, no converter runs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekd_converters import TOLERANCES, ParityError, Tolerance
from edgekd_converters.errors import CalibrationDataError
from edgekd_converters.parity import check, compare


def test_compare_reports_max_diff_and_agreement():
    ref = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.9, 0.0]], np.float32)
    out = ref.copy()
    out[3] = [0.8, 0.95, 0.0]  # one flip, max diff 0.2
    r = compare(ref, out, TOLERANCES["int8"], "torch")
    assert math.isclose(r.max_abs_diff, 0.2, rel_tol=1e-5)
    assert r.top1_agreement == 0.75 and r.num_samples == 4 and r.reference == "torch"
    assert not r.passed  # 75% < 99%
    d = r.to_dict()
    assert d["passed"] is False and d["tolerance"]["atol"] is None and d["allowed_abs_diff"] is None


def test_fp32_tolerance_is_1e4_absolute():
    ref = np.eye(10, dtype=np.float32) * 5
    assert compare(ref, ref + 9e-5, TOLERANCES["fp32"]).passed
    assert not compare(ref, ref + 2e-4, TOLERANCES["fp32"]).passed


def test_fp16_tolerance_scales_with_logit_magnitude():
    tol = TOLERANCES["fp16"]
    ref = np.eye(10, dtype=np.float32) * 20  # allowed = 1e-3 + 1e-2 * 20 = 0.201
    r = compare(ref, ref + 0.15, tol)
    assert math.isclose(r.allowed_abs_diff, 0.201, rel_tol=1e-6) and r.passed
    assert not compare(ref, ref + 0.25, tol).passed


def test_check_raises_parity_error_with_the_numbers():
    ref = np.eye(4, dtype=np.float32)
    with pytest.raises(ParityError) as e:
        check("model_float32.tflite", ref, ref + 0.5, Tolerance(atol=1e-4), "onnx")
    msg = str(e.value)
    assert "model_float32.tflite" in msg and "max abs diff 0.5" in msg and "100.00%" in msg and "onnx" in msg
    assert e.value.result.max_abs_diff == pytest.approx(0.5)


def test_non_finite_outputs_fail():
    ref = np.eye(3, dtype=np.float32)
    out = ref.copy()
    out[0, 0] = np.nan
    assert not compare(ref, out, TOLERANCES["int8"]).passed


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(CalibrationDataError, match=r"\(N, C\)"):
        compare(np.zeros((3, 10)), np.zeros((3, 9)), TOLERANCES["fp32"])
