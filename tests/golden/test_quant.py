"""Tests of mnaccel.golden.quant against hand-worked values and scalar Python-int models.

The scalar models below follow the C++ sources statement by statement with Python's
arbitrary-precision integers (C's truncating division written out explicitly), so they
share no code with the vectorized NumPy implementations under test.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

from mnaccel.golden import quant
from mnaccel.golden.graph import Activation

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


# --- scalar reference models ---------------------------------------------------------------


def c_div(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def to_int32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - 2**32 if x >= 2**31 else x


def ref_srdhm(a: int, b: int) -> int:
    if a == b == I32_MIN:
        return I32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else (1 - (1 << 30))
    return c_div(ab + nudge, 1 << 31)


def ref_rdbpot(x: int, e: int) -> int:
    # Round to nearest, ties away from zero, using exact rationals.
    f = Fraction(x, 2**e)
    fl = math.floor(f)
    frac = f - fl
    if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and x > 0):
        return fl + 1
    return fl


def ref_mbqm(x: int, m: int, shift: int) -> int:
    left = max(shift, 0)
    right = max(-shift, 0)
    return ref_rdbpot(ref_srdhm(to_int32(x * 2**left), m), right)


def ref_quantize_multiplier(real: float) -> tuple[int, int]:
    if real == 0:
        return 0, 0
    # Exact: find shift with 0.5 <= real / 2**shift < 1, then round |q * 2**31| half up.
    r = Fraction(real)
    shift = 0
    while abs(r) / Fraction(2) ** shift >= 1:
        shift += 1
    while abs(r) / Fraction(2) ** shift < Fraction(1, 2):
        shift -= 1
    scaled = abs(r) / Fraction(2) ** shift * 2**31
    q = math.floor(scaled + Fraction(1, 2)) * (1 if r > 0 else -1)
    if q == 2**31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


# --- quantize_multiplier -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("real", "expected"),
    [
        (0.0, (0, 0)),
        (0.5, (2**30, 0)),
        (1.0, (2**30, 1)),
        (0.75, (3 * 2**29, 0)),
        (3.0, (3 * 2**29, 2)),
        (0.25, (2**30, -1)),
        # q * 2**31 rounds up to 2**31: halve and shift one more.
        (1 - 2.0**-33, (2**30, 1)),
        (0.5 - 2.0**-34, (2**30, 0)),
        # The smallest shift kept, and the first one flushed to zero.
        (2.0**-32, (2**30, -31)),
        (2.0**-33, (0, 0)),
        (2.0**-40 * 0.75, (0, 0)),
    ],
)
def test_quantize_multiplier_hand_worked(real, expected):
    assert quant.quantize_multiplier(real) == expected


def test_quantize_multiplier_tie_rounds_away_from_zero():
    # q = 0.5 + 2**-32 exactly: q * 2**31 = 2**30 + 0.5, a tie that must round up.
    real = 0.5 + 2.0**-32
    assert quant.quantize_multiplier(real) == (2**30 + 1, 0)
    assert quant.quantize_multiplier(-real) == (-(2**30 + 1), 0)
    # Just below the tie rounds down.
    assert quant.quantize_multiplier(0.5 + 2.0**-32 - 2.0**-53) == (2**30, 0)


def test_quantize_multiplier_matches_exact_model():
    rng = np.random.default_rng(1)
    reals = np.concatenate(
        [
            rng.uniform(0, 1, 300),
            10.0 ** rng.uniform(-12, 3, 300),
            np.float32(rng.uniform(1e-4, 1e-1, 100)).astype(np.float64),
            -(10.0 ** rng.uniform(-5, 1, 50)),
        ]
    )
    for real in reals:
        assert quant.quantize_multiplier(float(real)) == ref_quantize_multiplier(float(real)), real


def test_quantize_multiplier_rejects_non_finite():
    with pytest.raises(ValueError, match="finite"):
        quant.quantize_multiplier(float("inf"))


def test_quantize_multiplier_smaller_than_one_exp():
    assert quant.quantize_multiplier_smaller_than_one_exp(0.375) == (3 * 2**29, -1)
    for bad in (0.0, 1.0, 1.5, -0.25, 1 - 2.0**-40):
        with pytest.raises(ValueError):
            quant.quantize_multiplier_smaller_than_one_exp(bad)


# --- fixed-point primitives ------------------------------------------------------------------

EDGE_32 = [I32_MIN, I32_MIN + 1, -(2**30), -3, -2, -1, 0, 1, 2, 3, 2**30, I32_MAX - 1, I32_MAX]


def _random_int32(rng, n):
    return np.concatenate(
        [
            rng.integers(I32_MIN, I32_MAX, n, endpoint=True),
            rng.integers(-(2**16), 2**16, n),
            np.array(EDGE_32),
        ]
    )


def test_srdhm_saturates_int32_min_squared():
    assert quant.saturating_rounding_doubling_high_mul(I32_MIN, I32_MIN) == I32_MAX
    assert quant.saturating_rounding_doubling_high_mul(I32_MIN, I32_MAX) == -I32_MAX
    assert quant.saturating_rounding_doubling_high_mul(I32_MIN, 2**30) == -(2**30)


def test_srdhm_hand_worked_ties():
    # The nudge makes ties round toward +infinity: +0.5 -> 1, -0.5 -> 0, -1.5 -> -1.
    assert quant.saturating_rounding_doubling_high_mul(1, 2**30) == 1
    assert quant.saturating_rounding_doubling_high_mul(3, 2**30) == 2
    assert quant.saturating_rounding_doubling_high_mul(-1, 2**30) == 0
    assert quant.saturating_rounding_doubling_high_mul(-3, 2**30) == -1
    # Just past the negative tie rounds away from zero.
    assert quant.saturating_rounding_doubling_high_mul(-1, 2**30 + 1) == -1


def test_srdhm_matches_scalar_model():
    rng = np.random.default_rng(2)
    a = _random_int32(rng, 400)
    b = rng.permutation(_random_int32(rng, 400))
    got = quant.saturating_rounding_doubling_high_mul(a, b)
    for i, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        assert got[i] == ref_srdhm(x, y), (x, y, int(got[i]))


def test_srdhm_rejects_out_of_range():
    with pytest.raises(ValueError, match="2147483648"):
        quant.saturating_rounding_doubling_high_mul(2**31, 1)


@pytest.mark.parametrize(
    ("x", "e", "expected"),
    [(5, 1, 3), (-5, 1, -3), (6, 2, 2), (-6, 2, -2), (7, 2, 2), (-7, 2, -2), (9, 0, 9)],
)
def test_rdbpot_hand_worked(x, e, expected):
    # 2.5 -> 3, -2.5 -> -3, 1.5 -> 2, -1.5 -> -2, 1.75 -> 2, -1.75 -> -2
    assert quant.rounding_divide_by_pot(x, e) == expected


def test_rdbpot_matches_scalar_model():
    rng = np.random.default_rng(3)
    x = _random_int32(rng, 300)
    for e in range(32):
        got = quant.rounding_divide_by_pot(x, e)
        for i, v in enumerate(x.tolist()):
            assert got[i] == ref_rdbpot(v, e), (v, e, int(got[i]))


def test_rdbpot_rejects_bad_exponent():
    with pytest.raises(ValueError, match="32"):
        quant.rounding_divide_by_pot(1, 32)


def test_mbqm_double_rounding_differs_from_single():
    # 5 * 0.5 / 2 = 1.25: the high multiply rounds 2.5 up to 3, then 3 / 2 rounds to 2.
    assert quant.multiply_by_quantized_multiplier(5, 2**30, -1) == 2
    assert quant.multiply_by_quantized_multiplier(-5, 2**30, -1) == -1


def test_mbqm_rounding_up_differs_only_on_negative_ties():
    # The two roundings differ exactly where the high product is negative and the final
    # shift lands halfway: there "up" is one more than "away".
    x = np.arange(-4000, 4000)
    for shift in (-1, -3, -7):
        away = quant.multiply_by_quantized_multiplier(x, 1518500250, shift)
        up = quant.multiply_by_quantized_multiplier(x, 1518500250, shift, rounding="up")
        high = quant.saturating_rounding_doubling_high_mul(x, 1518500250)
        r = -shift
        tie = (high & ((1 << r) - 1)) == (1 << (r - 1))
        np.testing.assert_array_equal(up[tie & (high < 0)], away[tie & (high < 0)] + 1)
        np.testing.assert_array_equal(up[~(tie & (high < 0))], away[~(tie & (high < 0))])
        assert (tie & (high < 0)).any()
    # -3 * 0.5 = -1.5 rounds (up) to -1 in the high multiply; -1 / 2 = -0.5 then rounds up
    # to 0 or away from zero to -1.
    assert quant.multiply_by_quantized_multiplier(-3, 2**30, -1, rounding="up") == 0
    assert quant.multiply_by_quantized_multiplier(-3, 2**30, -1) == -1
    with pytest.raises(ValueError, match="rounding"):
        quant.multiply_by_quantized_multiplier(1, 2**30, 0, rounding="even")


def test_mbqm_left_shift_wraps_like_int32():
    # 2**29 * 2**3 = 2**32 wraps to 0 in int32.
    assert quant.multiply_by_quantized_multiplier(2**29, 2**30, 3) == 0
    # 3 * 2**30 wraps to -2**30; times 0.5 -> -2**29.
    assert quant.multiply_by_quantized_multiplier(3, 2**30, 30) == -(2**29)


def test_mbqm_matches_scalar_model():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.integers(-(2**24), 2**24, 300), _random_int32(rng, 100)])
    for shift in [-31, -20, -9, -1, 0, 1, 2, 7]:
        for m in [0, 2**30, 2**30 + 1, I32_MAX, int(rng.integers(2**30, 2**31))]:
            got = quant.multiply_by_quantized_multiplier(x, m, shift)
            for i, v in enumerate(x.tolist()):
                assert got[i] == ref_mbqm(v, m, shift), (v, m, shift, int(got[i]))


def test_mbqm_broadcasts_per_channel():
    rng = np.random.default_rng(5)
    acc = rng.integers(-(2**20), 2**20, (4, 3))
    m = np.array([2**30, 1518500250, I32_MAX])
    s = np.array([-8, 2, -30])
    got = quant.multiply_by_quantized_multiplier(acc, m, s)
    for (r, c), v in np.ndenumerate(acc):
        assert got[r, c] == ref_mbqm(int(v), int(m[c]), int(s[c]))


# --- conv multipliers and activation ranges ------------------------------------------------------


def test_conv_multipliers_use_float32_scales_widened_to_double():
    s_in, s_out = 0.0235294122248888, 0.0470588244497776
    s_w = np.array([0.00392, 1e-5, 0.5, 3.1e-2], dtype=np.float32)
    m, s = quant.conv_multipliers(s_in, s_w, s_out)
    assert m.dtype == np.int64 and s.dtype == np.int64
    for c in range(4):
        real = float(np.float32(s_in)) * float(s_w[c]) / float(np.float32(s_out))
        assert (m[c], s[c]) == ref_quantize_multiplier(real)
    # Scales spanning orders of magnitude give shifts far apart.
    assert s.min() < -10 and s.max() >= -1


def test_conv_multipliers_per_tensor():
    m, s = quant.conv_multipliers(0.5, 0.25, 0.125)
    assert m.tolist() == [2**30] and s.tolist() == [1]


@pytest.mark.parametrize(
    ("act", "scale", "zp", "expected"),
    [
        (Activation.NONE, 0.1, 5, (-128, 127)),
        (Activation.RELU, 0.1, -128, (-128, 127)),
        (Activation.RELU, 0.1, -20, (-20, 127)),
        (Activation.RELU6, 6 / 255, -128, (-128, 127)),
        (Activation.RELU6, 0.05, -128, (-128, -8)),  # 6 / 0.05 = 120
        (Activation.RELU6, 0.04, 10, (10, 127)),  # 10 + 150 clamps at 127
        ("RELU6", 0.5, -3, (-3, 9)),
        # 6 / 0.48 = 12.5 exactly in float32: the tie rounds away from zero to 13.
        (Activation.RELU6, 0.48, 0, (0, 13)),
    ],
)
def test_activation_range(act, scale, zp, expected):
    assert quant.activation_range(act, scale, zp) == expected


def test_activation_range_divides_in_float32():
    # Scales where the float32 quotient 6/scale is a .5 tie but the double quotient lies
    # below it: rounding in double would give the lower integer, TFLite gives the upper.
    rng = np.random.default_rng(6)
    scales = np.float32(rng.uniform(0.025, 0.1, 400000))
    q32 = np.float32(6.0) / scales
    q64 = 6.0 / scales.astype(np.float64)
    tie = (q32 - np.floor(q32) == np.float32(0.5)) & (q64 < q32.astype(np.float64))
    assert tie.sum() > 0
    for s, q in zip(scales[tie], q32[tie], strict=True):
        assert quant.activation_range(Activation.RELU6, float(s), -128) == (
            -128,
            -128 + int(np.floor(q)) + 1,
        )


# --- requantize ----------------------------------------------------------------------------------


def test_requantize_hand_worked():
    # Channel 0: M = 0.5, shift -2 -> *1/8; channel 1: M = 0.75, shift 1 -> *1.5.
    acc = np.array([[100, 10], [-100, -10], [2000, 100], [-2000, -100]])
    bias = np.array([4, -1])
    m = np.array([2**30, 3 * 2**29])
    s = np.array([-2, 1])
    got = quant.requantize(acc, bias, m, s, output_zp=-3, act_min=-128, act_max=127)
    # 104/8 = 13 -> 10; 9 * 1.5 = 13.5 -> 14 -> 11
    # -96/8 = -12 -> -15; -11 * 1.5 = -16.5 -> -16 (a high-multiply tie rounds up) -> -19
    # 2004/8 = 250.5 -> 251 -> 248 clamps to 127; 99 * 1.5 = 148.5 -> 149 -> 146 -> 127
    # -1996/8 = -249.5 -> -250 (a divide-by-POT tie rounds away from zero) -> -253 -> -128;
    # -101 * 1.5 = -151.5 -> -151 -> -154 -> -128
    expected = np.array([[10, 11], [-15, -19], [127, 127], [-128, -128]], dtype=np.int8)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, expected)


def test_requantize_matches_scalar_model_per_channel():
    rng = np.random.default_rng(7)
    c = 16
    acc = rng.integers(-(2**22), 2**22, (5, 7, c))
    bias = rng.integers(-(2**20), 2**20, c)
    s_w = np.float32(10.0 ** rng.uniform(-5, -1, c))
    m, s = quant.conv_multipliers(0.02, s_w, 0.05)
    lo, hi = quant.activation_range(Activation.RELU6, 0.05, -7)
    got = quant.requantize(acc, bias, m, s, -7, lo, hi)
    for idx, v in np.ndenumerate(acc):
        ch = idx[-1]
        want = ref_mbqm(int(v) + int(bias[ch]), int(m[ch]), int(s[ch])) - 7
        want = min(max(want, lo), hi)
        assert got[idx] == want, (idx, int(got[idx]), want)


def test_requantize_bias_addition_wraps_int32():
    got = quant.requantize([I32_MAX], [1], 2**30, 0, 0, -128, 127)
    # I32_MAX + 1 wraps to I32_MIN; times 0.5 is hugely negative and clamps to -128.
    assert got.tolist() == [-128]


def test_requantize_rejects_bad_range():
    with pytest.raises(ValueError, match="activation range"):
        quant.requantize([0], None, 2**30, 0, 0, -129, 127)


# --- int16 helpers (HARD_SWISH) ----------------------------------------------------------------


def test_downscale_int32_to_int16_multiplier():
    assert quant.downscale_int32_to_int16_multiplier(2**30) == 2**14
    assert quant.downscale_int32_to_int16_multiplier(2**30 + 2**15) == 2**14 + 1  # tie up
    assert quant.downscale_int32_to_int16_multiplier(2**30 + 2**15 - 1) == 2**14
    assert quant.downscale_int32_to_int16_multiplier(I32_MAX - 2**15) == 2**15 - 1
    assert quant.downscale_int32_to_int16_multiplier(I32_MAX) == 2**15 - 1


def test_int16_primitives_match_scalar_models():
    rng = np.random.default_rng(8)
    a = np.concatenate([rng.integers(-(2**15), 2**15, 2000), [-(2**15), 2**15 - 1, 0, -1, 1]])
    b = np.concatenate([rng.integers(-(2**15), 2**15, 2000), [-(2**15), -(2**15), 5, 2**14, 1]])
    srdhm = quant.saturating_rounding_doubling_high_mul_int16(a, b)
    sdhm = quant.saturating_doubling_high_mul_int16(a, b)
    for i, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        if x == y == -(2**15):
            assert srdhm[i] == sdhm[i] == 2**15 - 1
            continue
        nudge = (1 << 14) if x * y >= 0 else 1 - (1 << 14)
        assert srdhm[i] == c_div(x * y + nudge, 1 << 15)
        assert sdhm[i] == c_div(x * y, 1 << 15)
    sls = quant.saturating_left_shift_int16(a, 3)
    np.testing.assert_array_equal(sls, np.clip(a * 8, -(2**15), 2**15 - 1))
    for e in range(16):
        got = quant.rounding_divide_by_pot_int16(a, e)
        assert all(got[i] == ref_rdbpot(v, e) for i, v in enumerate(a.tolist()))


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.5, 1), (-0.5, -1), (1.5, 2), (2.5, 3), (-2.5, -3), (0.0, 0), (-1.4999, -1),
        # floor(v + 0.5) would give 1: the sum rounds up in double precision.
        (0.49999999999999994, 0), (-0.49999999999999994, 0),
        (2.0**60 + 2048.0, 2**60 + 2048),
    ],
)
def test_round_half_away_is_std_round(value, expected):
    assert quant.round_half_away(value) == expected
