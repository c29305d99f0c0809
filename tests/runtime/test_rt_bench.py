"""LatencyReport: benchmark_model / onnxruntime_perf_test fields, consistent statistics, raw samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgekd_runtime as rt
from edgekd_runtime.bench import LatencyReport
from edgekd_runtime.errors import UserInputError


@pytest.mark.parametrize("model", ["lin_onnx", "tiny_tflite"])
def test_report_fields_and_statistics(model, request):
    path = request.getfixturevalue(model)
    rec = rt.load(path, threads=1)
    r = rec.benchmark(runs=50, warmup=5)
    assert isinstance(r, LatencyReport)
    s = np.array(r.samples_ms)
    assert s.shape == (50,) and (s > 0).all()
    assert r.mean_ms == pytest.approx(s.mean()) and r.std_ms == pytest.approx(s.std())
    assert r.min_ms == s.min() and r.max_ms == s.max()
    assert r.min_ms <= r.p50_ms <= r.p90_ms <= r.p95_ms <= r.p99_ms <= r.max_ms
    assert r.p50_ms == pytest.approx(np.median(s))
    assert r.p999_ms is None  # only with >= 1000 runs
    assert r.inferences_per_s == pytest.approx(1e3 * 50 / s.sum())
    assert r.init_ms > 0 and r.first_inference_ms > 0 and r.warmup_runs == 5 and r.warmup_mean_ms > 0
    assert r.threads == 1 and r.backend == rec.backend_name and r.backend_version == rec.backend_version
    assert r.delegate in ("XNNPACK", "CPUExecutionProvider")
    assert r.model_size_bytes == path.stat().st_size and len(r.model_sha256) == 64
    assert r.input_shape[0] == 1 and r.input_dtype == "float32" and r.input_layout in ("NCHW", "NHWC")
    assert r.rss_after_load_bytes > 10 * 2**20 and r.peak_rss_bytes >= r.rss_after_load_bytes
    assert {"cpu_model", "cpu_cores", "os", "python"} <= set(r.system)
    d = json.loads(json.dumps(r.to_dict()))
    assert len(d["samples_ms"]) == 50 and "samples_ms" not in r.to_dict(samples=False)
    assert dict(r.rows())["runs"] == "50"


def test_p999_with_1000_runs_and_batch(tiny_int8_tflite):
    rec = rt.load(tiny_int8_tflite)
    r = rec.benchmark(runs=1000, warmup=0, batch=2)
    assert r.p999_ms is not None and r.p99_ms <= r.p999_ms <= r.max_ms
    assert r.warmup_mean_ms is None and r.batch == 2 and r.input_dtype == "int8"
    assert r.inferences_per_s == pytest.approx(2e3 * 1000 / sum(r.samples_ms))


def test_first_inference_is_the_first_call_after_load(lin_onnx):
    rec = rt.load(lin_onnx)
    assert rec.first_inference_ms is None
    rec.predict(np.zeros((28, 28), np.float32), preprocessed=True)
    first = rec.first_inference_ms
    assert first is not None and rec.benchmark(runs=3, warmup=0).first_inference_ms == first


@pytest.mark.parametrize("kw", [{"runs": 0}, {"warmup": -1}, {"batch": 0}])
def test_bad_benchmark_arguments(lin_onnx, kw):
    with pytest.raises(UserInputError):
        rt.load(lin_onnx).benchmark(**kw)


def test_benchmark_input_is_fixed_sparse_and_needs_no_numpy_random(tiny_tflite, tflite_name):
    import subprocess
    import sys

    from edgekd_runtime.bench import _uniform, benchmark_input

    u = _uniform((2, 3, 28, 28), seed=0)
    assert np.array_equal(u, _uniform((2, 3, 28, 28), seed=0)) and not np.array_equal(u, _uniform(u.shape, seed=1))
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    rec = rt.load(tiny_tflite)
    x = benchmark_input(rec, batch=2)
    assert x.shape == (2, 28, 28, 1) and np.array_equal(x, benchmark_input(rec, batch=2))
    # what a board process pays for a benchmark: no numpy.random, no tempfile (writes only), beyond what the
    # interpreter itself imports (tflite_runtime 2.14 imports numpy.random; ai_edge_litert does not)
    def pulled(code: str) -> set[str]:
        code += "\nimport json, sys\nprint(json.dumps([m for m in ('numpy.random', 'tempfile') if m in sys.modules]))"
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr[-500:]
        return set(json.loads(p.stdout.strip().splitlines()[-1]))

    interpreter = {"tensorflow.lite": "tensorflow"}.get(tflite_name, f"{tflite_name}.interpreter")
    assert pulled(f"import edgekd_runtime as rt\nrt.load({str(tiny_tflite)!r}).benchmark(runs=3)") <= pulled(
        f"import {interpreter}")
