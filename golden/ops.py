"""TFLite's int8 operators in NumPy, one function per operator.

Each function reproduces one TFLite kernel bit for bit (named in its docstring) and knows
nothing of the accelerator. Activations are NHWC int8 arrays; scales are float32 values
(Python floats are rounded to float32 first, as TFLite stores them); zero points are ints.

Two flavours of TFLite exist and differ by one in rare elements; ``kernel`` selects one
where they differ. ``"reference"`` (the default) is TFLite's reference kernels, LiteRT's
``OpResolverType.BUILTIN_REF``. ``"optimized"`` is the kernels LiteRT runs by default on
ARM and x86 CPUs, ``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (the XNNPACK
delegate, applied by plain ``BUILTIN``, requantizes in yet another way). They differ in
CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (the optimized kernels round a negative
tie of the final shift up, not away from zero; the reference FULLY_CONNECTED rescales in
double precision) and in MEAN (two different kernels).

The convolution accumulators are computed as float64 matrix products (im2col): every
product of an int8 weight and an input minus its zero point is below ``2**15`` in
magnitude and every partial sum of a MobileNet layer far below ``2**53``, so the float64
result is the exact integer sum whatever order the BLAS adds in.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mnaccel.golden import quant
from mnaccel.golden.graph import Activation, Padding

__all__ = [
    "pad",
    "optimized_ties_up",
    "add",
    "average_pool2d",
    "compute_padding",
    "conv2d",
    "conv2d_acc",
    "depthwise_conv2d",
    "depthwise_conv2d_acc",
    "fully_connected",
    "fully_connected_acc",
    "hard_swish",
    "hard_swish_params",
    "mean_hw",
    "mul",
    "relu",
    "relu6",
]

# Float64 sums of integers are exact below this bound.
_EXACT_FLOAT64 = 2**53


# --- helpers -------------------------------------------------------------------------------------


def _int8(name: str, x, ndim: int | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise ValueError(f"{name} must be an int8 array, not {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, not shape {x.shape}")
    return x


def _pair(value, name: str) -> tuple[int, int]:
    if np.ndim(value) == 0:
        value = (value, value)
    a, b = (int(v) for v in value)
    if a < 1 or b < 1:
        raise ValueError(f"{name} must be positive, not {value!r}")
    return a, b


def compute_padding(in_size: int, filter_size: int, stride: int, padding) -> tuple[int, int, int]:
    """Output size and padding of one spatial axis, as TFLite's ``ComputePaddingHeightWidth``.

    SAME: ``out = ceil(in / stride)``; VALID: ``out = ceil((in - filter + 1) / stride)``.
    The total padding ``max(0, (out - 1) * stride + filter - in)`` is split with the odd
    pixel after: ``before = total // 2``, ``after = total - before`` (VALID pads nothing).

    Returns
    -------
    out_size, pad_before, pad_after : int
    """
    padding = Padding(padding)
    if padding is Padding.SAME:
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size + stride - filter_size) // stride
    if out < 1:
        raise ValueError(
            f"a {filter_size}-tap {padding.value} window with stride {stride} does not fit "
            f"an input of size {in_size}"
        )
    total = max(0, (out - 1) * stride + filter_size - in_size)
    return out, total // 2, total - total // 2


def _padded(xs: np.ndarray, kernel, stride, padding):
    """Pad NHWC ``xs`` with zeros for a window; return it and the output size."""
    (kh, kw), (sh, sw) = kernel, stride
    oh, pt, pb = compute_padding(xs.shape[1], kh, sh, padding)
    ow, pl, pr = compute_padding(xs.shape[2], kw, sw, padding)
    xp = np.pad(xs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    return xp, oh, ow


def _taps(xp: np.ndarray, ky: int, kx: int, oh: int, ow: int, stride) -> np.ndarray:
    """The input pixels under tap (ky, kx) for every output position."""
    sh, sw = stride
    return xp[:, ky : ky + (oh - 1) * sh + 1 : sh, kx : kx + (ow - 1) * sw + 1 : sw, :]


def _exact_int(acc: np.ndarray, bound: int) -> np.ndarray:
    if bound >= _EXACT_FLOAT64:
        raise ValueError(f"accumulator bound {bound} is too large for exact float64 sums")
    return acc.astype(np.int64)


def _check_kernel(kernel: str) -> None:
    if kernel not in ("reference", "optimized"):
        raise ValueError(f"kernel must be 'reference' or 'optimized', not {kernel!r}")


def optimized_ties_up(channels: int, block: int) -> np.ndarray:
    """Per-channel tie rounding of an optimized kernel that vectorizes ``block`` channels.

    The optimized kernels requantize whole blocks of ``block`` channels with a vector
    rounding shift (ties up) and the ``channels % block`` left over one by one with
    ``RoundingDivideByPOT`` (ties away from zero). Returns a bool array, True for "up".
    """
    return np.arange(channels) < channels - channels % block


def _requantize_conv(
    acc,
    bias,
    input_scale,
    weight_scales,
    output_scale,
    output_zp,
    activation,
    kernel,
    scalar_block: int | None = None,
):
    _check_kernel(kernel)
    multipliers, shifts = quant.conv_multipliers(input_scale, weight_scales, output_scale)
    channels = acc.shape[-1]
    if multipliers.shape[0] not in (1, channels):
        raise ValueError(f"need 1 or {channels} weight scales, not {multipliers.shape[0]}")
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (channels,):
            raise ValueError(f"bias must have shape ({channels},), not {bias.shape}")
    lo, hi = quant.activation_range(activation, output_scale, output_zp)
    if kernel == "reference":
        rounding = "away"
    elif scalar_block is None:
        rounding = "up"
    else:
        rounding = optimized_ties_up(channels, scalar_block)
    return quant.requantize(acc, bias, multipliers, shifts, output_zp, lo, hi, rounding)


# --- convolutions ---------------------------------------------------------------------------


def conv2d_acc(x, w, *, input_zp: int, stride=1, padding=Padding.SAME) -> np.ndarray:
    """Accumulators of TFLite's int8 CONV_2D (``reference_integer_ops::ConvPerChannel``).

    ``acc[n, y, x, o] = sum over taps inside the image of w[o, ky, kx, i] * (x[...] -
    input_zp)``: taps in the padding are skipped by TFLite, which is the same as padding
    with the input zero point.

    Parameters
    ----------
    x : numpy.ndarray
        int8, ``(N, H, W, C_in)``.
    w : numpy.ndarray
        int8, ``(C_out, K_h, K_w, C_in)``.
    input_zp : int
    stride : int or (int, int)
    padding : Padding or str

    Returns
    -------
    numpy.ndarray
        int64, ``(N, H_out, W_out, C_out)``, each value in the int32 range.
    """
    x = _int8("input", x, 4)
    w = _int8("weights", w, 4)
    c_out, kh, kw, c_in = w.shape
    if x.shape[3] != c_in:
        raise ValueError(f"input has {x.shape[3]} channels but the weights expect {c_in}")
    stride = _pair(stride, "stride")
    xs = x.astype(np.float64) - float(input_zp)
    xp, oh, ow = _padded(xs, (kh, kw), stride, padding)
    n = x.shape[0]
    if (kh, kw, stride) == (1, 1, (1, 1)):
        cols = xp.reshape(-1, c_in)
    else:
        # (N, H', W', C, kh, kw) windows -> rows of (kh, kw, C) in the weights' order.
        win = sliding_window_view(xp, (kh, kw), axis=(1, 2))
        win = win[:, :: stride[0], :: stride[1]][:, :oh, :ow]
        cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * c_in)
    acc = cols @ w.reshape(c_out, -1).astype(np.float64).T
    return _exact_int(acc, kh * kw * c_in * 255 * 128).reshape(n, oh, ow, c_out)


def conv2d(
    x,
    w,
    bias,
    *,
    input_scale: float,
    input_zp: int,
    weight_scales,
    output_scale: float,
    output_zp: int,
    stride=1,
    padding=Padding.SAME,
    activation=Activation.NONE,
    kernel: str = "reference",
) -> np.ndarray:
    """TFLite's int8 CONV_2D with per-channel weights (``ConvPerChannel``).

    :func:`conv2d_acc`, plus the int32 bias, requantized with the multipliers of
    ``PopulateConvolutionQuantizationParams`` and clamped to the fused activation's range
    (see :func:`mnaccel.golden.quant.requantize`). ``kernel="reference"`` rounds a tie of
    the final shift away from zero as ``ConvPerChannel`` does; ``kernel="optimized"``
    rounds it up as the optimized (NEON, SSE4.1) kernels do. Returns int8 NHWC.
    """
    acc = conv2d_acc(x, w, input_zp=input_zp, stride=stride, padding=padding)
    return _requantize_conv(
        acc, bias, input_scale, weight_scales, output_scale, output_zp, activation, kernel
    )


def depthwise_conv2d_acc(x, w, *, input_zp: int, stride=1, padding=Padding.SAME) -> np.ndarray:
    """Accumulators of TFLite's int8 DEPTHWISE_CONV_2D (``DepthwisePerChannel``).

    Depth multiplier 1: ``acc[n, y, x, c] = sum over taps inside the image of
    w[0, ky, kx, c] * (x[..., c] - input_zp)``.

    Parameters
    ----------
    x : numpy.ndarray
        int8, ``(N, H, W, C)``.
    w : numpy.ndarray
        int8, ``(1, K_h, K_w, C)``.

    Returns
    -------
    numpy.ndarray
        int64, ``(N, H_out, W_out, C)``.
    """
    x = _int8("input", x, 4)
    w = _int8("weights", w, 4)
    one, kh, kw, c = w.shape
    if one != 1 or x.shape[3] != c:
        raise ValueError(
            f"depthwise weights of shape {w.shape} do not fit an input with {x.shape[3]} "
            f"channels (only depth multiplier 1 is supported)"
        )
    stride = _pair(stride, "stride")
    xs = x.astype(np.int64) - int(input_zp)
    xp, oh, ow = _padded(xs, (kh, kw), stride, padding)
    w64 = w.astype(np.int64)
    acc = np.zeros((x.shape[0], oh, ow, c), dtype=np.int64)
    # A loop over the K*K taps only; each step is a whole-tensor multiply-add.
    for ky in range(kh):
        for kx in range(kw):
            acc += _taps(xp, ky, kx, oh, ow, stride) * w64[0, ky, kx]
    return acc


def depthwise_conv2d(
    x,
    w,
    bias,
    *,
    input_scale: float,
    input_zp: int,
    weight_scales,
    output_scale: float,
    output_zp: int,
    stride=1,
    padding=Padding.SAME,
    activation=Activation.NONE,
    kernel: str = "reference",
) -> np.ndarray:
    """TFLite's int8 DEPTHWISE_CONV_2D, depth multiplier 1 (``DepthwisePerChannel``).

    :func:`depthwise_conv2d_acc` plus bias, requantized per channel as :func:`conv2d`
    (``kernel`` as there), except that the optimized kernel requantizes channels in
    vectors of 8 and the last ``C % 8`` channels one by one, rounding ties away from zero
    (measured against LiteRT on x86-64: every tie in the leftover channels rounded away,
    every other one up).
    """
    acc = depthwise_conv2d_acc(x, w, input_zp=input_zp, stride=stride, padding=padding)
    return _requantize_conv(
        acc,
        bias,
        input_scale,
        weight_scales,
        output_scale,
        output_zp,
        activation,
        kernel,
        scalar_block=8,
    )


def fully_connected_acc(x, w, *, input_zp: int) -> np.ndarray:
    """Accumulators of TFLite's int8 FULLY_CONNECTED: ``sum_i w[o, i] * (x[b, i] - zp)``.

    ``x`` is flattened to ``(-1, C_in)`` as TFLite does; ``w`` is ``(C_out, C_in)``. Returns
    int64 ``(B, C_out)``.
    """
    x = _int8("input", x)
    w = _int8("weights", w, 2)
    c_out, c_in = w.shape
    if x.size % c_in:
        raise ValueError(f"input of shape {x.shape} cannot be flattened to rows of {c_in}")
    xs = x.reshape(-1, c_in).astype(np.float64) - float(input_zp)
    acc = xs @ w.astype(np.float64).T
    return _exact_int(acc, c_in * 255 * 128)


def fully_connected(
    x,
    w,
    bias,
    *,
    input_scale: float,
    input_zp: int,
    weight_scales,
    output_scale: float,
    output_zp: int,
    activation=Activation.NONE,
    kernel: str = "reference",
) -> np.ndarray:
    """TFLite's int8 FULLY_CONNECTED, per-tensor or per-channel symmetric weights.

    ``kernel="reference"`` reproduces ``reference_integer_ops::FullyConnected`` and
    ``FullyConnectedPerChannel`` as LiteRT's reference resolver calls them: the int32
    accumulator plus bias is rescaled in double precision, ``round(double(acc) *
    (double(s_in) * double(s_w[c]) / double(s_out)))`` with ties away from zero.
    ``kernel="optimized"`` reproduces the optimized kernel's fixed-point output stage,
    :func:`mnaccel.golden.quant.requantize` with ``rounding="up"``. Returns int8
    ``(B, C_out)``.
    """
    acc = fully_connected_acc(x, w, input_zp=input_zp)
    if kernel != "reference":
        return _requantize_conv(
            acc, bias, input_scale, weight_scales, output_scale, output_zp, activation, kernel
        )
    s_w = np.atleast_1d(np.asarray(weight_scales, dtype=np.float32)).astype(np.float64)
    if s_w.shape[0] not in (1, acc.shape[-1]):
        raise ValueError(f"need 1 or {acc.shape[-1]} weight scales, not {s_w.shape[0]}")
    if bias is not None:
        acc = quant.wrap_int32(acc + np.asarray(bias, dtype=np.int64))
    scale = float(np.float32(input_scale)) * s_w / float(np.float32(output_scale))
    scaled = acc.astype(np.float64) * scale
    # C's round(): half away from zero.
    rounded = np.copysign(np.floor(np.abs(scaled) + 0.5), scaled)
    lo, hi = quant.activation_range(activation, output_scale, output_zp)
    return np.clip(rounded + int(output_zp), lo, hi).astype(np.int8)


# --- pooling -----------------------------------------------------------------------------------


def mean_hw(
    x,
    *,
    input_scale: float,
    input_zp: int,
    output_scale: float,
    output_zp: int,
    kernel: str = "reference",
) -> np.ndarray:
    """TFLite's int8 MEAN over axes (1, 2) with ``keep_dims``.

    ``kernel="reference"`` (the default, like every other operator here) reproduces
    ``reference_ops::QuantizedMeanOrSum``: ``M, shift = QuantizeMultiplier(s_in / s_out)``
    in double, then the division by ``n = H * W`` is folded into the multiplier::

        k = min(floor(log2(n)), 32, 31 + shift)
        M' = (M << k) // n;  shift' = shift - k
        y = clamp(MultiplyByQuantizedMultiplier(sum(x) - zp_in * n, M', shift') + zp_out)

    ``kernel="optimized"`` reproduces ``optimized_integer_ops::Mean``, which LiteRT's
    builtin (non-reference) resolver runs for this case: it sums the raw values and
    prepares everything in float32::

        bias = zp_out - int(trunc(zp_in * s_in / s_out +/- 0.5f))
        M, shift = QuantizeMultiplier(s_in / (float(n) * s_out))
        y = clamp(MultiplyByQuantizedMultiplier(sum(x), M, shift) + bias)

    and runs whole blocks of 16 channels through its NEON path (taken on x86 with SSE4.1
    too), whose last shift rounds ties up
    (``rounding="up"`` in :func:`~mnaccel.golden.quant.multiply_by_quantized_multiplier`);
    the remaining
    ``C % 16`` channels take the scalar path. That assumes one CPU thread, LiteRT's
    default.

    Returns int8 ``(N, 1, 1, C)``.
    """
    x = _int8("input", x, 4)
    n = x.shape[1] * x.shape[2]
    acc = x.astype(np.int64).sum(axis=(1, 2), keepdims=True)
    if kernel == "reference":
        multiplier, shift = quant.quantize_multiplier(
            float(np.float32(input_scale)) / float(np.float32(output_scale))
        )
        k = min(n.bit_length() - 1, 32, 31 + shift)
        multiplier, shift = (multiplier << k) // n, shift - k
        out = quant.multiply_by_quantized_multiplier(acc - int(input_zp) * n, multiplier, shift)
        out += int(output_zp)
    elif kernel == "optimized":
        s_in, s_out = np.float32(input_scale), np.float32(output_scale)
        temp = np.float32(input_zp) * s_in / s_out
        temp = temp + np.float32(0.5) if temp > 0 else temp - np.float32(0.5)
        bias = int(output_zp) - int(np.trunc(temp))
        multiplier, shift = quant.quantize_multiplier(float(s_in / (np.float32(n) * s_out)))
        ties_up = optimized_ties_up(x.shape[3], 16)
        out = quant.multiply_by_quantized_multiplier(acc, multiplier, shift, ties_up) + bias
    else:
        raise ValueError(f"kernel must be 'reference' or 'optimized', not {kernel!r}")
    return np.clip(out, quant.INT8_MIN, quant.INT8_MAX).astype(np.int8)


def pad(x, paddings, *, zero_point: int) -> np.ndarray:
    """TFLite's int8 PAD over H and W: the border is filled with the zero point.

    ``paddings`` is ``((top, bottom), (left, right))``; input and output share their
    quantization, so the data are copied unchanged (``reference_ops::Pad`` with
    ``pad_value = output zero point``).
    """
    x = _int8("input", x, 4)
    (top, bottom), (left, right) = paddings
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"paddings must not be negative, not {paddings!r}")
    return np.pad(
        x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=np.int8(zero_point)
    )


def average_pool2d(
    x,
    *,
    filter_size,
    stride=1,
    padding=Padding.VALID,
    scale: float,
    zero_point: int,
    activation=Activation.NONE,
) -> np.ndarray:
    """TFLite's int8 AVERAGE_POOL_2D (``reference_integer_ops::AveragePool``).

    Input and output share one scale and zero point (TFLite requires it). Each output is
    the sum of the raw int8 values under the window's taps inside the image, divided by the
    number of those taps with rounding half away from zero, then clamped to the fused
    activation's range.
    """
    x = _int8("input", x, 4)
    fh, fw = _pair(filter_size, "filter size")
    stride = _pair(stride, "stride")
    xp, oh, ow = _padded(x.astype(np.int64), (fh, fw), stride, padding)
    # The taps inside the image, counted the same way as the sum.
    ones, _, _ = _padded(
        np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int64), (fh, fw), stride, padding
    )
    acc = np.zeros((x.shape[0], oh, ow, x.shape[3]), dtype=np.int64)
    count = np.zeros((1, oh, ow, 1), dtype=np.int64)
    for ky in range(fh):
        for kx in range(fw):
            acc += _taps(xp, ky, kx, oh, ow, stride)
            count += _taps(ones, ky, kx, oh, ow, stride)
    half = count // 2
    # C's truncating division of a rounded-away-from-zero numerator.
    num = np.where(acc > 0, acc + half, acc - half)
    avg = np.where(num >= 0, num // count, -((-num) // count))
    lo, hi = quant.activation_range(activation, scale, zero_point)
    return np.clip(avg, lo, hi).astype(np.int8)


# --- elementwise -------------------------------------------------------------------------------


def add(
    x1,
    x2,
    *,
    input1_scale: float,
    input1_zp: int,
    input2_scale: float,
    input2_zp: int,
    output_scale: float,
    output_zp: int,
    activation=Activation.NONE,
) -> np.ndarray:
    """TFLite's int8 ADD (``reference_integer_ops::AddElementwise``, prepared in ``add.cc``).

    Both inputs, minus their zero points, are shifted left by 20 and rescaled to twice the
    larger input scale with ``QuantizeMultiplierSmallerThanOneExp`` multipliers; the int32
    sum is rescaled to the output scale, offset and clamped. Broadcasts like NumPy.
    """
    x1 = _int8("input 1", x1)
    x2 = _int8("input 2", x2)
    s1, s2 = np.float32(input1_scale), np.float32(input2_scale)
    left_shift = 20
    twice_max = 2.0 * float(max(s1, s2))
    m1, sh1 = quant.quantize_multiplier_smaller_than_one_exp(float(s1) / twice_max)
    m2, sh2 = quant.quantize_multiplier_smaller_than_one_exp(float(s2) / twice_max)
    mo, sho = quant.quantize_multiplier_smaller_than_one_exp(
        twice_max / (float(1 << left_shift) * float(np.float32(output_scale)))
    )
    a = (x1.astype(np.int64) - int(input1_zp)) << left_shift
    b = (x2.astype(np.int64) - int(input2_zp)) << left_shift
    a = quant.multiply_by_quantized_multiplier_smaller_than_one_exp(a, m1, sh1)
    b = quant.multiply_by_quantized_multiplier_smaller_than_one_exp(b, m2, sh2)
    out = quant.multiply_by_quantized_multiplier_smaller_than_one_exp(a + b, mo, sho)
    lo, hi = quant.activation_range(activation, output_scale, output_zp)
    return np.clip(out + int(output_zp), lo, hi).astype(np.int8)


def mul(
    x1,
    x2,
    *,
    input1_scale: float,
    input1_zp: int,
    input2_scale: float,
    input2_zp: int,
    output_scale: float,
    output_zp: int,
    activation=Activation.NONE,
) -> np.ndarray:
    """TFLite's int8 MUL (``reference_integer_ops::MulElementwise``, prepared in ``mul.cc``).

    ``clamp(zp_out + MultiplyByQuantizedMultiplier((x1 - zp1) * (x2 - zp2), M, shift))``
    where ``M, shift`` come from ``s1 * s2 / s_out`` computed in float32 (as ``mul.cc``
    does) and widened to double. Broadcasts like NumPy, e.g. ``(1, H, W, C) * (1, 1, 1, C)``.
    """
    x1 = _int8("input 1", x1)
    x2 = _int8("input 2", x2)
    real = np.float32(input1_scale) * np.float32(input2_scale) / np.float32(output_scale)
    multiplier, shift = quant.quantize_multiplier(float(real))
    prod = (x1.astype(np.int64) - int(input1_zp)) * (x2.astype(np.int64) - int(input2_zp))
    out = quant.multiply_by_quantized_multiplier(prod, multiplier, shift) + int(output_zp)
    lo, hi = quant.activation_range(activation, output_scale, output_zp)
    return np.clip(out, lo, hi).astype(np.int8)


def hard_swish_params(input_scale: float, output_scale: float) -> dict[str, int]:
    """The int16 fixed-point parameters of TFLite's ``HardSwishPrepare`` (activations.cc).

    All scale arithmetic is float32, as in TFLite: the input is seen on a "high-res" scale
    ``s_in / 128``; ``output_multiplier = hires / s_out`` and ``reluish_multiplier = hires
    / (3 / 32768)`` are each split by ``QuantizeMultiplier`` and rounded to Q15.

    Returns
    -------
    dict
        ``output_multiplier``, ``output_exponent``, ``reluish_multiplier``,
        ``reluish_exponent`` (int16 multipliers and their power-of-two exponents).
    """
    hires = np.float32(1.0 / 128.0) * np.float32(input_scale)
    reluish_scale = np.float32(3.0) / np.float32(32768.0)
    out_m32, out_exp = quant.quantize_multiplier(float(hires / np.float32(output_scale)))
    if out_exp > 0:
        raise ValueError(
            f"HARD_SWISH needs input_scale / output_scale <= 128, not "
            f"{float(input_scale) / float(output_scale)!r}"
        )
    relu_m32, relu_exp = quant.quantize_multiplier(float(hires / reluish_scale))
    return {
        "output_multiplier": quant.downscale_int32_to_int16_multiplier(out_m32),
        "output_exponent": out_exp,
        "reluish_multiplier": quant.downscale_int32_to_int16_multiplier(relu_m32),
        "reluish_exponent": relu_exp,
    }


def hard_swish(
    x, *, input_scale: float, input_zp: int, output_scale: float, output_zp: int
) -> np.ndarray:
    """TFLite's int8 HARD_SWISH (``reference_ops::HardSwish``), ``x * relu6(x + 3) / 6``.

    int16 fixed point throughout: the input minus its zero point, times 128, is multiplied
    by the output multiplier (rounding high multiply) and, separately, mapped to a
    "relu-ish" value in [-1, 1] (3.0 represented by 32768) with saturating shifts, then to
    [0, 1]; the product of the two (non-rounding high multiply) is shifted to the output
    scale, offset and clamped to int8.
    """
    x = _int8("input", x)
    p = hard_swish_params(input_scale, output_scale)
    hires = (x.astype(np.int64) - int(input_zp)) * 128
    preshift_out = quant.saturating_rounding_doubling_high_mul_int16(hires, p["output_multiplier"])
    reluish = hires
    exp = p["reluish_exponent"]
    if exp > 0:
        # Saturation in this first shift is overwritten by the last one-bit shift below.
        reluish = quant.saturating_left_shift_int16(reluish, exp - 1)
    reluish = quant.saturating_rounding_doubling_high_mul_int16(reluish, p["reluish_multiplier"])
    if exp > 0:
        reluish = quant.saturating_left_shift_int16(reluish, 1)
    if exp < 0:
        reluish = quant.rounding_divide_by_pot_int16(reluish, -exp)
    reluish = (reluish + (1 << 15)) >> 1
    out = quant.saturating_doubling_high_mul_int16(reluish, preshift_out)
    out = quant.rounding_divide_by_pot_int16(out, -p["output_exponent"]) + int(output_zp)
    return np.clip(out, quant.INT8_MIN, quant.INT8_MAX).astype(np.int8)


def _relu_x(x, input_scale, input_zp, output_scale, output_zp, activation) -> np.ndarray:
    x = _int8("input", x)
    # activations.cc divides the float32 scales in float32 before widening to double.
    real = np.float32(input_scale) / np.float32(output_scale)
    multiplier, shift = quant.quantize_multiplier(float(real))
    out = quant.multiply_by_quantized_multiplier(
        x.astype(np.int64) - int(input_zp), multiplier, shift
    ) + int(output_zp)
    lo, hi = quant.activation_range(activation, output_scale, output_zp)
    return np.clip(out, lo, hi).astype(np.int8)


def relu(x, *, input_scale: float, input_zp: int, output_scale: float, output_zp: int):
    """TFLite's standalone int8 RELU (``QuantizedReluX`` with ``reference_ops::ReluX``).

    ``clamp(zp_out + MultiplyByQuantizedMultiplier(x - zp_in, M, shift), max(-128, zp_out),
    127)`` with ``M, shift`` from ``s_in / s_out`` divided in float32.
    """
    return _relu_x(x, input_scale, input_zp, output_scale, output_zp, Activation.RELU)


def relu6(x, *, input_scale: float, input_zp: int, output_scale: float, output_zp: int):
    """TFLite's standalone int8 RELU6: as :func:`relu`, capped at ``zp_out + round(6 / s_out)``."""
    return _relu_x(x, input_scale, input_zp, output_scale, output_zp, Activation.RELU6)
