"""Tests of mnaccel.golden.ops.

Three kinds of check: hand-worked cases; independent arithmetic (int64 loop convolutions,
scalar re-derivations of each kernel from the quant primitives); and the LiteRT
interpreter itself, running one-operator .tflite models built here with the flatbuffer
schema: ops' ``kernel="reference"`` against LiteRT's reference op resolver and
``kernel="optimized"`` against its builtin kernels without the XNNPACK delegate (which
requantizes in its own way).
"""

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from mnaccel.golden import ops, quant
from mnaccel.golden.graph import Activation, Padding

RESOLVER = OpResolverType.BUILTIN_REF
# Each golden kernel flavour and the LiteRT op resolver that runs it.
KERNELS = [
    ("reference", OpResolverType.BUILTIN_REF),
    ("optimized", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
]


def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Whole-tensor bit-exact comparison naming the first differing element."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    diff = np.argwhere(got != want)
    if diff.size:
        idx = tuple(diff[0])
        raise AssertionError(
            f"{what}: {len(diff)} of {got.size} elements differ; first at {idx}: "
            f"got {got[idx]}, want {want[idx]}"
        )


def rand_i8(rng, shape, lo=-128, hi=127):
    return rng.integers(lo, hi, shape, endpoint=True).astype(np.int8)


# --- independent references --------------------------------------------------------------


def loop_conv_acc(x, w, zp, stride, pad_before, out_hw, depthwise=False):
    """Textbook int64 convolution, skipping taps outside the image as TFLite does."""
    n, h, wd, _ = x.shape
    oh, ow = out_hw
    kh, kw = w.shape[1:3]
    c_out = w.shape[3] if depthwise else w.shape[0]
    acc = np.zeros((n, oh, ow, c_out), dtype=np.int64)
    xs = x.astype(np.int64) - zp
    ws = w.astype(np.int64)
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(kh):
                for kx in range(kw):
                    iy = oy * stride - pad_before[0] + ky
                    ix = ox * stride - pad_before[1] + kx
                    if not (0 <= iy < h and 0 <= ix < wd):
                        continue
                    if depthwise:
                        acc[:, oy, ox, :] += xs[:, iy, ix, :] * ws[0, ky, kx, :]
                    else:
                        acc[:, oy, ox, :] += xs[:, iy, ix, :] @ ws[:, ky, kx, :].T
    return acc


# --- padding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((224, 3, 2, "SAME"), (112, 0, 1)),  # total 1: the odd pixel goes after
        ((112, 3, 1, "SAME"), (112, 1, 1)),
        ((7, 5, 1, "SAME"), (7, 2, 2)),
        ((8, 5, 2, "SAME"), (4, 1, 2)),  # total 3
        ((7, 5, 2, "SAME"), (4, 2, 2)),  # total 4
        ((9, 3, 2, "SAME"), (5, 1, 1)),
        ((10, 1, 2, "SAME"), (5, 0, 0)),
        ((7, 7, 1, "VALID"), (1, 0, 0)),
        ((12, 3, 2, "VALID"), (5, 0, 0)),
        ((11, 5, 2, "VALID"), (4, 0, 0)),
    ],
)
def test_compute_padding(args, expected):
    assert ops.compute_padding(*args) == expected


def test_compute_padding_rejects_window_larger_than_input():
    with pytest.raises(ValueError, match="does not fit"):
        ops.compute_padding(3, 5, 1, Padding.VALID)


# --- convolution accumulators against loops ------------------------------------------------

CONV_CASES = [
    # (H, W, K, stride, padding)
    (7, 7, 3, 1, "SAME"),
    (8, 8, 3, 2, "SAME"),  # even size, stride 2: total padding odd
    (7, 9, 3, 2, "SAME"),  # odd size, stride 2: total padding even
    (8, 7, 5, 2, "SAME"),
    (9, 9, 5, 1, "SAME"),
    (9, 8, 3, 2, "VALID"),
    (9, 9, 5, 1, "VALID"),
    (5, 6, 1, 1, "SAME"),
    (6, 6, 1, 2, "VALID"),
]


