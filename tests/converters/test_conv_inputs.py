"""Bad input to the converters: not ONNX, unconvertible ops, calibration data of the wrong shape, range or
count, and image-folder calibration. Fast: no converter runs here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd_converters.calibration import check_canvases, load_labels, load_samples, to_model_input
from edgekd_converters.errors import CalibrationDataError, ModelLoadError, UnsupportedOpError
from edgekd_converters.model_info import OnnxModelInfo, check_ops, inspect_model, load_onnx, onnx2tf_ops

NCHW = OnnxModelInfo("m.onnx", "input", (-1, 1, 28, 28), "NCHW", "logits", 10)
NHWC = OnnxModelInfo("m.onnx", "input", (-1, 28, 28, 1), "NHWC", "logits", 10)


def _onnx_with(tmp_path: Path, op: str, domain: str = "", node_name: str = "mystery_node") -> Path:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["input"], ["logits"], name=node_name, domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 28, 28])])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    path = tmp_path / f"{op}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return path


# ---- the model file ------------------------------------------------------------------------------------------
def test_not_onnx_is_a_model_load_error(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(ModelLoadError, match="model.onnx: not a valid ONNX model"):
        load_onnx(p)


def test_truncated_onnx_is_a_model_load_error(tmp_path, tiny_models):
    p = tmp_path / "cut.onnx"
    p.write_bytes(tiny_models["nchw"].read_bytes()[:300])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        load_onnx(p)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_onnx(tmp_path / "nope.onnx")


def test_custom_op_is_named_with_its_node_for_both_targets(tmp_path):
    path = _onnx_with(tmp_path, "FancyActivation", domain="com.example", node_name="block3/fancy")
    import onnx

    model = onnx.load(path)  # the checker accepts unknown domains, the converters must not
    for target in ("tflite", "onnx-int8"):
        with pytest.raises(UnsupportedOpError) as e:
            check_ops(model, path, target)
        assert "'FancyActivation'" in str(e.value) and "'block3/fancy'" in str(e.value) and target in str(e.value)


def test_standard_op_onnx2tf_lacks_is_refused_for_tflite_only(tmp_path):
    from onnx import defs

    missing = sorted({s.name for s in defs.get_all_schemas() if s.domain == ""} - onnx2tf_ops())
    assert missing, "onnx2tf claims every ONNX op; pick another unsupported op for this test"
    op = "StringNormalizer" if "StringNormalizer" in missing else missing[0]
    path = _onnx_with(tmp_path, op)
    import onnx

    model = onnx.load(path)
    with pytest.raises(UnsupportedOpError, match=f"'{op}'.*'mystery_node'"):
        check_ops(model, path, "tflite")
    check_ops(model, path, "onnx-int8")  # onnxruntime implements every standard op


def test_onnx2tf_op_list_is_real():
    ops = onnx2tf_ops()
    assert {"Conv", "Gemm", "Relu", "GlobalAveragePool", "Softmax"} <= ops and len(ops) > 150


def test_inspect_finds_layout_and_classes(tiny_models):
    nchw = inspect_model(load_onnx(tiny_models["nchw"]), tiny_models["nchw"])
    nhwc = inspect_model(load_onnx(tiny_models["nhwc"]), tiny_models["nhwc"])
    assert (nchw.layout, nchw.input_shape, nchw.num_classes, nchw.input_name) == ("NCHW", (-1, 1, 28, 28), 10, "image")
    assert (nhwc.layout, nhwc.height, nhwc.width, nhwc.channels) == ("NHWC", 28, 28, 1)


# ---- calibration data ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 28, 28, 1), (5, 1, 28, 28)])
def test_accepted_layouts_become_nhwc(shape):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    out = check_canvases(x, NCHW, "x")
    assert out.shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(out.reshape(5, -1), x.reshape(5, -1))


def test_uint8_is_scaled_to_unit_range():
    x = np.full((2, 28, 28), 255, np.uint8)
    assert check_canvases(x, NCHW).max() == pytest.approx(1.0)


def test_wrong_shape_names_source_and_expected_shape():
    with pytest.raises(CalibrationDataError, match=r"calib.npy: shape \[4, 32, 32\] does not fit .*\(N, 28, 28\)"):
        check_canvases(np.zeros((4, 32, 32), np.float32), NCHW, "calib.npy")


def test_0_255_floats_are_refused_with_a_hint():
    with pytest.raises(CalibrationDataError, match=r"\[0, 255\]: divide 0..255 pixel values by 255"):
        check_canvases(np.linspace(0, 255, 2 * 784, dtype=np.float32).reshape(2, 28, 28), NCHW)


def test_already_normalised_data_is_refused():
    x = (np.random.default_rng(0).random((2, 28, 28), dtype=np.float32) - 0.1307) / 0.3081
    with pytest.raises(CalibrationDataError, match="negative values mean they look normalised already"):
        check_canvases(x, NCHW)


def test_nan_and_integer_dtypes_are_refused():
    x = np.zeros((2, 28, 28), np.float32)
    x[0, 0, 0] = np.nan
    with pytest.raises(CalibrationDataError, match="NaN"):
        check_canvases(x, NCHW)
    with pytest.raises(CalibrationDataError, match="int64"):
        check_canvases(np.zeros((2, 28, 28), np.int64), NCHW)


def test_too_few_samples_says_how_many_are_needed():
    with pytest.raises(CalibrationDataError, match="199 samples; int8 calibration needs at least 200"):
        check_canvases(np.zeros((199, 28, 28), np.float32), NCHW, min_samples=200)


def test_model_input_is_normalised_in_the_model_layout():
    x = np.full((3, 28, 28, 1), 0.5, np.float32)
    a, b = to_model_input(x, NCHW, 0.5, 2.0), to_model_input(x, NHWC, 0.1307, 0.3081)
    assert a.shape == (3, 1, 28, 28) and np.all(a == 0.0)
    assert b.shape == (3, 28, 28, 1) and b[0, 0, 0, 0] == pytest.approx((0.5 - 0.1307) / 0.3081)


def test_npy_file_and_bad_sources(tmp_path):
    good = tmp_path / "calib.npy"
    np.save(good, np.zeros((3, 28, 28), np.uint8))
    assert load_samples(good, NCHW).shape == (3, 28, 28, 1)
    bad = tmp_path / "broken.npy"
    bad.write_bytes(b"garbage")
    with pytest.raises(CalibrationDataError, match="broken.npy: not a .npy file \\(no NUMPY header\\)"):
        load_samples(bad, NCHW)  # not numpy's "contains pickled data ... load it unsafely with allow_pickle"
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CalibrationDataError, match="cut.npy: not a readable .npy array"):
        load_samples(cut, NCHW)
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CalibrationDataError, match="holds Python objects .* which edgekd does not load"):
        load_samples(objects, NCHW)
    with pytest.raises(CalibrationDataError, match="no such file"):
        load_samples(tmp_path / "missing.npy", NCHW)
    txt = tmp_path / "calib.txt"
    txt.write_text("1 2 3")
    with pytest.raises(CalibrationDataError, match="unsupported calibration source"):
        load_samples(txt, NCHW)


def _digit_png(path: Path, dark_on_light: bool = True) -> None:
    a = np.zeros((60, 40), np.uint8)
    a[10:50, 18:23] = 255  # a "1"
    Image.fromarray(255 - a if dark_on_light else a).save(path)


def test_image_folder_with_class_subfolders(tmp_path):
    for cls in ("0", "1"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            _digit_png(tmp_path / cls / f"{i}.png")
    resized = load_samples(tmp_path, NCHW, preprocess="resize")
    assert resized.shape == (6, 28, 28, 1) and 0.0 <= resized.min() and resized.max() <= 1.0
    mnist = load_samples(tmp_path, NCHW, preprocess="mnist")
    assert mnist.shape == (6, 28, 28, 1)
    assert mnist[0, 0, 0, 0] == 0.0 and mnist[0].max() > 0.5  # light ink on a dark canvas, like MNIST


def test_image_folder_reads_the_runtimes_image_suffixes(tmp_path):
    """A `.ppm` (or `.PBM`) that `edgekd-rt predict` reads is a calibration image too: one suffix set."""
    from edgekd_runtime.cli import expand_images

    _digit_png(tmp_path / "0.png")
    with Image.open(tmp_path / "0.png") as im:
        im.convert("RGB").save(tmp_path / "1.ppm")
        im.convert("1").save(tmp_path / "2.PBM")
    (tmp_path / "notes.txt").write_text("not an image")
    assert load_samples(tmp_path, NCHW, preprocess="resize").shape == (3, 28, 28, 1)
    assert [p.name for p in expand_images([tmp_path])] == ["0.png", "1.ppm", "2.PBM"]


def test_image_folder_errors(tmp_path):
    with pytest.raises(CalibrationDataError, match="no images"):
        load_samples(tmp_path, NCHW)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationDataError, match="bad.png: cannot read this image"):
        load_samples(tmp_path, NCHW, preprocess="resize")


def test_labels_must_match_the_samples(tmp_path):
    p = tmp_path / "y.npy"
    np.save(p, np.arange(5))
    assert load_labels(p, 5).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(CalibrationDataError, match="one entry per sample"):
        load_labels(p, 6)


def test_staged_output_clears_what_killed_processes_left_and_keeps_live_stages(tmp_path):
    """`staged_directory` (edgekd export, edgekd-convert --out) names each stage after its process; stages whose
    process is gone are deleted by the next run, a live process's stage is kept, and none reaches the output."""
    import os
    import subprocess
    import sys

    from edgekd_converters.staging import staged_directory

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (tmp_path / f".out.{dead.pid}-killed.tmp").mkdir()
        (tmp_path / f".out.{live.pid}-running.tmp").mkdir()
        (tmp_path / f".other.{dead.pid}-x.tmp").mkdir()  # another output's stage: not this one's to judge
        with staged_directory(tmp_path / "out") as stage:
            assert stage.name.startswith(f".out.{os.getpid()}-")
            (stage / "model.tflite").write_bytes(b"x")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [".other." + f"{dead.pid}-x.tmp", f".out.{live.pid}-running.tmp", "out"])
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.tflite"]
    finally:
        live.kill()
        live.wait()
