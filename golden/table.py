"""The per-layer table: parameters, shapes and arithmetic of every layer of a graph.

One row per layer (``RESHAPE`` layers, which compute nothing, have none), in execution
order, then a ``sum`` row. The columns are those of the MobileNet notes:

``type``
    ``conv`` (a convolution with a kernel larger than 1×1), ``dw`` (depthwise), ``pw``
    (1×1 convolution on a feature map), ``fc`` (``FULLY_CONNECTED``, or a 1×1 convolution
    on the result of a global pooling: MobileNetV1's ``conv_preds``, V3's ``Conv_2``,
    ``Logits`` and squeeze-excite convolutions), ``pool`` (``MEAN`` or
    ``AVERAGE_POOL_2D``), ``add``, ``mul``, ``hswish``, ``relu``, ``relu6``.
``layer``
    The index of the row among the ``conv``/``dw``/``pw``/``fc`` rows, counting from 0 (for
    MobileNetV1 this is the numbering 0–27 of the notes); empty for the other rows.
``params``
    Weights only (what the notes count; biases are not included).
``stride``
    Of convolutions; empty for ``fc`` and element-wise rows.
``in_ch``, ``in_act_width``
    Channels and width of the (first) input feature map; width empty for ``fc`` rows.
``mul``, ``add``, ``mul_add``
    Arithmetic of the real-valued layer, without bias additions and without
    requantization: per output, a convolution does ``K²·C_in`` multiplies and
    ``K²·C_in − 1`` adds (depthwise: ``K²`` and ``K² − 1``; fully connected: ``C_in`` and
    ``C_in − 1``); a pooling does ``H·W − 1`` adds and one multiply (by ``1/(H·W)``); an
    ``add`` one add and a ``mul`` one multiply per output element; hard-swish
    ``x·relu6(x + 3)/6`` one add and two multiplies per element; ReLUs nothing.
    ``mul_add = mul + add``.

The MACs of a model, as the literature counts them, are the ``mul`` of its
``conv``/``dw``/``pw``/``fc`` rows (:func:`macs`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass

from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Graph, Layer, Op

__all__ = ["COLUMNS", "FORMATS", "Row", "format_table", "macs", "params", "table_rows"]

#: Column names, also the CSV header.
COLUMNS = ("type", "layer", "params", "stride", "in_ch", "in_act_width", "mul", "add", "mul_add")
#: Output formats of :func:`format_table`.
FORMATS = ("md", "csv", "json")
_COMPUTE = ("conv", "dw", "pw", "fc")
_MD_HEADER = (
    "Type",
    "Layer",
    "# params",
    "Stride",
    "in_ch",
    "in_act_width",
    "# mul",
    "# add",
    "# mul+add",
)


@dataclass(frozen=True)
class Row:
    """One row of the table; None marks a cell that does not apply."""

    type: str
    layer: int | None
    params: int
    stride: int | None
    in_ch: int | None
    in_act_width: int | None
    mul: int
    add: int
    #: The graph layer's name (empty for the sum row); in JSON output only.
    name: str = ""

    @property
    def mul_add(self) -> int:
        return self.mul + self.add

    def cells(self) -> tuple:
        """The values of :data:`COLUMNS`, in order."""
        return tuple(getattr(self, c) for c in COLUMNS)


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _is_global_pool(graph: Graph, layer: Layer) -> bool:
    if layer.op is Op.MEAN:
        return tuple(sorted(layer.params.get("axes", (1, 2)))) == (1, 2)
    if layer.op is Op.AVERAGE_POOL_2D:
        _, h, w, _ = graph.tensors[layer.inputs[0]].shape
        return tuple(layer.params["filter"]) == (h, w)
    return False


_ELEMENTWISE = (Op.ADD, Op.MUL, Op.HARD_SWISH, Op.RELU, Op.RELU6, Op.RESHAPE)


def _row(graph: Graph, layer: Layer, pooled: set[str]) -> Row | None:
    x = graph.tensors[layer.inputs[0]].shape
    out = graph.tensors[layer.output].shape
    n_out = _size(out)
    in_ch = x[-1]
    width = x[2] if len(x) == 4 else None
    if layer.op is Op.CONV_2D:
        c_out, kh, kw, c_in = layer.weights.shape
        per_out = kh * kw * c_in
        if layer.inputs[0] in pooled and (kh, kw) == (1, 1):
            kind, stride, width = "fc", None, None
        else:
            kind, stride = ("pw" if (kh, kw) == (1, 1) else "conv"), layer.stride[1]
        return Row(
            kind,
            None,
            layer.weights.size,
            stride,
            in_ch,
            width,
            n_out * per_out,
            n_out * (per_out - 1),
            layer.name,
        )
    if layer.op is Op.DEPTHWISE_CONV_2D:
        kh, kw = layer.kernel
        return Row(
            "dw",
            None,
            layer.weights.size,
            layer.stride[1],
            in_ch,
            width,
            n_out * kh * kw,
            n_out * (kh * kw - 1),
            layer.name,
        )
    if layer.op is Op.FULLY_CONNECTED:
        c_in = layer.weights.shape[1]
        return Row(
            "fc",
            None,
            layer.weights.size,
            None,
            in_ch,
            None,
            n_out * c_in,
            n_out * (c_in - 1),
            layer.name,
        )
    if layer.op in (Op.MEAN, Op.AVERAGE_POOL_2D):
        window = _size(x) // n_out
        return Row("pool", None, 0, None, in_ch, width, n_out, n_out * (window - 1), layer.name)
    counts = {
        Op.ADD: ("add", 0, 1),
        Op.MUL: ("mul", 1, 0),
        Op.HARD_SWISH: ("hswish", 2, 1),
        Op.RELU: ("relu", 0, 0),
        Op.RELU6: ("relu6", 0, 0),
    }
    if layer.op in counts:
        kind, mul, add = counts[layer.op]
        return Row(kind, None, 0, None, in_ch, width, mul * n_out, add * n_out, layer.name)
    if layer.op is Op.RESHAPE:
        return None
    raise UserError(f"layer {layer.name!r}: the table cannot count operator {layer.op.value}")


def table_rows(graph: Graph) -> list[Row]:
    """The rows of ``graph``'s table, in execution order, ending with the ``sum`` row."""
    rows = []
    # Tensors computed from a global pooling through element-wise layers only: a 1×1
    # convolution on one of them is a fully connected layer.
    pooled: set[str] = set()
    index = 0
    for layer in graph.layers:
        if _is_global_pool(graph, layer):
            pooled.add(layer.output)
        elif layer.op is Op.CONV_2D and layer.kernel == (1, 1) and layer.inputs[0] in pooled:
            pooled.add(layer.output)
        elif layer.op in _ELEMENTWISE and all(
            name in pooled or graph.tensors[name].data is not None for name in layer.inputs
        ):
            pooled.add(layer.output)
        row = _row(graph, layer, pooled)
        if row is None:
            continue
        if row.type in _COMPUTE:
            row = Row(**{**asdict(row), "layer": index})
            index += 1
        rows.append(row)
    rows.append(
        Row(
            "sum",
            None,
            sum(r.params for r in rows),
            None,
            None,
            None,
            sum(r.mul for r in rows),
            sum(r.add for r in rows),
        )
    )
    return rows


def macs(rows: list[Row]) -> int:
    """Multiply-accumulates of the ``conv``/``dw``/``pw``/``fc`` rows."""
    return sum(r.mul for r in rows if r.type in _COMPUTE)


def params(rows: list[Row]) -> int:
    """Weights of all rows (biases excluded)."""
    return sum(r.params for r in rows if r.type != "sum")


def format_table(rows: list[Row], fmt: str) -> str:
    """Render rows as a Markdown table (``md``), ``csv`` or ``json``; ends with a newline.

    Cells that do not apply are ``-`` in Markdown, empty in CSV and null in JSON; JSON rows
    also carry the layer ``name``.
    """
    if fmt == "md":
        lines = ["| " + " | ".join(_MD_HEADER) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
        for r in rows:
            cells = ["-" if v is None else str(v) for v in r.cells()]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow("" if v is None else v for v in r.cells())
        return buf.getvalue()
    if fmt == "json":
        data = [{"name": r.name, **dict(zip(COLUMNS, r.cells(), strict=True))} for r in rows]
        return json.dumps(data, indent=1) + "\n"
    raise UserError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
