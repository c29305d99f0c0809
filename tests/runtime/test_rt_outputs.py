"""Model outputs that are not an answer: NaN scores (a broken model, or a NaN normalisation) are a typed error on
every path, infinite logits go through the softmax's limit, and --json output stays valid JSON."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout

import numpy as np
import pytest
from rt_support import digit_canvas, make_linear_onnx
from typer.testing import CliRunner

import edgekd_runtime as rt
from edgekd_runtime.errors import ModelOutputError, UserInputError


def _strict_json(text: str):
    """json.loads that refuses NaN/Infinity, as JSON.parse and strict parsers do."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _model(tmp_path, name: str, bias_at: dict[int, float], w_scale: float = 1.0):
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (784, 10)).astype(np.float32) * np.float32(w_scale)
    b = np.zeros(10, np.float32)
    for i, v in bias_at.items():
        b[i] = v
    return make_linear_onnx(tmp_path / f"{name}.onnx", w, b)


def _bundle(tmp_path, model, kind: str = "logits", mean: float = 0.1307):
    from edgekd_runtime.manifest import Artifact, Manifest, Normalization

    d = tmp_path / f"bundle_{model.stem}_{kind}_{mean}"
    d.mkdir()
    (d / "student.onnx").write_bytes(model.read_bytes())
    m = Manifest(name="t", labels=[str(i) for i in range(10)], output={"name": "out", "kind": kind},
                 normalization=Normalization(mean=mean))
    m.artifacts = [Artifact.from_file(d, "student.onnx", "fp32")]
    m.save(d)
    return d


def _every_path(rec):
    """Each way the recognizer turns an image or canvases into scores."""
    c = digit_canvas()
    return {
        "predict canvas (hot path)": lambda: rec.predict(c, preprocessed=True),
        "predict canvas (general path)": lambda: rec.predict(c.astype(np.float64), preprocessed=True),
        "predict image": lambda: rec.predict((c * 255).astype(np.uint8)),
        "predict_batch": lambda: rec.predict_batch(np.stack([c, c]), preprocessed=True),
        "predict_proba": lambda: rec.predict_proba(c[None]),
        "forward": lambda: rec.forward(c[None]),
        "evaluate": lambda: rec.evaluate(c[None], [0]),
    }


@pytest.mark.parametrize("source", ["bare", "bundle"])
def test_nan_scores_are_a_typed_error_on_every_path(tmp_path, source):
    model = _model(tmp_path, "nan", {}, w_scale=math.nan)
    rec = rt.load(model if source == "bare" else _bundle(tmp_path, model))
    for name, call in _every_path(rec).items():
        with pytest.raises(ModelOutputError, match="returned NaN scores.*normalisation"):
            call()
            pytest.fail(f"{name} returned an answer")


def test_one_nan_class_is_refused_too(tmp_path):
    rec = rt.load(_model(tmp_path, "nan3", {3: math.nan}))
    with pytest.raises(ModelOutputError, match="NaN"):
        rec.predict(digit_canvas(), preprocessed=True)


def test_nan_normalisation_in_the_manifest_is_an_error_not_an_answer(tmp_path):
    bundle = _bundle(tmp_path, _model(tmp_path, "ok", {}), mean=math.nan)
    with pytest.raises(UserInputError, match="(?i)normali[sz]ation"):
        rt.load(bundle).predict(digit_canvas(), preprocessed=True)


@pytest.mark.parametrize("source", ["bare", "bundle"])
def test_a_plus_inf_logit_is_probability_one(tmp_path, source):
    model = _model(tmp_path, "posinf", {3: math.inf, 5: -math.inf})
    rec = rt.load(model if source == "bare" else _bundle(tmp_path, model))
    for name, call in _every_path(rec).items():
        if name.startswith("predict") and name != "predict_proba":
            out = call()
            p = out[0] if isinstance(out, list) else out
            assert (p.label, p.probability) == ("3", 1.0), name
            assert [lbl for lbl, _ in p.top_k][0] == "3" and all(q == 0.0 for _, q in p.top_k[1:]), name
    proba = rec.predict_proba(digit_canvas()[None])
    assert proba[0, 3] == 1.0 and proba.sum() == 1.0 and np.isfinite(proba).all()
    assert rec.forward(digit_canvas()[None])[0, 3] == math.inf  # raw outputs are returned as they are


def test_minus_inf_logits_get_probability_zero_and_two_plus_inf_share(tmp_path):
    rec = rt.load(_model(tmp_path, "neginf", {0: -math.inf}))
    ref = rt.load(_model(tmp_path, "finite", {}))
    c = digit_canvas()
    p, q = rec.predict_proba(c[None])[0], ref.predict_proba(c[None])[0]
    assert p[0] == 0.0 and np.allclose(p[1:], q[1:] / q[1:].sum(), rtol=1e-5)
    assert dict(rec.predict(c, preprocessed=True, top_k=10).top_k)["0"] == 0.0
    two = rt.load(_model(tmp_path, "twoinf", {2: math.inf, 7: math.inf}))
    assert two.predict_proba(c[None])[0].tolist() == [0, 0, 0.5, 0, 0, 0, 0, 0.5, 0, 0]
    assert two.predict(c, preprocessed=True).probability == 0.5


def test_every_logit_minus_inf_or_infinite_probabilities_are_refused(tmp_path):
    rec = rt.load(_model(tmp_path, "allneg", {i: -math.inf for i in range(10)}))
    with pytest.raises(ModelOutputError, match="-inf for every class"):
        rec.predict(digit_canvas(), preprocessed=True)
    probs = rt.load(_bundle(tmp_path, _model(tmp_path, "infprob", {3: math.inf}), kind="probs"))
    with pytest.raises(ModelOutputError, match="infinite probabilities"):
        probs.predict(digit_canvas(), preprocessed=True)


def test_cli_predict_json_with_a_nan_model_is_valid_json_and_exit_2(tmp_path):
    from PIL import Image

    from edgekd_runtime.cli import app

    img = tmp_path / "d.png"
    Image.fromarray((digit_canvas() * 255).astype(np.uint8)).save(img)
    bundle = _bundle(tmp_path, _model(tmp_path, "nan", {}, w_scale=math.nan))
    r = CliRunner().invoke(app, ["predict", str(img), "-m", str(bundle), "--json"])
    assert r.exit_code == 2, r.output
    doc = _strict_json(r.stdout)
    assert doc["results"][0]["error_type"] == "ModelOutputError" and "label" not in doc["results"][0]
    assert "NaN scores" in r.stderr and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["predict", str(img), "-m", str(bundle)])
    assert r.exit_code == 2 and "NaN scores" in r.stderr


def test_print_json_never_writes_bare_nan():
    from edgekd_runtime.cli_support import print_json

    buf = io.StringIO()
    with redirect_stdout(buf):
        print_json({"a": math.nan, "b": [np.float32("inf"), 1.5], "c": np.array([1.0, -np.inf]), "d": "NaN"})
    assert _strict_json(buf.getvalue()) == {"a": None, "b": [None, 1.5], "c": [1.0, None], "d": "NaN"}
