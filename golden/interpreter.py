"""Run a :class:`~mnaccel.golden.graph.Graph` with TFLite's int8 arithmetic.

Each layer is dispatched to one function of :mod:`mnaccel.golden.ops`, with the
multipliers, shifts and activation ranges derived from the scales and zero points of its
input and output tensors exactly as TFLite's kernels derive them when they are prepared.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mnaccel.golden import ops
from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Graph, Layer, Op

__all__ = ["run", "run_layer"]

Progress = Callable[[int, int, Layer], None]


def _value(graph: Graph, env: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name in env:
        return env[name]
    data = graph.tensors[name].data
    if data is None:
        raise ValueError(f"graph {graph.name!r}: tensor {name!r} has not been computed")
    return np.asarray(data, dtype=np.int8)


def _conv_kwargs(graph: Graph, layer: Layer) -> dict:
    t_in = graph.tensors[layer.inputs[0]]
    t_out = graph.tensors[layer.output]
    return dict(
        input_scale=t_in.scale,
        input_zp=t_in.zero_point,
        weight_scales=layer.weight_scales,
        output_scale=t_out.scale,
        output_zp=t_out.zero_point,
        activation=layer.activation,
    )


def _io_kwargs(graph: Graph, layer: Layer) -> dict:
    t_in = graph.tensors[layer.inputs[0]]
    t_out = graph.tensors[layer.output]
    return dict(
        input_scale=t_in.scale,
        input_zp=t_in.zero_point,
        output_scale=t_out.scale,
        output_zp=t_out.zero_point,
    )


def _binary_kwargs(graph: Graph, layer: Layer) -> dict:
    t1, t2 = (graph.tensors[name] for name in layer.inputs)
    t_out = graph.tensors[layer.output]
    return dict(
        input1_scale=t1.scale,
        input1_zp=t1.zero_point,
        input2_scale=t2.scale,
        input2_zp=t2.zero_point,
        output_scale=t_out.scale,
        output_zp=t_out.zero_point,
        activation=layer.activation,
    )


def run_layer(
    graph: Graph, layer: Layer, env: dict[str, np.ndarray], *, kernel: str = "reference"
) -> np.ndarray:
    """Compute one layer's int8 output from the tensors in ``env``.

    Parameters
    ----------
    graph : Graph
        The graph the layer belongs to (for tensor scales, zero points and constants).
    layer : Layer
    env : dict of str to numpy.ndarray
        Values of already computed tensors by name; constants come from the graph.
    kernel : {"reference", "optimized"}
        Which TFLite kernels to reproduce where they differ (see :mod:`mnaccel.golden.ops`).

    Returns
    -------
    numpy.ndarray
        int8, in the shape of the layer's output tensor.
    """
    out_shape = graph.tensors[layer.output].shape
    x = _value(graph, env, layer.inputs[0])
    op = layer.op
    if op is Op.CONV_2D:
        y = ops.conv2d(
            x,
            layer.weights,
            layer.bias,
            stride=layer.stride,
            padding=layer.padding,
            kernel=kernel,
            **_conv_kwargs(graph, layer),
        )
    elif op is Op.DEPTHWISE_CONV_2D:
        y = ops.depthwise_conv2d(
            x,
            layer.weights,
            layer.bias,
            stride=layer.stride,
            padding=layer.padding,
            kernel=kernel,
            **_conv_kwargs(graph, layer),
        )
    elif op is Op.FULLY_CONNECTED:
        y = ops.fully_connected(
            x, layer.weights, layer.bias, kernel=kernel, **_conv_kwargs(graph, layer)
        )
    elif op is Op.MEAN:
        axes = tuple(sorted(int(a) % 4 for a in layer.params.get("axes", (1, 2))))
        if x.ndim != 4 or axes != (1, 2):
            raise UserError(
                f"layer {layer.name!r}: MEAN is supported over axes (1, 2) of an NHWC "
                f"tensor only, not axes {axes} of shape {x.shape}"
            )
        keepdims = bool(layer.params.get("keepdims", True))
        # Without keep_dims even LiteRT's optimized resolver falls back to the reference
        # kernel.
        y = ops.mean_hw(x, kernel=kernel if keepdims else "reference", **_io_kwargs(graph, layer))
    elif op is Op.AVERAGE_POOL_2D:
        t_in, t_out = graph.tensors[layer.inputs[0]], graph.tensors[layer.output]
        if (t_in.scale, t_in.zero_point) != (t_out.scale, t_out.zero_point):
            raise UserError(
                f"layer {layer.name!r}: AVERAGE_POOL_2D needs equal input and output "
                f"quantization, not {(t_in.scale, t_in.zero_point)} and "
                f"{(t_out.scale, t_out.zero_point)}"
            )
        y = ops.average_pool2d(
            x,
            filter_size=layer.kernel,
            stride=layer.stride,
            padding=layer.padding,
            scale=t_out.scale,
            zero_point=t_out.zero_point,
            activation=layer.activation,
        )
    elif op in (Op.ADD, Op.MUL):
        fn = ops.add if op is Op.ADD else ops.mul
        y = fn(x, _value(graph, env, layer.inputs[1]), **_binary_kwargs(graph, layer))
    elif op is Op.HARD_SWISH:
        y = ops.hard_swish(x, **_io_kwargs(graph, layer))
    elif op is Op.RELU:
        y = ops.relu(x, **_io_kwargs(graph, layer))
    elif op is Op.RELU6:
        y = ops.relu6(x, **_io_kwargs(graph, layer))
    elif op is Op.RESHAPE:
        y = x
    elif op is Op.PAD:
        y = ops.pad(x, layer.params["paddings"], zero_point=graph.tensors[layer.output].zero_point)
    else:  # pragma: no cover - every Op member is handled above
        raise UserError(f"layer {layer.name!r}: unsupported operator {op.value}")
    if int(np.prod(y.shape)) != int(np.prod(out_shape)):
        raise ValueError(
            f"layer {layer.name!r}: computed shape {y.shape} does not fit output tensor "
            f"{layer.output!r} of shape {out_shape}"
        )
    if op not in (Op.FULLY_CONNECTED, Op.RESHAPE, Op.MEAN) and y.shape != out_shape:
        raise ValueError(
            f"layer {layer.name!r}: computed shape {y.shape} differs from output tensor "
            f"{layer.output!r} of shape {out_shape}"
        )
    return y.reshape(out_shape)


def run(
    graph: Graph,
    x,
    *,
    kernel: str = "reference",
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Run the whole graph on one input.

    Parameters
    ----------
    graph : Graph
    x : numpy.ndarray
        int8, in the shape of the graph's input tensor (NHWC).
    kernel : {"reference", "optimized"}
        Which TFLite kernels to reproduce where they differ (see :mod:`mnaccel.golden.ops`):
        ``"reference"`` matches LiteRT's ``BUILTIN_REF`` op resolver, ``"optimized"`` its
        ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``.
    progress : callable or None
        Called as ``progress(done, total, layer)`` after each layer.

    Returns
    -------
    dict of str to numpy.ndarray
        Every layer's output, keyed by its output tensor's name, in execution order.

    Raises
    ------
    UserError
        If ``x`` is not an int8 array of the input tensor's shape, or the graph holds a
        layer the golden model does not support.
    """
    expected = graph.input_tensor.shape
    if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.shape != expected:
        got = (
            f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        )
        raise UserError(
            f"the input of {graph.name!r} must be an int8 array of shape {expected}, not a {got}"
        )
    if kernel not in ("reference", "optimized"):
        raise ValueError(f"kernel must be 'reference' or 'optimized', not {kernel!r}")
    env: dict[str, np.ndarray] = {graph.input: x}
    outputs: dict[str, np.ndarray] = {}
    for done, layer in enumerate(graph.layers, start=1):
        y = run_layer(graph, layer, env, kernel=kernel)
        env[layer.output] = y
        outputs[layer.output] = y
        if progress is not None:
            progress(done, len(graph.layers), layer)
    return outputs
