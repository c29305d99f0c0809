"""CTC decoding on the board (edgekd_runtime.ctc_decode): golden numbers on tiny hand-made (T, C) outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekd_runtime.confidence import softmax
from edgekd_runtime.ctc_decode import (
    Decoded,
    beam_search,
    compile_constraint,
    decode,
    exp_table,
    greedy,
    greedy_scores,
    quantized_best_path,
    rescored,
)
from edgekd_runtime.errors import InputShapeError, PatternError, UserInputError

DIGITS = "0123456789"
AMOUNTS = "0123456789.,"


def probs(rows: list[dict[str, float]], charset: str) -> np.ndarray:
    """(T, C) softmax rows: the named classes ("_" is the blank) get their probability, the rest share what
    is left equally, so each row sums to 1 exactly and the named numbers are the golden ones."""
    out = np.zeros((len(rows), len(charset) + 1))
    for t, row in enumerate(rows):
        named = [0 if k == "_" else charset.index(k) + 1 for k in row]
        out[t, named] = list(row.values())
        rest = [c for c in range(out.shape[1]) if c not in named]
        out[t, rest] = (1.0 - sum(row.values())) / len(rest)
    return out


def test_greedy_merges_repeats_and_keeps_repeats_separated_by_a_blank():
    p = probs([{"1": 0.9}, {"1": 0.8}, {"_": 0.7}, {"1": 0.6}, {"2": 0.5}, {"_": 0.9}], "12")
    d = greedy(p, "12")
    assert d.text == "112"
    assert d.characters == (("1", pytest.approx(0.9), 0, 1), ("1", pytest.approx(0.6), 3, 3),
                            ("2", pytest.approx(0.5), 4, 4))
    assert math.isclose(d.confidence, 0.9 * 0.6 * 0.5)  # product of the characters' peak probabilities
    assert decode(p, "12") == d  # no constraint: greedy
    b = beam_search(p, "12", compile_constraint("12", "112"))  # the same reading, frames from the alignment
    assert b.text == "112" and [c[2:] for c in b.characters] == [(0, 1), (3, 3), (4, 4)]
    assert math.isclose(b.confidence, d.confidence)


def test_an_all_blank_line_reads_empty_with_the_least_sure_blank_as_confidence():
    d = greedy(probs([{"_": 0.9}, {"_": 0.6}, {"_": 0.8}], DIGITS), DIGITS)
    assert d.text == "" and d.characters == () and math.isclose(d.confidence, 0.6)


def _line_scores(rng: np.random.Generator, frames: int, classes: int, blank: int) -> np.ndarray:
    """CTC-like scores: a confident blank on most frames, a character (often held for two frames) on the rest,
    some frames close calls, and every score noisy."""
    s = rng.normal(0.0, 2.0, (frames, classes))
    for t in range(frames):
        k = blank if rng.random() < 0.6 else int(rng.integers(classes))
        s[t, k] += float(rng.choice([0.5, 4.0, 9.0]))
        if t and rng.random() < 0.3:
            s[t] = s[t - 1] + rng.normal(0.0, 0.5, classes)  # the character held on, or a blank run
    return s


def _softmax_decoded(scores: np.ndarray, temperature: float, blank: int) -> Decoded:
    return rescored(greedy(softmax(scores), DIGITS, blank), softmax(scores, temperature), DIGITS, blank)


def _decoded_lines(rng: np.random.Generator, blank: int):
    """300 lines of scores (T, C): with characters, all blank (every tenth), 0, 1, 3, 48 or 96 frames."""
    for i in range(300):
        frames = int(rng.choice([0, 1, 3, 48, 96]))
        scores = _line_scores(rng, frames, len(DIGITS) + 1, blank).astype(np.float32)
        if i % 10 == 0:
            scores[:, blank] += 30.0  # nothing written
        yield scores


@pytest.mark.parametrize("blank", [0, 4])
@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_decoding_straight_from_scores_is_the_softmax_reading_bit_for_bit(blank, temperature):
    """greedy_scores (float scores) reads exactly what greedy decoding on softmax(scores) gives, with the
    probabilities and confidence of softmax(scores / T): lines with characters, all-blank lines, no frames."""
    shown = {"empty": 0, "read": 0}
    for scores in _decoded_lines(np.random.default_rng(7), blank):
        want = _softmax_decoded(scores, temperature, blank)
        assert greedy_scores(scores, DIGITS, temperature, blank) == want
        shown["read" if want.text else "empty"] += 1
    assert shown["empty"] >= 30 and shown["read"] >= 150


@pytest.mark.parametrize("blank", [0, 4])
@pytest.mark.parametrize("temperature", [1.0, 1.7, 0.3])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_decoding_8_bit_scores_through_their_exp_table_is_the_softmax_reading(blank, temperature, dtype):
    """quantized_best_path on 8-bit scores (through the exp table of their tempered values, as LineRecognizer keeps
    it) reads the text and frames greedy decoding on softmax(dequantized scores) gives, and its probabilities and
    confidence within float32 rounding (1e-5 relative: the table computes in float64, the softmax in float32)."""
    scale, zp = np.float32(0.11), np.float32(5 if dtype == np.int8 else 133)
    info = np.iinfo(dtype)
    values = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float32)
    table = exp_table(((values - zp) * scale) / np.float32(temperature))
    assert table is not None
    shown = {"empty": 0, "read": 0}
    for scores in _decoded_lines(np.random.default_rng(7), blank):
        q = np.clip(np.rint(scores / scale + zp), info.min, info.max).astype(dtype)
        want = _softmax_decoded((q.astype(np.float32) - zp) * scale, temperature, blank)
        got = Decoded(*quantized_best_path(q, q.argmax(1), DIGITS, blank, table))
        assert (got.text, [c[::2] + c[3:] for c in got.characters]) == \
            (want.text, [c[::2] + c[3:] for c in want.characters])  # (char, first frame, last frame)
        assert got.confidence == pytest.approx(want.confidence, rel=1e-5)
        assert [c[1] for c in got.characters] == pytest.approx([c[1] for c in want.characters], rel=1e-5)
        shown["read" if want.text else "empty"] += 1
    assert shown["empty"] >= 30 and shown["read"] >= 150


def test_an_exp_table_that_underflows_is_refused():
    """A temperature so low that exp() of a tempered 8-bit score underflows: no table (the recognizer then decodes
    the softmax), rather than a frame of zeros read as 0 / 0."""
    values = (np.arange(256, dtype=np.uint8).view(np.int8).astype(np.float32) * np.float32(0.11))
    assert exp_table(values / np.float32(1.0)) is not None
    assert exp_table(values / np.float32(0.01)) is None


def test_a_pattern_flips_the_greedy_reading_to_the_best_allowed_one():
    # "12.50" written with a faint decimal point: greedy drops it, the amount pattern puts it back
    p = probs([{"1": 0.9}, {"2": 0.9}, {"_": 0.55, ".": 0.4}, {"5": 0.9}, {"0": 0.8}, {"_": 0.9}], AMOUNTS)
    assert greedy(p, AMOUNTS).text == "1250"
    c = compile_constraint(AMOUNTS, r"\d+[.,]\d\d")
    d = decode(p, AMOUNTS, c)
    assert d.text == "12.50"
    assert d.characters == (("1", pytest.approx(0.9), 0, 0), ("2", pytest.approx(0.9), 1, 1),
                            (".", pytest.approx(0.4), 2, 2), ("5", pytest.approx(0.9), 3, 3),
                            ("0", pytest.approx(0.8), 4, 4))
    assert math.isclose(d.confidence, 0.9 * 0.9 * 0.4 * 0.9 * 0.8)
    # allowed characters alone: a '7' read at 0.6 becomes the '1' at 0.3 (one frame)
    p1 = probs([{"7": 0.6, "1": 0.3}], DIGITS)
    assert greedy(p1, DIGITS).text == "7"
    d1 = decode(p1, DIGITS, compile_constraint(DIGITS, allowed="0123456"))
    assert d1 == Decoded("1", pytest.approx(0.3), (("1", pytest.approx(0.3), 0, 0),), ((0, 2),))  # '1' is class 2


def test_a_constrained_reading_that_drops_what_the_model_saw_is_not_sure_of_itself():
    # "1234", each digit sure (0.95): read under max_len=2, two digits the model saw go to blank frames
    p = probs([{"1": 0.95}, {"_": 0.95}, {"2": 0.95}, {"_": 0.95}, {"3": 0.95}, {"_": 0.95}, {"4": 0.95}], DIGITS)
    d = decode(p, DIGITS, compile_constraint(DIGITS, max_len=2))
    assert len(d.text) == 2 and all(c[1] == pytest.approx(0.95) for c in d.characters)
    assert len(d.overruled) == 2 and all(k == 0 for _, k in d.overruled)  # two digit frames put to the blank
    assert d.confidence == pytest.approx(0.05 / 10)  # the blank's probability there, not 0.95 ** 2
    hot = rescored(d, softmax(np.log(p), 2.0), DIGITS)  # calibrated probabilities: the same rule
    assert hot.overruled == d.overruled and hot.confidence < 0.1 < hot.characters[0][1]
    same = decode(p, DIGITS, compile_constraint(DIGITS, r"\d+"))  # the greedy reading allowed: nothing overruled
    assert same.text == "1234" and same.overruled == () and same.confidence == pytest.approx(0.95 ** 4)


def test_the_beam_sums_alignments_where_the_best_path_does_not():
    # best path "__" has p 0.36, but "a" has 0.4*0.4 + 0.4*0.6 + 0.6*0.4 = 0.64 over its three alignments
    p = np.array([[0.6, 0.4], [0.6, 0.4]])
    assert greedy(p, "a").text == ""
    assert beam_search(p, "a").text == "a"
    assert decode(p, "a", compile_constraint("a", max_len=0 + 1)).text == "a"


def test_length_limits_choose_the_best_reading_of_an_allowed_length():
    p = probs([{"3": 0.9}, {"_": 0.6, "4": 0.3}, {"_": 0.9}, {"8": 0.7, "3": 0.2}], DIGITS)
    assert greedy(p, DIGITS).text == "38"
    assert decode(p, DIGITS, compile_constraint(DIGITS, min_len=3)).text == "348"
    assert decode(p, DIGITS, compile_constraint(DIGITS, max_len=1)).text == "3"
    d = decode(p, DIGITS, compile_constraint(DIGITS, pattern=r"\d{3}", allowed="34"))  # no 8: the 3 beside it
    assert d.text == "343" and math.isclose(d.confidence, 0.9 * 0.3 * 0.2)


def test_a_reading_that_cannot_fit_the_frames_decodes_to_nothing():
    p = probs([{"1": 0.9}] * 5, DIGITS)
    assert decode(p, DIGITS, compile_constraint(DIGITS, r"\d{6}")) == Decoded("", 0.0, ())
    p2 = probs([{"1": 0.9}, {"1": 0.9}], DIGITS)  # "11" needs a blank between its ones: 3 frames
    assert decode(p2, DIGITS, compile_constraint(DIGITS, "11")) == Decoded("", 0.0, ())
    assert decode(probs([{"1": 0.9}] * 3, DIGITS), DIGITS, compile_constraint(DIGITS, "11")).text == "11"


def test_an_allowed_character_below_the_class_cut_is_still_found():
    p = probs([{"7": 0.999999}], DIGITS)  # every other class ~1e-7, under the class cut
    d = decode(p, DIGITS, compile_constraint(DIGITS, "1"))
    assert d.text == "1" and 0.0 < d.confidence < 1e-6


def test_unconstrained_beam_search_agrees_with_greedy_on_peaky_outputs():
    rng = np.random.default_rng(0)
    for _ in range(40):
        t_frames = int(rng.integers(1, 49))
        path = np.where(rng.random(t_frames) < 0.6, 0, rng.integers(1, 11, t_frames))
        p = rng.dirichlet(np.full(11, 0.3), t_frames) * 0.08
        p[np.arange(t_frames), path] += 0.92
        g, b = greedy(p, DIGITS), beam_search(p, DIGITS)
        assert b.text == g.text
        assert [c[2:] for c in b.characters] == [c[2:] for c in g.characters]
        assert b.confidence == pytest.approx(g.confidence)
        assert 0.0 <= g.confidence <= 1.0


def test_constraints_compile_to_automata_that_match_whole_readings():
    c = compile_constraint(AMOUNTS, r"\d+[.,]\d\d")
    assert [c.matches(s) for s in ("12.50", "0,99", "12.5", "1250", "12.50.", "")] == [True, True] + [False] * 4
    assert compile_constraint(DIGITS) is None
    six = compile_constraint(DIGITS, r"\d{6}")
    assert six.matches("123456") and not six.matches("12345") and six.to_accept[six.start] == 6
    few = compile_constraint(DIGITS, allowed="01", min_len=2, max_len=3)
    assert [few.matches(s) for s in ("0", "01", "101", "1010", "012")] == [False, True, True, False, False]
    alt = compile_constraint(DIGITS, "(19|20)\\d\\d")
    assert alt.matches("1999") and alt.matches("2024") and not alt.matches("2124")
    wide = compile_constraint(DIGITS, r"\d{1,100}", max_chars=48)  # a bound past the model's is no error
    assert wide.matches("1" * 48) and not wide.matches("1" * 49) and wide.max_len == 48


@pytest.mark.parametrize("kwargs, message", [
    (dict(pattern="(\\d"), "not a valid regular expression: missing \\)"),
    (dict(pattern="(\\d)\\1"), "does not support"),
    (dict(pattern=""), "the pattern is empty"),
    (dict(pattern="[a-z]+"), "no reading over the model's characters '0123456789' can match"),
    (dict(pattern="\\d{6}", max_len=4), "no reading of 0..4 characters can match pattern"),
    (dict(pattern="\\d\\d?", min_len=3), "no reading of 3..any characters"),
    (dict(allowed="12x"), "\\['x'\\] are not in the model's charset"),
    (dict(allowed=""), "allowed characters: none given \\(an empty string\\)"),
    (dict(min_len=3, max_len=2), "length limits"),
    (dict(pattern="\\d{49}", max_chars=48), "needs at least 49 characters, but a line .* holds at most 48"),
    (dict(pattern="\\d{100000}", max_chars=48), "needs at least 100000 characters"),
    (dict(min_len=60, max_chars=48), "min_len 60: a line read by this model holds at most 48"),
    (dict(pattern="\\d{0,100000}"), "up to 100000 characters .* bound its repeats to 1000 or fewer"),
    (dict(pattern="\\d{4}(?=1)"), "lookahead or lookbehind"),
    (dict(pattern="(?<!1)\\d"), "lookahead or lookbehind"),
    (dict(pattern=5), "pattern must be a string or None, got int 5"),
    (dict(allowed=["1"]), "allowed must be a string or None, got list"),
    (dict(max_len=2.5), "max_len must be an integer or None, got float"),
])
def test_bad_constraints_are_refused_before_decoding(kwargs, message):
    with pytest.raises(PatternError, match=message):
        compile_constraint(DIGITS, **kwargs)
    assert issubclass(PatternError, UserInputError)


def test_probabilities_of_the_wrong_shape_are_refused():
    with pytest.raises(InputShapeError, match=r"\(frames, 11\)"):
        decode(np.full((5, 12), 1 / 12), DIGITS)


def test_beams_that_can_no_longer_finish_do_not_crowd_out_those_that_can():
    # six frames for six characters: only prefixes as long as the frames seen can finish; the more probable
    # blank-carrying prefixes must not fill a narrow beam
    p = probs([{"_": 0.6, "1": 0.3}, {"_": 0.6, "2": 0.3}] * 3, "12")
    d = decode(p, "12", compile_constraint("12", "[12]{6}"), beam_width=2)
    assert d.text == "121212" and math.isclose(d.confidence, 0.3 ** 6)