@pytest.mark.parametrize(("h", "w", "k", "stride", "padding"), CONV_CASES)
def test_conv2d_acc_matches_loops(h, w, k, stride, padding):
    rng = np.random.default_rng(h * 100 + w * 10 + k + stride)
    x = rand_i8(rng, (2, h, w, 5))
    wt = rand_i8(rng, (4, k, k, 5), -127, 127)
    wt[0] = 127  # per-channel extremes
    wt[1] = -127
    zp = int(rng.integers(-128, 128))
    got = ops.conv2d_acc(x, wt, input_zp=zp, stride=stride, padding=padding)
    oh, pt, _ = ops.compute_padding(h, k, stride, padding)
    ow, pl, _ = ops.compute_padding(w, k, stride, padding)
    want = loop_conv_acc(x, wt, zp, stride, (pt, pl), (oh, ow))
    assert_same(got, want, f"conv {k}x{k}/{stride} {padding} on {h}x{w}")


@pytest.mark.parametrize(("h", "w", "k", "stride", "padding"), CONV_CASES)
def test_depthwise_conv2d_acc_matches_loops(h, w, k, stride, padding):
    rng = np.random.default_rng(h * 100 + w * 10 + k + stride + 7)
    x = rand_i8(rng, (2, h, w, 6))
    wt = rand_i8(rng, (1, k, k, 6), -127, 127)
    wt[..., 0] = 127
    wt[..., 1] = -127
    zp = int(rng.integers(-128, 128))
    got = ops.depthwise_conv2d_acc(x, wt, input_zp=zp, stride=stride, padding=padding)
    oh, pt, _ = ops.compute_padding(h, k, stride, padding)
    ow, pl, _ = ops.compute_padding(w, k, stride, padding)
    want = loop_conv_acc(x, wt, zp, stride, (pt, pl), (oh, ow), depthwise=True)
    assert_same(got, want, f"depthwise {k}x{k}/{stride} {padding} on {h}x{w}")


def test_padding_takes_the_input_zero_point():
    # An input equal to its zero point everywhere contributes nothing, padding included.
    x = np.full((1, 5, 5, 3), -17, dtype=np.int8)
    w = np.full((2, 3, 3, 3), 127, dtype=np.int8)
    assert not ops.conv2d_acc(x, w, input_zp=-17, stride=2, padding="SAME").any()
    dw = np.full((1, 5, 5, 3), -127, dtype=np.int8)
    assert not ops.depthwise_conv2d_acc(x, dw, input_zp=-17, padding="SAME").any()


def test_conv2d_acc_hand_worked_corner():
    # 3x3 SAME stride 1 on a 2x2 image: the top-left output sees the 2x2 image only.
    x = np.array([1, 2, 3, 4], dtype=np.int8).reshape(1, 2, 2, 1)
    w = np.arange(1, 10, dtype=np.int8).reshape(1, 3, 3, 1)
    acc = ops.conv2d_acc(x, w, input_zp=1, padding="SAME")
    # Inputs minus zp: [[0, 1], [2, 3]]; top-left uses w[1:, 1:] = [[5, 6], [8, 9]].
    assert acc[0, 0, 0, 0] == 0 * 5 + 1 * 6 + 2 * 8 + 3 * 9
    # Bottom-right uses w[:2, :2] = [[1, 2], [4, 5]].
    assert acc[0, 1, 1, 0] == 0 * 1 + 1 * 2 + 2 * 4 + 3 * 5


def test_fully_connected_acc_matches_int64():
    rng = np.random.default_rng(11)
    x = rand_i8(rng, (3, 1, 1, 40))
    w = rand_i8(rng, (7, 40), -127, 127)
    got = ops.fully_connected_acc(x, w, input_zp=-128)
    want = (x.reshape(3, 40).astype(np.int64) + 128) @ w.astype(np.int64).T
    assert_same(got, want, "fully connected accumulators")


def test_conv_rejects_wrong_dtype_and_channels():
    x = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="int8"):
        ops.conv2d_acc(x, np.zeros((2, 1, 1, 3), np.int8), input_zp=0)
    with pytest.raises(ValueError, match="channels"):
        ops.conv2d_acc(x.astype(np.int8), np.zeros((2, 1, 1, 4), np.int8), input_zp=0)


# --- requantizing operators against scalar re-derivations ---------------------------------------


