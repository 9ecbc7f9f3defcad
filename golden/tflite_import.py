"""Read a full-integer int8 .tflite model into a :class:`~mnaccel.golden.graph.Graph`.

The file is parsed with the ``tflite`` flatbuffer package; TensorFlow is not needed. The
result is the same kind of graph that the model zoo builds, so everything downstream (the
golden interpreter, the per-layer table, the layer compiler) treats both alike.

What is imported, operator by operator (TFLite's operator index in brackets names each
layer, e.g. ``conv_2d_5``):

- ``CONV_2D``, ``DEPTHWISE_CONV_2D`` (depth multiplier 1, no dilation), ``FULLY_CONNECTED``:
  int8 weights with per-channel or per-tensor scales, int32 bias (zeros when absent),
  strides, padding and the fused activation (none, RELU or RELU6) from the file;
- ``ADD``, ``MUL`` (constant operands become tensors with ``data``), ``MEAN`` over H and W,
  ``HARD_SWISH``, ``AVERAGE_POOL_2D``, ``RELU``, ``RELU6``;
- ``RESHAPE`` and ``SQUEEZE`` become :attr:`~mnaccel.golden.graph.Op.RESHAPE` layers, which
  pass the int8 data unchanged;
- ``SHAPE``, ``STRIDED_SLICE`` and ``PACK`` that only compute the int32 target shape of a
  ``RESHAPE`` (Keras' ``Flatten`` and ``Reshape``) are dropped;
- ``SOFTMAX`` is left to the host: the graph ends before it, and its input becomes the
  graph's output.

Every :class:`~mnaccel.golden.graph.Tensor` keeps the TFLite tensor name and has ``index``
set to its TFLite tensor index, so that its value can be fetched from the LiteRT interpreter.
Anything else raises :class:`~mnaccel.golden.errors.UserError` with one line that names the
problem (docs/bad-input.md): a float, uint8, int16x8 or dynamic-range model, another
operator, a parameter that mnaccel does not implement, a truncated or corrupt file, an
output shape that its operator does not compute, or scales whose rescaling TFLite's int8
kernels cannot represent.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tflite
from tflite.utils import BUILTIN_OPCODE2NAME

from mnaccel.golden import ops as _ops
from mnaccel.golden import quant
from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Activation, Graph, Layer, Op, Padding, Tensor

__all__ = ["SUPPORTED_OPERATORS", "load_tflite"]

#: Operators the importer turns into layers (SOFTMAX ends the graph; the shape-only
#: operators are dropped).
SUPPORTED_OPERATORS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "MUL",
    "MEAN",
    "HARD_SWISH",
    "AVERAGE_POOL_2D",
    "PAD",
    "RELU",
    "RELU6",
    "RESHAPE",
    "SQUEEZE",
    "SHAPE",
    "STRIDED_SLICE",
    "PACK",
    "SOFTMAX",
)

# Operators that may only compute int32 shapes for a RESHAPE; dropped from the graph.
_SHAPE_OPS = frozenset({"SHAPE", "STRIDED_SLICE", "PACK"})

# TFLite counts a tensor's elements in an int32; a larger shape is a corrupt file.
_MAX_ELEMENTS = 2**31 - 1

# Inputs each imported operator reads (the bias of a convolution is optional).
_MIN_INPUTS = {
    "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2, "MUL": 2, "MEAN": 2,
    "PAD": 2, "HARD_SWISH": 1, "RELU": 1, "RELU6": 1, "AVERAGE_POOL_2D": 1, "RESHAPE": 1,
    "SQUEEZE": 1, "SOFTMAX": 1,
}  # fmt: skip

_DTYPES = {
    v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_") and isinstance(v, int)
}
_NUMPY_DTYPES = {
    tflite.TensorType.INT8: np.int8,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.UINT8: np.uint8,
    tflite.TensorType.INT16: np.int16,
    tflite.TensorType.INT64: np.int64,
    tflite.TensorType.FLOAT32: np.float32,
}
_ACTIVATIONS = {
    tflite.ActivationFunctionType.NONE: Activation.NONE,
    tflite.ActivationFunctionType.RELU: Activation.RELU,
    tflite.ActivationFunctionType.RELU6: Activation.RELU6,
}
_ACTIVATION_NAMES = {
    v: k
    for k, v in vars(tflite.ActivationFunctionType).items()
    if not k.startswith("_") and isinstance(v, int)
}
_PADDINGS = {tflite.Padding.SAME: Padding.SAME, tflite.Padding.VALID: Padding.VALID}

# Operator name -> (BuiltinOptions union type, options class, reader of its fields).
_OPTIONS = {
    "CONV_2D": (
        tflite.BuiltinOptions.Conv2DOptions,
        tflite.Conv2DOptions,
        lambda o: dict(
            padding=o.Padding(),
            stride=(o.StrideH(), o.StrideW()),
            activation=o.FusedActivationFunction(),
            dilation=(o.DilationHFactor(), o.DilationWFactor()),
        ),
    ),
    "DEPTHWISE_CONV_2D": (
        tflite.BuiltinOptions.DepthwiseConv2DOptions,
        tflite.DepthwiseConv2DOptions,
        lambda o: dict(
            padding=o.Padding(),
            stride=(o.StrideH(), o.StrideW()),
            activation=o.FusedActivationFunction(),
            dilation=(o.DilationHFactor(), o.DilationWFactor()),
            depth_multiplier=o.DepthMultiplier(),
        ),
    ),
    "FULLY_CONNECTED": (
        tflite.BuiltinOptions.FullyConnectedOptions,
        tflite.FullyConnectedOptions,
        lambda o: dict(
            activation=o.FusedActivationFunction(),
            weights_format=o.WeightsFormat(),
            keep_num_dims=bool(o.KeepNumDims()),
        ),
    ),
    "AVERAGE_POOL_2D": (
        tflite.BuiltinOptions.Pool2DOptions,
        tflite.Pool2DOptions,
        lambda o: dict(
            padding=o.Padding(),
            stride=(o.StrideH(), o.StrideW()),
            filter=(o.FilterHeight(), o.FilterWidth()),
            activation=o.FusedActivationFunction(),
        ),
    ),
    "ADD": (
        tflite.BuiltinOptions.AddOptions,
        tflite.AddOptions,
        lambda o: dict(activation=o.FusedActivationFunction()),
    ),
    "MUL": (
        tflite.BuiltinOptions.MulOptions,
        tflite.MulOptions,
        lambda o: dict(activation=o.FusedActivationFunction()),
    ),
    "MEAN": (
        tflite.BuiltinOptions.ReducerOptions,
        tflite.ReducerOptions,
        lambda o: dict(keep_dims=bool(o.KeepDims())),
    ),
}
# Values the flatbuffer schema gives fields that a writer left out with their options table.
_DEFAULT_OPTIONS = {
    "CONV_2D": dict(padding=0, stride=(0, 0), activation=0, dilation=(1, 1)),
    "DEPTHWISE_CONV_2D": dict(
        padding=0, stride=(0, 0), activation=0, dilation=(1, 1), depth_multiplier=0
    ),
    "FULLY_CONNECTED": dict(activation=0, weights_format=0, keep_num_dims=False),
    "AVERAGE_POOL_2D": dict(padding=0, stride=(0, 0), filter=(0, 0), activation=0),
    "ADD": dict(activation=0),
    "MUL": dict(activation=0),
    "MEAN": dict(keep_dims=False),
}


@dataclass
class _RawTensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: int
    data: np.ndarray | None
    scales: np.ndarray | None
    zero_points: np.ndarray | None
    quantized_dimension: int

    @property
    def dtype_name(self) -> str:
        return _DTYPES.get(self.dtype, f"type {self.dtype}")


@dataclass
class _RawOp:
    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


def load_tflite(path: str | Path) -> Graph:
    """Import a full-integer int8 .tflite model.

    Parameters
    ----------
    path : str or pathlib.Path
        The .tflite file.

    Returns
    -------
    Graph
        Named after the file's stem. Layers follow the file's operator order; each layer is
        named ``<operator>_<operator index>`` (e.g. ``depthwise_conv_2d_4``), and each
        tensor keeps its TFLite name and ``index``.

    Raises
    ------
    UserError
        If the file cannot be read, is not a TFLite model, is truncated or corrupt, is not a
        full-integer int8 model, or uses an operator or parameter that mnaccel does not
        support.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    tensors, ops, inputs, outputs = _parse(data, path.name)
    return _Importer(path.name, path.stem, tensors, ops, inputs, outputs).build()


