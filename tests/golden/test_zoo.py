"""The model zoo: structure as Keras defines it, synthetic weights, calibration, arguments."""

import math
from pathlib import Path

import numpy as np
import pytest

from mnaccel.golden import interpreter, zoo
from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Activation, Op


def structure(name, **kw):
    return zoo.build(name, calibrate=False, **kw)


def layer(graph, name):
    return next(lay for lay in graph.layers if lay.name == name)


def shape(graph, name):
    return graph.tensors[layer(graph, name).output].shape


def residual_adds(graph):
    """ADDs of two activations (not the hard-sigmoid's ADD of a constant)."""
    return [
        lay
        for lay in graph.layers
        if lay.op is Op.ADD and all(graph.tensors[n].data is None for n in lay.inputs)
    ]


# --- Keras channel rounding --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    # worked by hand: nearest multiple of 8, at least 8, plus 8 if that lost > 10 %
    [(184, 184), (200, 200), (18, 24), (30, 32), (11.2, 16), (4, 8), (1792, 1792), (36, 40)],
)
def test_make_divisible(value, expected):
    assert zoo.make_divisible(value) == expected


# --- structure ---------------------------------------------------------------------------


def test_mobilenet_v1_structure():
    g = structure("mobilenet_v1")
    assert g.input_tensor.shape == (1, 224, 224, 3)
    conv1 = layer(g, "conv1")
    assert (conv1.weights.shape, conv1.stride, shape(g, "conv1")) == (
        (32, 3, 3, 3),
        (2, 2),
        (1, 112, 112, 32),
    )
    dws = [lay for lay in g.layers if lay.op is Op.DEPTHWISE_CONV_2D]
    assert [lay.name for lay in dws] == [f"conv_dw_{i}" for i in range(1, 14)]
    strides = [lay.stride[0] for lay in dws]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert shape(g, "conv_pw_12") == (1, 7, 7, 1024)
    assert shape(g, "conv_pw_13") == (1, 7, 7, 1024)
    assert layer(g, "global_average_pooling2d").op is Op.MEAN
    assert shape(g, "global_average_pooling2d") == (1, 1, 1, 1024)
    assert layer(g, "conv_preds").weights.shape == (1000, 1, 1, 1024)
    assert g.tensors[g.outputs[0]].shape == (1, 1000)
    assert all(
        lay.activation is Activation.RELU6
        for lay in g.layers
        if lay.name.startswith(("conv1", "conv_dw", "conv_pw"))
    )
    assert not residual_adds(g)


def test_mobilenet_v1_width_and_resolution():
    g = structure("mobilenet_v1", alpha=0.75, resolution=160)
    assert shape(g, "conv1") == (1, 80, 80, 24)  # int(32 * 0.75)
    assert shape(g, "conv_pw_1") == (1, 80, 80, 48)
    assert shape(g, "conv_pw_13") == (1, 5, 5, 768)


def test_mobilenet_v2_structure():
    g = structure("mobilenet_v2")
    assert shape(g, "Conv1") == (1, 112, 112, 32)
    assert shape(g, "expanded_conv_project") == (1, 112, 112, 16)
    assert shape(g, "block_1_expand") == (1, 112, 112, 96)
    assert layer(g, "block_1_depthwise").stride == (2, 2)
    assert shape(g, "block_16_project") == (1, 7, 7, 320)
    assert shape(g, "Conv_1") == (1, 7, 7, 1280)
    assert [lay.name for lay in residual_adds(g)] == [
        f"block_{i}_add" for i in (2, 4, 5, 7, 8, 9, 11, 12, 14, 15)
    ]
    mean = layer(g, "global_average_pooling2d")
    assert mean.params["keepdims"] is False and shape(g, mean.name) == (1, 1280)
    fc = layer(g, "predictions")
    assert (fc.op, fc.weights.shape) == (Op.FULLY_CONNECTED, (1000, 1280))


@pytest.mark.parametrize(("alpha", "first", "last"), [(0.35, 16, 1280), (1.4, 48, 1792)])
def test_mobilenet_v2_last_conv_scales_only_up(alpha, first, last):
    g = structure("mobilenet_v2", alpha=alpha, resolution=96)
    assert shape(g, "Conv1")[3] == first
    assert shape(g, "Conv_1")[3] == last


