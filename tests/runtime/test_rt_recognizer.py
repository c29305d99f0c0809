"""load() / forward / predict on real onnxruntime and LiteRT sessions, checked against numpy references."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from rt_support import digit_canvas, handwriting_photo, make_linear_onnx, reference_logits, tiny_reference

import edgekd_runtime as rt
from edgekd_runtime.errors import (
    ChecksumMismatchError,
    ImageError,
    InputShapeError,
    ManifestError,
    ModelLoadError,
    UnknownNameError,
    UserInputError,
)


def canvases(n: int, seed: int = 0, size: int = 28) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ((rng.random((n, size, size)) < 0.25) * rng.random((n, size, size))).astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_onnx_forward_matches_numpy(lin_onnx, lin_weights):
    rec = rt.load(lin_onnx, threads=1)
    c = canvases(5)
    out = rec.forward(c)
    assert out.shape == (5, 10) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference_logits(c, *lin_weights), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rec.predict_proba(c), softmax(reference_logits(c, *lin_weights)), atol=1e-5)
    assert rec.backend_name == "onnxruntime" and rec.backend_version and rec.threads == 1
    assert rec.input_spec.layout == "NCHW" and rec.size == 28 and rec.precision == "fp32"
    assert rec.labels == [str(i) for i in range(10)] and rec.model_path == lin_onnx


def test_tflite_forward_matches_numpy(tiny_tflite, tiny_weights, tflite_name):
    rec = rt.load(tiny_tflite)
    c = canvases(3, seed=1)
    out = rec.forward(c)  # fixed batch 1 in the model: run in three calls
    np.testing.assert_allclose(out, tiny_reference(c, *tiny_weights), rtol=1e-4, atol=1e-4)
    assert rec.backend_name == tflite_name and rec.input_spec.layout == "NHWC"
    assert rec.backend.delegate == "XNNPACK"


def test_int8_tflite_quantizes_input_and_dequantizes_output(tiny_int8_tflite, tiny_weights):
    rec = rt.load(tiny_int8_tflite)
    assert rec.precision == "int8" and rec.input_spec.dtype == "int8"
    c = canvases(8, seed=2)
    x = rec.to_input(c)
    assert x.dtype == np.int8 and x.shape == (8, 28, 28, 1)
    ref = tiny_reference(c, *tiny_weights)
    out = rec.forward(c)
    assert out.dtype == np.float32
    scale = rec.backend.outputs[0].scale
    assert np.abs(out - ref).max() < 0.1 + 4 * scale  # int8 I/O error stays within a few output steps
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.75


def test_nhwc_fixed_batch_onnx_and_probability_outputs(tmp_path, lin_weights):
    w, b = lin_weights
    path = make_linear_onnx(tmp_path / "nhwc_probs.onnx", w, b, batch=1, layout="NHWC", softmax=True)
    rec = rt.load(path)
    assert rec.input_spec.layout == "NHWC" and rec.backend.fixed_batch == 1
    c = canvases(4, seed=3)
    # Flatten of NHWC (N,28,28,1) has the same element order as NCHW (N,1,28,28): same reference
    probs = rec.predict_proba(c)
    np.testing.assert_allclose(probs, softmax(reference_logits(c, w, b)), atol=1e-5)  # not softmaxed twice
    preds = rec.predict_batch(c, preprocessed=True, top_k=2)
    assert [p.index for p in preds] == list(probs.argmax(1))


def test_predict_on_a_photo(lin_onnx, lin_weights):
    rec = rt.load(lin_onnx)
    photo = handwriting_photo(digit_canvas())
    p = rec.predict(photo, top_k=3)
    c = rec.canvas(photo)
    expected = softmax(reference_logits(c[None], *lin_weights))[0]
    assert p.index == int(expected.argmax()) and p.label == str(p.index)
    assert p.probability == pytest.approx(float(expected.max()), rel=1e-4)
    assert [lab for lab, _ in p.top_k] == [str(i) for i in np.argsort(-expected)[:3]]
    assert p.top_k[0][1] >= p.top_k[1][1] >= p.top_k[2][1]
    assert p.latency_ms > 0 and p.preprocess_ms > 0 and p.source.startswith("array")
    d = p.to_dict()
    assert d["top_k"][0] == {"label": p.label, "probability": p.probability}
    json.dumps(d)


def test_predict_batch_equals_predict(lin_onnx):
    rec = rt.load(lin_onnx)
    photos = [handwriting_photo(digit_canvas(), seed=s) for s in range(3)]
    batch = rec.predict_batch(photos)
    single = [rec.predict(p) for p in photos]
    assert [b.index for b in batch] == [s.index for s in single]
    np.testing.assert_allclose([b.probability for b in batch], [s.probability for s in single], rtol=1e-5)
    assert rec.predict_batch([]) == []


def test_evaluate_counts_correct_argmax(lin_onnx, lin_weights):
    rec = rt.load(lin_onnx)
    c = canvases(20, seed=4)
    truth = reference_logits(c, *lin_weights).argmax(1)
    assert rec.evaluate(c, truth) == 1.0
    wrong = truth.copy()
    wrong[:5] = (wrong[:5] + 1) % 10
    assert rec.evaluate(c, wrong, batch_size=7) == pytest.approx(0.75)
    with pytest.raises(InputShapeError, match="labels"):
        rec.evaluate(c, truth[:3])


def test_smaller_input_resolution_uses_resize_canvas(tmp_path):
    rng = np.random.default_rng(5)
    w, b = rng.normal(size=(196, 4)).astype(np.float32), np.zeros(4, np.float32)
    rec = rt.load(make_linear_onnx(tmp_path / "r14.onnx", w, b, size=14))
    assert rec.size == 14
    photo = handwriting_photo(digit_canvas())
    assert rec.canvas(photo).shape == (14, 14)
    np.testing.assert_allclose(rec.canvas(photo), rt.resize_canvas(rt.preprocess.preprocess(photo), 14), atol=1e-6)
    with pytest.raises(InputShapeError, match=r"\(N, 14, 14\)"):
        rec.forward(canvases(2))  # 28x28 canvases for a 14x14 model


def test_bad_canvases(lin_onnx):
    rec = rt.load(lin_onnx)
    with pytest.raises(InputShapeError, match="28"):
        rec.forward(np.zeros((2, 3, 28, 28), np.float32))  # wrong batch/channel dimensions
    with pytest.raises(InputShapeError, match="empty"):
        rec.forward(np.zeros((0, 28, 28), np.float32))
    nan = canvases(1)
    nan[0, 1, 1] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        rec.forward(nan)
    with pytest.raises(ImageError, match="NaN"):
        rec.predict(np.full((40, 40), np.nan))
    assert rec.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)  # (N,1,S,S) is fine


# ---- bundles -------------------------------------------------------------------------------------------------

def test_bundle_uses_first_artifact_and_manifest_labels(bundle, lin_weights):
    rec = rt.load(bundle)
    assert rec.model_path.name == "student.onnx" and rec.labels[3] == "c3"
    assert rec.manifest is not None and rec.manifest.name == "tiny"
    p = rec.predict(canvases(1)[0], preprocessed=True)
    assert p.label == f"c{p.index}"
    t = rt.load(bundle, backend="tflite")
    assert t.model_path.name == "student_float32.tflite" and t.precision == "fp32"
    q = rt.load(bundle, precision="int8")
    assert q.model_path.name == "student_int8.tflite" and q.input_spec.dtype == "int8"
    info = q.info()
    assert info["manifest"]["name"] == "tiny" and info["inputs"][0]["dtype"] == "int8"
    assert len(info["sha256"]) == 64 and info["size_bytes"] == (bundle / "student_int8.tflite").stat().st_size


def _record_deployed(bundle, path):
    m = json.loads((bundle / "manifest.json").read_text())
    m["deployed"] = path
    (bundle / "manifest.json").write_text(json.dumps(m))


def test_bundle_loads_its_deployed_artifact_unless_asked_otherwise(bundle):
    """The artifact `edgekd convert` recorded as deployed (the budget's) is what a plain load() opens."""
    assert rt.load(bundle).is_deployed is None  # a bundle from before the record: its first artifact, as before
    _record_deployed(bundle, "student_int8.tflite")
    rec = rt.load(bundle)
    assert rec.model_path.name == "student_int8.tflite" and rec.precision == "int8" and rec.is_deployed is True
    info = rec.info()
    assert info["artifact"] == info["deployed"] == "student_int8.tflite" and info["is_deployed"] is True
    assert rt.load(bundle, backend="tflite").model_path.name == "student_int8.tflite"  # deployed first among them
    onnx = rt.load(bundle, backend="onnx")  # an explicit choice wins
    assert onnx.model_path.name == "student.onnx" and onnx.is_deployed is False
    fp32 = rt.load(bundle, precision="fp32")
    assert fp32.model_path.name == "student.onnx" and fp32.info()["deployed"] == "student_int8.tflite"


def test_deployed_artifact_without_its_interpreter_warns_and_loads_another(bundle, monkeypatch):
    import edgekd_runtime.loader as loader

    _record_deployed(bundle, "student_int8.tflite")
    monkeypatch.setattr(loader, "tflite_available", lambda: False)
    from edgekd_runtime.errors import EdgekdWarning

    with pytest.warns(EdgekdWarning, match="deployed artifact student_int8.tflite.*loading student.onnx"):
        rec = rt.load(bundle)
    assert rec.model_path.name == "student.onnx" and rec.is_deployed is False


def test_deployed_must_name_one_of_the_artifacts(bundle):
    _record_deployed(bundle, "../elsewhere.tflite")
    with pytest.raises(ManifestError, match="deployed '../elsewhere.tflite' is not one of its artifacts"):
        rt.load(bundle)


def test_bundle_without_requested_artifact(bundle):
    with pytest.raises(ManifestError, match="student.onnx"):
        rt.load(bundle, backend="onnx", precision="int8")


def test_checksum_mismatch_is_refused(bundle):
    data = bytearray((bundle / "student.onnx").read_bytes())
    data[-1] ^= 0xFF
    (bundle / "student.onnx").write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="student.onnx.*copy it again"):
        rt.load(bundle)


