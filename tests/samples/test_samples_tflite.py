"""Both samples on the TFLite artifacts (fp32/fp16/int8) that edgekd_converters makes from the test bundle."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from loadtest import run_load
from samples_support import RECOGNIZE, png_bytes, save_digit
from webpad_server import ServerLimits, make_server

pytestmark = pytest.mark.tflite


@pytest.fixture(scope="module")
def tflite_bundle(digit_model, tmp_path_factory):
    pytest.importorskip("ai_edge_litert", reason="needs the LiteRT interpreter (edgekd-runtime[tflite])")
    # the artifacts are made here by the workstation's converters (tensorflow): absent on a board
    # (scripts/test-aarch64.sh), where tests/runtime's committed bundle covers the TFLite artifacts instead
    pytest.importorskip("edgekd_converters", reason="needs the workstation's converters (edgekd-converters)")
    from edgekd_converters.bundle import convert_bundle

    bundle = tmp_path_factory.mktemp("tflite") / "bundle"
    shutil.copytree(digit_model.bundle, bundle)
    canvases = digit_model.test_x.astype(np.float32) / 255.0
    manifest, _ = convert_bundle(bundle, canvases[:300], canvases[300:600], digit_model.test_y[300:600],
                                 targets=("tflite",))
    assert {(a.format, a.precision) for a in manifest.artifacts} >= {("tflite", p) for p in ("fp32", "fp16", "int8")}
    return bundle


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_recognize_reads_clear_digits_with_each_tflite_artifact(tflite_bundle, digit_model, tmp_path, precision):
    import json

    expected = {}
    for i, (canvas, label) in enumerate(digit_model.clear_digits(per_class=1)):
        expected[str(save_digit(tmp_path / f"{i}.png", canvas, scale=3))] = str(label)
    done = subprocess.run([sys.executable, str(RECOGNIZE), str(tflite_bundle), str(tmp_path), "--backend", "tflite",
                           "--precision", precision, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert {r["source"]: r["label"] for r in lines[:-1]} == expected
    assert lines[-1]["summary"]["recognised"] == 10


def test_webpad_on_int8_tflite_under_concurrency(tflite_bundle, digit_model):
    """The TFLite interpreter is not reentrant: asking for 4 inference slots must still be safe (clamped to 1)."""
    import edgekd_runtime

    rec = edgekd_runtime.load(tflite_bundle, backend="tflite", precision="int8")
    srv = make_server(rec, "127.0.0.1", 0, ServerLimits(inference_slots=4))
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        assert srv.app.inference_slots == 1
        canvas, label = digit_model.clear_digits(1)[5]
        host, port = srv.server_address[:2]
        result = run_load(f"http://{host}:{port}/", png_bytes(canvas), requests=200, concurrency=8)
        assert result.errors == 0, (result.statuses, result.first_error)
        assert srv.app.requests_served == 200
        assert srv.app.predict(png_bytes(canvas))["label"] == str(label)
    finally:
        srv.shutdown()
        srv.server_close()
