"""Tests of mnaccel.golden.interpreter on small hand-built graphs."""

import time

import numpy as np
import pytest

from mnaccel.golden import ops
from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Activation, Graph, Layer, Op, Padding, Tensor
from mnaccel.golden.interpreter import run, run_layer


def assert_same(got, want, what):
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape)
    diff = np.argwhere(got != want)
    if diff.size:
        idx = tuple(diff[0])
        raise AssertionError(f"{what}: first difference at {idx}: {got[idx]} != {want[idx]}")


def weights(rng, shape):
    return rng.integers(-127, 127, shape, endpoint=True).astype(np.int8)


def scales(rng, n):
    return np.float32(10 ** rng.uniform(-3, -1.5, n))


def tiny_mobilenet(rng) -> Graph:
    """conv 3x3/2 -> dw 3x3/1 -> pw 1x1 -> mean -> reshape -> fc."""
    t = {
        "in": Tensor("in", (1, 9, 8, 3), 0.02, -5),
        "c0": Tensor("c0", (1, 5, 4, 8), 0.05, -128),
        "d1": Tensor("d1", (1, 5, 4, 8), 0.04, -128),
        "p1": Tensor("p1", (1, 5, 4, 12), 0.06, -128),
        "m": Tensor("m", (1, 1, 1, 12), 0.03, -100),
        "flat": Tensor("flat", (1, 12), 0.03, -100),
        "fc": Tensor("fc", (1, 5), 0.1, 3),
    }
    layers = [
        Layer(
            "conv0",
            Op.CONV_2D,
            ("in",),
            "c0",
            weights(rng, (8, 3, 3, 3)),
            scales(rng, 8),
            rng.integers(-500, 500, 8),
            stride=2,
            padding=Padding.SAME,
            activation=Activation.RELU6,
        ),
        Layer(
            "dw1",
            Op.DEPTHWISE_CONV_2D,
            ("c0",),
            "d1",
            weights(rng, (1, 3, 3, 8)),
            scales(rng, 8),
            rng.integers(-500, 500, 8),
            activation=Activation.RELU6,
        ),
        Layer(
            "pw1",
            Op.CONV_2D,
            ("d1",),
            "p1",
            weights(rng, (12, 1, 1, 8)),
            scales(rng, 12),
            rng.integers(-500, 500, 12),
            activation=Activation.RELU,
        ),
        Layer("pool", Op.MEAN, ("p1",), "m", params={"axes": (1, 2), "keepdims": True}),
        Layer("flatten", Op.RESHAPE, ("m",), "flat"),
        Layer(
            "fc",
            Op.FULLY_CONNECTED,
            ("flat",),
            "fc",
            weights(rng, (5, 12)),
            scales(rng, 1),
            rng.integers(-500, 500, 5),
        ),
    ]
    return Graph("tiny", t, layers, "in", ("fc",))


def conv_q(g, layer):
    t_in, t_out = g.tensors[layer.inputs[0]], g.tensors[layer.output]
    return dict(
        input_scale=t_in.scale,
        input_zp=t_in.zero_point,
        weight_scales=layer.weight_scales,
        output_scale=t_out.scale,
        output_zp=t_out.zero_point,
        activation=layer.activation,
    )


@pytest.mark.parametrize("kernel", ["reference", "optimized"])
def test_run_equals_composition_of_ops(kernel):
    rng = np.random.default_rng(1)
    g = tiny_mobilenet(rng)
    x = rng.integers(-128, 128, (1, 9, 8, 3)).astype(np.int8)
    seen = []
    out = run(g, x, kernel=kernel, progress=lambda d, n, layer: seen.append((d, n, layer.name)))
    assert list(out) == ["c0", "d1", "p1", "m", "flat", "fc"]
    assert seen == [(i + 1, 6, lay.name) for i, lay in enumerate(g.layers)]

    conv0, dw1, pw1, _, _, fc = g.layers
    c0 = ops.conv2d(
        x, conv0.weights, conv0.bias, stride=2, padding="SAME", kernel=kernel, **conv_q(g, conv0)
    )
    d1 = ops.depthwise_conv2d(c0, dw1.weights, dw1.bias, kernel=kernel, **conv_q(g, dw1))
    p1 = ops.conv2d(d1, pw1.weights, pw1.bias, kernel=kernel, **conv_q(g, pw1))
    m = ops.mean_hw(
        p1, input_scale=0.06, input_zp=-128, output_scale=0.03, output_zp=-100, kernel=kernel
    )
    y = ops.fully_connected(m.reshape(1, 12), fc.weights, fc.bias, kernel=kernel, **conv_q(g, fc))
    for name, want in [
        ("c0", c0),
        ("d1", d1),
        ("p1", p1),
        ("m", m),
        ("flat", m.reshape(1, 12)),
        ("fc", y),
    ]:
        assert_same(out[name], want, name)
    # The activations are not degenerate: the check above could fail.
    assert len(np.unique(out["p1"])) > 10