def test_bundle_label_count_mismatch(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    m["labels"] = ["a", "b"]
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="10 scores.*2 labels"):
        rt.load(bundle)


def test_bundle_missing_or_broken_manifest(tmp_path, bundle):
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(ManifestError, match="no manifest.json"):
        rt.load(empty)
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        rt.load(bundle)


# ---- bad model files -----------------------------------------------------------------------------------------

def test_missing_path():
    with pytest.raises(ModelLoadError, match="no such file"):
        rt.load("/nonexistent/student.onnx")


def test_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match=r"not a model file.*\.onnx or \.tflite"):
        rt.load(tmp_path / "notes.txt")
    (tmp_path / "fake.onnx").write_text("definitely not protobuf" * 10)
    with pytest.raises(ModelLoadError, match="fake.onnx.*not a valid ONNX"):
        rt.load(tmp_path / "fake.onnx")
    (tmp_path / "fake.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="fake.tflite.*not a TFLite model"):
        rt.load(tmp_path / "fake.tflite")
    (tmp_path / "zero.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        rt.load(tmp_path / "zero.onnx")


@pytest.mark.parametrize("name", ["lin.onnx", "tiny.tflite"])
def test_truncated_model(tmp_path, lin_onnx, tiny_tflite, name):
    src = lin_onnx if name.endswith(".onnx") else tiny_tflite
    data = src.read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=rf"{name}.*(truncated|not a valid)"):
        rt.load(tmp_path / name)


def test_bad_arguments(lin_onnx, tiny_tflite):
    with pytest.raises(UnknownNameError, match="onnx, tflite"):
        rt.load(lin_onnx, backend="tensorrt")
    with pytest.raises(ModelLoadError, match="backend 'tflite' cannot run a .onnx"):
        rt.load(lin_onnx, backend="tflite")
    with pytest.raises(UserInputError, match="precision"):
        rt.load(lin_onnx, precision="int4")
    with pytest.raises(UserInputError, match="threads"):
        rt.load(tiny_tflite, threads=0)
    with pytest.raises(UserInputError, match="threads=-3: must be an integer >= 1"):
        rt.load(lin_onnx, threads=-3)


@pytest.mark.parametrize("model", ["lin_onnx", "tiny_tflite"])
def test_threads_beyond_the_usable_cores_are_capped_with_a_warning(model, request, monkeypatch):
    from edgekd_runtime import backends
    from edgekd_runtime.errors import EdgekdWarning

    monkeypatch.setattr(backends.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with pytest.warns(EdgekdWarning, match="threads=64 is more than the 2 cores this process may use; using 2"):
        rec = rt.load(request.getfixturevalue(model), threads=64)
    assert rec.threads == 2 and rec.backend.threads == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdgekdWarning)  # at the cap: no warning
        assert rt.load(request.getfixturevalue(model), threads=2).threads == 2


def test_copied_model_with_other_suffix_case(tmp_path, lin_onnx):
    shutil.copy(lin_onnx, tmp_path / "MODEL.ONNX")
    assert rt.load(tmp_path / "MODEL.ONNX").backend.format == "onnx"


def test_concurrent_tflite_predictions_are_serialised_and_correct(tiny_tflite):
    from concurrent.futures import ThreadPoolExecutor

    rec = rt.load(tiny_tflite, threads=1)
    c = canvases(32, seed=9)
    expected = [rec.predict(ci, preprocessed=True).index for ci in c]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda ci: rec.predict(ci, preprocessed=True).index, c))
    assert got == expected


