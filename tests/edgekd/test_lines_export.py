"""Export and conversion of text-line (CTC) students, and the board runtime on what they produce: the manifest's
lines block, the dynamic-width ONNX against torch at 96/192/384 px, every artifact's sequence parity (strings,
CER) recorded and re-read through edgekd_runtime, int8 TFLite reading the same strings, and the CLIs.

One tiny student (lines_support: ctc-w8-d2-r24, 50 epochs on 320 short lines, ~20 s) is trained once per session
(tests/conftest.py's line_ckpt and line_bundle, shared with the sample apps' tests).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import edgekd_runtime as rt
from edgekd.cli import app
from edgekd_converters import ParityError
from edgekd_runtime.lines import greedy_decode
from edgekd_runtime.manifest import LINE_TASK, Manifest

ARTIFACTS = {"student.onnx": ("onnx", "fp32"), "student_float32.tflite": ("tflite", "fp32"),
             "student_float16.tflite": ("tflite", "fp16"), "student_int8.tflite": ("tflite", "int8"),
             "student_int8.onnx": ("onnx", "int8")}


@pytest.fixture(scope="session")
def line_model(line_ckpt):
    from edgekd.train.checkpoint import load_student_checkpoint

    return load_student_checkpoint(line_ckpt, task="lines")


@pytest.fixture(scope="session")
def line_test(line_model):
    from edgekd.export.lines import line_samples

    return line_samples(line_model[1]["data"])


@pytest.fixture(scope="session")
def torch_ref(line_model, line_test) -> np.ndarray:
    from edgekd.export.onnx_export import torch_logits
    from edgekd.export.samples import normalise

    return torch_logits(line_model[0], normalise(line_test.test_x, 0.1307, 0.3081))


@pytest.fixture(scope="session")
def converted(line_bundle, tmp_path_factory) -> Path:
    from edgekd.export import convert_exported_bundle

    out = tmp_path_factory.mktemp("line_convert") / "bundle"
    shutil.copytree(line_bundle, out)
    convert_exported_bundle(out)
    return out


def test_export_writes_a_line_manifest_with_everything_the_board_needs(line_bundle, line_model):
    ck = line_model[1]
    d = json.loads((line_bundle / "manifest.json").read_text())
    assert d["task"] == LINE_TASK and d["labels"] == list("0123456789")
    assert d["lines"] == {"charset": "0123456789", "height": 24, "width": 192, "max_width": 1536,
                          "dynamic_formats": ["onnx"], "blank": 0, "frame_stride": 4, "max_len": ck["max_len"],
                          "text_height_share": 0.83,
                          "confidence_temperature": d["extra"]["confidence"]["temperature"]}
    assert d["input"]["shape"] == [1, 1, 24, 192] and d["normalization"] == {"mean": 0.1307, "std": 0.3081}
    assert d["preprocessing"]["kind"] == "mnist"  # unused by line bundles; a kind every runtime's checks accept
    (art,) = d["artifacts"]
    p = art["parity"]
    assert art["path"] == "student.onnx" and p["passed"] and p["reference"] == "torch"
    assert p["string_agreement"] == 1.0 and p["max_abs_diff"] < 1e-4 and p["num_samples"] == 64
    assert art["accuracy"] == 1.0 and art["extra"]["cer"] == 0.0 and art["extra"]["accuracy_source"] == "edgekd_runtime"
    assert set(art["extra"]["width_max_abs_diff"]) == {"96", "192", "384"}
    assert d["extra"]["torch_cer"] == 0.0 and d["extra"]["eval_split"] == "test"


def test_export_calibrates_the_confidence_on_val_and_plots_coverage_on_test(line_bundle, line_model, line_test):
    from edgekd_runtime.confidence import REJECT_PERCENTS

    conf = json.loads((line_bundle / "manifest.json").read_text())["extra"]["confidence"]
    assert conf["fitted_on"] == "val" and conf["num_val"] == len(line_test.val_texts) > 0
    assert conf["num_test"] == len(line_test.texts) and conf["temperature"] > 0
    curve = conf["coverage"]
    assert [c["reject_percent"] for c in curve] == list(REJECT_PERCENTS)
    assert [c["coverage"] for c in curve] == sorted((c["coverage"] for c in curve), reverse=True)
    assert curve[0]["coverage"] == 1.0 and curve[0]["accuracy"] == 1.0  # the tiny student reads its test lines
    assert {"ece_before", "ece_after", "nll_before", "nll_after", "threshold_99", "threshold_95"} <= set(conf)
    png = (line_bundle / "coverage.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not list(line_bundle.glob("*.tmp*"))


def test_a_fitted_temperature_reaches_the_manifest_and_read(line_ckpt, tmp_path, monkeypatch):
    from edgekd.export import export_bundle

    fits = []
    monkeypatch.setattr("edgekd_runtime.confidence.fit_temperature",
                        lambda scores, texts, charset: fits.append(scores.shape) or 1.75)
    m = export_bundle(line_ckpt, tmp_path / "b", max_samples=8)
    assert len(fits) == 1 and fits[0][1:] == (48, 11)  # the val lines' ONNX scores at the reference width
    assert m.lines.confidence_temperature == 1.75 == m.extra["confidence"]["temperature"]
    assert Manifest.load(tmp_path / "b").lines.confidence_temperature == 1.75
    assert rt.load(tmp_path / "b").lines.confidence_temperature == 1.75


def test_the_onnx_model_takes_any_width_and_matches_torch_at_96_192_384(line_bundle, line_model, line_test):
    import onnx

    from edgekd.export.onnx_export import torch_logits
    from edgekd.export.samples import normalise
    from edgekd_converters.runners import run_onnx

    dims = onnx.load(str(line_bundle / "student.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 1, 24, "width"]
    x = normalise(line_test.test_x[:16], 0.1307, 0.3081)
    for w in (96, 192, 384):
        xw = np.full((16, 1, 24, w), x.min(), np.float32)
        xw[..., :min(w, 192)] = x[..., :min(w, 192)]
        got, want = run_onnx(line_bundle / "student.onnx", xw), torch_logits(line_model[0], xw)
        assert got.shape == want.shape == (16, w // 4, 11)
        assert np.abs(got - want).max() < 1e-4


def test_without_a_dynamic_width_the_export_falls_back_to_the_fixed_width(line_ckpt, tmp_path, monkeypatch):
    import edgekd.export.lines as lines_mod
    from edgekd.export import export_bundle

    monkeypatch.setattr(lines_mod, "width_diffs", lambda *a, **k: None)  # as if onnxruntime refused other widths
    m = export_bundle(line_ckpt, tmp_path / "b", max_samples=8)
    assert m.lines.dynamic_formats == () and m.lines.max_width == m.lines.width == 192
    rec = rt.load(tmp_path / "b")
    assert rec.fixed_width == 192 and rec.max_width == 192


def test_every_artifact_is_checked_for_sequence_parity_and_recorded(converted, torch_ref):
    m = Manifest.load(converted)
    assert {a.path: (a.format, a.precision) for a in m.artifacts} == ARTIFACTS
    for a in m.artifacts:
        p = a.parity
        assert p["passed"] and p["reference"] == "torch" and p["num_samples"] == 64, a.path
        assert p["string_agreement"] >= 0.99 and p["cer"] - p["reference_cer"] <= 0.003, a.path
        assert a.extra["accuracy_source"] == "edgekd_runtime" and a.extra["cer"] == pytest.approx(p["cer"])
        assert a.accuracy == pytest.approx(p["string_accuracy"])
    conv = m.extra["conversion"]  # classes per frame (charset + blank), not frames per line
    assert (conv["num_classes"], conv["output_kind"]) == (len(m.lines.charset) + 1, "logits")
    int8 = [a for a in m.artifacts if a.precision == "int8"]
    assert all(a.parity["tolerance"]["max_cer_increase"] == 0.003 for a in int8)
    # the margin this rests on (lines_support): int8 moves logits by < 1.0, and the strings survive +-1.0
    assert max(a.parity["max_abs_diff"] for a in int8) < 1.0
    rng = np.random.default_rng(0)
    base = greedy_decode(torch_ref, "0123456789")
    assert greedy_decode(torch_ref + rng.uniform(-1.0, 1.0, torch_ref.shape), "0123456789") == base


def test_line_onnx_int8_keeps_its_first_and_last_conv_float_and_quantizes_the_others(converted):
    """onnx_int8's rule for line models: the first and last Conv take float weights, every other Conv
    dequantized int8 ones (7-bit: within -64..64, as onnxruntime's reduce_range maps them); the manifest names
    the float nodes."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(converted / "student_int8.onnx")).graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    convs = [n for n in g.node if n.op_type == "Conv"]
    assert len(convs) >= 4
    for conv in (convs[0], convs[-1]):
        assert inits[conv.input[1]].dtype == np.float32, conv.name
    for conv in convs[1:-1]:
        dq = producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear", conv.name
        w = inits[dq.input[0]]
        assert w.dtype == np.int8 and np.abs(w.astype(int)).max() <= 64, conv.name
    assert Manifest.load(converted).extra["conversion"]["onnx_int8_float_nodes"] == [convs[0].name, convs[-1].name]


def test_lines_calibrate_int8_on_more_training_lines_than_digits(line_bundle, tmp_path, monkeypatch):
    """A line bundle is calibrated on LINE_CALIBRATION_SAMPLES training lines unless told otherwise (the fixture
    has 256: all of them); a digit bundle keeps the converters' 500."""
    import edgekd_converters
    from edgekd.export import convert_exported_bundle
    from edgekd.export.lines import LINE_CALIBRATION_SAMPLES
    from edgekd_converters import MAX_CALIBRATION_SAMPLES

    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(edgekd_converters, "convert_bundle",
                        lambda d, calib, *a, max_calib_samples, **k: seen.append((len(calib), max_calib_samples)))
    convert_exported_bundle(line_bundle, targets=["onnx-int8"], max_samples=8)
    convert_exported_bundle(line_bundle, targets=["onnx-int8"], max_samples=8, calib_samples=300)
    assert seen == [(256, LINE_CALIBRATION_SAMPLES), (256, 300)]
    assert LINE_CALIBRATION_SAMPLES == 2000 and MAX_CALIBRATION_SAMPLES == 500


def test_int8_tflite_reads_the_same_strings_through_the_runtime(converted, torch_ref, line_test):
    want = greedy_decode(torch_ref, "0123456789")
    for fmt, prec in (("tflite", "int8"), ("onnx", "int8"), ("tflite", "fp16"), ("onnx", "fp32")):
        rec = rt.load(converted, backend=fmt, precision=prec)
        assert isinstance(rec, rt.LineRecognizer) and rec.precision == prec
        y = rec.forward(line_test.test_x)
        assert y.shape == (64, 48, 11) and y.dtype == np.float32
        assert greedy_decode(y, rec.charset) == want, (fmt, prec)
    int8 = rt.load(converted, backend="tflite", precision="int8")
    assert int8.fixed_width == 192 and int8.backend.inputs[0].dtype == "int8"
    onnx8 = rt.load(converted, backend="onnx", precision="int8")  # quantized from the dynamic-width model
    wide = np.zeros((64, 24, 384), np.float32)
    wide[..., :192] = line_test.test_x
    assert onnx8.fixed_width is None and greedy_decode(onnx8.forward(wide), "0123456789") == want


def test_the_bundle_deploys_int8_tflite_and_a_bare_artifact_reads_with_its_manifest(converted, torch_ref, line_test):
    m = Manifest.load(converted)
    assert m.deployed == "student_int8.tflite"  # the budget's precision (int8 by default), TFLite first
    rec = rt.load(converted)
    assert isinstance(rec, rt.LineRecognizer) and rec.is_deployed and rec.artifact.path == "student_int8.tflite"
    bare = rt.load(converted / "student_int8.onnx")  # a file listed in the manifest beside it
    assert isinstance(bare, rt.LineRecognizer) and bare.precision == "int8" and not bare.is_deployed
    want = greedy_decode(torch_ref, "0123456789")
    assert greedy_decode(rec.forward(line_test.test_x), "0123456789") == want
    info = rec.info()
    assert info["deployed"] == "student_int8.tflite" and info["is_deployed"] is True


def test_read_of_canvases_is_the_softmax_reading_on_every_artifact(converted, line_test):
    """read(canvas, preprocessed=True) decodes straight from the scores (an int8 input quantized in place, int8
    scores through a table of their tempered values): on every artifact the test lines, narrower and noisier copies
    read as the softmax decoding does (lines_support): the same text, characters and spans, the same probabilities
    and confidence (bit for bit from float scores, within float32 rounding from int8 ones); read_batch reads
    exactly what read does."""
    from lines_support import assert_same_readings, softmax_reading

    rng = np.random.default_rng(0)
    x = line_test.test_x
    canvases = [*x, *(c[:, :120] for c in x[:16]),
                *(np.clip(c + rng.normal(0, 0.2, c.shape).astype(np.float32), 0, 1) for c in x[:16])]
    for name in ARTIFACTS:
        rec = rt.load(converted / name)
        assert rec.lines.confidence_temperature != 1.0, name  # calibrated: both softmaxes are in play
        got = [(r.text, r.confidence, r.characters) for r in (rec.read(c, preprocessed=True) for c in canvases)]
        exact = rec.backend.outputs[0].dtype == "float32"
        assert_same_readings(got, [softmax_reading(rec, c) for c in canvases], exact=exact)
        general = [rec.read_batch([c], preprocessed=True)[0] for c in canvases]  # the general path: the same rule
        assert [(r.text, r.confidence, r.characters) for r in general] == got, name


def test_an_int8_bundle_calibrated_too_cold_for_the_exp_table_reads_through_the_softmax(converted, line_test,
                                                                                          tmp_path):
    """A confidence temperature so low that exp() of a tempered int8 score underflows (the table that decodes int8
    scores would hold zeros): read(canvas) decodes the softmax instead, and reads what it gives, bit for bit."""
    from lines_support import softmax_reading

    out = tmp_path / "cold"
    shutil.copytree(converted, out)
    d = json.loads((out / "manifest.json").read_text())
    d["lines"]["confidence_temperature"] = 1e-3
    (out / "manifest.json").write_text(json.dumps(d))
    rec = rt.load(out, backend="tflite", precision="int8")
    canvases = list(line_test.test_x[:16])
    got = [(r.text, r.confidence, r.characters) for r in (rec.read(c, preprocessed=True) for c in canvases)]
    assert got == [softmax_reading(rec, c) for c in canvases]
    assert sum(t != "" for t, _, _ in got) >= 12


def _photo(canvas: np.ndarray, seed: int) -> np.ndarray:
    """A test line as a photo (dark ink on noisy paper, 2-3x larger, slightly rotated, on a desk)."""
    from edgekd.data.line_photos import render_line_photo

    return render_line_photo(canvas, seed)


def test_read_on_photos_is_the_model_reading_of_its_canvas_and_places_characters(converted, line_test):
    """read() through each backend and precision says what the model reads on the canvas it made, and where.
    (Not compared across precisions: this tiny model is unsure on re-scaled photos, so int8 may differ there.)"""
    photos = [_photo(line_test.test_x[i], i) for i in range(8)]
    for fmt, prec in (("onnx", "fp32"), ("tflite", "int8"), ("onnx", "int8")):
        rec = rt.load(converted, backend=fmt, precision=prec)
        readings = rec.read_batch(photos)
        canvases = [rec.canvas(ph)[0] for ph in photos]
        assert [r.text for r in readings] == [greedy_decode(rec.forward(c[None]), rec.charset)[0] for c in canvases]
        for ph, r in zip(photos, readings):
            assert 0.0 <= r.confidence <= 1.0 and len(r.characters) == len(r.text)
            xs = [x for _, _, x in r.characters]
            assert all(0 <= x0 < x1 <= ph.shape[1] for x0, x1 in xs), (fmt, prec, xs)
            assert all(a[0] <= b[0] for a, b in zip(xs, xs[1:]))


def test_a_parity_failure_writes_nothing(converted, tmp_path, monkeypatch):
    from edgekd.export import convert_exported_bundle
    from edgekd_converters import parity

    d = tmp_path / "b"
    shutil.copytree(converted, d)
    before = (d / "manifest.json").read_bytes()
    monkeypatch.setitem(parity.SEQUENCE_TOLERANCES, "int8",
                        parity.SequenceTolerance(atol=float("inf"), min_string_agreement=1.0, max_cer_increase=-1.0))
    with pytest.raises(ParityError, match=r"student_int8.onnx: parity check .* string agreement 100.00% .* CER"):
        convert_exported_bundle(d, targets=["onnx-int8"], force=True)
    assert (d / "manifest.json").read_bytes() == before


def test_cli_export_and_convert_a_line_student(line_ckpt, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(line_ckpt), "--out", str(tmp_path / "b"), "--max-samples", "16"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())  # rich wraps long lines
    assert "text lines 24 px high, any width up to 1536 px" in out and "strings agree 100.00%" in out
    r = runner.invoke(app, ["convert", str(tmp_path / "b"), "--to", "onnx-int8", "--max-samples", "16"])
    assert r.exit_code == 0, r.output
    assert "CER" in r.stdout and "student_int8.onnx" in r.stdout
    r = runner.invoke(app, ["export", str(line_ckpt), "--out", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 2 and "already exists" in r.stderr


def test_edgekd_rt_reads_a_photo_with_the_int8_tflite_artifact(converted, line_test, tmp_path):
    from edgekd_runtime.cli import app as rt_app

    Image.fromarray(_photo(line_test.test_x[0], 0)).save(tmp_path / "line.png")
    r = CliRunner().invoke(rt_app, ["read", str(tmp_path / "line.png"), "-m", str(converted), "--backend", "tflite",
                                    "--precision", "int8", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    want = rt.load(converted, backend="tflite", precision="int8").read(tmp_path / "line.png").text
    assert doc["precision"] == "int8" and doc["results"][0]["text"] == want
    r = CliRunner().invoke(rt_app, ["info", str(converted), "--backend", "tflite", "--precision", "int8"])
    out = " ".join(r.stdout.split())
    assert r.exit_code == 0 and "fixed 192 px" in out and "student_int8.tflite" in out
