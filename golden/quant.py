"""TFLite's fixed-point arithmetic, bit for bit.

These are the primitives that TFLite's int8 kernels build on (``quantization_util.cc``,
``kernels/internal/common.h``, gemmlowp's ``fixedpoint.h``, ``kernel_util.cc``), written
over NumPy ``int64`` arrays so that a whole tensor is requantized at once. Every function
reproduces the C++ behaviour including its corner cases: truncating integer division,
int32 wrap-around of a left shift, saturation of ``INT32_MIN * INT32_MIN``, and the
double-rounding ``MultiplyByQuantizedMultiplier`` that TFLite uses by default (not the
``TFLITE_SINGLE_ROUNDING`` build option), with the final shift's ties rounded away from
zero as in the reference kernels or up as in the NEON/SSE4.1 optimized kernels.

Multipliers are ``(M, shift)`` pairs: ``M`` a Q31 value in ``[2**30, 2**31)`` (or 0) and
``shift`` the power of two, so that ``real ~= M * 2**(shift - 31)``.
"""

from __future__ import annotations

import math

import numpy as np

from mnaccel.golden.graph import Activation

__all__ = [
    "INT8_MAX",
    "INT8_MIN",
    "INT16_MAX",
    "INT16_MIN",
    "INT32_MAX",
    "INT32_MIN",
    "activation_range",
    "conv_multipliers",
    "downscale_int32_to_int16_multiplier",
    "multiply_by_quantized_multiplier",
    "multiply_by_quantized_multiplier_smaller_than_one_exp",
    "quantize_multiplier",
    "quantize_multiplier_smaller_than_one_exp",
    "requantize",
    "round_half_away",
    "rounding_divide_by_pot",
    "rounding_divide_by_pot_int16",
    "saturating_doubling_high_mul_int16",
    "saturating_left_shift_int16",
    "saturating_rounding_doubling_high_mul",
    "saturating_rounding_doubling_high_mul_int16",
    "wrap_int32",
]

INT8_MIN, INT8_MAX = -128, 127
INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def round_half_away(value: float) -> int:
    """``TfLiteRound`` (``std::round``): nearest integer, ties away from zero.

    ``value`` must be exactly representable as a double (a float32 widened to double is),
    and is rounded without any further floating-point error.
    """
    if not math.isfinite(value):
        raise ValueError(f"cannot round {value!r} to an integer")
    magnitude = abs(value)
    whole = math.floor(magnitude)
    # Comparing the exact fractional part avoids the double rounding of `floor(v + 0.5)`,
    # which turns 0.49999999999999994 into 1.
    rounded = whole + 1 if magnitude - whole >= 0.5 else whole
    return int(rounded) if value >= 0 else -int(rounded)


def _check_range(name: str, x: np.ndarray, lo: int, hi: int) -> None:
    if x.size and (x.min() < lo or x.max() > hi):
        bad = x[(x < lo) | (x > hi)].flat[0]
        raise ValueError(f"{name} must lie in [{lo}, {hi}], not {int(bad)}")


def _trunc_div_pow2(x: np.ndarray, bits: int) -> np.ndarray:
    """C's ``x / 2**bits`` on signed integers: the quotient rounded toward zero."""
    return np.where(x >= 0, x >> bits, -((-x) >> bits))


