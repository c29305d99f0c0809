"""The report's statistics: Wilson interval for one accuracy, paired-difference interval for a gain."""

import math

import numpy as np
import pytest

from edgekd.report.stats import accuracy_interval, paired_gain, resolvable_gain, seed_averaged_gain
from edgekd_runtime.errors import UserInputError


def _pair(won: int, lost: int, same_right: int, same_wrong: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([0] * won + [1] * lost + [1] * same_right + [0] * same_wrong)
    b = np.array([1] * won + [0] * lost + [1] * same_right + [0] * same_wrong)
    return a, b


def test_paired_gain_hand_checked():
    # 100 samples: B wins 10, loses 2. d has ten +1, two -1: mean 0.08, var (12 - 100 * 0.08^2) / 99.
    a, b = _pair(10, 2, 80, 8)
    g = paired_gain(a, b)
    half = 1.959964 * math.sqrt((12 - 100 * 0.08**2) / 99) / 10
    assert math.isclose(g.gain.estimate, 0.08)
    assert math.isclose(g.gain.low, 0.08 - half, rel_tol=1e-5) and math.isclose(g.gain.high, 0.08 + half, rel_tol=1e-5)
    assert math.isclose(half, 0.066392, rel_tol=1e-4)
    assert (g.acc_a, g.acc_b, g.b_only, g.a_only) == (0.82, 0.90, 10, 2)
    assert not g.within_noise
    assert "+8.00 pp" in g.describe() and "within noise" not in g.describe()


def test_gain_within_noise_is_said():
    a, b = _pair(6, 4, 85, 5)  # +2 pp on 100 samples with 10 disagreements: far from resolved
    g = paired_gain(a, b)
    assert g.within_noise and g.gain.low < 0 < g.gain.high
    assert "within noise" in g.describe("distilled - scratch")


def test_pairing_pays_only_for_disagreements():
    # the same +1 pp on 5,000 digits: 40 disagreements resolve it, 1,350 do not
    assert not paired_gain(*_pair(30, 10, 4900, 60)).within_noise
    assert paired_gain(*_pair(700, 650, 3500, 150)).within_noise


def test_identical_models_collapse_to_zero():
    a = np.array([1, 0, 1, 1])
    g = paired_gain(a, a)
    assert (g.gain.low, g.gain.estimate, g.gain.high) == (0.0, 0.0, 0.0) and g.within_noise


def test_share_of_gap():
    g = paired_gain(*_pair(10, 2, 80, 8))  # scratch 82 %, distilled 90 %
    assert math.isclose(g.share_of_gap(0.98), 0.5)
    assert math.isnan(g.share_of_gap(0.80))


def test_wilson_interval_hand_checked():
    iv = accuracy_interval([1] * 90 + [0] * 10)
    assert math.isclose(iv.estimate, 0.9)
    assert math.isclose(iv.low, 0.8256, abs_tol=1e-4) and math.isclose(iv.high, 0.9448, abs_tol=1e-4)
    top = accuracy_interval([1] * 50)
    assert top.high == 1.0 and 0.92 < top.low < 0.93  # Wilson stays below 1 and is not a point at 100 %


def test_resolvable_gain_plan():
    # 5,000 paired digits with 3 % disagreements resolve about +-0.47 pp; 1,000 digits only +-1.06 pp
    assert math.isclose(resolvable_gain(5000, 0.03), 0.004801, rel_tol=1e-3)
    assert resolvable_gain(1000, 0.03) > 0.01


def test_seed_averaged_gain_hand_checked():
    # seed 0: B wins 10, loses 2 (+8 pp); seed 1 on the same 100 samples: B wins the same 10, loses 6 (+4 pp)
    a0, b0 = _pair(10, 2, 80, 8)
    a1, b1 = a0.copy(), b0.copy()
    a1[12:16], b1[12:16] = 1, 0
    g = seed_averaged_gain([a0, a1], [b0, b1])
    d = ((b0 - a0) + (b1 - a1)) / 2  # ten +1, two -1, four -0.5: mean 0.06
    half = 1.959964 * float(np.std(d, ddof=1)) / 10
    assert math.isclose(g.gain.estimate, 0.06) and math.isclose(g.gain.low, 0.06 - half, rel_tol=1e-5)
    assert (g.acc_a, g.acc_b, g.b_only, g.a_only) == (0.82, 0.88, 10, 6)
    one = seed_averaged_gain([a0], [b0])  # one seed is the paired gain
    assert (one.gain, one.acc_a, one.b_only) == (paired_gain(a0, b0).gain, 0.82, 10)
    with pytest.raises(UserInputError, match="the same seeds for A and B: 2 and 1"):
        seed_averaged_gain([a0, a1], [b0])
    with pytest.raises(UserInputError, match="same samples"):
        seed_averaged_gain([a0, a1[:50]], [b0, b1[:50]])


@pytest.mark.parametrize("a,b", [([], []), ([1, 0], [1]), ([1, 2], [1, 0]), ([[1]], [[1]])])
def test_bad_input_is_one_clear_error(a, b):
    with pytest.raises(UserInputError):
        paired_gain(a, b)


def test_the_sign_test_is_exact_and_one_sided():
    from edgekd.report.stats import sign_test_p

    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(3, 0) == 0.125  # alone right on all 3 disagreements: 1/8 by chance
    assert sign_test_p(0, 3) == 1.0  # never better: nothing to claim
    assert abs(sign_test_p(9, 1) - 11 / 1024) < 1e-12
    assert sign_test_p(5, 5) > 0.5
    with pytest.raises(UserInputError, match="counts must be >= 0"):
        sign_test_p(-1, 2)
