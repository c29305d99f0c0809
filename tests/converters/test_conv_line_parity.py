"""The sequence parity rule for CTC line models (`parity.SequenceScorer`), by hand: string agreement, the int8
CER bound, NaN outputs, and the numbers it records. numpy only."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekd_converters import ParityError
from edgekd_converters.parity import SEQUENCE_TOLERANCES, SequenceScorer
from edgekd_runtime.line_metrics import char_error_rate, edit_distance

CHARSET = "0123456789"


def _logits(texts: list[str], frames: int = 24) -> np.ndarray:
    """(N, frames, 11) logits whose greedy decoding reads `texts` (each character on one frame, blanks between)."""
    y = np.zeros((len(texts), frames, 11), np.float32)
    y[:, :, 0] = 5.0
    for i, t in enumerate(texts):
        for j, ch in enumerate(t):
            y[i, 2 * j + 1, 0], y[i, 2 * j + 1, CHARSET.index(ch) + 1] = 0.0, 5.0
    return y


def test_edit_distance_and_cer_by_hand():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3 and edit_distance("ab", "ab") == 0
    assert char_error_rate(["1234", "56"], ["1243", "5"]) == pytest.approx(3 / 6)


def test_identical_outputs_pass_every_precision_with_their_numbers():
    texts = [f"{i:04d}" for i in range(100)]
    ref = _logits(texts)
    scorer = SequenceScorer(CHARSET, texts)
    for precision in ("fp32", "fp16", "int8"):
        r = scorer.compare(ref, ref.copy(), precision, "torch")
        assert r.passed and r.string_agreement == 1.0 and r.cer == r.reference_cer == 0.0 and r.max_abs_diff == 0
    d = scorer.compare(ref, ref, "int8").to_dict()
    assert d["tolerance"] == {"atol": None, "rtol": 0.0, "min_string_agreement": 0.99, "max_cer_increase": 0.003}
    assert d["string_accuracy"] == 1.0 and d["cer_increase"] == 0.0


def test_one_flipped_string_in_100_passes_int8_agreement_but_its_cer_rise_decides():
    texts = [f"{i:04d}" for i in range(100)]  # 400 characters
    ref = _logits(texts)
    flipped = _logits(["9999"] + texts[1:])  # line 0 "0000" -> "9999": 4 character errors = +1.0 pp CER
    r = SequenceScorer(CHARSET, texts).compare(ref, flipped, "int8")
    assert r.string_agreement == 0.99 and r.cer == pytest.approx(0.01) and not r.passed
    assert "CER 1.00% vs the reference's 0.00%" in r.summary()
    one = _logits(["0001"] + texts[1:])  # one character: +0.25 pp, within +0.3 pp
    assert SequenceScorer(CHARSET, texts).compare(ref, one, "int8").passed
    assert not SequenceScorer(CHARSET, texts).compare(ref, one, "fp32").passed  # fp32: every string agrees
    two = _logits(["0001", "0011"] + texts[2:])  # 98 % agreement fails even without texts
    assert not SequenceScorer(CHARSET).compare(ref, two, "int8").passed


def test_nan_outputs_and_shape_mismatches():
    texts = ["12", "34"]
    ref = _logits(texts)
    bad = ref.copy()
    bad[0, 0, 0] = np.nan
    r = SequenceScorer(CHARSET, texts).compare(ref, bad, "fp16")
    assert not r.finite and not r.passed and math.isinf(r.max_abs_diff)
    with pytest.raises(ParityError, match="string agreement"):
        raise ParityError("x.tflite", r)
    with pytest.raises(ValueError, match=r"\(N, T, C\)"):
        SequenceScorer(CHARSET, texts).compare(ref, ref[:, :10], "fp32")
    assert set(SEQUENCE_TOLERANCES) == {"fp32", "fp16", "int8"}
