"""The model zoo: MobileNet V1, V2, V3-Small and V3-Large as int8 graphs, nothing downloaded.

The graphs follow the Keras applications (``tf.keras.applications.MobileNet``,
``MobileNetV2``, ``MobileNetV3Small``, ``MobileNetV3Large`` with ``include_top=True``, 1000
classes, V3 without its preprocessing ``Rescaling`` layer) as the TFLite converter lowers
them to int8:

- batch normalization is folded into the preceding convolution, which therefore has a bias;
- ReLU and ReLU6 are fused into the layer before them;
- Keras' explicit ``ZeroPadding2D`` + ``'valid'`` before a stride-2 convolution equals
  TFLite's ``SAME`` padding for the even sizes that occur here (the resolution is a
  multiple of 32), so every convolution is ``SAME``;
- hard-swish ``x * relu6(x + 3) / 6`` becomes one ``HARD_SWISH`` operator; in the
  squeeze-excite gate ``relu6(conv(x) + 3) / 6`` (hard-sigmoid) the converter folds the
  ``+ 3`` into the bias of the convolution before it and fuses the ReLU6 into that
  convolution, so only a ``MUL`` by the constant 1/6 remains (as in the .tflite files
  that ``scripts/make_tflite_fixtures.py`` converts from Keras);
- global average pooling is a ``MEAN`` over height and width; ``Flatten``/``Reshape`` is a
  ``RESHAPE``; dropout disappears; the final softmax stays on the host.

Channel counts use Keras' rounding: ``int(c * alpha)`` for V1, :func:`make_divisible` for
V2 and V3 (V2's last 1×1 convolution keeps 1280 channels unless ``alpha > 1``; V3's first
convolution has 16 channels at every ``alpha``). Layer names are those of the Keras layers
(``conv1``, ``conv_dw_1``, ``conv_pw_1``, ..., ``block_3_expand``, ``expanded_conv_4/Add``);
the layers Keras names automatically get descriptive names (``Conv/hard_swish``,
``expanded_conv_3/squeeze_excite/hard_sigmoid``).

Weights and biases are synthetic and deterministic in ``seed``: int8 weights, symmetric per
output channel and spanning ±127 in every channel (the int8 values do not depend on the
resolution), and int32 biases. Each layer's batch normalization (random ``gamma``, ``beta``)
is folded into its weight scales and bias with the statistics of the calibration images,
as a trained network's would be, so that activations keep a realistic spread through any
depth. Activation quantization parameters are calibrated as TFLite's post-training
quantization does it, from the min/max of each tensor on seeded random calibration images,
running the integer pipeline layer by layer (:func:`mnaccel.golden.interpreter.run_layer`)
so that every layer is calibrated on what the int8 layers before it really produce. ReLU
and ReLU6 outputs get zero point -128.
"""

from __future__ import annotations

import math

import numpy as np

from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Activation, Graph, Layer, Op, Padding, Tensor

__all__ = [
    "INPUT_SCALE",
    "INPUT_ZERO_POINT",
    "MAX_ALPHA",
    "MAX_RESOLUTION",
    "MIN_RESOLUTION",
    "ZOO",
    "build",
    "make_divisible",
    "random_input",
]

#: The zoo's model names, in the order the documentation lists them.
ZOO = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
MIN_RESOLUTION = 32
MAX_RESOLUTION = 1024
MAX_ALPHA = 2.0
#: The input holds an image scaled to [-1, 1) (what Keras' ``preprocess_input`` produces for
#: V1 and V2, and V3's ``Rescaling`` layer, which the zoo leaves out).
INPUT_SCALE = 1.0 / 128.0
INPUT_ZERO_POINT = 0
CLASSES = 1000

#: Layers with a bias of their own rather than a folded batch normalization.
_PLAIN_BIAS = {"conv_preds", "predictions", "Conv_2", "Logits"}
#: Calibration uses this many seeded random images, at the model's resolution (a smaller
#: one would misjudge the share of zero padding in the last, small feature maps), because
#: one image leaves the ranges after a global pooling, a few values each, too narrow.
CALIBRATION_IMAGES = 4