def se_blocks(graph):
    return sorted({lay.name.split("/")[0] for lay in graph.layers if "squeeze_excite" in lay.name})


def test_mobilenet_v3_large_structure():
    g = structure("mobilenet_v3_large")
    assert shape(g, "Conv") == (1, 112, 112, 16)
    assert layer(g, "Conv/hard_swish").op is Op.HARD_SWISH
    assert len(residual_adds(g)) == 10
    assert se_blocks(g) == sorted(f"expanded_conv_{i}" for i in (3, 4, 5, 10, 11, 12, 13, 14))
    assert shape(g, "expanded_conv_6/expand") == (1, 28, 28, 240)
    assert shape(g, "expanded_conv_7/expand") == (1, 14, 14, 200)
    assert shape(g, "expanded_conv_8/expand") == (1, 14, 14, 184)
    assert layer(g, "expanded_conv_12/depthwise").weights.shape == (1, 5, 5, 672)
    assert shape(g, "expanded_conv_14/project") == (1, 7, 7, 160)
    assert shape(g, "Conv_1") == (1, 7, 7, 960)
    assert layer(g, "Conv_2").weights.shape == (1280, 1, 1, 960)
    assert layer(g, "Logits").weights.shape == (1000, 1, 1, 1280)
    assert g.tensors[g.outputs[0]].shape == (1, 1000)


def test_mobilenet_v3_squeeze_excite_block():
    g = structure("mobilenet_v3_large")
    p = "expanded_conv_3/"
    names = [lay.name for lay in g.layers if lay.name.startswith(p)]
    se = ("AvgPool", "Conv", "Conv_1", "hard_sigmoid", "Mul")
    assert names == [p + "expand", p + "depthwise"] + [p + "squeeze_excite/" + n for n in se] + [
        p + "project"
    ]
    pool = layer(g, p + "squeeze_excite/AvgPool")
    assert (pool.op, pool.params["keepdims"]) == (Op.MEAN, True)
    assert pool.inputs == (p + "depthwise",)
    squeeze, excite = layer(g, p + "squeeze_excite/Conv"), layer(g, p + "squeeze_excite/Conv_1")
    assert (squeeze.weights.shape, squeeze.activation) == ((24, 1, 1, 72), Activation.RELU)
    # relu6(x + 3): the "+ 3" lives in the bias, the ReLU6 is fused
    assert (excite.weights.shape, excite.activation) == ((72, 1, 1, 24), Activation.RELU6)
    sixth = layer(g, p + "squeeze_excite/hard_sigmoid")
    const = g.tensors[sixth.inputs[1]]
    assert (sixth.op, sixth.inputs[0]) == (Op.MUL, excite.output)
    real = (int(const.data) - const.zero_point) * const.scale
    assert math.isclose(real, 1 / 6, rel_tol=1e-6), real
    gate = layer(g, p + "squeeze_excite/Mul")
    assert gate.inputs == (p + "depthwise", sixth.output)
    assert shape(g, gate.name) == (1, 28, 28, 72)


def test_squeeze_excite_bias_holds_the_plus_three():
    g = zoo.build("mobilenet_v3_small", alpha=0.5, resolution=64)
    excite = layer(g, "expanded_conv_4/squeeze_excite/Conv_1")
    s_in = g.tensors[excite.inputs[0]].scale
    real = excite.bias * (s_in * excite.weight_scales.astype(np.float64))
    # 3 plus a random N(0, 0.3) per channel (120 channels)
    assert 2.8 < real.mean() < 3.2, real.mean()


FIXTURES = Path(__file__).resolve().parents[1] / "data" / "tflite"