# ----------------------------------------------------------------------------------------
# Flatbuffer parsing: everything the importer needs, copied into plain Python objects.


class _Corrupt(ValueError):
    """An inconsistency found while parsing; its message says which."""


def _parse(data: bytes, fname: str):
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"{fname}: not a TFLite file (no 'TFL3' flatbuffer identifier)")
    buf = bytearray(data)
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        if model.SubgraphsLength() < 1:
            raise UserError(f"{fname}: the model has no subgraph")
        graph = model.Subgraphs(0)
        tensors = [_parse_tensor(model, graph, i, buf) for i in range(graph.TensorsLength())]
        ops = [_parse_op(model, graph.Operators(i), i) for i in range(graph.OperatorsLength())]
        inputs = tuple(int(i) for i in graph.InputsAsNumpy()) if graph.InputsLength() else ()
        outputs = tuple(int(i) for i in graph.OutputsAsNumpy()) if graph.OutputsLength() else ()
    except UserError:
        raise
    except (
        IndexError, struct.error, ValueError, TypeError, OverflowError, UnicodeDecodeError,
        MemoryError,
    ) as exc:  # fmt: skip
        # The flatbuffer reader checks nothing: a cut or garbled file fails wherever an
        # offset first points outside the data, with whichever error that read raises.
        if isinstance(exc, _Corrupt):
            why = str(exc)
        elif isinstance(exc, (struct.error, IndexError)):
            why = "an offset points outside the data"
        else:
            why = f"{type(exc).__name__} while parsing"
        raise UserError(f"{fname}: truncated or corrupt TFLite file ({why})") from None
    for i in (*inputs, *outputs):
        if not 0 <= i < len(tensors):
            raise UserError(f"{fname}: corrupt TFLite file (tensor index {i} out of range)")
    for op in ops:
        for i in (*op.inputs, *op.outputs):
            if not (-1 if i in op.inputs else 0) <= i < len(tensors):
                raise UserError(
                    f"{fname}: corrupt TFLite file (operator {op.index} {op.name} refers to "
                    f"tensor {i} of {len(tensors)})"
                )
    return tensors, ops, inputs, outputs


