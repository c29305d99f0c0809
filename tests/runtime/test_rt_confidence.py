"""Confidence you can act on (`edgekd_runtime.confidence`): temperature calibration of the string confidence, the
coverage-accuracy curve, the reject thresholds, and `read()` with a calibrated line bundle (same text, the
confidence from softmax(scores / T)). Synthetic scores, numpy only: fast."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from rt_support import bars_image, make_line_onnx
from typer.testing import CliRunner

import edgekd_runtime as rt
from edgekd_runtime.cli import app
from edgekd_runtime.confidence import (
    coverage_curve,
    ece,
    fit_temperature,
    greedy_confidences,
    nll,
    softmax,
    threshold_for,
)
from edgekd_runtime.ctc_decode import compile_constraint, decode, greedy, rescored
from edgekd_runtime.manifest import LINE_TASK, Artifact, InputSpec, LinesSpec, Manifest

CHARSET = "0123456789"


def overconfident_lines(n: int, seed: int, sharpness: float = 3.0) -> tuple[np.ndarray, list[str]]:
    """CTC scores (n, 12, 11) for 3-character lines from a model `sharpness` times too sure of itself: each
    character frame's true class beats the blank and a rival by `true_margin`; the rival wins with probability
    given by the calibrated (sharpness 1) posterior, so softmax(scores / sharpness) is the honest one."""
    rng = np.random.default_rng(seed)
    scores = np.zeros((n, 12, 11), np.float32)
    scores[:, :, 0] = 2.0 * sharpness  # blank frames
    texts = []
    for i in range(n):
        text = ""
        for k in range(3):
            t, true, rival = 1 + 4 * k, int(rng.integers(1, 11)), int(rng.integers(1, 11))
            margin = rng.uniform(0.0, 3.0)  # calibrated log odds true vs rival
            p_true = 1.0 / (1.0 + math.exp(-margin))
            read = true if rng.random() < p_true or rival == true else rival
            other = rival if read == true else true
            scores[i, t, :] = 0.0
            scores[i, t, read] = sharpness * margin + 4.0 * sharpness  # the read beats the other by the margin
            scores[i, t, other] = 4.0 * sharpness
            text += CHARSET[true - 1]
        texts.append(text)
    return scores, texts


def test_calibration_recovers_a_temperature_above_one_and_helps_on_held_out_lines():
    val, val_texts = overconfident_lines(600, seed=1)
    test, test_texts = overconfident_lines(600, seed=2)
    t = fit_temperature(val, val_texts, CHARSET)
    assert 2.0 < t < 4.5  # the data was made 3x too sharp
    reads, raw = greedy_confidences(test, CHARSET, 1.0)
    reads_t, cal = greedy_confidences(test, CHARSET, t)
    assert reads_t == reads  # the temperature never changes the reading
    right = np.array([r == y for r, y in zip(reads, test_texts)])
    assert 0.3 < right.mean() < 0.9
    assert nll(cal, right) < nll(raw, right) - 0.1
    assert ece(cal, right) < 0.06 < 0.15 < ece(raw, right)


def test_calibration_is_the_identity_when_there_is_nothing_to_learn():
    scores, texts = overconfident_lines(50, seed=3)
    reads, _ = greedy_confidences(scores, CHARSET)
    assert fit_temperature(scores, reads, CHARSET) == 1.0  # every reading right


def test_nll_and_ece_on_a_hand_checked_case():
    p, y = np.array([0.9, 0.9, 0.2, 0.2]), np.array([True, False, False, False])
    assert nll(p, y) == pytest.approx(-(math.log(0.9) + math.log(0.1) + 2 * math.log(0.8)) / 4)
    assert ece(p, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.2)


def test_the_coverage_curve_rejects_the_least_confident_first_and_accuracy_grows():
    conf = np.linspace(0.01, 1.0, 200)
    right = np.random.default_rng(0).random(200) < conf  # the more confident, the likelier right
    curve = coverage_curve(conf, right)
    assert [c["reject_percent"] for c in curve] == [0, 1, 2, 5, 10, 20, 30, 50]
    assert [c["coverage"] for c in curve] == [1.0, 0.99, 0.98, 0.95, 0.9, 0.8, 0.7, 0.5]
    assert curve[0]["accuracy"] == right.mean() and curve[-1]["min_confidence"] == pytest.approx(conf[100])
    acc = [c["accuracy"] for c in curve]
    assert acc[-1] > acc[0] + 0.2
    perfect = coverage_curve(conf, conf > 0.3)  # confidence that ranks perfectly: never less accurate
    assert all(b["accuracy"] >= a["accuracy"] for a, b in zip(perfect, perfect[1:]))


def test_threshold_for_a_target_accuracy():
    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    right = np.array([True, True, True, False, True, False])
    assert threshold_for(conf, right, 0.99) == {"threshold": 0.9, "coverage": 0.5, "accuracy": 1.0}
    assert threshold_for(conf, right, 0.8) == {"threshold": 0.7, "coverage": 5 / 6, "accuracy": 0.8}
    assert threshold_for(conf, ~right & False, 0.5) is None


def test_rescored_keeps_the_reading_and_equals_greedy_on_tempered_posteriors():
    scores, _ = overconfident_lines(20, seed=4)
    for s in scores:
        raw, cal = softmax(s), softmax(s, 2.5)
        d, dt = greedy(raw, CHARSET), greedy(cal, CHARSET)
        r = rescored(d, cal, CHARSET)
        assert r.text == d.text == dt.text and r.confidence == pytest.approx(dt.confidence, rel=1e-6)
        assert [c[2:] for c in r.characters] == [c[2:] for c in d.characters]
        con = compile_constraint(CHARSET, r"\d{3}")
        b = decode(raw, CHARSET, con)
        rb = rescored(b, cal, CHARSET)
        assert rb.text == b.text and rb.confidence < b.confidence  # T > 1 softens a sure reading


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> tuple[Path, Path]:
    """The hand-made line model twice: uncalibrated and with confidence_temperature 2.0."""
    out = []
    for t in (1.0, 2.0):
        d = tmp_path_factory.mktemp(f"t{t}")
        make_line_onnx(d / "student.onnx", 3)
        spec = LinesSpec(charset="ab", height=24, width=96, max_width=384, dynamic_formats=("onnx",), max_len=12,
                         confidence_temperature=t)
        m = Manifest(name="ctc-hand", labels=["a", "b"], input=InputSpec("input", (1, 1, 24, 96)),
                     output={"name": "logits", "kind": "logits"}, task=LINE_TASK, lines=spec,
                     extra={"confidence": {"temperature": t, "fitted_on": "val", "threshold_99": None,
                                           "threshold_95": {"threshold": 0.42, "coverage": 0.8, "accuracy": 0.95}}})
        m.artifacts = [Artifact.from_file(d, "student.onnx", "fp32")]
        m.save(d)
        out.append(d)
    return out[0], out[1]


def test_the_temperature_round_trips_in_the_manifest(bundles):
    assert Manifest.load(bundles[1]).lines.confidence_temperature == 2.0
    assert json.loads((bundles[1] / "manifest.json").read_text())["lines"]["confidence_temperature"] == 2.0
    old = LinesSpec.from_dict({"charset": "ab", "height": 24, "width": 96, "max_width": 96})
    assert old.confidence_temperature == 1.0  # bundles made before calibration


def test_read_with_a_calibrated_bundle_gives_the_same_text_and_the_tempered_confidence(bundles):
    raw, cal = rt.load(bundles[0]), rt.load(bundles[1])
    img = bars_image([(50, 80), (200, 230)])
    r0, r1 = raw.read(img), cal.read(img)
    assert r1.text == r0.text == "aa" and [c[2] for c in r1.characters] == [c[2] for c in r0.characters]
    canvas, _ = cal.canvas(img)
    probs = softmax(cal.forward(canvas), 2.0)[0]
    spans = [(first, last) for _, _, first, last in greedy(softmax(cal.forward(canvas))[0], "ab").characters]
    by_hand = [float(probs[a:b + 1, 1].max()) for a, b in spans]
    assert [p for _, p, _ in r1.characters] == pytest.approx(by_hand, rel=1e-6)
    assert r1.confidence == pytest.approx(math.prod(by_hand), rel=1e-6) and r1.confidence < r0.confidence
    assert cal.read_batch([img])[0].confidence == pytest.approx(r1.confidence, rel=1e-6)
    rp, rp0 = cal.read(img, pattern="a+"), raw.read(img, pattern="a+")  # the beam search: same reading, softer
    assert rp.text == rp0.text and [c[2] for c in rp.characters] == [c[2] for c in rp0.characters]
    assert 0 < rp.confidence < rp0.confidence


def test_info_shows_the_temperature_and_the_reject_thresholds(bundles):
    r = CliRunner().invoke(app, ["info", str(bundles[1])], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    assert "temperature 2 (calibrated on the val split)" in r.stdout
    assert "95 % accuracy: reject below 0.420" in r.stdout and "99 % accuracy: not reached" in r.stdout
    r = CliRunner().invoke(app, ["info", str(bundles[0]), "--json"])
    assert json.loads(r.stdout)["confidence_temperature"] == 1.0
