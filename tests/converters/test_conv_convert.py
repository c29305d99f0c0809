"""Real conversions of a trained tiny CNN: onnx2tf (TFLite fp32/fp16/int8) and onnxruntime.quantization (ONNX
int8), parity and accuracy numbers, altered artifacts caught, all-or-nothing output, the `edgekd-convert` CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from conv_support import mechanics_tolerances
from onnx import numpy_helper
from typer.testing import CliRunner

from edgekd_converters import TOLERANCES, ParityError, Tolerance
from edgekd_converters.calibration import to_model_input
from edgekd_converters.cli import app
from edgekd_converters.convert import convert_model
from edgekd_converters.model_info import inspect_model, load_onnx
from edgekd_converters.parity import check
from edgekd_converters.runners import make_tflite_interpreter, run_onnx, run_tflite

MEAN, STD = 0.1307, 0.3081  # the normalisation the tiny models in conftest.py were trained with
MECHANICS_INT8 = mechanics_tolerances()["int8"]  # held-out digits: see conv_support.py for why

pytestmark = pytest.mark.tflite


def _eval_inputs(model_path, digits):
    info = inspect_model(load_onnx(model_path), model_path)
    _, _, xt, yt = digits
    return to_model_input(xt[..., None], info, MEAN, STD), yt


def test_every_artifact_is_written_and_within_tolerance(converted, digits):
    out, report = converted
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["tiny_float32.tflite", "tiny_float16.tflite", "tiny_int8.onnx", "tiny_int8.tflite",
                            "manifest.json"])
    arts = {(a.format, a.precision): a for a in report.artifacts}
    assert set(arts) == {("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"), ("onnx", "int8")}
    assert report.reference_accuracy > 0.85  # the tiny CNN really learned the digits
    assert arts[("tflite", "fp32")].parity.max_abs_diff <= 1e-4
    assert arts[("tflite", "fp32")].parity.top1_agreement == 1.0
    assert arts[("tflite", "fp16")].parity.top1_agreement >= 0.99
    x, y, _, _ = digits
    x_train = to_model_input(x[..., None], inspect_model(load_onnx(report.source), report.source), MEAN, STD)
    ref_train = run_onnx(report.source, x_train)
    for key in (("tflite", "int8"), ("onnx", "int8")):
        a = arts[key]
        # held-out digits: the mechanics tolerance; accuracy can move at most by the share of flipped decisions
        assert a.parity.passed and a.parity.top1_agreement >= MECHANICS_INT8.min_top1_agreement
        assert abs(a.accuracy - report.reference_accuracy) <= 1.0 - a.parity.top1_agreement + 1e-9
        assert a.parity.num_samples == len(digits[3])
        # the product's default int8 tolerance, on the 1,200 training digits the CNN fits with a clear margin
        run = run_tflite if a.format == "tflite" else run_onnx
        res = check(a.path.name, ref_train, run(a.path, x_train), TOLERANCES["int8"])
        print(f"{a.path.name}: top-1 agreement {100 * a.parity.top1_agreement:.2f}% on {a.parity.num_samples} "
              f"held-out digits, {100 * res.top1_agreement:.2f}% on {res.num_samples} training digits")
        assert res.top1_agreement >= TOLERANCES["int8"].min_top1_agreement and res.num_samples == len(y)
    assert arts[("tflite", "int8")].size_bytes < arts[("tflite", "fp32")].size_bytes


def test_int8_tflite_takes_and_returns_int8(converted):
    out, _ = converted
    it = make_tflite_interpreter(out / "tiny_int8.tflite")
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.int8 and outp["dtype"] == np.int8
    assert list(inp["shape"]) == [1, 28, 28, 1]  # onnx2tf's NHWC
    assert inp["quantization"][0] > 0


def test_int8_onnx_is_qdq_per_channel(converted):
    out, _ = converted
    model = onnx.load(out / "tiny_int8.onnx")
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    scales = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_scale")]
    assert any(s.ndim == 1 and s.size == 16 for s in scales)  # per output channel of the second conv


def test_altered_tflite_artifact_is_caught(converted, tiny_models, digits, tmp_path):
    """Scale the final layer's bias inside the .tflite file: the parity check must refuse it."""
    out, _ = converted
    x, _ = _eval_inputs(tiny_models["nchw"], digits)
    ref = run_onnx(tiny_models["nchw"], x)
    bias = next(numpy_helper.to_array(i) for i in onnx.load(tiny_models["nchw"]).graph.initializer
                if i.dims == [10])
    blob = (out / "tiny_float32.tflite").read_bytes()
    at = blob.find(bias.astype(np.float32).tobytes())
    assert at > 0, "the float32 bias is not stored verbatim in the TFLite file"
    altered = tmp_path / "altered.tflite"
    altered.write_bytes(blob[:at] + (bias * 1.5 + 0.3).astype(np.float32).tobytes() + blob[at + 40:])
    check("tiny_float32.tflite", ref, run_tflite(out / "tiny_float32.tflite", x), TOLERANCES["fp32"])
    with pytest.raises(ParityError, match=r"altered.tflite: parity check .* max abs diff"):
        check("altered.tflite", ref, run_tflite(altered, x), TOLERANCES["fp32"])