_ACT_RANGE = {Activation.RELU: (0.0, math.inf), Activation.RELU6: (0.0, 6.0)}


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Keras' ``_make_divisible`` (V2) / ``_depth`` (V3): round a channel count to a multiple.

    Rounds ``v`` to the nearest multiple of ``divisor`` (at least ``min_value``, by default
    ``divisor``), then adds one ``divisor`` if that lost more than 10 % of ``v``.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _check_args(name: object, alpha: object, resolution: object) -> None:
    if name not in ZOO:
        raise UserError(f"unknown model {name!r}; the zoo has {', '.join(ZOO)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise UserError(f"alpha must be a number in (0, {MAX_ALPHA:g}], not {alpha!r}")
    if not 0.0 < alpha <= MAX_ALPHA:  # also rejects NaN
        raise UserError(f"alpha must be in (0, {MAX_ALPHA:g}], not {alpha!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise UserError(f"resolution must be an integer, not {resolution!r}")
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION or resolution % 32:
        # A multiple of 32 keeps every feature map even before each stride-2 layer, where
        # Keras' explicit padding and TFLite's SAME padding agree.
        raise UserError(
            f"resolution must be a multiple of 32 in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], "
            f"not {resolution!r}"
        )


class _Builder:
    """Appends layers to a graph under construction and draws their synthetic weights.

    Tensors get placeholder quantization (scale 1, zero point 0) and biases are zero until
    :func:`_calibrate` sets them; each layer's batch normalization ``(gamma, beta)`` waits
    in ``batch_norm``.
    """

    def __init__(self, name: str, resolution: int, seed: int, classes: int):
        self.name = name
        self.classes = classes
        self.rng = np.random.default_rng([seed, 0])
        self.tensors: dict[str, Tensor] = {
            "input": Tensor("input", (1, resolution, resolution, 3), INPUT_SCALE, INPUT_ZERO_POINT)
        }
        self.layers: list[Layer] = []
        self.batch_norm: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.cur = "input"

    def shape(self, tensor: str | None = None) -> tuple[int, ...]:
        return self.tensors[tensor or self.cur].shape

    def _append(self, layer: Layer, shape: tuple[int, ...]) -> str:
        self.tensors[layer.output] = Tensor(layer.output, shape, 1.0, 0)
        self.layers.append(layer)
        self.cur = layer.output
        return layer.output

    def _weights(self, shape, channel_axis, fan_in, gain):
        """int8 weights spanning ±127 in every output channel, and their float32 scales.

        The real-valued weights ``q * scale`` have a standard deviation of
        ``gain / sqrt(fan_in)`` (He initialization), times a random per-channel factor that
        stands in for the spread a folded batch normalization leaves between channels.
        """
        w = self.rng.standard_normal(shape)
        axes = tuple(a for a in range(len(shape)) if a != channel_axis % len(shape))
        peak = np.max(np.abs(w), axis=axes, keepdims=True)
        q = np.round(w / peak * 127.0)
        std_q = np.std(q, axis=axes)
        factor = np.exp(self.rng.normal(0.0, 0.25, size=shape[channel_axis]))
        scales = gain * factor / math.sqrt(fan_in) / std_q
        return q.astype(np.int8), scales.astype(np.float32)

    def _bias(self, name: str, channels: int, offset: float = 0.0) -> np.ndarray:
        gamma = self.rng.uniform(0.5, 1.5, size=channels)
        beta = self.rng.normal(0.0, 0.3, size=channels) + offset
        # Keras gives the classifiers and the squeeze-excite convolutions a plain bias
        # (use_bias=True) instead of a batch normalization.
        normalized = name not in _PLAIN_BIAS and "squeeze_excite/" not in name
        self.batch_norm[name] = (gamma, beta, normalized)
        return np.zeros(channels, dtype=np.int32)

    def conv(self, name, cout, k=1, stride=1, act=Activation.NONE, src=None, bias_offset=0.0):
        src = src or self.cur
        n, h, w, cin = self.shape(src)
        gain = 1.0 if act is Activation.NONE else math.sqrt(2.0)
        weights, scales = self._weights((cout, k, k, cin), 0, k * k * cin, gain)
        layer = Layer(
            name,
            Op.CONV_2D,
            (src,),
            name,
            weights,
            scales,
            self._bias(name, cout, bias_offset),
            stride=stride,
            padding=Padding.SAME,
            activation=act,
        )
        return self._append(layer, (n, -(-h // stride), -(-w // stride), cout))

    def dw(self, name, k=3, stride=1, act=Activation.NONE):
        n, h, w, c = self.shape()
        gain = 1.0 if act is Activation.NONE else math.sqrt(2.0)
        weights, scales = self._weights((1, k, k, c), 3, k * k, gain)
        layer = Layer(
            name,
            Op.DEPTHWISE_CONV_2D,
            (self.cur,),
            name,
            weights,
            scales,
            self._bias(name, c),
            stride=stride,
            padding=Padding.SAME,
            activation=act,
            params={"depth_multiplier": 1},
        )
        return self._append(layer, (n, -(-h // stride), -(-w // stride), c))

    def fc(self, name, cout):
        n, cin = self.shape()
        weights, scales = self._weights((cout, cin), 0, cin, 1.0)
        layer = Layer(
            name,
            Op.FULLY_CONNECTED,
            (self.cur,),
            name,
            weights,
            scales,
            self._bias(name, cout),
        )
        return self._append(layer, (n, cout))

    def mean(self, name, keepdims, src=None):
        src = src or self.cur
        n, _, _, c = self.shape(src)
        layer = Layer(name, Op.MEAN, (src,), name, params={"axes": (1, 2), "keepdims": keepdims})
        return self._append(layer, (n, 1, 1, c) if keepdims else (n, c))

    def hard_swish(self, name):
        layer = Layer(name, Op.HARD_SWISH, (self.cur,), name)
        return self._append(layer, self.shape())

    def add(self, name, a, b, act=Activation.NONE):
        layer = Layer(name, Op.ADD, (a, b), name, activation=act)
        return self._append(layer, self.shape(a))

    def mul(self, name, a, b):
        shape = tuple(np.broadcast_shapes(self.shape(a), self.shape(b)))
        layer = Layer(name, Op.MUL, (a, b), name)
        return self._append(layer, shape)

    def constant(self, name, value: float) -> str:
        """A scalar int8 constant, quantized as the converter does: range [0, value]."""
        self.tensors[name] = Tensor(
            name, (), value / 255.0, -128, data=np.array(127, dtype=np.int8)
        )
        return name

    def mul_const(self, name, value):
        const = self.constant(f"{name}/y", value)
        layer = Layer(name, Op.MUL, (self.cur, const), name)
        return self._append(layer, self.shape())

    def reshape(self, name, shape):
        layer = Layer(name, Op.RESHAPE, (self.cur,), name, params={"shape": tuple(shape)})
        return self._append(layer, tuple(shape))

    def graph(self) -> Graph:
        return Graph(self.name, self.tensors, self.layers, "input", (self.cur,))


def _mobilenet_v1(b: _Builder, alpha: float) -> None:
    relu6 = Activation.RELU6

    def ch(c):
        filters = int(c * alpha)
        if filters < 1:
            raise UserError(
                f"alpha {alpha!r} is too small for mobilenet_v1: int({c} * alpha) is 0 channels"
            )
        return filters

    b.conv("conv1", ch(32), k=3, stride=2, act=relu6)
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    blocks += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for block_id, (filters, stride) in enumerate(blocks, start=1):
        b.dw(f"conv_dw_{block_id}", stride=stride, act=relu6)
        b.conv(f"conv_pw_{block_id}", ch(filters), act=relu6)
    b.mean("global_average_pooling2d", keepdims=True)
    b.conv("conv_preds", b.classes)
    b.reshape("reshape_2", (1, b.classes))


def _mobilenet_v2(b: _Builder, alpha: float) -> None:
    relu6 = Activation.RELU6
    b.conv("Conv1", make_divisible(32 * alpha, 8), k=3, stride=2, act=relu6)
    # (expansion, filters, stride) of blocks 0..16
    blocks = [(1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1)]
    blocks += [(6, 64, 2)] + [(6, 64, 1)] * 3 + [(6, 96, 1)] * 3
    blocks += [(6, 160, 2)] + [(6, 160, 1)] * 2 + [(6, 320, 1)]
    for block_id, (expansion, filters, stride) in enumerate(blocks):
        shortcut = b.cur
        in_channels = b.shape()[3]
        out_channels = make_divisible(int(filters * alpha), 8)
        if block_id:
            prefix = f"block_{block_id}_"
            b.conv(prefix + "expand", expansion * in_channels, act=relu6)
        else:
            prefix = "expanded_conv_"
        b.dw(prefix + "depthwise", stride=stride, act=relu6)
        b.conv(prefix + "project", out_channels)
        if in_channels == out_channels and stride == 1:
            b.add(prefix + "add", shortcut, b.cur)
    b.conv("Conv_1", make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280, act=relu6)
    b.mean("global_average_pooling2d", keepdims=False)
    b.fc("predictions", b.classes)


# (expansion, filters, kernel, stride, squeeze-excite, hard-swish) of V3's blocks
_V3_LARGE = [
    (1, 16, 3, 1, False, False),
    (4, 24, 3, 2, False, False),
    (3, 24, 3, 1, False, False),
    (3, 40, 5, 2, True, False),
    (3, 40, 5, 1, True, False),
    (3, 40, 5, 1, True, False),
    (6, 80, 3, 2, False, True),
    (2.5, 80, 3, 1, False, True),
    (2.3, 80, 3, 1, False, True),
    (2.3, 80, 3, 1, False, True),
    (6, 112, 3, 1, True, True),
    (6, 112, 3, 1, True, True),
    (6, 160, 5, 2, True, True),
    (6, 160, 5, 1, True, True),
    (6, 160, 5, 1, True, True),
]
_V3_SMALL = [
    (1, 16, 3, 2, True, False),
    (72 / 16, 24, 3, 2, False, False),
    (88 / 24, 24, 3, 1, False, False),
    (4, 40, 5, 2, True, True),
    (6, 40, 5, 1, True, True),
    (6, 40, 5, 1, True, True),
    (3, 48, 5, 1, True, True),
    (3, 48, 5, 1, True, True),
    (6, 96, 5, 2, True, True),
    (6, 96, 5, 1, True, True),
    (6, 96, 5, 1, True, True),
]


def _mobilenet_v3(b: _Builder, alpha: float, blocks, last_point_ch: int) -> None:
    def conv_act(name, cout, k=1, stride=1, hswish=True):
        if hswish:
            b.conv(name, cout, k=k, stride=stride)
            return b.hard_swish(f"{name}/hard_swish")
        return b.conv(name, cout, k=k, stride=stride, act=Activation.RELU)

    conv_act("Conv", 16, k=3, stride=2)
    for block_id, (expansion, filters, k, stride, se, hswish) in enumerate(blocks):
        shortcut = b.cur
        in_channels = b.shape()[3]
        out_channels = make_divisible(filters * alpha)
        expanded = make_divisible(in_channels * expansion)
        prefix = f"expanded_conv_{block_id}/" if block_id else "expanded_conv/"
        if block_id:
            conv_act(prefix + "expand", expanded, hswish=hswish)
        if hswish:
            b.dw(prefix + "depthwise", k=k, stride=stride)
            b.hard_swish(prefix + "depthwise/hard_swish")
        else:
            b.dw(prefix + "depthwise", k=k, stride=stride, act=Activation.RELU)
        if se:
            features = b.cur
            se_prefix = prefix + "squeeze_excite/"
            b.mean(se_prefix + "AvgPool", keepdims=True)
            b.conv(se_prefix + "Conv", make_divisible(expanded * 0.25), act=Activation.RELU)
            # hard-sigmoid: "+ 3" folded into the bias, ReLU6 fused, then "/ 6"
            b.conv(se_prefix + "Conv_1", expanded, act=Activation.RELU6, bias_offset=3.0)
            gate = b.mul_const(se_prefix + "hard_sigmoid", 1.0 / 6.0)
            b.mul(se_prefix + "Mul", features, gate)
        b.conv(prefix + "project", out_channels)
        if stride == 1 and in_channels == out_channels:
            b.add(prefix + "Add", shortcut, b.cur)
    conv_act("Conv_1", make_divisible(b.shape()[3] * 6))
    if alpha > 1.0:
        last_point_ch = make_divisible(last_point_ch * alpha)
    b.mean("global_average_pooling2d", keepdims=True)
    conv_act("Conv_2", last_point_ch)
    b.conv("Logits", b.classes)
    b.reshape("flatten", (1, b.classes))


_ARCHITECTURES = {
    "mobilenet_v1": _mobilenet_v1,
    "mobilenet_v2": _mobilenet_v2,
    "mobilenet_v3_small": lambda b, alpha: _mobilenet_v3(b, alpha, _V3_SMALL, 1024),
    "mobilenet_v3_large": lambda b, alpha: _mobilenet_v3(b, alpha, _V3_LARGE, 1280),
}


def build(
    name: str,
    *,
    alpha: float = 1.0,
    resolution: int = 224,
    seed: int = 0,
    calibrate: bool = True,
    classes: int = CLASSES,
) -> Graph:
    """Build a zoo model with seeded synthetic int8 weights and calibrated quantization.

    Parameters
    ----------
    name : str
        One of :data:`ZOO`.
    alpha : float
        Width multiplier, in (0, 2].
    resolution : int
        Input height and width: a multiple of 32 in [32, 1024].
    seed : int
        Seed of the weights, biases and calibration input. The weights do not depend on
        ``resolution``.
    calibrate : bool
        False leaves every activation at the placeholder scale 1, zero point 0 and every
        bias at zero: enough for counting (:mod:`mnaccel.golden.table`), much faster, but
        not a model to run.
    classes : int
        Outputs of the classifier (ImageNet's 1000 by default).

    Returns
    -------
    Graph

    Raises
    ------
    UserError
        For an unknown name or an ``alpha`` or ``resolution`` out of range.
    """
    _check_args(name, alpha, resolution)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise UserError(f"classes must be a positive integer, not {classes!r}")
    builder = _structure(name, alpha, int(resolution), seed, classes)
    graph = builder.graph()
    if calibrate:
        rng = np.random.default_rng([seed, 1])
        shape = graph.input_tensor.shape
        images = [
            rng.integers(-128, 128, size=shape, dtype=np.int8) for _ in range(CALIBRATION_IMAGES)
        ]
        _calibrate(graph, builder.batch_norm, images)
    return graph


def _structure(name: str, alpha: float, resolution: int, seed: int, classes: int) -> _Builder:
    """The graph under construction, with its int8 weights (equal at every resolution)."""
    builder = _Builder(name, resolution, seed, classes)
    _ARCHITECTURES[name](builder, float(alpha))
    return builder


def random_input(graph: Graph, seed: int = 0) -> np.ndarray:
    """A seeded uniformly random int8 input of ``graph``'s input shape."""
    rng = np.random.default_rng([seed, 2])
    return rng.integers(-128, 128, size=graph.input_tensor.shape, dtype=np.int8)


def _real_extent(tensor: Tensor) -> float:
    """The largest magnitude that ``tensor``'s int8 range represents."""
    return max(abs(-128 - tensor.zero_point), abs(127 - tensor.zero_point)) * tensor.scale


def _bound(graph: Graph, layer: Layer) -> float:
    """A bound of the magnitude of an element-wise or pooling layer's real-valued output."""
    x = [_real_extent(graph.tensors[name]) for name in layer.inputs]
    if layer.op is Op.ADD:
        return x[0] + x[1]
    if layer.op is Op.MUL:
        return x[0] * x[1]
    return max(x[0], 0.375)  # MEAN, HARD_SWISH (|hswish(v)| <= max(|v|, 3/8))


def _spread(lows, highs) -> tuple[float, float]:
    """The range of the calibration images' ranges, widened by three times their spread.

    Where one image shifts a whole tensor (after a global pooling), the next image easily
    falls outside the few seen; where the images agree (feature maps of many positions)
    this adds next to nothing.
    """
    lows, highs = np.asarray(lows, dtype=np.float64), np.asarray(highs, dtype=np.float64)
    return float(lows.min() - 3 * lows.std()), float(highs.max() + 3 * highs.std())


def _set_range(tensor: Tensor, lo: float, hi: float) -> None:
    """Quantize [lo, hi] (widened to hold 0, as TFLite requires) onto int8."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = float(np.float32((hi - lo) / 255.0))
    tensor.scale = scale
    tensor.zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))


def _accumulators(graph: Graph, layer: Layer, x: np.ndarray) -> np.ndarray:
    """The accumulators of a convolution or fully connected layer, without the bias."""
    from mnaccel.golden import ops

    zp = graph.tensors[layer.inputs[0]].zero_point
    if layer.op is Op.CONV_2D:
        acc = ops.conv2d_acc(
            x, layer.weights, input_zp=zp, stride=layer.stride, padding=layer.padding
        )
    elif layer.op is Op.DEPTHWISE_CONV_2D:
        acc = ops.depthwise_conv2d_acc(
            x, layer.weights, input_zp=zp, stride=layer.stride, padding=layer.padding
        )
    else:
        acc = ops.fully_connected_acc(x, layer.weights, input_zp=zp)
    return acc.reshape(-1, acc.shape[-1])  # (positions, channels)


def _calibrate(graph: Graph, batch_norm: dict, images: list[np.ndarray]) -> None:
    """Set biases, weight scales and activation quantization from runs on ``images``.

    Layer by layer, each on the int8 outputs of the layers before it:

    - A convolution or fully connected layer with a batch normalization ``(gamma, beta)``
      folds it in with the statistics of the calibration images: each output channel's
      weight scale is set so that the channel has standard deviation ``gamma``, and its
      bias so that it has mean ``beta``. Layers with a plain bias keep their He-initialized
      scales and get ``beta`` as bias. The output range is then the range of the
      accumulators (bias included) in real units, clamped by the fused activation.
    - Other operators have no accumulator to look at: the layer runs at a provisional
      scale that cannot saturate, narrowed until the output spans at least 16 levels; the
      observed min/max, widened by one provisional level, is the range.

    The min and max over the images are widened by three times the spread of the per-image
    minima and maxima (:func:`_spread`). Ranges always include 0; a ReLU's starts at 0
    (zero point -128).
    """
    from mnaccel.golden.interpreter import run_layer

    envs = [{graph.input: x} for x in images]
    for layer in graph.layers:
        out = graph.tensors[layer.output]
        floor, ceiling = _ACT_RANGE.get(layer.activation, (-math.inf, math.inf))
        if layer.op is Op.RESHAPE:
            src = graph.tensors[layer.inputs[0]]
            out.scale, out.zero_point = src.scale, src.zero_point
        elif layer.bias is not None:
            gamma, beta, normalized = batch_norm[layer.name]
            s_in = np.float64(graph.tensors[layer.inputs[0]].scale)
            accs = [_accumulators(graph, layer, env[layer.inputs[0]]) for env in envs]
            acc = np.concatenate(accs)
            shift = beta
            if normalized:
                real = acc * (s_in * layer.weight_scales.astype(np.float64))
                sigma = real.std(axis=0)
                alive = sigma > 0
                factor = np.where(alive, gamma / np.where(alive, sigma, 1.0), 1.0)
                layer.weight_scales = (layer.weight_scales * factor).astype(np.float32)
                shift = np.where(alive, beta - real.mean(axis=0) * factor, beta)
            acc_scale = s_in * layer.weight_scales.astype(np.float64)
            bias = np.round(shift / acc_scale)
            layer.bias = np.clip(bias, -(2**31), 2**31 - 1).astype(np.int32)
            reals = [(a + layer.bias) * acc_scale for a in accs]
            lo, hi = _spread([r.min() for r in reals], [r.max() for r in reals])
            _set_range(out, max(lo, floor), min(hi, ceiling))
        else:
            extent = min(_bound(graph, layer), ceiling)
            for _ in range(8):
                _set_range(out, max(-extent, floor), extent)
                ys = [run_layer(graph, layer, env) for env in envs]
                los = [(int(y.min()) - out.zero_point) * out.scale for y in ys]
                his = [(int(y.max()) - out.zero_point) * out.scale for y in ys]
                observed = max(abs(min(los)), abs(max(his)))
                if observed >= 16 * out.scale or observed == 0.0 and extent < 1e-6:
                    break
                # one provisional level more than seen: the next pass cannot clip
                extent = max(observed + out.scale, extent / 64)
            # one provisional level of margin: the observed extremes are rounded
            lo, hi = _spread([v - out.scale for v in los], [v + out.scale for v in his])
            _set_range(out, max(lo, floor), min(hi, ceiling))
        for env in envs:
            env[layer.output] = run_layer(graph, layer, env)