def test_conv2d_requantizes_per_channel():
    rng = np.random.default_rng(12)
    x = rand_i8(rng, (1, 6, 6, 4))
    w = rand_i8(rng, (5, 3, 3, 4), -127, 127)
    s_w = np.array([1e-4, 3e-3, 0.02, 0.5, 7e-6], dtype=np.float32)  # orders of magnitude
    bias = rng.integers(-3000, 3000, 5).astype(np.int32)
    kw = dict(input_scale=0.04, input_zp=-9, output_scale=0.07, output_zp=11, stride=2)
    got = ops.conv2d(x, w, bias, weight_scales=s_w, activation=Activation.RELU6, **kw)
    acc = ops.conv2d_acc(x, w, input_zp=-9, stride=2)
    lo, hi = quant.activation_range(Activation.RELU6, 0.07, 11)
    for c in range(5):
        real = float(np.float32(0.04)) * float(s_w[c]) / float(np.float32(0.07))
        m, s = quant.quantize_multiplier(real)
        want = quant.multiply_by_quantized_multiplier(acc[..., c] + int(bias[c]), m, s) + 11
        assert_same(got[..., c], np.clip(want, lo, hi).astype(np.int8), f"channel {c}")
    # The saturating channels really saturate, the tiny-scale one sits near the zero point.
    assert (got[..., 3] == lo).any() and (got[..., 3] == hi).any()


def test_mean_hw_hand_worked():
    # 2x2 mean of [10, 20, 30, 41] = 25.25 at equal scales and zero points: M = 0.5 and
    # a right shift of 1; the high multiply rounds 50.5 up to 51, the shift 25.5 to 26.
    x = np.array([10, 20, 30, 41], dtype=np.int8).reshape(1, 2, 2, 1)
    got = ops.mean_hw(x, input_scale=0.5, input_zp=0, output_scale=0.5, output_zp=0)
    assert got.shape == (1, 1, 1, 1) and got[0, 0, 0, 0] == 26
    # Halving the output scale doubles the value: 50.5 -> 51 (scalar channel path).
    got = ops.mean_hw(x, input_scale=0.5, input_zp=0, output_scale=0.25, output_zp=-3)
    assert got[0, 0, 0, 0] == 48


def test_mean_hw_negative_tie():
    # Sum -2 over 4 pixels is -0.5. The reference kernel rounds it away from zero to -1;
    # the optimized kernel's 16-channel NEON blocks round it up to 0, its scalar tail
    # (channel 16) away from zero to -1.
    x = np.zeros((1, 2, 2, 17), dtype=np.int8)
    x[0, 0, 0, :] = -2
    q = dict(input_scale=0.1, input_zp=0, output_scale=0.1, output_zp=0)
    assert ops.mean_hw(x, **q).ravel().tolist() == [-1] * 17
    got = ops.mean_hw(x, kernel="optimized", **q).ravel()
    assert got.tolist() == [0] * 16 + [-1]
    with pytest.raises(ValueError, match="kernel"):
        ops.mean_hw(x, kernel="fast", **q)


def test_average_pool2d_hand_worked():
    x = np.array([[1, 2, 3], [4, 5, 7], [7, 8, -9]], dtype=np.int8).reshape(1, 3, 3, 1)
    got = ops.average_pool2d(x, filter_size=2, stride=2, padding="SAME", scale=0.1, zero_point=0)[
        0, :, :, 0
    ]
    # Windows (SAME, total padding 1 after): [1,2,4,5] 3; [3,7] 5; [7,8] 7.5 -> 8; [-9] -9
    assert got.tolist() == [[3, 5], [8, -9]]
    # A negative tie rounds away from zero: (-1 + -2) / 2 = -1.5 -> -2.
    y = np.array([-1, -2], dtype=np.int8).reshape(1, 1, 2, 1)
    got = ops.average_pool2d(y, filter_size=(1, 2), padding="VALID", scale=1.0, zero_point=0)
    assert got.ravel().tolist() == [-2]