def test_altered_onnx_int8_artifact_is_caught(converted, tiny_models, digits, tmp_path):
    out, _ = converted
    x, _ = _eval_inputs(tiny_models["nchw"], digits)
    ref = run_onnx(tiny_models["nchw"], x)
    model = onnx.load(out / "tiny_int8.onnx")
    for init in model.graph.initializer:  # flip the sign of every int8 weight
        if init.data_type == onnx.TensorProto.INT8 and len(init.dims) == 4:
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(model, tmp_path / "bad_int8.onnx")
    with pytest.raises(ParityError) as e:
        check("bad_int8.onnx", ref, run_onnx(tmp_path / "bad_int8.onnx", x), TOLERANCES["int8"])
    assert e.value.result.top1_agreement < 0.99


def test_parity_failure_leaves_nothing_behind(tiny_models, digits, tmp_path):
    x, _, xt, _ = digits
    out = tmp_path / "never"
    with pytest.raises(ParityError) as e:
        convert_model(tiny_models["nchw"], out, ["onnx-int8"], x[:200], xt[:50], mean=MEAN, std=STD,
                      tolerances={"int8": Tolerance(atol=1e-9, min_top1_agreement=1.0)})
    assert e.value.result.max_abs_diff > 1e-9
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no staging directory left either


def test_nhwc_model_like_a_keras_export(tiny_models, digits, tmp_path):
    x, _, xt, yt = digits
    report = convert_model(tiny_models["nhwc"], tmp_path / "k", ["tflite", "onnx-int8"], x[:250], xt, yt,
                           mean=MEAN, std=STD, tflite_precisions=("fp32", "int8"), tolerances=mechanics_tolerances())
    arts = {(a.format, a.precision): a for a in report.artifacts}
    assert arts[("tflite", "fp32")].parity.max_abs_diff <= 1e-4
    assert arts[("tflite", "int8")].parity.top1_agreement >= MECHANICS_INT8.min_top1_agreement
    assert arts[("onnx", "int8")].parity.top1_agreement >= MECHANICS_INT8.min_top1_agreement


def test_cli_converts_and_reports_json(tiny_models, digits, tmp_path):
    x, y, _, _ = digits
    np.save(tmp_path / "calib.npy", (x[:220] * 255).round().astype(np.uint8))
    np.save(tmp_path / "labels.npy", y[:220])
    out = tmp_path / "cli_out"
    args = [str(tiny_models["nchw"]), "--to", "onnx-int8", "--calib", str(tmp_path / "calib.npy"),
            "--labels", str(tmp_path / "labels.npy"), "--mean", str(MEAN), "--std", str(STD), "--out", str(out)]
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["artifacts"][0]["path"].endswith("tiny_int8.onnx") and doc["artifacts"][0]["parity"]["passed"]
    assert doc["artifacts"][0]["accuracy"] > 0.8 and (out / "tiny_int8.onnx").is_file()
    again = CliRunner().invoke(app, args)  # the output exists now
    assert again.exit_code == 2 and "already exists; pass --force" in again.output
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0
    (out / "notes.txt").write_text("mine")  # --force replaces edgekd's own output, never a file of the user's
    r = CliRunner().invoke(app, [*args, "--force"])
    assert r.exit_code == 2 and "holds notes.txt, which edgekd did not write there" in r.output
    assert (out / "notes.txt").read_text() == "mine" and (out / "tiny_int8.onnx").is_file()
    shutil.copy(tiny_models["nchw"], tmp_path / "own.onnx")  # the model itself in --out
    r = CliRunner().invoke(app, [str(tmp_path / "own.onnx"), *args[1:-2], "--out", str(tmp_path), "--force"])
    assert r.exit_code == 2 and "an input of this command" in r.output and (tmp_path / "own.onnx").is_file()


