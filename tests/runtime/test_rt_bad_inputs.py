"""Bad manifests, models and arguments are refused at load with a typed, one-line error (exit 2 from the CLI);
bare model files take their normalisation from --mean/--std or from a manifest beside them."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from rt_support import digit_canvas, reference_logits
from typer.testing import CliRunner

import edgekd_runtime as rt
from edgekd_runtime.cli import app
from edgekd_runtime.manifest import Artifact, Manifest, Normalization


def _onnx_bundle(d: Path, lin_onnx: Path, **normalization: float) -> Path:
    """A one-artifact bundle (student.onnx) in `d`, no TFLite needed."""
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(lin_onnx, d / "student.onnx")
    m = Manifest(name="tiny", labels=[f"c{i}" for i in range(10)], normalization=Normalization(**normalization))
    m.artifacts = [Artifact.from_file(d, "student.onnx", "fp32")]
    m.save(d)
    return d


def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / "manifest.json"
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))


BAD_MANIFESTS = {
    "std 0": (lambda d: d["normalization"].update(std=0), "std 0 must be > 0"),
    "std text": (lambda d: d["normalization"].update(std="abc"), "std 'abc' is not a finite number"),
    "mean inf": (lambda d: d["normalization"].update(mean=float("inf")), "mean inf is not a finite number"),
    "format_version text": (lambda d: d.update(format_version="1"), "format_version '1' is not an integer"),
    "canvas 0": (lambda d: d["preprocessing"].update(canvas=0), "canvas 0 and box 20 must be whole numbers"),
    "box 0": (lambda d: d["preprocessing"].update(box=0), "canvas 28 and box 0 must be whole numbers"),
    "box > canvas": (lambda d: d["preprocessing"].update(box=40), "with 1 <= box <= canvas"),
    "precision int4": (lambda d: d["artifacts"][0].update(precision="int4"), "precision 'int4'"),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_bad_manifest_values_are_refused_at_load(tmp_path, lin_onnx, case):
    edit, message = BAD_MANIFESTS[case]
    bundle = _onnx_bundle(tmp_path / "b", lin_onnx)
    _edit_manifest(bundle, edit)
    with pytest.raises(rt.ManifestError, match="manifest.json") as e:
        rt.load(bundle)
    assert message in str(e.value)
    r = CliRunner().invoke(app, ["bench", str(bundle), "--runs", "1", "--warmup", "0"])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "Traceback" not in r.output, r.output


def _two_input_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((784, 10), np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"]), helper.make_node("Gemm", ["flat", "W", "bias"], ["out"])],
        "two_inputs",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28]),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_model_with_two_inputs_is_refused_at_load(tmp_path):
    path = _two_input_onnx(tmp_path / "two.onnx")
    with pytest.raises(rt.ModelLoadError, match=r"2 inputs \(image \[-1, 1, 28, 28\], bias \[-1, 10\]\)"):
        rt.load(path)


@pytest.mark.parametrize("top_k", [0, -1, 1.5, True])
def test_top_k_below_one_or_not_a_count_is_refused(lin_onnx, top_k):
    rec = rt.load(lin_onnx)
    c = digit_canvas()
    with pytest.raises(rt.UserInputError, match="top_k"):
        rec.predict(c, top_k=top_k, preprocessed=True)
    with pytest.raises(rt.UserInputError, match="top_k"):
        rec.predict_batch(c[None], top_k=top_k, preprocessed=True)
    assert len(rec.predict(c, top_k=np.int64(2), preprocessed=True).top_k) == 2


def _logits(canvas: np.ndarray, w: np.ndarray, b: np.ndarray, mean: float, std: float) -> np.ndarray:
    x = (canvas.astype(np.float64)[None] - mean) / std
    return x.reshape(1, -1) @ w.astype(np.float64) + b


def test_bare_model_takes_mean_and_std(lin_onnx, lin_weights):
    c = digit_canvas()
    mnist = rt.load(lin_onnx)
    assert (mnist.normalization.mean, mnist.normalization.std) == (0.1307, 0.3081)
    np.testing.assert_allclose(mnist.forward(c[None]), reference_logits(c[None], *lin_weights), atol=1e-4)
    rec = rt.load(lin_onnx, mean=0.0, std=1.0)
    assert (rec.normalization.mean, rec.normalization.std) == (0.0, 1.0)
    np.testing.assert_allclose(rec.forward(c[None]), _logits(c, *lin_weights, 0.0, 1.0), atol=1e-4)


@pytest.mark.parametrize("kw, message", [
    ({"mean": math.nan, "std": 1.0}, "mean nan is not a finite number"),
    ({"mean": 0.0, "std": math.inf}, "std inf is not a finite number"),
    ({"mean": 0.0, "std": 0.0}, "std 0.0 must be > 0"),
    ({"mean": 0.0}, "give the input normalisation's mean and std together"),
])
def test_bad_mean_std_are_refused(lin_onnx, kw, message):
    with pytest.raises(rt.UserInputError, match=message):
        rt.load(lin_onnx, **kw)


def test_manifest_beside_a_bare_model_is_used(tmp_path, lin_onnx, lin_weights):
    bundle = _onnx_bundle(tmp_path / "b", lin_onnx, mean=0.0, std=1.0)
    rec = rt.load(bundle / "student.onnx")
    assert rec.labels[0] == "c0" and rec.manifest is not None
    assert (rec.normalization.mean, rec.normalization.std) == (0.0, 1.0)
    c = digit_canvas()
    np.testing.assert_allclose(rec.forward(c[None]), _logits(c, *lin_weights, 0.0, 1.0), atol=1e-4)
    assert rt.load(bundle / "student.onnx", mean=0, std=1).normalization == Normalization(0.0, 1.0)
    with pytest.raises(rt.UserInputError, match="its manifest sets the normalisation"):
        rt.load(bundle / "student.onnx", mean=0.5, std=1.0)
    with pytest.raises(rt.UserInputError, match="its manifest sets the normalisation"):
        rt.load(bundle, mean=0.5, std=1.0)


def test_manifest_beside_that_is_not_edgekd_or_does_not_list_the_file_is_ignored(tmp_path, lin_onnx):
    d = tmp_path / "site"
    d.mkdir()
    shutil.copy(lin_onnx, d / "model.onnx")
    (d / "manifest.json").write_text(json.dumps({"name": "my web app", "icons": []}))
    assert rt.load(d / "model.onnx").manifest is None
    other = _onnx_bundle(tmp_path / "b", lin_onnx, mean=0.0, std=1.0)
    shutil.copy(lin_onnx, other / "unlisted.onnx")
    rec = rt.load(other / "unlisted.onnx")
    assert rec.manifest is None and rec.normalization == Normalization()


def test_manifest_beside_a_changed_model_is_a_checksum_error(tmp_path, lin_onnx):
    bundle = _onnx_bundle(tmp_path / "b", lin_onnx)
    (bundle / "student.onnx").write_bytes((bundle / "student.onnx").read_bytes() + b"\0")
    with pytest.raises(rt.ChecksumMismatchError):
        rt.load(bundle / "student.onnx")


def test_rt_cli_predict_and_bench_take_mean_and_std(tmp_path, lin_onnx, lin_weights):
    from PIL import Image

    Image.fromarray((digit_canvas() * 255).astype(np.uint8)).save(tmp_path / "d.png")
    runner = CliRunner()
    r = runner.invoke(app, ["predict", str(tmp_path / "d.png"), "-m", str(lin_onnx), "--mean", "0", "--std", "1",
                            "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["results"][0]
    want = rt.load(lin_onnx, mean=0.0, std=1.0).predict(tmp_path / "d.png")
    assert got["label"] == want.label and math.isclose(got["probability"], want.probability, rel_tol=1e-5)
    assert want.probability != rt.load(lin_onnx).predict(tmp_path / "d.png").probability
    r = runner.invoke(app, ["bench", str(lin_onnx), "--runs", "2", "--warmup", "0", "--mean", "0", "--std", "1",
                            "--json"])
    assert r.exit_code == 0, r.output
    for bad in (["--mean", "nan", "--std", "1"], ["--mean", "0", "--std", "0"], ["--std", "1"]):
        r = runner.invoke(app, ["predict", str(tmp_path / "d.png"), "-m", str(lin_onnx), *bad])
        assert r.exit_code == 2 and r.output.startswith("error: ") and "Traceback" not in r.output, r.output
