"""A foreign ONNX model (shaped like the model zoo's CNTK mnist-8: opset 8, weights as graph inputs, SAME_UPPER
convolutions, a constant weight Reshape, [C, 1, 1] bias Adds) converts to every target once the converters have
normalised it; what still fails says so in a few lines naming the op."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conv_support import foreign_onnx, mechanics_tolerances
from typer.testing import CliRunner

PIXEL_STD = 1 / 255  # the model takes 0..255 pixels: x = (canvas - 0) / (1/255)


@pytest.fixture(scope="module")
def cntk_model(tmp_path_factory, digits):
    """The mnist-8-shaped model with weights trained on the 1,200 training digits (about 3 s)."""
    x, y, _, _ = digits
    gen = foreign_onnx()
    return gen.write_model(gen.train_weights(x, y), tmp_path_factory.mktemp("foreign") / "cntk_mnist.onnx")


def test_normalisation_keeps_the_outputs_and_leaves_the_source_alone(cntk_model, digits, tmp_path):
    import onnx
    import onnxruntime as ort

    from edgekd_converters.normalize import has_constant_nodes, normalized_file

    before = cntk_model.read_bytes()
    path, steps = normalized_file(str(cntk_model), tmp_path)
    assert [s.split(" ")[0] for s in steps] == ["opset", "8", "constants"], steps
    assert "opset 8 upgraded to 17" in steps[0] and "(12 -> 8 nodes)" in steps[2]
    m = onnx.load(path)
    assert [i.name for i in m.graph.input] == ["Input3"] and not has_constant_nodes(m)
    assert "Reshape" not in [n.op_type for n in m.graph.node if n.input[0] in {i.name for i in m.graph.initializer}]
    x = (digits[2][:20, None, None] * 255).astype(np.float32)  # 20 held-out digits, batch of 1 each
    runs = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (str(cntk_model), path)]
    a, b = ([s.run(None, {"Input3": xi})[0] for xi in x] for s in runs)
    np.testing.assert_allclose(np.concatenate(b), np.concatenate(a), atol=1e-4)
    assert cntk_model.read_bytes() == before


def test_an_edgekd_export_needs_no_normalisation(tiny_models, tmp_path):
    from edgekd_converters.normalize import normalized_file

    assert normalized_file(str(tiny_models["nchw"]), tmp_path) == (str(tiny_models["nchw"]), [])
    assert list(tmp_path.iterdir()) == []


def test_foreign_model_converts_to_every_target_with_its_accuracy(cntk_model, digits, tmp_path):
    import edgekd_runtime
    from edgekd_converters.convert import convert_model

    x, _, xt, yt = digits
    out = tmp_path / "out"
    rep = convert_model(cntk_model, out, ["tflite", "onnx-int8"], x[:300], xt, yt, mean=0.0, std=PIXEL_STD,
                        tolerances=mechanics_tolerances())  # held-out digits: see conv_support
    assert len(rep.extra["normalized"]) == 3
    # onnxruntime's per-channel quantizer fails on this model (its int32-bias scale adjustment compares an array);
    # the int8 ONNX model is then quantized per tensor, and the report says so
    (warning,) = rep.extra["warnings"]
    assert "per-channel int8 quantization failed" in warning and "per tensor" in warning
    assert rep.reference_accuracy >= 0.9
    arts = {a.path.name.rsplit("_", 1)[-1]: a for a in rep.artifacts}
    assert sorted(arts) == ["float16.tflite", "float32.tflite", "int8.onnx", "int8.tflite"] and not rep.failed
    for a in arts.values():
        assert a.parity.passed and a.accuracy >= rep.reference_accuracy - 0.02, a
    assert arts["float32.tflite"].parity.max_abs_diff < 1e-3 and arts["float32.tflite"].parity.top1_agreement == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["extra"]["conversion"]["warnings"] == [warning]
    assert manifest["extra"]["conversion"]["normalized"] == rep.extra["normalized"]
    rec = edgekd_runtime.load(out / "cntk_mnist_int8.tflite")  # the board reads it with the manifest beside it
    assert rec.evaluate(xt, yt) == pytest.approx(arts["int8.tflite"].accuracy, abs=0.01)


def test_cli_says_what_it_normalised_and_warns_of_the_fallback(cntk_model, digits, tmp_path):
    x, y, _, _ = digits  # training digits: int8 agreement there holds the product's default tolerance
    np.save(tmp_path / "calib.npy", x[:300])
    np.save(tmp_path / "labels.npy", y[:300])
    args = [str(cntk_model), "--to", "onnx-int8", "--calib", str(tmp_path / "calib.npy"), "--labels",
            str(tmp_path / "labels.npy"), "--mean", "0", "--std", str(PIXEL_STD), "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(_app(), args)
    assert r.exit_code == 0, r.output
    assert "converted from a normalised copy: opset 8 upgraded to 17" in " ".join(r.stdout.split())
    assert r.stderr.startswith("warning: cntk_mnist.onnx: per-channel int8 quantization failed (ValueError")
    assert len(r.stderr.splitlines()) == 1


def test_what_still_fails_in_onnx2tf_is_a_few_lines_naming_the_op(cntk_model, digits, tmp_path):
    """Without the normalisation onnx2tf fails on the weight Reshape (it dumped a 202-line weight tensor before)."""
    from edgekd_converters.errors import ConversionError
    from edgekd_converters.model_info import inspect_model, load_onnx
    from edgekd_converters.tflite import convert_tflite

    info = inspect_model(load_onnx(cntk_model), cntk_model)
    with pytest.raises(ConversionError) as e:
        convert_tflite(info, {"fp32": tmp_path / "m.tflite"}, None, 0.0, PIXEL_STD)
    msg = str(e.value)
    assert "at node 'Times212_reshape1' (op Reshape)" in msg and len(msg.splitlines()) == 1 and len(msg) < 400
    assert "e-0" not in msg  # no weights in it


def test_onnx2tf_failure_message_without_a_node_or_a_tensor(cntk_model):
    from edgekd_converters.tflite import onnx2tf_failure

    tensor = "Found: [[[[ 1.91e-02  1.06e-01 ...\n  [-6.12e-02 ..." * 50
    msg = onnx2tf_failure("m.onnx", str(cntk_model), ValueError(f"Bad output. {tensor}"),
                          "INFO: ...\nERROR: onnx_op_name: Convolution28\nERROR: Read this and deal with it.")
    assert msg == ("m.onnx: onnx2tf failed at node 'Convolution28' (op Conv): ValueError: Bad output; convert to "
                   "onnx-int8 only (--to onnx-int8), or replace that op and re-export the model")
    assert onnx2tf_failure("m.onnx", str(cntk_model), KeyError("x"), "") == (
        "m.onnx: onnx2tf failed: KeyError: 'x'; convert to onnx-int8 only (--to onnx-int8), or re-export the model "
        "with standard ONNX ops")


def test_per_tensor_fallback_is_not_taken_when_per_channel_works(tiny_models, digits, tmp_path):
    from edgekd_converters.calibration import to_model_input
    from edgekd_converters.model_info import inspect_model, load_onnx
    from edgekd_converters.onnx_int8 import convert_onnx_int8

    info = inspect_model(load_onnx(tiny_models["nchw"]), tiny_models["nchw"])
    x = to_model_input(digits[0][:50, :, :, None], info, 0.1307, 0.3081)
    assert convert_onnx_int8(info, tmp_path / "q.onnx", x) == (None, ()) and (tmp_path / "q.onnx").is_file()


def _app():
    from edgekd_converters.cli import app

    return app