@pytest.mark.parametrize(
    ("name", "alpha", "fixture"),
    [
        ("mobilenet_v1", 0.25, "mobilenet_v1_a025_64"),
        ("mobilenet_v2", 0.35, "mobilenet_v2_a035_64"),
        ("mobilenet_v3_small", 0.5, "mobilenet_v3_small_a050_64"),
        ("mobilenet_v3_large", 0.25, "mobilenet_v3_large_a025_64"),
    ],
)
def test_graph_is_what_the_converter_makes_of_keras(name, alpha, fixture):
    """Layer for layer as in the int8 .tflite files converted from the Keras applications
    (``scripts/make_tflite_fixtures.py``, 10 classes): operator, fused activation, stride,
    weight and output shapes, constants, and which layer feeds which."""
    from mnaccel.golden.tflite_import import load_tflite

    ours = structure(name, alpha=alpha, resolution=64, classes=10)
    theirs = load_tflite(FIXTURES / f"{fixture}.tflite")
    layers = theirs.layers
    if layers[0].op is Op.MUL:  # V3's Rescaling layer, which the zoo leaves out
        assert [lay.op for lay in layers[:2]] == [Op.MUL, Op.ADD]
        layers = layers[2:]

    def signature(graph, lays, start):
        index = {lay.output: i for i, lay in enumerate(lays)}
        index[start] = "input"
        rows = []
        for lay in lays:
            ins = tuple(
                "const" if graph.tensors[n].data is not None else index[n] for n in lay.inputs
            )
            weights = None if lay.weights is None else lay.weights.shape
            stride = lay.stride if lay.op in (Op.CONV_2D, Op.DEPTHWISE_CONV_2D) else None
            rows.append(
                (lay.op, lay.activation, stride, weights, graph.tensors[lay.output].shape, ins)
            )
        return rows

    got = signature(ours, ours.layers, ours.input)
    want = signature(theirs, layers, layers[0].inputs[0])
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"layer {i} ({ours.layers[i].name}): zoo {g}, converter {w}"


def test_mobilenet_v3_small_structure():
    g = structure("mobilenet_v3_small")
    assert len(residual_adds(g)) == 6
    assert se_blocks(g) == sorted(["expanded_conv"] + [f"expanded_conv_{i}" for i in range(3, 11)])
    assert layer(g, "expanded_conv/depthwise").stride == (2, 2)
    assert layer(g, "expanded_conv/squeeze_excite/Conv").weights.shape == (8, 1, 1, 16)
    assert shape(g, "expanded_conv_1/expand") == (1, 56, 56, 72)
    assert shape(g, "expanded_conv_2/expand") == (1, 28, 28, 88)
    assert shape(g, "Conv_1") == (1, 7, 7, 576)
    assert layer(g, "Conv_2").weights.shape == (1024, 1, 1, 576)


def test_mobilenet_v3_first_conv_keeps_16_channels():
    g = structure("mobilenet_v3_small", alpha=0.5, resolution=96)
    assert shape(g, "Conv")[3] == 16
    assert shape(g, "expanded_conv_10/project")[3] == 48  # make_divisible(96 * 0.5)
    assert layer(g, "Conv_2").weights.shape[0] == 1024  # not scaled below alpha 1


@pytest.mark.parametrize("name", zoo.ZOO)
def test_weights_are_int8_per_channel_full_range(name):
    g = structure(name, alpha=0.5, resolution=64)
    for lay in g.layers:
        if lay.weights is None:
            continue
        axis = 3 if lay.op is Op.DEPTHWISE_CONV_2D else 0
        w = np.moveaxis(lay.weights, axis, 0).reshape(lay.weights.shape[axis], -1)
        peak = np.abs(w.astype(np.int16)).max(axis=1)
        assert lay.weights.dtype == np.int8 and np.all(peak == 127), lay.name
        assert lay.weight_scales.shape == (w.shape[0],) and lay.bias.shape == (w.shape[0],)


def test_weights_do_not_depend_on_resolution():
    a, b = structure("mobilenet_v2", resolution=64), structure("mobilenet_v2", resolution=128)
    for la, lb in zip(a.layers, b.layers, strict=True):
        if la.weights is not None:
            assert np.array_equal(la.weights, lb.weights), la.name


# --- calibrated models -------------------------------------------------------------------


def quantization(graph):
    return (
        [(lay.weights, lay.weight_scales, lay.bias) for lay in graph.layers],
        [(t.scale, t.zero_point) for t in graph.tensors.values()],
    )


