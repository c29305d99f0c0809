"""Teachers from any framework: an ONNX file shaped like the model zoo's CNTK mnist-8 (opset 8, weights as graph
inputs, SAME_UPPER, a batch of 1 baked in, 0..255 input) and its NHWC / probabilities / dynamic-batch variants, a
TFLite file, the declared input scaling and its check, and the bad teacher files `run` and `distill` refuse with
exit 2 before writing anything."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.models.foreign_teachers import TeacherScaleError, parse_teacher_scale
from edgekd.models.teachers import TeacherMismatchError, load_checked_teacher, load_teacher
from edgekd_runtime.errors import EdgekdWarning
from edgekd_runtime.manifest import MNIST_MEAN, MNIST_STD

SMALL_DATA = "data: {limit_per_class: 20}\n"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _generator():
    spec = importlib.util.spec_from_file_location("foreign_onnx", FIXTURES / "foreign_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cntk(tmp_path_factory):
    """{variant: path} of the mnist-8-shaped teacher, trained on 1,500 embedded digits (about 3 s)."""
    gen = _generator()
    w = gen.train_weights(*gen.embedded_digits(1500))
    d = tmp_path_factory.mktemp("cntk")
    five = {**w, "dense_w": w["dense_w"][:, :5], "dense_b": w["dense_b"][:5]}
    return {"mnist8": gen.write_model(w, d / "mnist8.onnx"),
            "nhwc_probs": gen.write_model(w, d / "nhwc_probs.onnx", nhwc=True, probabilities=True,
                                          dynamic_batch=True, opset=13),
            "five": gen.write_model(five, d / "five.onnx")}


def _norm(canvases: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((canvases[:, None] - MNIST_MEAN) / MNIST_STD).float()


def _canvases(splits, n: int = 40) -> np.ndarray:
    return (splits.val.x[:n] / 255.0).astype(np.float32)


def test_onnx_teacher_is_the_file_run_by_onnxruntime(cntk, tiny_splits):
    import onnxruntime as ort

    t = load_teacher(str(cntk["mnist8"]), 10, scale="0-255")
    assert (t.source, t.name, t.has_features) == ("onnx", "mnist8", False)
    c = _canvases(tiny_splits)
    with torch.inference_mode():
        got = t.model(_norm(c)).numpy()
    sess = ort.InferenceSession(str(cntk["mnist8"]), providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, {"Input3": (ci * 255)[None, None]})[0] for ci in c])  # batch of 1 baked in
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-5)
    assert np.mean(got.argmax(1) == tiny_splits.val.y[:40]) >= 0.85


def test_nhwc_probabilities_teacher_gives_the_same_logits_up_to_a_constant(cntk, tiny_splits):
    c = _norm(_canvases(tiny_splits))
    with torch.inference_mode():
        logits = load_teacher(str(cntk["mnist8"]), 10, scale="0-255").model(c)
        log_probs = load_teacher(str(cntk["nhwc_probs"]), 10, scale="0-255").model(c)
    want = torch.log_softmax(logits, 1)
    seen = want > -15  # smaller probabilities underflow in the model's float32 softmax (clipped at log 1e-12)
    assert torch.allclose(log_probs[seen], want[seen], atol=2e-3) and bool((log_probs[~seen] < -13).all())
    assert float(log_probs.exp().sum(1).sub(1).abs().max()) < 1e-3


@pytest.mark.tflite
def test_tflite_teacher_runs_through_the_runtime(tiny_splits):
    import edgekd_runtime

    path = FIXTURES / "digits_bundle" / "student_int8.tflite"
    t = load_teacher(str(path), 10)
    assert t.source == "tflite"
    c = _canvases(tiny_splits)
    with torch.inference_mode():
        got = t.model(_norm(c)).numpy()
    np.testing.assert_allclose(got, edgekd_runtime.load(path).forward(c), atol=1e-5)


def test_teacher_scale_grammar():
    assert parse_teacher_scale("0-255").std == pytest.approx(1 / 255) and parse_teacher_scale(None).is_default
    assert (parse_teacher_scale(" 0.5,0.25 ").mean, parse_teacher_scale("0.5,0.25").std) == (0.5, 0.25)
    for bad in ("0-256", "0.5", "0.5,0", "a,b"):
        with pytest.raises(TeacherScaleError, match="teacher scale"):
            parse_teacher_scale(bad)


def test_scale_check_warns_and_names_the_scaling_that_works(cntk, tiny_splits):
    with pytest.warns(EdgekdWarning, match=r"teacher .*mnist8.onnx is \d+\.\d% accurate on the 20 val digits with "
                                           r"teacher scale 0.1307,0.3081; with 0-255 it is [89]\d\.\d%: pass "
                                           r"--teacher-scale 0-255"):
        load_checked_teacher(str(cntk["mnist8"]), tiny_splits)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checked_teacher(str(cntk["mnist8"]), tiny_splits, scale="0-255")


def test_scaled_torchscript_teacher_gets_its_declared_input(tmp_path, tiny_splits):
    class Pixels(torch.nn.Module):  # a "teacher" that returns its mean input pixel per class slot
        def forward(self, x):
            return x.mean(dim=(1, 2, 3))[:, None].repeat(1, 10)

    torch.jit.save(torch.jit.script(Pixels()), str(tmp_path / "p.ts"))
    c = _canvases(tiny_splits, 4)
    with torch.inference_mode():
        out = load_teacher(str(tmp_path / "p.ts"), 10, scale="0-255").model(_norm(c))
    np.testing.assert_allclose(out[:, 0].numpy(), c.mean(axis=(1, 2)) * 255, rtol=1e-4)


@pytest.mark.parametrize("mode", [[], ["--no-cache-teacher"]], ids=["cached", "online"])
def test_distill_from_an_onnx_teacher(cntk, tmp_path, mode):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SMALL_DATA)
    r = CliRunner().invoke(app, ["distill", "--config", str(cfg), "--teacher", str(cntk["mnist8"]),
                                 "--teacher-scale", "0-255", "--student", "cnn-w8-d2-r28", "--epochs", "1",
                                 "--views", "1", "--out", str(tmp_path / "d"), "--quiet", *mode])
    assert r.exit_code == 0, r.output
    assert "warning" not in r.output
    ck = torch.load(tmp_path / "d" / "student.pt", weights_only=True)
    assert ck["config"]["teacher_scale"] == "0-255" and ck["metrics"]["teacher"] == "mnist8"
    assert ck["config"]["distill"]["cache_teacher"] is (not mode)


def _bad_teachers(cntk, tmp_path: Path) -> list[tuple[Path, str]]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def graph_with_input(name: str, shape: list) -> Path:
        w = numpy_helper.from_array(np.zeros((10, 10), np.float32), "w")
        g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], initializer=[w])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / name)
        return tmp_path / name

    class RaisesOnABatch(torch.nn.Module):
        def forward(self, x):
            if x.shape[0] > 1:
                raise RuntimeError("this model was traced for one image")
            return x.flatten(1)[:, :10]

    torch.jit.save(torch.jit.script(RaisesOnABatch()), str(tmp_path / "batch1.ts"))
    (tmp_path / "not_onnx.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 8)
    return [
        (cntk["five"], "outputs 5 scores per image but the data has 10 classes"),
        (graph_with_input("features.onnx", ["N", 10]), "flat input x has 10 features, not a square image"),
        (graph_with_input("dynamic.onnx", ["N", "C", "H", "W"]), "not a 1- or 3-channel image in NCHW or NHWC"),
        (tmp_path / "not_onnx.onnx", "not_onnx.onnx: not a valid ONNX model"),
        (tmp_path / "batch1.ts", "does not run on a (3, 1, 28, 28) input (RuntimeError"),
    ]


def test_run_and_distill_refuse_bad_teacher_files_before_writing(cntk, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SMALL_DATA)
    for i, (teacher, needle) in enumerate(_bad_teachers(cntk, tmp_path)):
        for cmd in (["run", "--quick"], ["distill", "--student", "cnn-w8-d2-r28"]):
            out = tmp_path / f"out{i}"
            r = CliRunner().invoke(app, [*cmd, "--config", str(cfg), "--teacher", str(teacher), "--out", str(out)])
            errors = [line for line in r.output.splitlines() if line.startswith("error: ")]
            assert r.exit_code == 2 and len(errors) == 1 and needle in errors[0], (cmd, teacher, r.output)
            assert "Traceback" not in r.output and not out.exists(), (cmd, teacher)


def test_wrong_class_count_is_a_teacher_mismatch(cntk):
    with pytest.raises(TeacherMismatchError, match="5 scores"):
        load_teacher(str(cntk["five"]), 10)


def test_teacher_scale_refused_without_a_teacher_file_or_for_an_edgekd_checkpoint(tmp_path):
    r = CliRunner().invoke(app, ["run", "--quick", "--teacher-scale", "0-255", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "is for a teacher file (--teacher FILE)" in r.output
    r = CliRunner().invoke(app, ["run", "--quick", "--teacher", "t.onnx", "--teacher-scale", "0-300",
                                 "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "teacher scale '0-300'" in r.output and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_run_with_an_onnx_teacher_reports_it_as_its_own_file(cntk, tmp_path, monkeypatch):
    """`edgekd run` end to end with the mnist-8-shaped teacher; the report's teacher row is that file (5,994
    weights, its accuracy on the test split, its cost and latency). The run's int8 bars are the mechanics ones of
    test_pipeline.py (this small run's student sits near them on some CPUs)."""
    import json
    import math

    import edgekd.pipeline.results as results
    import edgekd_converters.parity as parity
    from edgekd.data import DataSpec, load_data
    from edgekd.train.device import resolve_device
    from edgekd.train.trainer import evaluate

    monkeypatch.setitem(parity.TOLERANCES, "int8", parity.Tolerance(atol=math.inf, min_top1_agreement=0.9))
    monkeypatch.setattr(results, "INT8_ACCURACY_DROP_PP", 5.0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {limit_per_class: 100}\nstudent_train: {epochs: 3}\ndistill: {transfer_views: 1}\n"
                   "bench_runs: 10\n")
    r = CliRunner().invoke(app, ["run", "--quick", "--config", str(cfg), "--teacher", str(cntk["mnist8"]),
                                 "--teacher-scale", "0-255", "--student", "cnn-w8-d2-r28", "--out",
                                 str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "teacher file: " in r.output and "(onnx, input scale 0-255) checked" in r.output
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    row = next(m for m in rep["models"] if m["role"] == "teacher")
    splits = load_data(DataSpec("embedded", limit_per_class=100))
    acc, _ = evaluate(load_teacher(str(cntk["mnist8"]), 10, scale="0-255").model, splits.test.x, splits.test.y,
                      resolve_device("cpu"))
    assert (row["arch"], row["params"], row["test_accuracy"]) == ("mnist8", 5994, acc) and acc >= 0.85
    assert row["note"].startswith("fp32 ONNX") and row["predicted_latency_ms"] > 0 and row["macs"] > 0
    assert not (tmp_path / "run" / "teacher").exists()  # a teacher file is used where it is