def test_add_matches_scalar_derivation():
    rng = np.random.default_rng(13)
    a = rand_i8(rng, (1, 4, 4, 8))
    b = rand_i8(rng, (1, 1, 4, 8))  # broadcast over H
    p = dict(input1_scale=0.05, input1_zp=-3, input2_scale=0.11, input2_zp=20)
    got = ops.add(a, b, output_scale=0.13, output_zp=-8, activation="RELU", **p)
    twice = 2 * float(np.float32(0.11))
    m1, s1 = quant.quantize_multiplier(float(np.float32(0.05)) / twice)
    m2, s2 = quant.quantize_multiplier(float(np.float32(0.11)) / twice)
    mo, so = quant.quantize_multiplier(twice / (2**20 * float(np.float32(0.13))))
    assert max(s1, s2, so) <= 0
    lo, hi = quant.activation_range(Activation.RELU, 0.13, -8)
    want = np.empty(got.shape, dtype=np.int8)
    for idx in np.ndindex(got.shape):
        va = (int(a[idx]) + 3) * 2**20
        vb = (int(b[(0, 0) + idx[2:]]) - 20) * 2**20
        ra = quant.rounding_divide_by_pot(quant.saturating_rounding_doubling_high_mul(va, m1), -s1)
        rb = quant.rounding_divide_by_pot(quant.saturating_rounding_doubling_high_mul(vb, m2), -s2)
        out = quant.rounding_divide_by_pot(
            quant.saturating_rounding_doubling_high_mul(int(ra) + int(rb), mo), -so
        )
        want[idx] = min(max(int(out) - 8, lo), hi)
    assert_same(got, want, "add")


def test_mul_hand_worked_broadcast():
    a = np.array([[10, -10], [3, 0]], dtype=np.int8).reshape(1, 2, 1, 2)
    b = np.array([5, -4], dtype=np.int8).reshape(1, 1, 1, 2)
    # scales 0.5 * 0.25 / 0.125 = 1, zero points 0: plain products, clamped.
    got = ops.mul(
        a,
        b,
        input1_scale=0.5,
        input1_zp=0,
        input2_scale=0.25,
        input2_zp=0,
        output_scale=0.125,
        output_zp=0,
    )
    assert got.reshape(2, 2).tolist() == [[50, 40], [15, 0]]
    got = ops.mul(
        a,
        b,
        input1_scale=0.5,
        input1_zp=0,
        input2_scale=0.25,
        input2_zp=0,
        output_scale=0.125,
        output_zp=100,
        activation="RELU6",
    )
    # 100 + 50 exceeds 127; RELU6's floor is the zero point 100.
    assert got.reshape(2, 2).tolist() == [[127, 127], [115, 100]]


def test_hard_swish_is_close_to_float_and_exact_at_zero():
    x = np.arange(-128, 128, dtype=np.int8)
    s_in, zp_in, s_out, zp_out = 0.05, -10, 0.03, -60
    got = ops.hard_swish(x, input_scale=s_in, input_zp=zp_in, output_scale=s_out, output_zp=zp_out)
    real = (x.astype(np.float64) - zp_in) * s_in
    ideal = real * np.clip(real + 3, 0, 6) / 6 / s_out + zp_out
    want = np.clip(np.round(ideal), -128, 127)
    assert np.abs(got - want).max() <= 1
    assert got[zp_in + 128] == zp_out


def test_hard_swish_params_follow_float32_arithmetic():
    p = ops.hard_swish_params(0.05, 0.03)
    hires = np.float32(1 / 128) * np.float32(0.05)
    m, e = quant.quantize_multiplier(float(hires / np.float32(0.03)))
    assert (p["output_multiplier"], p["output_exponent"]) == ((m + 2**15) >> 16, e)
    with pytest.raises(ValueError, match="HARD_SWISH"):
        ops.hard_swish_params(1.0, 0.001)


def test_relu6_standalone_requantizes():
    x = np.array([-128, -20, -19, 0, 50, 127], dtype=np.int8)
    # Same scale, zp -20 -> 10: shift by 30, clamp at [10, 10 + 6 / 0.05 = 130 -> 127].
    got = ops.relu6(x, input_scale=0.05, input_zp=-20, output_scale=0.05, output_zp=10)
    assert got.tolist() == [10, 10, 11, 30, 80, 127]
    got = ops.relu(x, input_scale=0.05, input_zp=-20, output_scale=0.1, output_zp=-128)
    # Halved: (x + 20) / 2 with ties rounded up (0.5 -> 1, 73.5 -> 74), minus 128.
    assert got.tolist() == [-128, -128, -127, -118, -93, -54]


# --- LiteRT as referee ------------------------------------------------------------------------

ACT = {"NONE": 0, "RELU": 1, "RELU6": 3}
PAD = {"SAME": 0, "VALID": 1}


def _tensor(name, shape, ttype, scale, zp, buffer, qdim=0):
    t = tfl.TensorT()
    t.name, t.shape, t.type, t.buffer = name, list(shape), ttype, buffer
    q = tfl.QuantizationParametersT()
    q.scale = [float(v) for v in np.atleast_1d(scale)]
    q.zeroPoint = [int(v) for v in np.atleast_1d(zp)]
    q.quantizedDimension = qdim
    t.quantization = q
    return t