def test_build_is_deterministic_in_the_seed():
    a = zoo.build("mobilenet_v3_small", alpha=0.5, resolution=64, seed=3)
    b = zoo.build("mobilenet_v3_small", alpha=0.5, resolution=64, seed=3)
    c = zoo.build("mobilenet_v3_small", alpha=0.5, resolution=64, seed=4)
    (wa, ta), (wb, tb), (wc, _) = quantization(a), quantization(b), quantization(c)
    assert ta == tb
    for la, lb, lay in zip(wa, wb, a.layers, strict=True):
        for x, y in zip(la, lb, strict=True):
            assert (x is None and y is None) or np.array_equal(x, y), lay.name
    assert not np.array_equal(wa[0][0], wc[0][0])
    x = zoo.random_input(a, 3)
    assert np.array_equal(x, zoo.random_input(b, 3))
    assert not np.array_equal(x, zoo.random_input(a, 4))


@pytest.mark.parametrize(
    ("name", "resolution"),
    [
        ("mobilenet_v1", 224),
        ("mobilenet_v2", 128),
        ("mobilenet_v3_small", 128),
        ("mobilenet_v3_large", 128),
    ],
)
def test_activations_are_not_saturated(name, resolution):
    """On a random input (not the calibration images), per layer output:

    - values at 127 (and, unless -128 is a ReLU's 0, at -128) are int8 saturation: at most
      2 % of the elements at either end for a feature map, at most 10 % for a pooled tensor
      (one value per channel: one image shifts all of them at once, so four calibration
      images bound it less tightly);
    - a ReLU output is not dead (under 90 % at -128, i.e. 0) and every feature map of a
      thousand elements or more uses at least 32 of the 256 levels.
    """
    g = zoo.build(name, resolution=resolution)
    outputs = interpreter.run(g, zoo.random_input(g, 11))
    for lay in g.layers:
        t = g.tensors[lay.output]
        y = outputs[lay.output]
        relu = lay.activation in (Activation.RELU, Activation.RELU6)
        if relu:
            assert t.zero_point == -128, lay.name
        high = np.count_nonzero(y == 127)
        low = 0 if t.zero_point == -128 else np.count_nonzero(y == -128)
        feature_map = y.size >= 1000 and y.size > t.shape[-1]
        limit = 0.02 * y.size if feature_map else max(1, 0.1 * y.size)
        assert high <= limit and low <= limit, (
            f"{name} {lay.name}: {high} elements at 127 and {low} at -128 of {y.size}"
        )
        if relu or t.zero_point == -128:
            assert np.count_nonzero(y == -128) < 0.9 * y.size, f"{name} {lay.name}: dead"
        if feature_map:
            assert np.unique(y).size >= 32, f"{name} {lay.name}: {np.unique(y).size} levels"


# --- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"name": "mobilenet_v4"}, "unknown model 'mobilenet_v4'"),
        ({"alpha": 0.0}, "alpha must be in"),
        ({"alpha": -1.0}, "not -1.0"),
        ({"alpha": 2.5}, "not 2.5"),
        ({"alpha": float("nan")}, "not nan"),
        ({"alpha": "1"}, "alpha must be a number"),
        ({"alpha": True}, "alpha must be a number"),
        ({"resolution": 31}, "not 31"),
        ({"resolution": 1056}, "not 1056"),
        ({"resolution": 100}, "multiple of 32"),
        ({"resolution": 224.0}, "must be an integer"),
        ({"name": "mobilenet_v1", "alpha": 0.01}, "too small for mobilenet_v1"),
    ],
)
def test_bad_arguments_are_user_errors(kw, message):
    kw = {"name": "mobilenet_v2", **kw}
    with pytest.raises(UserError, match=message):
        zoo.build(kw.pop("name"), calibrate=False, **kw)


def test_boundary_arguments_are_accepted():
    assert structure("mobilenet_v3_small", alpha=2.0, resolution=32).input_tensor.shape == (
        1,
        32,
        32,
        3,
    )
    assert structure("mobilenet_v1", resolution=1024).tensors["conv_pw_13"].shape == (
        1,
        32,
        32,
        1024,
    )