def test_run_elementwise_layers():
    rng = np.random.default_rng(2)
    c = 8
    t = {
        "in": Tensor("in", (1, 6, 6, c), 0.05, 3),
        "hs": Tensor("hs", (1, 6, 6, c), 0.04, -20),
        "se": Tensor(
            "se",
            (1, 1, 1, c),
            0.004,
            -128,
            data=rng.integers(-128, 128, (1, 1, 1, c)).astype(np.int8),
        ),
        "mul": Tensor("mul", (1, 6, 6, c), 0.03, -10),
        "add": Tensor("add", (1, 6, 6, c), 0.07, 0),
        "r6": Tensor("r6", (1, 6, 6, c), 0.05, -128),
        "r": Tensor("r", (1, 6, 6, c), 0.06, -128),
        "ap": Tensor("ap", (1, 3, 3, c), 0.06, -128),
    }
    layers = [
        Layer("hs", Op.HARD_SWISH, ("in",), "hs"),
        Layer("mul", Op.MUL, ("hs", "se"), "mul"),
        Layer("add", Op.ADD, ("mul", "in"), "add", activation=Activation.RELU),
        Layer("r6", Op.RELU6, ("add",), "r6"),
        Layer("r", Op.RELU, ("r6",), "r"),
        Layer(
            "ap",
            Op.AVERAGE_POOL_2D,
            ("r",),
            "ap",
            stride=2,
            padding=Padding.VALID,
            params={"filter": (2, 2)},
        ),
    ]
    g = Graph("elementwise", t, layers, "in", ("ap",))
    x = rng.integers(-128, 128, (1, 6, 6, c)).astype(np.int8)
    out = run(g, x)

    def io(a, b):
        return dict(
            input_scale=t[a].scale,
            input_zp=t[a].zero_point,
            output_scale=t[b].scale,
            output_zp=t[b].zero_point,
        )

    hs = ops.hard_swish(x, **io("in", "hs"))
    mul = ops.mul(
        hs,
        t["se"].data,
        input1_scale=0.04,
        input1_zp=-20,
        input2_scale=0.004,
        input2_zp=-128,
        output_scale=0.03,
        output_zp=-10,
    )
    add = ops.add(
        mul,
        x,
        input1_scale=0.03,
        input1_zp=-10,
        input2_scale=0.05,
        input2_zp=3,
        output_scale=0.07,
        output_zp=0,
        activation="RELU",
    )
    r6 = ops.relu6(add, **io("add", "r6"))
    r = ops.relu(r6, **io("r6", "r"))
    ap = ops.average_pool2d(
        r, filter_size=2, stride=2, padding="VALID", scale=0.06, zero_point=-128
    )
    for name, want in [("hs", hs), ("mul", mul), ("add", add), ("r6", r6), ("r", r), ("ap", ap)]:
        assert_same(out[name], want, name)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((1, 9, 8, 3), dtype=np.uint8),
        np.zeros((1, 8, 9, 3), dtype=np.int8),
        np.zeros((9, 8, 3), dtype=np.int8),
        [[0]],
    ],
)
def test_run_rejects_bad_input(bad):
    g = tiny_mobilenet(np.random.default_rng(3))
    with pytest.raises(UserError, match=r"must be an int8 array of shape \(1, 9, 8, 3\)"):
        run(g, bad)