def litert(op, options_type, options, inputs, out_shape, out_scale, out_zp, resolver=RESOLVER):
    """Run one TFLite operator; ``inputs`` are (data, scale, zp, is_const, qdim) tuples."""
    buffers, tensors, feeds = [tfl.BufferT()], [], []
    for data, scale, zp, const, qdim in inputs:
        ttype = tfl.TensorType.INT32 if data.dtype == np.int32 else tfl.TensorType.INT8
        buffer = 0
        if const:
            b = tfl.BufferT()
            b.data = np.frombuffer(data.tobytes(), dtype=np.uint8)
            buffers.append(b)
            buffer = len(buffers) - 1
        else:
            feeds.append((len(tensors), data))
        tensors.append(_tensor(f"t{len(tensors)}", data.shape, ttype, scale, zp, buffer, qdim))
    tensors.append(_tensor("out", out_shape, tfl.TensorType.INT8, out_scale, out_zp, 0))
    code = tfl.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = op, min(op, 127), 1
    operator = tfl.OperatorT()
    operator.opcodeIndex = 0
    operator.inputs = list(range(len(inputs)))
    operator.outputs = [len(inputs)]
    operator.builtinOptionsType, operator.builtinOptions = options_type, options
    graph = tfl.SubGraphT()
    graph.tensors, graph.operators = tensors, [operator]
    graph.inputs, graph.outputs = [i for i, _ in feeds], [len(inputs)]
    model = tfl.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    interp = Interpreter(
        model_content=bytes(builder.Output()), experimental_op_resolver_type=resolver
    )
    interp.allocate_tensors()
    for index, data in feeds:
        interp.set_tensor(index, data)
    interp.invoke()
    return interp.get_tensor(len(inputs))


def _conv_options(cls, padding, stride, act, **extra):
    opt = cls()
    opt.padding, opt.strideH, opt.strideW = PAD[padding], stride, stride
    opt.fusedActivationFunction = ACT[act]
    opt.dilationHFactor = opt.dilationWFactor = 1
    for key, value in extra.items():
        setattr(opt, key, value)
    return opt


@pytest.mark.parametrize(
    ("k", "stride", "padding", "act"),
    [
        (3, 2, "SAME", "RELU6"),
        (1, 1, "SAME", "NONE"),
        (5, 1, "SAME", "RELU"),
        (3, 2, "VALID", "RELU6"),
    ],
)
@pytest.mark.parametrize(("kernel", "resolver"), KERNELS)
def test_conv2d_matches_litert(k, stride, padding, act, kernel, resolver):
    rng = np.random.default_rng(20 + k + stride)
    x = rand_i8(rng, (1, 12, 11, 8))
    w = rand_i8(rng, (16, k, k, 8), -127, 127)
    s_w = np.float32(10 ** rng.uniform(-4, -1, 16))
    bias = rng.integers(-20000, 20000, 16).astype(np.int32)
    q = dict(input_scale=0.03, input_zp=-7, output_scale=0.05, output_zp=4)
    got = ops.conv2d(
        x,
        w,
        bias,
        weight_scales=s_w,
        stride=stride,
        padding=padding,
        activation=act,
        kernel=kernel,
        **q,
    )
    want = litert(
        tfl.BuiltinOperator.CONV_2D,
        tfl.BuiltinOptions.Conv2DOptions,
        _conv_options(tfl.Conv2DOptionsT, padding, stride, act),
        [
            (x, 0.03, -7, False, 0),
            (w, s_w, [0] * 16, True, 0),
            (bias, np.float32(0.03) * s_w, [0] * 16, True, 0),
        ],
        got.shape,
        0.05,
        4,
        resolver,
    )
    assert_same(got, want, f"CONV_2D {k}x{k}/{stride} {padding} {act} ({kernel}) vs LiteRT")