def test_cli_bad_inputs_exit_2_without_traceback(tiny_models, digits, tmp_path):
    x = digits[0]
    np.save(tmp_path / "few.npy", x[:50])
    np.save(tmp_path / "big.npy", x[:220] * 255)
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("hello")
    cases = [
        ([str(not_onnx), "--to", "tflite", "--calib", str(tmp_path / "few.npy")], "not a valid ONNX model"),
        ([str(tiny_models["nchw"]), "--to", "tflite", "--calib", str(tmp_path / "few.npy")],
         "50 samples; int8 calibration needs at least 200"),
        ([str(tiny_models["nchw"]), "--to", "onnx-int8", "--calib", str(tmp_path / "big.npy")],
         "divide 0..255 pixel values by 255"),
        ([str(tiny_models["nchw"]), "--to", "tflite", "--calib", str(tmp_path / "few.npy"), "--std", "0"],
         "--mean/--std: normalization std 0.0 must be > 0"),
        ([str(tiny_models["nchw"]), "--to", "tflite", "--calib", str(tmp_path / "few.npy"), "--mean", "nan"],
         "--mean/--std: normalization mean nan is not a finite number"),
        ([str(tiny_models["nchw"]), "--to", "tflite", "--calib", str(tmp_path / "few.npy"), "--std", "inf"],
         "--mean/--std: normalization std inf is not a finite number"),
    ]
    for args, needle in cases:
        r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_cli_parity_failure_exits_1(tiny_models, digits, tmp_path, monkeypatch):
    np.save(tmp_path / "calib.npy", digits[0][:200])
    monkeypatch.setitem(TOLERANCES, "int8", Tolerance(atol=0.0, min_top1_agreement=1.0))
    r = CliRunner().invoke(app, [str(tiny_models["nchw"]), "--to", "onnx-int8", "--calib",
                                 str(tmp_path / "calib.npy"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "parity check against onnx failed" in r.output
    assert not (tmp_path / "o").exists()


def test_non_strict_conversion_keeps_the_artifacts_that_pass(tiny_models, digits, tmp_path):
    x, _, xt, _ = digits
    report = convert_model(tiny_models["nchw"], tmp_path / "o", ["onnx-int8", "tflite"], x[:200], xt[:100],
                           mean=MEAN, std=STD, tflite_precisions=("fp32",), strict=False,
                           tolerances={"int8": Tolerance(atol=1e-9, min_top1_agreement=1.0)})
    assert [(a.format, a.precision) for a in report.artifacts] == [("tflite", "fp32")]
    assert [f.name for f in report.failed] == ["tiny_int8.onnx"] and not report.failed[0].parity.passed
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["manifest.json", "tiny_float32.tflite"]


def test_cli_names_an_unconvertible_op_and_its_node(tmp_path, digits):
    from onnx import TensorProto, helper

    node = helper.make_node("FancyPool", ["image"], ["scores"], name="head/fancy_pool", domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 10])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, tmp_path / "custom.onnx")
    np.save(tmp_path / "calib.npy", digits[0][:200])
    r = CliRunner().invoke(app, [str(tmp_path / "custom.onnx"), "--to", "tflite", "--calib",
                                 str(tmp_path / "calib.npy"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "'FancyPool'" in r.output and "'head/fancy_pool'" in r.output
    assert not (tmp_path / "o").exists()


def test_converter_crash_is_a_conversion_error_and_writes_nothing(tiny_models, digits, tmp_path, monkeypatch):
    import onnx2tf

    from edgekd_converters import ConversionError

    def broken(**kwargs):
        print("onnx2tf: something went wrong deep inside")
        raise RuntimeError("boom")

    monkeypatch.setattr(onnx2tf, "convert", broken)
    with pytest.raises(ConversionError, match=r"onnx2tf failed: RuntimeError: boom; convert to onnx-int8 only"):
        convert_model(tiny_models["nchw"], tmp_path / "o", ["tflite"], digits[0][:200], mean=MEAN, std=STD)
    assert list(tmp_path.iterdir()) == []


def test_labels_without_eval_score_every_calibration_sample(tiny_models, digits, tmp_path):
    """Also the default int8 tolerance end to end: the training digits, which the CNN fits with a clear margin."""
    x, y, _, _ = digits  # 1200 samples: more than the 500 used to calibrate, all of them checked
    report = convert_model(tiny_models["nchw"], tmp_path / "o", ["onnx-int8"], x, eval_labels=y, mean=MEAN, std=STD)
    assert report.extra == {"num_calibration_samples": 500, "num_eval_samples": 1200, "num_classes": 10,
                            "output_kind": "logits", "normalized": [], "warnings": []}
    (art,) = report.artifacts
    print(f"{art.path.name}: top-1 agreement {100 * art.parity.top1_agreement:.2f}% on 1200 training digits")
    assert art.parity.num_samples == 1200 and report.reference_accuracy > 0.85
    assert art.parity.tolerance == TOLERANCES["int8"] and art.parity.top1_agreement >= 0.99


def test_calibration_sample_count_is_the_callers_to_choose(tiny_models, digits, tmp_path):
    """`--calib-samples` / `max_calib_samples` set how many of the given canvases calibrate int8 (a line model
    needs more than the default 500); under the 200 minimum is refused before anything is written."""
    from edgekd_converters import CalibrationDataError

    x, _, _, _ = digits
    np.save(tmp_path / "calib.npy", x[:1200])
    args = [str(tiny_models["nchw"]), "--to", "onnx-int8", "--calib", str(tmp_path / "calib.npy"), "--mean",
            str(MEAN), "--std", str(STD), "--json"]
    counts = {}
    for n in (None, 900, 5000):
        flag = [] if n is None else ["--calib-samples", str(n)]
        r = CliRunner().invoke(app, [*args, *flag, "--out", str(tmp_path / f"o{n}")])
        assert r.exit_code == 0, r.output
        counts[n] = json.loads(r.stdout)["num_calibration_samples"]
    assert counts == {None: 500, 900: 900, 5000: 1200}  # the default, as asked, all there are
    with pytest.raises(CalibrationDataError, match="max_calib_samples 150 is under the 200"):
        convert_model(tiny_models["nchw"], tmp_path / "few", ["onnx-int8"], x, mean=MEAN, std=STD,
                      max_calib_samples=150)
    assert not (tmp_path / "few").exists()
    r = CliRunner().invoke(app, [*args, "--calib-samples", "150", "--out", str(tmp_path / "o150")])
    assert r.exit_code == 2 and "'--calib-samples'" in r.output and not (tmp_path / "o150").exists()


def test_fixed_batch_model(tiny_models, digits, tmp_path):
    """A model exported without a dynamic batch (input (1, 1, 28, 28)) is run sample by sample."""
    x, _, xt, yt = digits
    info = inspect_model(load_onnx(tiny_models["batch1"]), tiny_models["batch1"])
    assert info.input_shape[0] == 1
    report = convert_model(tiny_models["batch1"], tmp_path / "o", ["tflite", "onnx-int8"], x[:200], xt[:101],
                           yt[:101], mean=MEAN, std=STD, tflite_precisions=("fp32", "int8"),
                           tolerances=mechanics_tolerances())
    arts = {(a.format, a.precision): a for a in report.artifacts}
    assert arts[("tflite", "fp32")].parity.max_abs_diff <= 1e-4 and arts[("tflite", "fp32")].parity.num_samples == 101
    assert arts[("onnx", "int8")].parity.top1_agreement >= MECHANICS_INT8.min_top1_agreement
