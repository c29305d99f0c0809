"""The board has neither torch nor tensorflow: edgekd_runtime must import, predict and benchmark without them.

Each test runs a fresh interpreter whose sitecustomize installs a meta-path finder that makes `torch` and
`tensorflow` (and anything under them) raise ImportError, and records every attempt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKER = textwrap.dedent('''
    import sys
    BLOCKED = tuple(m for m in "{blocked}".split(",") if m)
    ATTEMPTS = []

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                ATTEMPTS.append(name)
                raise ImportError(f"{{name}} is blocked: this test simulates a board without it")
            return None

    sys.meta_path.insert(0, Blocker())
    sys.modules["_edgekd_blocker"] = sys.modules[__name__]
''')

SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    import edgekd_runtime as rt
    from edgekd_runtime.preprocess import preprocess
    from PIL import Image
    out = {}
    for path in sys.argv[2:]:
        rec = rt.load(path)
        pred = rec.predict(sys.argv[1])
        rep = rec.benchmark(runs=20, warmup=2)
        out[path] = {"backend": rec.backend_name, "label": pred.label, "runs": len(rep.samples_ms)}
    from edgekd_runtime import cli  # the CLI module too
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "tf_keras", "keras"))
    print(json.dumps({"results": out, "heavy": heavy, "attempts": sys.modules["_edgekd_blocker"].ATTEMPTS}))
''')


def run_blocked(tmp_path: Path, blocked: str, *args: str) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=blocked))
    (tmp_path / "script.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(tmp_path / "script.py"), *args], capture_output=True, text=True,
                          env=env, timeout=180)


def test_predict_and_bench_without_torch_and_tensorflow(tmp_path, lin_onnx, tiny_tflite, tflite_name):
    from PIL import Image
    from rt_support import digit_canvas, handwriting_photo

    Image.fromarray(handwriting_photo(digit_canvas())).save(tmp_path / "digit.png")
    p = run_blocked(tmp_path, "torch,tensorflow", str(tmp_path / "digit.png"), str(lin_onnx), str(tiny_tflite))
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout.strip().splitlines()[-1])
    assert doc["heavy"] == [] and doc["attempts"] == []  # never even tried to import them
    assert doc["results"][str(lin_onnx)]["backend"] == "onnxruntime"
    assert doc["results"][str(tiny_tflite)]["backend"] == tflite_name
    assert all(r["runs"] == 20 for r in doc["results"].values())


def test_blocker_really_blocks(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked="torch,tensorflow"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    p = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode != 0 and "blocked" in p.stderr


def test_no_tflite_interpreter_at_all_is_a_clear_error(tmp_path, tiny_tflite):
    p = run_blocked(tmp_path, "torch,tensorflow,ai_edge_litert,tflite_runtime", str(tmp_path / "x.png"),
                    str(tiny_tflite))
    assert p.returncode == 1
    assert "BackendUnavailableError" in p.stderr and "no TFLite interpreter is importable" in p.stderr
    assert "edgekd-runtime[tflite]" in p.stderr


def test_auto_falls_back_to_onnx_when_no_tflite_interpreter_imports(tmp_path, bundle):
    """A bundle listing the TFLite artifact first, on a board where ai_edge_litert is installed but broken."""
    import json as _json

    m = _json.loads((bundle / "manifest.json").read_text())
    m["artifacts"] = m["artifacts"][1:] + m["artifacts"][:1]  # tflite fp32, tflite int8, onnx
    (bundle / "manifest.json").write_text(_json.dumps(m))
    code = ("import edgekd_runtime as rt, sys; r = rt.load(sys.argv[1]); "
            "print(r.backend_name, r.model_path.name)")
    site = tmp_path / "site"
    (site / "ai_edge_litert").mkdir(parents=True)  # installed, but its binary does not load
    (site / "ai_edge_litert" / "__init__.py").write_text('raise ImportError("_ARRAY_API not found")\n')
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked="torch,tensorflow,tflite_runtime"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    p = subprocess.run([sys.executable, "-c", code, str(bundle)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["onnxruntime", "student.onnx"]


def test_opencv_is_loaded_only_when_an_image_is_read(lin_onnx, tmp_path):
    """OpenCV (~14 MiB of RSS) backs the preprocessing only: importing the runtime, predicting canvases and
    benchmarking the model (`edgekd-rt bench`) leave it unloaded; the first image loads it."""
    from PIL import Image
    from rt_support import digit_canvas, handwriting_photo

    Image.fromarray(handwriting_photo(digit_canvas())).save(tmp_path / "digit.png")
    code = ("import sys, numpy as np, edgekd_runtime as rt\n"
            "seen = ['cv2' in sys.modules]\n"
            "rec = rt.load(sys.argv[1]); rec.predict(np.zeros((28, 28), np.float32), preprocessed=True)\n"
            "rec.benchmark(runs=3); seen.append('cv2' in sys.modules)\n"
            "rec.predict(sys.argv[2]); seen.append('cv2' in sys.modules)\n"
            "print(seen)")
    p = subprocess.run([sys.executable, "-c", code, str(lin_onnx), str(tmp_path / "digit.png")], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[False, False, True]"