@pytest.mark.parametrize(
    ("k", "stride", "padding"), [(3, 1, "SAME"), (3, 2, "SAME"), (5, 2, "SAME"), (5, 1, "VALID")]
)
@pytest.mark.parametrize(("kernel", "resolver"), KERNELS)
def test_depthwise_conv2d_matches_litert(k, stride, padding, kernel, resolver):
    rng = np.random.default_rng(30 + k + stride)
    x = rand_i8(rng, (1, 10, 13, 16))
    w = rand_i8(rng, (1, k, k, 16), -127, 127)
    s_w = np.float32(10 ** rng.uniform(-4, -1, 16))
    bias = rng.integers(-20000, 20000, 16).astype(np.int32)
    q = dict(input_scale=0.02, input_zp=5, output_scale=0.04, output_zp=-100)
    got = ops.depthwise_conv2d(
        x,
        w,
        bias,
        weight_scales=s_w,
        stride=stride,
        padding=padding,
        activation="RELU6",
        kernel=kernel,
        **q,
    )
    want = litert(
        tfl.BuiltinOperator.DEPTHWISE_CONV_2D,
        tfl.BuiltinOptions.DepthwiseConv2DOptions,
        _conv_options(tfl.DepthwiseConv2DOptionsT, padding, stride, "RELU6", depthMultiplier=1),
        [
            (x, 0.02, 5, False, 0),
            (w, s_w, [0] * 16, True, 3),
            (bias, np.float32(0.02) * s_w, [0] * 16, True, 0),
        ],
        got.shape,
        0.04,
        -100,
        resolver,
    )
    assert_same(got, want, f"DEPTHWISE_CONV_2D {k}x{k}/{stride} {padding} ({kernel}) vs LiteRT")


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize(("kernel", "resolver"), KERNELS)
def test_fully_connected_matches_litert(per_channel, kernel, resolver):
    rng = np.random.default_rng(40 + per_channel)
    x = rand_i8(rng, (1, 96))
    w = rand_i8(rng, (24, 96), -127, 127)
    s_w = np.float32(10 ** rng.uniform(-3, -1, 24 if per_channel else 1))
    bias = rng.integers(-20000, 20000, 24).astype(np.int32)
    got = ops.fully_connected(
        x,
        w,
        bias,
        input_scale=0.02,
        input_zp=-3,
        weight_scales=s_w,
        output_scale=0.1,
        output_zp=7,
        kernel=kernel,
    )
    want = litert(
        tfl.BuiltinOperator.FULLY_CONNECTED,
        tfl.BuiltinOptions.FullyConnectedOptions,
        tfl.FullyConnectedOptionsT(),
        [
            (x, 0.02, -3, False, 0),
            (w, s_w, [0] * len(s_w), True, 0),
            (bias, np.float32(0.02) * s_w, [0] * len(s_w), True, 0),
        ],
        (1, 24),
        0.1,
        7,
        resolver,
    )
    assert_same(got, want, f"FULLY_CONNECTED per_channel={per_channel} ({kernel}) vs LiteRT")


@pytest.mark.parametrize(
    ("kernel", "resolver"),
    [("reference", RESOLVER), ("optimized", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)],
)
@pytest.mark.parametrize(("hw", "channels"), [(7, 64), (1, 16), (5, 37), (3, 8), (14, 24)])
def test_mean_hw_matches_litert(hw, channels, kernel, resolver):
    rng = np.random.default_rng(50 + hw + channels)
    for _ in range(4):
        x = rand_i8(rng, (1, hw, hw, channels))
        q = dict(
            input_scale=float(rng.uniform(0.01, 0.2)),
            input_zp=int(rng.integers(-128, 128)),
            output_scale=float(rng.uniform(0.01, 0.2)),
            output_zp=int(rng.integers(-128, 128)),
        )
        got = ops.mean_hw(x, kernel=kernel, **q)
        opt = tfl.ReducerOptionsT()
        opt.keepDims = True
        want = litert(
            tfl.BuiltinOperator.MEAN,
            tfl.BuiltinOptions.ReducerOptions,
            opt,
            [
                (x, q["input_scale"], q["input_zp"], False, 0),
                (np.array([1, 2], np.int32), 1.0, 0, True, 0),
            ],
            got.shape,
            q["output_scale"],
            q["output_zp"],
            resolver,
        )
        assert_same(got, want, f"MEAN ({kernel}) {hw}x{hw}x{channels} {q} vs LiteRT")