def test_run_layer_rejects_unsupported_mean_and_pool_quantization():
    rng = np.random.default_rng(4)
    t = {
        "in": Tensor("in", (1, 4, 4, 2), 0.1, 0),
        "m": Tensor("m", (1, 4, 1, 1), 0.1, 0),
        "ap": Tensor("ap", (1, 2, 2, 2), 0.2, 0),
    }
    mean = Layer("m", Op.MEAN, ("in",), "m", params={"axes": (2, 3), "keepdims": True})
    pool = Layer("ap", Op.AVERAGE_POOL_2D, ("in",), "ap", stride=2, params={"filter": (2, 2)})
    g = Graph("bad", t, [mean, pool], "in", ("m", "ap"))
    env = {"in": rng.integers(-128, 128, (1, 4, 4, 2)).astype(np.int8)}
    with pytest.raises(UserError, match="MEAN"):
        run_layer(g, mean, env)
    with pytest.raises(UserError, match="AVERAGE_POOL_2D"):
        run_layer(g, pool, env)


def test_mean_without_keepdims_uses_reference_kernel():
    rng = np.random.default_rng(5)
    t = {"in": Tensor("in", (1, 3, 3, 16), 0.1, 7), "m": Tensor("m", (1, 16), 0.05, -3)}
    mean = Layer("m", Op.MEAN, ("in",), "m", params={"axes": (1, 2), "keepdims": False})
    g = Graph("mean", t, [mean], "in", ("m",))
    x = rng.integers(-128, 128, (1, 3, 3, 16)).astype(np.int8)
    want = ops.mean_hw(x, input_scale=0.1, input_zp=7, output_scale=0.05, output_zp=-3)
    assert_same(run(g, x, kernel="optimized")["m"], want.reshape(1, 16), "mean")


def mobilenet_v1_like(rng) -> Graph:
    """MobileNetV1's layer shapes at 224x224 (569 M MACs), random weights."""
    tensors = {"in": Tensor("in", (1, 224, 224, 3), 0.0078, 0)}
    layers = []
    prev, size, ch = "in", 224, 3

    def add_layer(name, op, shape, w, stride=1, **kw):
        nonlocal prev
        tensors[name] = Tensor(name, shape, 0.05, -128)
        n_out = w.shape[0] if op is Op.CONV_2D else w.shape[-1]
        layers.append(
            Layer(
                name,
                op,
                (prev,),
                name,
                w,
                scales(rng, n_out),
                rng.integers(-2000, 2000, n_out),
                stride=stride,
                activation=Activation.RELU6,
                **kw,
            )
        )
        prev = name

    size //= 2
    add_layer("conv0", Op.CONV_2D, (1, size, size, 32), weights(rng, (32, 3, 3, 3)), 2)
    ch = 32
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5
    plan += [(1024, 2), (1024, 1)]
    for i, (out_ch, stride) in enumerate(plan, start=1):
        size = (size + stride - 1) // stride
        add_layer(
            f"dw{i}", Op.DEPTHWISE_CONV_2D, (1, size, size, ch), weights(rng, (1, 3, 3, ch)), stride
        )
        add_layer(f"pw{i}", Op.CONV_2D, (1, size, size, out_ch), weights(rng, (out_ch, 1, 1, ch)))
        ch = out_ch
    tensors["pool"] = Tensor("pool", (1, 1, 1, ch), 0.05, -128)
    layers.append(Layer("pool", Op.MEAN, (prev,), "pool", params={"axes": (1, 2)}))
    tensors["logits"] = Tensor("logits", (1, 1000), 0.1, 0)
    layers.append(
        Layer(
            "fc",
            Op.FULLY_CONNECTED,
            ("pool",),
            "logits",
            weights(rng, (1000, ch)),
            scales(rng, 1),
            rng.integers(-2000, 2000, 1000),
        )
    )
    return Graph("v1_like", tensors, layers, "in", ("logits",))


def test_full_size_mobilenet_v1_runs_in_seconds():
    rng = np.random.default_rng(6)
    g = mobilenet_v1_like(rng)
    macs = sum(
        int(np.prod(g.tensors[lay.output].shape)) * int(np.prod(lay.weights.shape[1:]))
        if lay.op is Op.CONV_2D
        else int(np.prod(g.tensors[lay.output].shape)) * 9
        for lay in g.layers
        if lay.op in (Op.CONV_2D, Op.DEPTHWISE_CONV_2D)
    )
    assert 560e6 < macs < 580e6
    x = rng.integers(-128, 128, (1, 224, 224, 3)).astype(np.int8)
    start = time.perf_counter()
    out = run(g, x)
    elapsed = time.perf_counter() - start
    assert out["logits"].shape == (1, 1000)
    # Generous bound for a loaded CI machine; it takes about a second on an idle core.
    assert elapsed < 30, f"MobileNetV1 at 224x224 took {elapsed:.1f} s"
