"""The graph that every part of mnaccel shares.

The model zoo (:mod:`mnaccel.golden.zoo`) and the .tflite importer
(:mod:`mnaccel.golden.tflite_import`) both build a :class:`Graph`; the golden interpreter
(:mod:`mnaccel.golden.interpreter`) runs it, the per-layer table counts it, and the layer
compiler maps it onto the accelerator.

Conventions (those of TFLite, so that an imported model needs no transposition):

- activations are NHWC int8 with one scale and zero point per tensor;
- ``CONV_2D`` weights are ``(C_out, K_h, K_w, C_in)``, ``DEPTHWISE_CONV_2D`` weights are
  ``(1, K_h, K_w, C)`` and ``FULLY_CONNECTED`` weights are ``(C_out, C_in)``; all are int8,
  symmetric, with one scale per output channel (or a single scale, per tensor);
- biases are int32 at scale ``input_scale * weight_scale[c]``;
- scales are float32 values (held as Python floats or float32 arrays) because TFLite stores
  them as float32 and widens them to double only when it derives multipliers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Activation", "Graph", "Layer", "Op", "Padding", "Tensor"]


class Op(enum.Enum):
    """Operators, named as TFLite's builtin operators."""

    CONV_2D = "CONV_2D"
    DEPTHWISE_CONV_2D = "DEPTHWISE_CONV_2D"
    FULLY_CONNECTED = "FULLY_CONNECTED"
    MEAN = "MEAN"
    AVERAGE_POOL_2D = "AVERAGE_POOL_2D"
    ADD = "ADD"
    MUL = "MUL"
    HARD_SWISH = "HARD_SWISH"
    RELU = "RELU"
    RELU6 = "RELU6"
    #: Changes the shape only (RESHAPE, SQUEEZE, ...); the int8 data pass unchanged.
    RESHAPE = "RESHAPE"
    #: Explicit spatial zero padding (Keras' ZeroPadding2D), with the zero point as value;
    #: ``params["paddings"] = ((top, bottom), (left, right))``.
    PAD = "PAD"


class Padding(enum.Enum):
    SAME = "SAME"
    VALID = "VALID"


class Activation(enum.Enum):
    """Fused activation functions."""

    NONE = "NONE"
    RELU = "RELU"
    RELU6 = "RELU6"


@dataclass
class Tensor:
    """An int8 tensor: a layer's output, the graph input, or a constant operand.

    Attributes
    ----------
    name : str
        Unique within the graph.
    shape : tuple of int
        NHWC for feature maps, ``(N, C)`` after a flatten.
    scale : float
        Per-tensor scale (a float32 value).
    zero_point : int
        Per-tensor zero point in [-128, 127].
    data : numpy.ndarray or None
        Constant int8 contents (e.g. an ADD or MUL operand), or None for activations.
    index : int or None
        The TFLite tensor index for imported models, None for zoo models.
    """

    name: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    data: np.ndarray | None = None
    index: int | None = None

    def __post_init__(self) -> None:
        self.shape = tuple(int(d) for d in self.shape)
        self.scale = float(np.float32(self.scale))
        self.zero_point = int(self.zero_point)
        if not -128 <= self.zero_point <= 127:
            raise ValueError(
                f"tensor {self.name!r}: zero point must be in [-128, 127], not {self.zero_point}"
            )
        if not self.scale > 0:
            raise ValueError(f"tensor {self.name!r}: scale must be positive, not {self.scale}")


@dataclass
class Layer:
    """One operator application.

    Attributes
    ----------
    name : str
        Unique within the graph.
    op : Op
    inputs : tuple of str
        Names of the input tensors (activations first, then constant operands).
    output : str
        Name of the output tensor.
    weights : numpy.ndarray or None
        int8 weights in TFLite layout (see the module docstring).
    weight_scales : numpy.ndarray or None
        float32 scales, one per output channel, or one for the whole tensor.
    bias : numpy.ndarray or None
        int32 bias, one per output channel.
    stride : tuple of int
        ``(stride_h, stride_w)`` for convolutions and pooling.
    padding : Padding
    activation : Activation
        Fused activation.
    params : dict
        Operator-specific extras, e.g. ``{"axes": (1, 2), "keepdims": True}`` for MEAN or
        ``{"filter": (7, 7)}`` for AVERAGE_POOL_2D.
    """

    name: str
    op: Op
    inputs: tuple[str, ...]
    output: str
    weights: np.ndarray | None = None
    weight_scales: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: Padding = Padding.SAME
    activation: Activation = Activation.NONE
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inputs = tuple(self.inputs)
        if isinstance(self.stride, int):
            self.stride = (self.stride, self.stride)
        self.stride = tuple(int(s) for s in self.stride)
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=np.int8)
        if self.weight_scales is not None:
            self.weight_scales = np.atleast_1d(np.asarray(self.weight_scales, dtype=np.float32))
        if self.bias is not None:
            self.bias = np.asarray(self.bias, dtype=np.int32)

    @property
    def kernel(self) -> tuple[int, int]:
        """``(K_h, K_w)`` of a convolution, ``(1, 1)`` for everything else."""
        if self.op in (Op.CONV_2D, Op.DEPTHWISE_CONV_2D):
            return int(self.weights.shape[1]), int(self.weights.shape[2])
        if self.op is Op.AVERAGE_POOL_2D:
            return tuple(self.params["filter"])
        return (1, 1)


@dataclass
class Graph:
    """A model: tensors and the layers that compute them, in execution order.

    Attributes
    ----------
    name : str
        e.g. ``"mobilenet_v1"`` or the .tflite file's stem.
    tensors : dict of str to Tensor
    layers : list of Layer
        In execution order: every layer's inputs are the graph input, constants, or outputs
        of earlier layers.
    input : str
        Name of the graph's input tensor.
    outputs : tuple of str
        Names of the graph's output tensors.
    """

    name: str
    tensors: dict[str, Tensor]
    layers: list[Layer]
    input: str
    outputs: tuple[str, ...]

    def __post_init__(self) -> None:
        self.outputs = tuple(self.outputs)
        self.validate()

    def validate(self) -> None:
        """Check names and execution order; raise ValueError naming the first problem."""
        if self.input not in self.tensors:
            raise ValueError(f"graph {self.name!r}: input tensor {self.input!r} is not defined")
        ready = {self.input} | {n for n, t in self.tensors.items() if t.data is not None}
        seen_layers = set()
        for layer in self.layers:
            if layer.name in seen_layers:
                raise ValueError(f"graph {self.name!r}: duplicate layer name {layer.name!r}")
            seen_layers.add(layer.name)
            for name in layer.inputs:
                if name not in ready:
                    raise ValueError(
                        f"graph {self.name!r}: layer {layer.name!r} reads {name!r} "
                        f"before anything computes it"
                    )
            if layer.output not in self.tensors:
                raise ValueError(
                    f"graph {self.name!r}: layer {layer.name!r} writes undefined tensor "
                    f"{layer.output!r}"
                )
            if layer.output in ready:
                raise ValueError(f"graph {self.name!r}: tensor {layer.output!r} is written twice")
            ready.add(layer.output)
        for name in self.outputs:
            if name not in ready:
                raise ValueError(f"graph {self.name!r}: output {name!r} is never computed")

    @property
    def input_tensor(self) -> Tensor:
        return self.tensors[self.input]

    def producer(self, tensor: str) -> Layer | None:
        """The layer that writes ``tensor``, or None for the input and constants."""
        for layer in self.layers:
            if layer.output == tensor:
                return layer
        return None