@pytest.mark.parametrize(
    ("f", "stride", "padding"), [(3, 2, "SAME"), (7, 1, "VALID"), (2, 2, "SAME")]
)
def test_average_pool2d_matches_litert(f, stride, padding):
    rng = np.random.default_rng(60 + f)
    x = rand_i8(rng, (1, 9, 10, 8))
    got = ops.average_pool2d(
        x,
        filter_size=f,
        stride=stride,
        padding=padding,
        scale=0.05,
        zero_point=-3,
        activation="RELU6",
    )
    opt = _conv_options(tfl.Pool2DOptionsT, padding, stride, "RELU6")
    opt.filterHeight = opt.filterWidth = f
    want = litert(
        tfl.BuiltinOperator.AVERAGE_POOL_2D,
        tfl.BuiltinOptions.Pool2DOptions,
        opt,
        [(x, 0.05, -3, False, 0)],
        got.shape,
        0.05,
        -3,
    )
    assert_same(got, want, f"AVERAGE_POOL_2D {f}/{stride} {padding} vs LiteRT")


@pytest.mark.parametrize("act", ["NONE", "RELU", "RELU6"])
@pytest.mark.parametrize("shape2", [(1, 6, 6, 16), (1, 1, 1, 16)])
def test_add_matches_litert(act, shape2):
    rng = np.random.default_rng(70 + len(act))
    a, b = rand_i8(rng, (1, 6, 6, 16)), rand_i8(rng, shape2)
    q = dict(input1_scale=0.04, input1_zp=3, input2_scale=0.07, input2_zp=-9)
    got = ops.add(a, b, output_scale=0.09, output_zp=-5, activation=act, **q)
    opt = tfl.AddOptionsT()
    opt.fusedActivationFunction = ACT[act]
    want = litert(
        tfl.BuiltinOperator.ADD,
        tfl.BuiltinOptions.AddOptions,
        opt,
        [(a, 0.04, 3, False, 0), (b, 0.07, -9, False, 0)],
        a.shape,
        0.09,
        -5,
    )
    assert_same(got, want, f"ADD {act} {shape2} vs LiteRT")


@pytest.mark.parametrize("shape2", [(1, 6, 6, 16), (1, 1, 1, 16)])
def test_mul_matches_litert(shape2):
    rng = np.random.default_rng(80)
    a, b = rand_i8(rng, (1, 6, 6, 16)), rand_i8(rng, shape2)
    q = dict(input1_scale=0.04, input1_zp=3, input2_scale=0.0071, input2_zp=-128)
    got = ops.mul(a, b, output_scale=0.021, output_zp=-5, **q)
    want = litert(
        tfl.BuiltinOperator.MUL,
        tfl.BuiltinOptions.MulOptions,
        tfl.MulOptionsT(),
        [(a, 0.04, 3, False, 0), (b, 0.0071, -128, False, 0)],
        a.shape,
        0.021,
        -5,
    )
    assert_same(got, want, f"MUL {shape2} vs LiteRT")


@pytest.mark.parametrize(
    ("s_in", "s_out"), [(0.05, 0.03), (0.1, 0.02), (0.01, 0.04), (0.2, 0.25), (0.5, 0.004)]
)
def test_hard_swish_matches_litert(s_in, s_out):
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 4, 4, 16)
    for zp_in, zp_out in [(0, 0), (-128, -128), (17, -90)]:
        q = dict(input_scale=s_in, input_zp=zp_in, output_scale=s_out, output_zp=zp_out)
        got = ops.hard_swish(x, **q)
        want = litert(
            tfl.BuiltinOperator.HARD_SWISH,
            0,
            None,
            [(x, s_in, zp_in, False, 0)],
            x.shape,
            s_out,
            zp_out,
        )
        assert_same(got, want, f"HARD_SWISH {q} vs LiteRT")


@pytest.mark.parametrize("name", ["relu", "relu6"])
def test_relu_matches_litert(name):
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 4, 4, 16)
    code = {"relu": tfl.BuiltinOperator.RELU, "relu6": tfl.BuiltinOperator.RELU6}[name]
    for s_in, zp_in, s_out, zp_out in [(0.05, 9, 0.031, -100), (0.02, -128, 0.02, -128)]:
        got = getattr(ops, name)(
            x, input_scale=s_in, input_zp=zp_in, output_scale=s_out, output_zp=zp_out
        )
        want = litert(code, 0, None, [(x, s_in, zp_in, False, 0)], x.shape, s_out, zp_out)
        assert_same(got, want, f"{name} vs LiteRT")