def _parse_tensor(model, graph, i: int, buf: bytearray) -> _RawTensor:
    t = graph.Tensors(i)
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    if any(d < 0 for d in shape):
        raise _Corrupt(f"tensor {i} has shape {shape}")
    dtype = t.Type()
    data = None
    b = t.Buffer()
    if b > 0:  # buffer 0 is the empty sentinel
        if b >= model.BuffersLength():
            raise _Corrupt(f"tensor {i} refers to buffer {b} of {model.BuffersLength()}")
        buffer = model.Buffers(b)
        if buffer.Offset() > 1:  # large models keep data outside the flatbuffer
            start, size = buffer.Offset(), buffer.Size()
            if start + size > len(buf):
                raise _Corrupt(f"tensor {i}: its buffer ends past the end of the file")
            raw = np.frombuffer(bytes(buf[start : start + size]), dtype=np.uint8)
        elif buffer.DataLength():
            raw = buffer.DataAsNumpy()
        else:
            raw = None
        if raw is not None:
            np_dtype = _NUMPY_DTYPES.get(dtype)
            if np_dtype is not None:
                expected = math.prod(shape) * np.dtype(np_dtype).itemsize
                if raw.size != expected:
                    raise _Corrupt(f"tensor {i} has {raw.size} bytes of data, not {expected}")
                data = raw.view(np_dtype).reshape(shape).copy()
            else:
                data = raw.copy()
    scales = zero_points = None
    qdim = 0
    q = t.Quantization()
    if q is not None:
        if q.ScaleLength():
            scales = q.ScaleAsNumpy().astype(np.float32)
        if q.ZeroPointLength():
            zero_points = q.ZeroPointAsNumpy().astype(np.int64)
        qdim = int(q.QuantizedDimension())
    name = t.Name().decode("utf-8") if t.Name() is not None else f"tensor_{i}"
    return _RawTensor(i, name, shape, dtype, data, scales, zero_points, qdim)


def _parse_op(model, op, i: int) -> _RawOp:
    if op.OpcodeIndex() >= model.OperatorCodesLength():
        raise _Corrupt(
            f"operator {i} has operator code {op.OpcodeIndex()} of {model.OperatorCodesLength()}"
        )
    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    if builtin == tflite.BuiltinOperator.CUSTOM:
        custom = code.CustomCode()
        name = f"CUSTOM {custom.decode('utf-8', 'replace') if custom else '?'}"
    else:
        name = BUILTIN_OPCODE2NAME.get(builtin, f"builtin operator {builtin}")
    inputs = tuple(int(j) for j in op.InputsAsNumpy()) if op.InputsLength() else ()
    outputs = tuple(int(j) for j in op.OutputsAsNumpy()) if op.OutputsLength() else ()
    options: dict[str, Any] = {}
    if name in _OPTIONS:
        union_type, cls, read = _OPTIONS[name]
        table = op.BuiltinOptions()
        if table is not None and op.BuiltinOptionsType() == union_type:
            obj = cls()
            obj.Init(table.Bytes, table.Pos)
            options = read(obj)
        else:
            options = dict(_DEFAULT_OPTIONS[name])
    return _RawOp(i, name, inputs, outputs, options)


# ----------------------------------------------------------------------------------------
# Graph construction.