def test_pil_image_and_batch_misuse(lin_onnx):
    from PIL import Image

    rec = rt.load(lin_onnx)
    photo = handwriting_photo(digit_canvas())
    a, b = rec.predict(Image.fromarray(photo)), rec.predict(photo)
    assert a.index == b.index and a.probability == pytest.approx(b.probability)
    assert a.source == f"PIL image {photo.shape[1]}x{photo.shape[0]}"  # a PNG read by PIL: "PNG image WxH"
    with pytest.raises(InputShapeError, match="predict_batch"):
        rec.predict(canvases(2), preprocessed=True)


@pytest.mark.parametrize("layout,shape", [("NHW", ["N", 28, 28]), ("NF", ["N", 784]), ("NCHW3", ["N", 3, 28, 28])])
def test_other_input_layouts(tmp_path, layout, shape):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    feats = int(np.prod(shape[1:]))
    rng = np.random.default_rng(11)
    w = rng.normal(size=(feats, 5)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["out"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 5])], [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    rec = rt.load(tmp_path / "m.onnx")
    assert rec.input_spec.layout == layout[:4] and rec.size == 28
    c = canvases(3, seed=12)
    x = (c.astype(np.float64) - 0.1307) / 0.3081
    if layout == "NCHW3":
        x = np.repeat(x[:, None], 3, axis=1)  # a grey canvas fed to every colour channel
    np.testing.assert_allclose(rec.forward(c), x.reshape(3, -1) @ w, rtol=1e-4, atol=1e-3)


def test_bare_file_info_and_precision_from_name(tmp_path, tiny_tflite, tflite_name):
    shutil.copy(tiny_tflite, tmp_path / "student_float16.tflite")
    rec = rt.load(tmp_path / "student_float16.tflite")
    assert rec.precision == "fp16" and rec.manifest is None
    info = rec.info()
    assert info["manifest"] is None and info["backend"] == tflite_name and info["input_layout"] == "NHWC"
    assert info["outputs"][0]["shape"] == [1, 10] and info["labels"] == [str(i) for i in range(10)]
    assert rt.load(tmp_path / "student_float16.tflite", precision="fp32").precision == "fp32"


@pytest.mark.parametrize("model", ["lin_onnx", "tiny_tflite"])
def test_normalised_or_out_of_range_canvases_are_refused_by_every_canvas_api(model, request):
    """Canvases are pixel/255 in [0, 1]: an already-normalised canvas (which read 53 % instead of 98 %), one
    scaled 0..3 and an all -5 one raise InputShapeError naming the range seen and what to pass, on the single
    canvas hot path, the general path, forward, predict_proba, evaluate and predict_batch alike."""
    rec = rt.load(request.getfixturevalue(model), threads=1)
    c = canvases(3, seed=9)
    c[:, 10:18, 10:18] = 1.0  # some full ink, so the normalised maximum is the model's (1 - mean) / std
    normalised = ((c - 0.1307) / 0.3081).astype(np.float32)
    cases = {"normalised": (normalised, r"got values in \[-0.4242, 2.821\]: negative values mean they look "
                                        r"normalised already .*mean 0.1307, std 0.3081.*pass them before"),
             "0..3": (c * 3, r"got values in \[0, 3\]: divide 0..255 pixel values by 255"),
             "all -5": (np.full_like(c, -5.0), r"got values in \[-5, -5\]: negative")}
    for bad, words in cases.values():
        calls = [lambda b=bad: rec.predict(b[0], preprocessed=True),
                 lambda b=bad: rec.predict(b[:1].astype(np.float64), preprocessed=True),
                 lambda b=bad: rec.forward(b), lambda b=bad: rec.predict_proba(b),
                 lambda b=bad: rec.evaluate(b, [0, 1, 2]), lambda b=bad: rec.predict_batch(b, preprocessed=True)]
        for call in calls:
            with pytest.raises(InputShapeError, match=words):
                call()
    assert rec.evaluate(c, rec.forward(c).argmax(1)) == 1.0  # the same canvases un-normalised are fine


def test_uint8_canvases_and_0_255_mixups(lin_onnx):
    rec = rt.load(lin_onnx)
    c = canvases(4, seed=13)
    as_u8 = np.rint(c * 255).astype(np.uint8)
    np.testing.assert_allclose(rec.forward(as_u8), rec.forward(as_u8.astype(np.float32) / 255), atol=1e-5)
    with pytest.raises(InputShapeError, match=r"\[0, 1\].*divide"):
        rec.forward(c * 255)


@pytest.mark.parametrize("model", ["lin_onnx", "tiny_tflite", "tiny_int8_tflite"])
def test_single_canvas_hot_path_equals_general_path(model, request):
    rec = rt.load(request.getfixturevalue(model))
    for c in canvases(5, seed=21):
        fast = rec.predict(c, top_k=4, preprocessed=True)  # float32 (S, S): the inlined path where it applies
        slow = rec.predict(c.astype(np.float64)[None], top_k=4, preprocessed=True)  # general path
        assert (fast.label, fast.index, [lab for lab, _ in fast.top_k]) == \
               (slow.label, slow.index, [lab for lab, _ in slow.top_k])
        np.testing.assert_allclose([p for _, p in fast.top_k], [p for _, p in slow.top_k], rtol=1e-6, atol=1e-7)
    bad = canvases(1)[0]
    bad[2, 2] = np.inf
    with pytest.raises(ImageError, match="NaN/inf"):
        rec.predict(bad, preprocessed=True)
    with pytest.raises(InputShapeError, match="divide"):
        rec.predict(canvases(1)[0] * 255, preprocessed=True)


@pytest.mark.parametrize("model", ["lin_onnx", "tiny_tflite"])
def test_hot_path_edge_canvases_and_threads(model, request):
    """The single-canvas path checks the canvas's range in one reduction: NaN, -inf and values outside [0, 1]
    (a stray 1.5 in a sparse canvas too) raise the general path's typed errors, an all-ink canvas, values just
    within the tolerance and -0.0 are predicted as the general path predicts them, and per-thread bound
    buffers give each thread its own answers."""
    from concurrent.futures import ThreadPoolExecutor

    rec = rt.load(request.getfixturevalue(model), threads=1)
    for bad in (np.nan, -np.inf):
        c = canvases(1, seed=5)[0]
        c[0, 0] = bad
        with pytest.raises(ImageError, match="NaN/inf"):
            rec.predict(c, preprocessed=True)
    stray = canvases(1, seed=6)[0]
    stray[3, 3] = 1.5
    for c in (stray, stray.astype(np.float64)[None]):
        with pytest.raises(InputShapeError, match=r"got values in \[0, 1.5\]"):
            rec.predict(c, preprocessed=True)
    full, edges = np.ones((28, 28), np.float32), canvases(1, seed=6)[0]
    edges[3, 3], edges[4, 4], edges[0, :] = 1.0 + 5e-4, -5e-4, -0.0
    for c in (full, edges):
        fast, slow = rec.predict(c, preprocessed=True), rec.predict(c.astype(np.float64)[None], preprocessed=True)
        assert [lab for lab, _ in fast.top_k] == [lab for lab, _ in slow.top_k]
        np.testing.assert_allclose(fast.probability, slow.probability, rtol=1e-6)
    c = canvases(24, seed=8)
    expected = [rec.predict(ci.astype(np.float64)[None], preprocessed=True).top_k for ci in c]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda ci: rec.predict(ci, preprocessed=True).top_k, c))
    for g, e in zip(got, expected):
        assert [lab for lab, _ in g] == [lab for lab, _ in e]
        np.testing.assert_allclose([p for _, p in g], [p for _, p in e], rtol=1e-6, atol=1e-7)