@pytest.mark.parametrize("kind", ["conv1x1", "conv3x3", "depthwise3x3", "fully_connected"])
@pytest.mark.parametrize(("kernel", "resolver"), KERNELS)
def test_rounding_ties_match_litert(kind, kernel, resolver):
    # Small right shifts (scales 2**-9 .. 2**-4) and no activation make negative .5 ties of
    # the final shift common, where the two kernel flavours differ.
    rng = np.random.default_rng(90 + len(kind))
    c = 16
    s_w = np.float32(2.0 ** rng.uniform(-9, -4, c))
    bias = rng.integers(-2000, 2000, c).astype(np.int32)
    q = dict(
        input_scale=0.5,
        input_zp=3,
        weight_scales=s_w,
        output_scale=1.0,
        output_zp=0,
        kernel=kernel,
    )
    weight_qdim = 0
    if kind == "fully_connected":
        x, w = rand_i8(rng, (128, 32)), rand_i8(rng, (c, 32), -127, 127)
        got = ops.fully_connected(x, w, bias, **q)
        acc = ops.fully_connected_acc(x, w, input_zp=3)
        code, opt_type, opt = (
            tfl.BuiltinOperator.FULLY_CONNECTED,
            tfl.BuiltinOptions.FullyConnectedOptions,
            tfl.FullyConnectedOptionsT(),
        )
    elif kind == "depthwise3x3":
        x, w = rand_i8(rng, (1, 10, 10, c)), rand_i8(rng, (1, 3, 3, c), -127, 127)
        got = ops.depthwise_conv2d(x, w, bias, **q)
        acc = ops.depthwise_conv2d_acc(x, w, input_zp=3)
        code, opt_type = (
            tfl.BuiltinOperator.DEPTHWISE_CONV_2D,
            tfl.BuiltinOptions.DepthwiseConv2DOptions,
        )
        opt = _conv_options(tfl.DepthwiseConv2DOptionsT, "SAME", 1, "NONE", depthMultiplier=1)
        weight_qdim = 3
    else:
        k = 1 if kind == "conv1x1" else 3
        x, w = rand_i8(rng, (1, 10, 10, 8)), rand_i8(rng, (c, k, k, 8), -127, 127)
        got = ops.conv2d(x, w, bias, **q)
        acc = ops.conv2d_acc(x, w, input_zp=3)
        code, opt_type = tfl.BuiltinOperator.CONV_2D, tfl.BuiltinOptions.Conv2DOptions
        opt = _conv_options(tfl.Conv2DOptionsT, "SAME", 1, "NONE")
    # The case really exercises negative ties of the final right shift.
    m, s = quant.conv_multipliers(0.5, s_w, 1.0)
    high = quant.saturating_rounding_doubling_high_mul(acc + bias, m)
    right = -s
    ties = (high < 0) & ((high & ((1 << right) - 1)) == (1 << (right - 1)))
    assert ties.sum() >= 5
    want = litert(
        code,
        opt_type,
        opt,
        [
            (x, 0.5, 3, False, 0),
            (w, s_w, [0] * c, True, weight_qdim),
            (bias, np.float32(0.5) * s_w, [0] * c, True, 0),
        ],
        got.shape,
        1.0,
        0,
        resolver,
    )
    assert_same(got, want, f"{kind} ({kernel}) with rounding ties vs LiteRT")
    # The flavours really differ here, so each comparison above can fail.
    other = "optimized" if kernel == "reference" else "reference"
    if kind == "fully_connected":
        alt = ops.fully_connected(x, w, bias, **{**q, "kernel": other})
    elif kind == "depthwise3x3":
        alt = ops.depthwise_conv2d(x, w, bias, **{**q, "kernel": other})
    else:
        alt = ops.conv2d(x, w, bias, **{**q, "kernel": other})
    assert (alt != got).any()


def test_pad_fills_the_border_with_the_zero_point():
    x = np.arange(-4, 8, dtype=np.int8).reshape(1, 2, 3, 2)
    y = ops.pad(x, ((1, 0), (0, 2)), zero_point=-7)
    assert y.shape == (1, 3, 5, 2) and y.dtype == np.int8
    np.testing.assert_array_equal(y[:, 1:, :3], x)
    border = np.ones(y.shape, dtype=bool)
    border[:, 1:, :3] = False
    assert (y[border] == -7).all()
    with pytest.raises(ValueError, match="must not be negative"):
        ops.pad(x, ((0, -1), (0, 0)), zero_point=0)