class _Importer:
    def __init__(self, fname, stem, tensors, ops, inputs, outputs):
        self.fname = fname
        self.stem = stem
        self.raw: list[_RawTensor] = tensors
        self.ops: list[_RawOp] = ops
        self.inputs = inputs
        self.outputs = outputs
        self.tensors: dict[str, Tensor] = {}
        self.names: dict[int, str] = {}  # TFLite index -> graph tensor name
        self.layers: list[Layer] = []

    # -- helpers -------------------------------------------------------------------------

    def fail(self, op: _RawOp | None, message: str):
        where = f"operator {op.index} ({op.name}): " if op is not None else ""
        raise UserError(f"{self.fname}: {where}{message}")

    def describe(self, t: _RawTensor) -> str:
        return f"tensor {t.index} {t.name!r}"

    def per_tensor_quant(self, op, t: _RawTensor) -> tuple[float, int]:
        if t.dtype != tflite.TensorType.INT8:
            self.fail(op, f"{self.describe(t)} is {t.dtype_name}; only int8 is supported")
        if t.scales is None or t.scales.size != 1 or t.zero_points is None:
            n = 0 if t.scales is None else t.scales.size
            self.fail(op, f"{self.describe(t)} needs one scale and zero point, not {n}")
        scale, zp = float(t.scales[0]), int(t.zero_points[0])
        if not (scale > 0 and math.isfinite(scale)):
            self.fail(op, f"{self.describe(t)} has scale {scale}; it must be positive and finite")
        if not -128 <= zp <= 127:
            self.fail(op, f"{self.describe(t)} has zero point {zp}, outside [-128, 127]")
        return scale, zp

    def tensor(self, op, index: int) -> str:
        """The graph name of an int8 tensor (activation or constant), created on first use."""
        if index in self.names:
            return self.names[index]
        t = self.raw[index]
        scale, zp = self.per_tensor_quant(op, t)
        if t.data is None and (min(t.shape, default=0) < 1 or math.prod(t.shape) > _MAX_ELEMENTS):
            self.fail(op, f"{self.describe(t)} has shape {t.shape}; a feature map needs 1 to "
                          f"{_MAX_ELEMENTS} elements")  # fmt: skip
        name = t.name if t.name not in self.tensors else f"{t.name}#{index}"
        data = None if t.data is None else np.asarray(t.data, dtype=np.int8).reshape(t.shape)
        self.tensors[name] = Tensor(name, t.shape, scale, zp, data=data, index=index)
        self.names[index] = name
        return name

    def activation_input(self, op, index: int) -> str:
        if index < 0:
            self.fail(op, "a required input is missing")
        if self.raw[index].data is not None:
            self.fail(op, f"{self.describe(self.raw[index])} is a constant; expected a feature map")
        if index not in self.names:
            self.fail(op, f"reads {self.describe(self.raw[index])}, which nothing computes")
        return self.names[index]

    def nhwc_input(self, op) -> str:
        """The operator's first input, a rank-4 feature map."""
        x = self.activation_input(op, op.inputs[0])
        if len(self.tensors[x].shape) != 4:
            self.fail(op, f"input {x!r} of shape {self.tensors[x].shape} is not NHWC")
        return x

    def weight_tensor(self, op, index: int, rank: int, what: str) -> _RawTensor:
        """The raw constant ``index`` of the given rank, before its values are read."""
        if index < 0:
            self.fail(op, f"{what} are missing")
        t = self.raw[index]
        if len(t.shape) != rank or min(t.shape) < 1:
            self.fail(op, f"{what} ({self.describe(t)}) have shape {t.shape}, not {rank} "
                          f"positive dimensions")  # fmt: skip
        return t

    def output(self, op) -> str:
        if len(op.outputs) != 1:
            self.fail(op, f"has {len(op.outputs)} outputs; expected 1")
        index = op.outputs[0]
        if index in self.names:
            self.fail(op, f"writes {self.describe(self.raw[index])} a second time")
        return self.tensor(op, index)

    def activation(self, op) -> Activation:
        code = op.options["activation"]
        if code not in _ACTIVATIONS:
            name = _ACTIVATION_NAMES.get(code, str(code))
            self.fail(op, f"fused activation {name} is not supported (NONE, RELU, RELU6 are)")
        return _ACTIVATIONS[code]

    def padding(self, op) -> Padding:
        code = op.options["padding"]
        if code not in _PADDINGS:
            self.fail(op, f"padding {code} is not SAME or VALID")
        return _PADDINGS[code]

    def stride(self, op) -> tuple[int, int]:
        stride = op.options["stride"]
        if min(stride) < 1:
            self.fail(op, f"stride {stride[0]}x{stride[1]} is not positive")
        return stride

    def weights(self, op, index: int, qdim: int, channels: int, what: str):
        """int8 weights and their float32 scales (per channel along ``qdim``, or one)."""
        if index < 0:
            self.fail(op, f"{what} are missing")
        t = self.raw[index]
        if t.data is None:
            self.fail(op, f"{what} ({self.describe(t)}) are not constant")
        if t.dtype != tflite.TensorType.INT8:
            self.fail(op, f"{what} ({self.describe(t)}) are {t.dtype_name}; only int8 is supported")
        if t.scales is None or t.scales.size not in (1, channels):
            n = 0 if t.scales is None else t.scales.size
            self.fail(op, f"{what} have {n} scales; expected 1 or {channels}")
        if t.scales.size > 1 and t.quantized_dimension != qdim:
            self.fail(
                op,
                f"{what} are quantized along dimension {t.quantized_dimension}; expected {qdim}",
            )
        if t.zero_points is not None and np.any(t.zero_points != 0):
            bad = int(t.zero_points[np.flatnonzero(t.zero_points)[0]])
            self.fail(op, f"{what} have zero point {bad}; only symmetric weights are supported")
        if not np.all((t.scales > 0) & np.isfinite(t.scales)):
            self.fail(op, f"{what} have a scale that is not positive and finite")
        return t.data.astype(np.int8), t.scales.astype(np.float32)

    def bias(self, op, index: int, channels: int) -> np.ndarray:
        if index < 0:
            return np.zeros(channels, dtype=np.int32)
        t = self.raw[index]
        if t.data is None or t.dtype != tflite.TensorType.INT32:
            self.fail(op, f"bias ({self.describe(t)}) must be a constant int32, not {t.dtype_name}")
        if t.data.size != channels:
            self.fail(op, f"bias has {t.data.size} values; expected {channels}")
        return t.data.reshape(channels).astype(np.int32)

    def layer_name(self, op) -> str:
        return f"{op.name.lower()}_{op.index}"

    # -- the model ------------------------------------------------------------------------

    def build(self) -> Graph:
        if len(self.inputs) != 1:
            self.fail(None, f"the model has {len(self.inputs)} inputs; mnaccel handles one")
        inp = self.raw[self.inputs[0]]
        kinds = {
            tflite.TensorType.FLOAT32: "a float32 model",
            tflite.TensorType.FLOAT16: "a float16 model",
            tflite.TensorType.UINT8: "a uint8 model",
            tflite.TensorType.INT16: "an int16x8 model (int16 activations)",
        }
        if inp.dtype == tflite.TensorType.FLOAT32 and any(
            t.dtype == tflite.TensorType.INT8 and t.data is not None for t in self.raw
        ):
            # Dynamic-range quantization (optimizations=[DEFAULT] without representative
            # data): int8 weights, float activations, quantized on the fly at run time.
            kinds[inp.dtype] = "a dynamic-range quantized model (int8 weights, float activations)"
        if inp.dtype != tflite.TensorType.INT8:
            kind = kinds.get(inp.dtype, f"a {inp.dtype_name} model")
            raise UserError(
                f"{self.fname}: {kind}: input {self.describe(inp)} is {inp.dtype_name}; mnaccel "
                f"imports full-integer int8 models (TFLiteConverter with TFLITE_BUILTINS_INT8 "
                f"and inference_input_type=tf.int8)"
            )
        for t in self.raw:
            if t.dtype == tflite.TensorType.INT16:
                raise UserError(
                    f"{self.fname}: an int16x8 model: {self.describe(t)} is INT16; mnaccel "
                    f"imports full-integer int8 models"
                )
        self.tensor(None, inp.index)

        shape_only = self.shape_only_ops()
        host_softmax: dict[int, int] = {}  # SOFTMAX output index -> its input index
        handlers = {
            "CONV_2D": self.conv,
            "DEPTHWISE_CONV_2D": self.depthwise,
            "FULLY_CONNECTED": self.fully_connected,
            "ADD": self.elementwise,
            "MUL": self.elementwise,
            "MEAN": self.mean,
            "HARD_SWISH": self.unary,
            "RELU": self.unary,
            "RELU6": self.unary,
            "AVERAGE_POOL_2D": self.average_pool,
            "RESHAPE": self.reshape,
            "SQUEEZE": self.reshape,
            "PAD": self.pad,
        }
        for op in self.ops:
            if op.index in shape_only:
                continue
            if op.name in _MIN_INPUTS and len(op.inputs) < _MIN_INPUTS[op.name]:
                self.fail(op, f"has {len(op.inputs)} inputs; expected {_MIN_INPUTS[op.name]}")
            if not op.outputs:
                self.fail(op, "has no output")
            if op.name == "SOFTMAX":
                src = self.activation_input(op, op.inputs[0])
                self.per_tensor_quant(op, self.raw[op.outputs[0]])
                host_softmax[op.outputs[0]] = self.tensors[src].index
                continue
            if op.name not in handlers:
                self.fail(
                    op,
                    f"mnaccel does not support this operator (it supports "
                    f"{', '.join(SUPPORTED_OPERATORS)})",
                )
            for i in op.inputs:
                if i in host_softmax:
                    self.fail(op, "reads the output of SOFTMAX, which mnaccel leaves to the host")
            layer = handlers[op.name](op)
            self.check_shape(op, layer)
            self.check_arithmetic(op, layer)
            self.layers.append(layer)

        outputs = []
        for i in self.outputs:
            i = host_softmax.get(i, i)
            if i not in self.names:
                self.fail(None, f"output {self.describe(self.raw[i])} is not an int8 feature map")
            outputs.append(self.names[i])
        if not outputs:
            self.fail(None, "the model has no outputs")
        try:
            return Graph(self.stem, self.tensors, self.layers, self.names[inp.index], outputs)
        except ValueError as exc:
            raise UserError(f"{self.fname}: {exc}") from None

    def check_shape(self, op, layer: Layer) -> None:
        """UserError unless the output tensor has the shape the operator computes.

        The golden interpreter compares the same way: the element count for the operators
        that flatten (FULLY_CONNECTED, RESHAPE, MEAN), the whole shape for the others.
        """
        x = self.tensors[layer.inputs[0]].shape
        out = self.tensors[layer.output].shape
        kind = layer.op
        if kind in (Op.CONV_2D, Op.DEPTHWISE_CONV_2D, Op.AVERAGE_POOL_2D):
            (kh, kw), (sh, sw) = layer.kernel, layer.stride
            try:
                oh = _ops.compute_padding(x[1], kh, sh, layer.padding)[0]
                ow = _ops.compute_padding(x[2], kw, sw, layer.padding)[0]
            except ValueError as exc:
                self.fail(op, f"{exc}")
            channels = layer.weights.shape[0] if kind is Op.CONV_2D else x[3]
            want = (x[0], oh, ow, channels)
        elif kind is Op.FULLY_CONNECTED:
            c_in, c_out = layer.weights.shape[1], layer.weights.shape[0]
            if math.prod(x) % c_in:
                self.fail(op, f"input of shape {x} is not a whole number of {c_in}-vectors")
            want = (math.prod(x) // c_in, c_out)
        elif kind is Op.MEAN:
            want = (x[0], x[3])
        elif kind in (Op.ADD, Op.MUL):
            want = np.broadcast_shapes(*(self.tensors[n].shape for n in layer.inputs))
        elif kind is Op.PAD:
            (top, bottom), (left, right) = layer.params["paddings"]
            want = (x[0], x[1] + top + bottom, x[2] + left + right, x[3])
        else:  # RESHAPE (its element count is checked where it is built) and the unary ones
            want = x if kind is not Op.RESHAPE else out
        if kind in (Op.FULLY_CONNECTED, Op.MEAN):
            ok = math.prod(out) == math.prod(want)
        else:
            ok = tuple(out) == tuple(want)
        if not ok:
            self.fail(op, f"output {layer.output!r} has shape {out}; the operator computes "
                          f"{tuple(int(d) for d in want)}")  # fmt: skip

    def check_arithmetic(self, op, layer: Layer) -> None:
        """UserError if TFLite's int8 kernels cannot represent the layer's rescaling.

        The kernels derive fixed-point multipliers from the scales when they are prepared,
        and TFLite refuses (or overflows on) a multiplier out of range; the golden model
        derives them with the same functions, which are called here on a single zero.
        """
        t = self.tensors
        s_in, s_out = t[layer.inputs[0]].scale, t[layer.output].scale
        zero = np.zeros((1, 1, 1, 1), dtype=np.int8)
        try:
            with np.errstate(all="ignore"):
                if layer.op in (Op.CONV_2D, Op.DEPTHWISE_CONV_2D, Op.FULLY_CONNECTED):
                    _, shifts = quant.conv_multipliers(s_in, layer.weight_scales, s_out)
                    if shifts.max() > 31:
                        raise ValueError(
                            f"input scale x weight scale / output scale is 2**{shifts.max()}"
                        )
                elif layer.op in (Op.ADD, Op.MUL):
                    (a, b), o = (t[n] for n in layer.inputs), t[layer.output]
                    getattr(_ops, layer.op.value.lower())(
                        zero, zero, input1_scale=a.scale, input1_zp=a.zero_point,
                        input2_scale=b.scale, input2_zp=b.zero_point, output_scale=o.scale,
                        output_zp=o.zero_point, activation=layer.activation,
                    )  # fmt: skip
                elif layer.op is Op.HARD_SWISH:
                    _ops.hard_swish_params(s_in, s_out)
                elif layer.op in (Op.RELU, Op.RELU6):
                    _ops.relu(zero, input_scale=s_in, input_zp=0, output_scale=s_out,
                              output_zp=0)  # fmt: skip
                elif layer.op is Op.MEAN:
                    x = np.zeros((1, *t[layer.inputs[0]].shape[1:3], 1), dtype=np.int8)
                    for kernel in ("reference", "optimized"):
                        _ops.mean_hw(x, input_scale=s_in, input_zp=0, output_scale=s_out,
                                     output_zp=0, kernel=kernel)  # fmt: skip
        except ValueError as exc:
            self.fail(op, f"its scales are outside what TFLite's int8 kernels represent ({exc})")

    def shape_only_ops(self) -> set[int]:
        """Indices of SHAPE / STRIDED_SLICE / PACK operators that only compute shapes."""
        consumers: dict[int, list[tuple[_RawOp, int]]] = {}
        for op in self.ops:
            for pos, i in enumerate(op.inputs):
                consumers.setdefault(i, []).append((op, pos))
        dropped: set[int] = set()
        for op in self.ops:
            if op.name not in _SHAPE_OPS:
                continue
            for i in op.outputs:
                t = self.raw[i]
                if t.dtype != tflite.TensorType.INT32:
                    self.fail(
                        op,
                        f"works on {t.dtype_name} data ({self.describe(t)}); mnaccel supports "
                        f"{op.name} only where it computes the int32 shape of a RESHAPE",
                    )
                for user, pos in consumers.get(i, []):
                    ok = user.name in _SHAPE_OPS or (user.name == "RESHAPE" and pos == 1)
                    if not ok:
                        self.fail(
                            op,
                            f"its output {self.describe(t)} feeds operator {user.index} "
                            f"({user.name}); mnaccel supports {op.name} only where it computes "
                            f"the shape of a RESHAPE",
                        )
            dropped.add(op.index)
        return dropped

    # -- operators ------------------------------------------------------------------------

    def check_dilation(self, op) -> None:
        dh, dw = op.options["dilation"]
        if (dh, dw) != (1, 1):
            self.fail(op, f"dilation {dh}x{dw} is not supported (only 1x1)")

    def conv(self, op) -> Layer:
        self.check_dilation(op)
        x = self.nhwc_input(op)
        w_index = op.inputs[1]
        c_out = self.weight_tensor(op, w_index, 4, "weights").shape[0]
        w, ws = self.weights(op, w_index, 0, c_out, "weights")
        c_in = self.tensors[x].shape[-1]
        if w.shape[3] != c_in:
            self.fail(op, f"weights of shape {w.shape} do not fit {c_in} input channels")
        b = self.bias(op, op.inputs[2] if len(op.inputs) > 2 else -1, c_out)
        return Layer(
            self.layer_name(op), Op.CONV_2D, (x,), self.output(op),
            weights=w, weight_scales=ws, bias=b, stride=self.stride(op),
            padding=self.padding(op), activation=self.activation(op),
        )  # fmt: skip

    def depthwise(self, op) -> Layer:
        self.check_dilation(op)
        x = self.nhwc_input(op)
        c_in = self.tensors[x].shape[-1]
        w_index = op.inputs[1]
        c_out = self.weight_tensor(op, w_index, 4, "weights").shape[-1]
        if c_out != c_in or op.options["depth_multiplier"] not in (0, 1):
            mult = c_out // c_in if c_in and c_out % c_in == 0 else op.options["depth_multiplier"]
            self.fail(
                op,
                f"depth multiplier {mult} ({c_in} -> {c_out} channels) is not supported (only 1)",
            )
        w, ws = self.weights(op, w_index, 3, c_out, "weights")
        if w.shape[0] != 1:
            self.fail(op, f"weights of shape {w.shape} are not (1, K_h, K_w, C)")
        b = self.bias(op, op.inputs[2] if len(op.inputs) > 2 else -1, c_out)
        return Layer(
            self.layer_name(op), Op.DEPTHWISE_CONV_2D, (x,), self.output(op),
            weights=w, weight_scales=ws, bias=b, stride=self.stride(op),
            padding=self.padding(op), activation=self.activation(op),
            params={"depth_multiplier": 1},
        )  # fmt: skip

    def fully_connected(self, op) -> Layer:
        if op.options["weights_format"] != tflite.FullyConnectedOptionsWeightsFormat.DEFAULT:
            self.fail(op, f"weights format {op.options['weights_format']} is not supported")
        x = self.activation_input(op, op.inputs[0])
        w_index = op.inputs[1]
        c_out = self.weight_tensor(op, w_index, 2, "weights").shape[0]
        w, ws = self.weights(op, w_index, 0, c_out, "weights")
        c_in = self.tensors[x].shape[-1]
        if w.shape[1] != c_in:
            self.fail(op, f"weights of shape {w.shape} do not fit {c_in} input features")
        b = self.bias(op, op.inputs[2] if len(op.inputs) > 2 else -1, c_out)
        return Layer(
            self.layer_name(op), Op.FULLY_CONNECTED, (x,), self.output(op),
            weights=w, weight_scales=ws, bias=b, activation=self.activation(op),
            params={"keep_num_dims": op.options["keep_num_dims"]},
        )  # fmt: skip

    def elementwise(self, op) -> Layer:
        if len(op.inputs) != 2:
            self.fail(op, f"has {len(op.inputs)} inputs; expected 2")
        names = []
        for i in op.inputs:
            if i < 0:
                self.fail(op, "an input is missing")
            if self.raw[i].data is not None:
                names.append(self.tensor(op, i))  # a constant operand
            else:
                names.append(self.activation_input(op, i))
        if all(self.tensors[n].data is not None for n in names):
            self.fail(op, "both operands are constants")
        shapes = [self.tensors[n].shape for n in names]
        try:
            np.broadcast_shapes(*shapes)
        except ValueError:
            self.fail(op, f"operand shapes {shapes[0]} and {shapes[1]} do not broadcast")
        return Layer(
            self.layer_name(op), Op[op.name], tuple(names), self.output(op),
            activation=self.activation(op),
        )  # fmt: skip

    def mean(self, op) -> Layer:
        x = self.nhwc_input(op)
        axes_t = self.raw[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
        if axes_t is None or axes_t.data is None:
            self.fail(op, "the axes are not a constant")
        axes = tuple(sorted({int(a) % 4 for a in axes_t.data.reshape(-1)}))
        if axes != (1, 2):
            self.fail(op, f"MEAN over axes {axes} is not supported (only over H and W, axes "
                          f"(1, 2))")  # fmt: skip
        return Layer(
            self.layer_name(op),
            Op.MEAN,
            (x,),
            self.output(op),
            params={"axes": axes, "keepdims": op.options["keep_dims"]},
        )

    def unary(self, op) -> Layer:
        x = self.activation_input(op, op.inputs[0])
        return Layer(self.layer_name(op), Op[op.name], (x,), self.output(op))

    def average_pool(self, op) -> Layer:
        x = self.nhwc_input(op)
        fh, fw = op.options["filter"]
        if fh < 1 or fw < 1:
            self.fail(op, f"filter {fh}x{fw} is not positive")
        return Layer(
            self.layer_name(op), Op.AVERAGE_POOL_2D, (x,), self.output(op),
            stride=self.stride(op), padding=self.padding(op), activation=self.activation(op),
            params={"filter": (fh, fw)},
        )  # fmt: skip

    def pad(self, op) -> Layer:
        x = self.nhwc_input(op)
        out = self.output(op)
        src, dst = self.tensors[x], self.tensors[out]
        if (src.scale, src.zero_point) != (dst.scale, dst.zero_point):
            self.fail(op, "changes the quantization; only a pure zero-point padding is supported")
        pads_t = self.raw[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
        if pads_t is None or pads_t.data is None:
            self.fail(op, "the paddings are not a constant")
        pads = np.asarray(pads_t.data).reshape(-1).astype(np.int64)
        if pads.size != 8:
            self.fail(op, f"paddings {pads.tolist()} are not 4 (before, after) pairs")
        pads = pads.reshape(4, 2)
        if pads[0].any() or pads[3].any() or (pads < 0).any():
            self.fail(
                op, f"paddings {pads.tolist()} are not a non-negative padding of H and W only"
            )
        paddings = ((int(pads[1, 0]), int(pads[1, 1])), (int(pads[2, 0]), int(pads[2, 1])))
        return Layer(self.layer_name(op), Op.PAD, (x,), out, params={"paddings": paddings})

    def reshape(self, op) -> Layer:
        x = self.activation_input(op, op.inputs[0])
        out = self.output(op)
        src, dst = self.tensors[x], self.tensors[out]
        if (src.scale, src.zero_point) != (dst.scale, dst.zero_point):
            self.fail(
                op,
                f"changes the quantization ({src.scale}, {src.zero_point}) -> "
                f"({dst.scale}, {dst.zero_point}); only a pure reshape is supported",
            )
        if int(np.prod(src.shape)) != int(np.prod(dst.shape)):
            self.fail(op, f"cannot reshape {src.shape} to {dst.shape}")
        return Layer(self.layer_name(op), Op.RESHAPE, (x,), out, params={"shape": dst.shape})
