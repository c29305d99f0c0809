"""What a plain conversion leaves: a manifest.json that carries the model's normalisation to the board, and no
scratch directory in the system temp directory, even when the process is killed mid-conversion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conv_support import mechanics_tolerances
from typer.testing import CliRunner

import edgekd_runtime as rt
from edgekd_converters.cli import app
from edgekd_converters.convert import convert_model

MEAN, STD = 0.1307, 0.3081  # the tiny CNN's normalisation (conftest.py)


def test_conversion_writes_a_manifest_the_runtime_reads(tiny_models, digits, tmp_path):
    """`edgekd-convert --mean/--std` records them: the output directory and each artifact in it load with that
    normalisation, and the runtime's accuracy is the converters' (a wrong normalisation would not be)."""
    x, y, xt, yt = digits
    np.save(tmp_path / "calib.npy", x[:200])
    np.save(tmp_path / "eval.npy", xt)  # all 300 held-out digits: 100 would let 2 near-ties fail the 99 % parity rule
    np.save(tmp_path / "labels.npy", yt)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, [str(tiny_models["nchw"]), "--to", "onnx-int8", "--calib", str(tmp_path / "calib.npy"),
                                 "--eval", str(tmp_path / "eval.npy"), "--labels", str(tmp_path / "labels.npy"),
                                 "--mean", str(MEAN), "--std", str(STD), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    m = json.loads((out / "manifest.json").read_text())
    assert m["normalization"] == {"mean": MEAN, "std": STD}
    assert m["labels"] == [str(i) for i in range(10)] and m["output"]["kind"] == "logits"
    assert [a["path"] for a in m["artifacts"]] == ["tiny_int8.onnx"] and m["preprocessing"]["kind"] == "mnist"
    for path in (out, out / "tiny_int8.onnx"):
        rec = rt.load(path)
        assert (rec.normalization.mean, rec.normalization.std) == (MEAN, STD) and rec.precision == "int8"
        assert rec.evaluate(xt, yt) == pytest.approx(report["artifacts"][0]["accuracy"], abs=1e-9)


def test_conversion_manifest_for_other_normalisation_and_resize(tiny_models, digits, tmp_path):
    x, _, xt, _ = digits
    convert_model(tiny_models["nchw"], tmp_path / "o", ["onnx-int8"], x[:200], xt[:50], mean=0.0, std=1.0,
                  preprocess="resize", tolerances=mechanics_tolerances())
    rec = rt.load(tmp_path / "o" / "tiny_int8.onnx")
    assert rec.normalization == rt.manifest.Normalization(0.0, 1.0)
    assert (rec.preprocess_spec.kind, rec.preprocess_spec.canvas, rec.preprocess_spec.polarity) == \
        ("resize", 28, "light-on-dark")


def test_convert_api_refuses_non_finite_normalisation(tiny_models, digits, tmp_path):
    with pytest.raises(rt.UserInputError, match="normalization mean nan is not a finite number"):
        convert_model(tiny_models["nchw"], tmp_path / "o", ["onnx-int8"], digits[0][:200], mean=float("nan"))
    assert not (tmp_path / "o").exists()


def test_killed_conversion_leaves_nothing_in_the_temp_dir_and_the_next_run_clears_it(tiny_models, digits,
                                                                                       tmp_path):
    """SIGKILL inside onnx2tf (simulated: os._exit, which runs no cleanup either) leaves its scratch directory
    inside the output's own stage, not in the system temp directory; the next run to that output deletes it."""
    temp, work = tmp_path / "temp", tmp_path / "work"
    temp.mkdir()
    work.mkdir()
    np.save(tmp_path / "calib.npy", digits[0][:200])
    code = textwrap.dedent(f"""
        import importlib.util, os, sys, types
        import numpy as np
        fake = types.ModuleType("onnx2tf")  # the real one's spec (its op list), without importing tensorflow
        fake.__spec__ = importlib.util.find_spec("onnx2tf")
        def convert(**kwargs):
            os._exit(9)
        fake.convert = convert
        sys.modules["onnx2tf"] = fake
        from edgekd_converters.convert import convert_model
        convert_model({str(tiny_models["nchw"])!r}, {str(work / "out")!r}, ["tflite"],
                      np.load({str(tmp_path / "calib.npy")!r}), mean={MEAN}, std={STD})
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TMPDIR": str(temp)})
    assert p.returncode == 9, p.stderr[-2000:]
    assert [d for d in temp.iterdir() if d.is_dir()] == []  # (onnxruntime keeps a small `.ses` file there)
    (stage,) = work.iterdir()
    assert stage.name.startswith(".out.")
    assert sorted(w.name.split("-")[0] for w in stage.iterdir()) == [".normalize", ".onnx2tf"]
    convert_model(tiny_models["nchw"], work / "out", ["onnx-int8"], digits[0][:200], mean=MEAN, std=STD,
                  tolerances=mechanics_tolerances())
    assert [w.name for w in work.iterdir()] == ["out"]
    assert sorted(f.name for f in (work / "out").iterdir()) == ["manifest.json", "tiny_int8.onnx"]