def wrap_int32(x) -> np.ndarray:
    """Wrap integers to int32 as two's-complement hardware does (``int64`` result)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: split ``real`` into a Q31 multiplier and a shift.

    ``frexp`` gives ``real = q * 2**shift`` with ``q`` in ``[0.5, 1)``; ``q * 2**31`` is
    rounded half away from zero. If that rounds up to ``2**31`` the multiplier is halved and
    the shift incremented; if the shift is below -31 the result is flushed to ``(0, 0)``.

    Parameters
    ----------
    real : float
        The real multiplier, as a double (TFLite callers widen float32 scales first).

    Returns
    -------
    multiplier : int
        In ``[2**30, 2**31 - 1]`` for positive ``real``, 0 for zero or flushed values.
    shift : int
        Left shift if positive, right shift if negative.
    """
    real = float(real)
    if not math.isfinite(real):
        raise ValueError(f"multiplier must be finite, not {real!r}")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    # q * 2**31 is exact in double precision, so only the rounding itself can differ.
    q_fixed = round_half_away(q * 2.0**31)
    if q_fixed == 2**31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_smaller_than_one_exp(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplierSmallerThanOneExp``: ``real`` in (0, 1), shift <= 0.

    Returns ``(multiplier, left_shift)`` with ``left_shift <= 0`` (a right shift).
    """
    real = float(real)
    if not 0.0 < real < 1.0:
        raise ValueError(f"multiplier must lie in (0, 1), not {real!r}")
    multiplier, shift = quantize_multiplier(real)
    # Rounding q up to 2**31 can push the shift to +1 only for real >= 1 - 2**-32; TFLite
    # CHECK-fails there, and so do we.
    if shift > 0:
        raise ValueError(f"multiplier {real!r} rounds to 1.0 and cannot be represented")
    return multiplier, shift


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul`` on int32 values.

    ``(a * b + nudge) / 2**31`` with C's truncating division, where the nudge is ``2**30``
    for a non-negative product and ``1 - 2**30`` otherwise; ``INT32_MIN * INT32_MIN``
    saturates to ``INT32_MAX``. Broadcasts; returns ``int64`` values in the int32 range.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    _check_range("a", a, INT32_MIN, INT32_MAX)
    _check_range("b", b, INT32_MIN, INT32_MAX)
    ab = a * b  # |ab| <= 2**62: no int64 overflow
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    result = _trunc_div_pow2(ab + nudge, 31)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, np.int64(INT32_MAX), result)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded, ties away from zero.

    Computed as gemmlowp does, with a mask, a remainder and a threshold that is one larger
    for negative ``x``. ``exponent`` (0..31) broadcasts against ``x``.
    """
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    _check_range("exponent", exponent, 0, 31)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift, rounding="away") -> np.ndarray:
    """TFLite's ``MultiplyByQuantizedMultiplier(int32 x, int32 M, int shift)``, double rounding.

    ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2**max(shift, 0), M),
    max(-shift, 0))``. The left shift is an int32 multiplication in C and wraps around on
    overflow like the hardware does. ``multiplier`` and ``shift`` broadcast against ``x``
    (per-channel values go on the last axis).

    Parameters
    ----------
    rounding : {"away", "up"} or array_like of bool
        How the final right shift rounds ties. ``"away"`` (away from zero) is
        ``RoundingDivideByPOT``, used by TFLite's portable and reference kernels. ``"up"``
        (toward +infinity, ``(v + 2**(r-1)) >> r``) is NEON's ``vrshl`` in
        ``MultiplyByQuantizedMultiplier4Rows`` and the optimized GEMM output stages, which
        TFLite's optimized kernels run on ARM and, through ``NEON_2_SSE``, on x86 with SSE4.1.
        The two differ only when the high product is negative and exactly halfway. A boolean
        array (True for ``"up"``), broadcast against ``x`` with channels on the last axis,
        chooses per channel: the optimized kernels round their vectorized channel blocks up
        and the leftover channels away from zero.
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    _check_range("x", x, INT32_MIN, INT32_MAX)
    _check_range("shift", shift, -31, 31)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    high = saturating_rounding_doubling_high_mul(wrap_int32(x << left), multiplier)
    if isinstance(rounding, str):
        if rounding == "away":
            return rounding_divide_by_pot(high, right)
        if rounding == "up":
            return (high + ((np.int64(1) << right) >> 1)) >> right
        raise ValueError(f"rounding must be 'away' or 'up', not {rounding!r}")
    ties_up = np.asarray(rounding, dtype=bool)
    return np.where(
        ties_up,
        (high + ((np.int64(1) << right) >> 1)) >> right,
        rounding_divide_by_pot(high, right),
    )


def multiply_by_quantized_multiplier_smaller_than_one_exp(x, multiplier, left_shift):
    """TFLite's ``MultiplyByQuantizedMultiplierSmallerThanOneExp`` (``left_shift <= 0``)."""
    left_shift = np.asarray(left_shift, dtype=np.int64)
    _check_range("left_shift", left_shift, -31, 0)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -left_shift)


def conv_multipliers(input_scale, weight_scales, output_scale) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel multipliers as TFLite's ``PopulateConvolutionQuantizationParams``.

    The effective scale of channel ``c`` is ``double(s_in) * double(s_w[c]) /
    double(s_out)`` with every scale first rounded to float32 (TFLite stores them as
    float32), then :func:`quantize_multiplier`. A single weight scale gives one channel;
    this is also ``GetQuantizedConvolutionMultipler`` for per-tensor FULLY_CONNECTED.

    Returns
    -------
    multipliers, shifts : numpy.ndarray
        ``int64`` arrays with one entry per weight scale.
    """
    s_in = float(np.float32(input_scale))
    s_out = float(np.float32(output_scale))
    s_w = np.atleast_1d(np.asarray(weight_scales, dtype=np.float32)).astype(np.float64)
    if s_w.ndim != 1:
        raise ValueError(f"weight scales must be one-dimensional, not of shape {s_w.shape}")
    pairs = [quantize_multiplier(s_in * float(s) / s_out) for s in s_w]
    multipliers = np.array([m for m, _ in pairs], dtype=np.int64)
    shifts = np.array([s for _, s in pairs], dtype=np.int64)
    return multipliers, shifts


def activation_range(activation, scale: float, zero_point: int) -> tuple[int, int]:
    """int8 clamp bounds of a fused activation, as ``CalculateActivationRangeQuantized``.

    ``quantize(f) = zero_point + TfLiteRound(f / scale)`` with the division in float32,
    then ``RELU`` gives ``[max(-128, quantize(0)), 127]``, ``RELU6`` gives
    ``[max(-128, quantize(0)), min(127, quantize(6))]`` and ``NONE`` gives ``[-128, 127]``.

    Parameters
    ----------
    activation : Activation or str
    scale : float
        Output scale (rounded to float32).
    zero_point : int
        Output zero point.
    """
    activation = Activation(activation)
    scale32 = np.float32(scale)
    zero_point = int(zero_point)

    def quantize(f: float) -> int:
        return zero_point + round_half_away(float(np.float32(f) / scale32))

    if activation is Activation.NONE:
        return INT8_MIN, INT8_MAX
    lo = max(INT8_MIN, quantize(0.0))
    if activation is Activation.RELU:
        return lo, INT8_MAX
    return lo, min(INT8_MAX, quantize(6.0))


def requantize(
    acc,
    bias,
    multiplier,
    shift,
    output_zp: int,
    act_min: int,
    act_max: int,
    rounding="away",
) -> np.ndarray:
    """From int32 accumulators to int8 outputs, as TFLite's int8 convolution kernels.

    ``clamp(MultiplyByQuantizedMultiplier(acc + bias, M, shift) + output_zp, act_min,
    act_max)``. ``acc + bias`` is an int32 addition (it wraps on overflow, as C does on the
    hardware TFLite runs on). This is the function the hardware requantizer is checked
    against.

    Parameters
    ----------
    acc : array_like of int
        Accumulators, channel on the last axis, each in the int32 range.
    bias : array_like of int or None
        int32 bias, broadcast over the last axis; None for no bias.
    multiplier, shift : array_like of int
        Per-channel (shape ``(C,)``) or per-tensor (scalar) quantized multipliers.
    output_zp : int
    act_min, act_max : int
        Clamp bounds, see :func:`activation_range`.
    rounding : {"away", "up"} or array_like of bool
        Tie rounding of the final shift, see :func:`multiply_by_quantized_multiplier`.

    Returns
    -------
    numpy.ndarray
        int8, same shape as ``acc``.
    """
    acc = np.asarray(acc, dtype=np.int64)
    _check_range("accumulator", acc, INT32_MIN, INT32_MAX)
    if bias is not None:
        bias = np.asarray(bias, dtype=np.int64)
        _check_range("bias", bias, INT32_MIN, INT32_MAX)
        acc = wrap_int32(acc + bias)
    if not INT8_MIN <= act_min <= act_max <= INT8_MAX:
        raise ValueError(f"activation range [{act_min}, {act_max}] is not inside the int8 range")
    out = multiply_by_quantized_multiplier(acc, multiplier, shift, rounding) + int(output_zp)
    return np.clip(out, act_min, act_max).astype(np.int8)


# --- int16 fixed point, used by HARD_SWISH ------------------------------------------------


def downscale_int32_to_int16_multiplier(multiplier: int) -> int:
    """TFLite's ``DownScaleInt32ToInt16Multiplier``: a Q31 multiplier rounded to Q15."""
    multiplier = int(multiplier)
    if not 0 <= multiplier <= INT32_MAX:
        raise ValueError(f"multiplier must lie in [0, {INT32_MAX}], not {multiplier}")
    rounding_offset = 1 << 15
    if multiplier >= INT32_MAX - rounding_offset:
        return INT16_MAX
    return (multiplier + rounding_offset) >> 16


def saturating_rounding_doubling_high_mul_int16(a, b) -> np.ndarray:
    """gemmlowp's int16 ``SaturatingRoundingDoublingHighMul`` (nudge ``2**14``)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    _check_range("a", a, INT16_MIN, INT16_MAX)
    _check_range("b", b, INT16_MIN, INT16_MAX)
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1 << 14), np.int64(1 - (1 << 14)))
    result = _trunc_div_pow2(ab + nudge, 15)
    return np.where((a == INT16_MIN) & (b == INT16_MIN), np.int64(INT16_MAX), result)


def saturating_doubling_high_mul_int16(a, b) -> np.ndarray:
    """TFLite's int16 ``SaturatingDoublingHighMul``: ``a * b / 2**15`` truncated, no nudge."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    _check_range("a", a, INT16_MIN, INT16_MAX)
    _check_range("b", b, INT16_MIN, INT16_MAX)
    result = _trunc_div_pow2(a * b, 15)
    return np.where((a == INT16_MIN) & (b == INT16_MIN), np.int64(INT16_MAX), result)


def saturating_left_shift_int16(x, amount: int) -> np.ndarray:
    """TFLite's int16 ``SaturatingLeftShift``: ``x * 2**amount`` clamped to int16."""
    x = np.asarray(x, dtype=np.int64)
    if not 0 <= amount <= 31:
        raise ValueError(f"shift amount must lie in [0, 31], not {amount}")
    return np.clip(x << amount, INT16_MIN, INT16_MAX)


def rounding_divide_by_pot_int16(x, exponent: int) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT`` on int16 values.

    Identical to the int32 version for ``exponent < 16``; beyond that gemmlowp truncates
    its mask ``2**exponent - 1`` to int16 (all ones), which this reproduces.
    """
    x = np.asarray(x, dtype=np.int64)
    if not 0 <= exponent <= 31:
        raise ValueError(f"exponent must lie in [0, 31], not {exponent}")
    mask = int(np.int64((1 << exponent) - 1).astype(np.int16))
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)
