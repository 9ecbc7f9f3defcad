"""The layer descriptor: one entry of the program that the scheduler fetches and executes.

This is the single definition of the format. The scheduler gateware decodes
:class:`Descriptor` (an ``amaranth.lib.data.Struct``) field by field; the layer compiler
(:mod:`mnaccel.compiler`) encodes it with :func:`pack` / :func:`to_bytes`, which work on
plain Python ints so that compiling needs no simulator; docs/architecture.md's field table
is :func:`markdown_table`'s rendering of the same layout.

A program is a sequence of descriptors, each :data:`DESCRIPTOR_BYTES` bytes (a whole
number of AXI beats for every supported ``axi_data_width``), little-endian (bit 0 of the
layout is bit 0 of byte 0), ending with an ``END`` descriptor. Per-channel parameters
(bias, multiplier, shift, rounding) live in external memory as :data:`PARAM_RECORD`
records of :data:`PARAM_BYTES` bytes, one per output channel.
"""


from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, enum

from mnaccel.hw.line_buffer import Padding

__all__ = [
    "DESCRIPTOR_BYTES",
    "Descriptor",
    "FIELD_DOCS",
    "Opcode",
    "PARAM_BYTES",
    "PARAM_DOCS",
    "PARAM_RECORD",
    "ParamRecord",
    "from_bytes",
    "markdown_table",
    "pack",
    "to_bytes",
    "unpack",
]


class Opcode(enum.Enum, shape=4):
    """What a descriptor makes the accelerator do (see docs/architecture.md)."""

    #: End of the program: the scheduler raises ``done`` and the interrupt.
    END = 0
    #: A K×K standard convolution over few input channels (MobileNet's first layer): line
    #: buffer → ConvVectorAdapter → activation buffer → pointwise array → requantizer.
    CONV0 = 1
    #: A fused depthwise → pointwise pair: the depthwise output stays in the activation
    #: buffer and the pointwise array re-reads it once per output-channel chunk.
    DW_PW = 2
    #: A 1×1 convolution whose input comes from external memory (V2's expansion layers).
    PW = 3
    #: A depthwise convolution alone, output to external memory (V3's squeeze-excite): a
    #: DW_PW whose pointwise stage is an identity (``K = 1``, identity weight tiles made on
    #: chip, records that requantize by 1), so the depthwise output reaches the write-back.
    DW = 4
    #: Global average pool (MEAN over H and W) on the pointwise array with identity weights.
    POOL = 5
    #: A fully connected layer, or a 1×1 convolution on a 1×1 map, on the pointwise array.
    FC = 6
    #: Reserved: V2's residual ADD (two int8 inputs rescaled, added, requantized).
    ADD = 8
    #: Reserved: V3's channel MUL (squeeze-excite gate) and MUL by a constant.
    MUL = 9
    #: Reserved: V3's hard-swish.
    HSWISH = 10


#: Bytes of one descriptor: four 128-bit AXI beats.
DESCRIPTOR_BYTES = 64


class Descriptor(data.Struct):
    """One layer (or one fused dw→pw pair) of the program. Field meanings: FIELD_DOCS."""

    opcode: Opcode
    padding: Padding
    kernel: unsigned(3)
    stride: unsigned(2)
    flags: unsigned(6)
    in_h: unsigned(16)
    in_w: unsigned(16)
    in_c: unsigned(16)
    out_h: unsigned(16)
    out_w: unsigned(16)
    out_c: unsigned(16)
    in_stride: unsigned(16)
    out_stride: unsigned(16)
    in_zp: signed(8)
    mid_zp: signed(8)
    out_zp: signed(8)
    mid_act_min: signed(8)
    mid_act_max: signed(8)
    act_min: signed(8)
    act_max: signed(8)
    conv_c: unsigned(8)
    tile_pixels: unsigned(16)
    n_tiles: unsigned(16)
    last_tile_pixels: unsigned(16)
    first_tile_pixels: unsigned(16)
    k_chunks: unsigned(8)
    j_chunks: unsigned(16)
    in_addr: unsigned(32)
    out_addr: unsigned(32)
    dw_weight_addr: unsigned(32)
    dw_param_addr: unsigned(32)
    pw_weight_addr: unsigned(32)
    pw_param_addr: unsigned(32)


#: What each descriptor field means; :func:`markdown_table` puts it in the docs.
FIELD_DOCS: dict[str, str] = {
    "opcode": "`Opcode`: what to run",
    "padding": "`Padding` of the window operator (VALID 0, SAME 1)",
    "kernel": "window side of the dw / first conv (3 or 5); 1 for 1×1 ops",
    "stride": "stride of the window operator (1 or 2)",
    "flags": "reserved, 0",
    "in_h": "input height (pixels)",
    "in_w": "input width (pixels)",
    "in_c": "input channels as stored (multiple of the channel alignment)",
    "out_h": "output height",
    "out_w": "output width",
    "out_c": "output channels as stored (multiple of the channel alignment)",
    "in_stride": "bytes per input pixel in external memory",
    "out_stride": "bytes per output pixel in external memory",
    "in_zp": "input zero point (line-buffer pad value)",
    "mid_zp": "DW_PW/DW: zero point of the dw requantizer's output",
    "out_zp": "output zero point (DW: 0, the identity pass)",
    "mid_act_min": "DW_PW/DW: clamp of the dw requantizer, low",
    "mid_act_max": "DW_PW/DW: clamp of the dw requantizer, high",
    "act_min": "clamp of the output requantizer, low",
    "act_max": "clamp of the output requantizer, high",
    "conv_c": "CONV0: input channels that enter the K·K·C vector (RGB: 3)",
    "tile_pixels": "P: pixels per pixel tile (≤ pw_acc_depth)",
    "n_tiles": "pixel tiles of the layer",
    "last_tile_pixels": "pixels of the last tile",
    "first_tile_pixels": "pixels of the first tile (short: the pw array starts sooner)",
    "k_chunks": "K: input-channel chunks of `pw_rows` (reduction steps; POOL, DW: 1)",
    "j_chunks": "J: output-channel chunks of `pw_cols`",
    "in_addr": "external address of the input tensor (NHWC)",
    "out_addr": "external address of the output tensor (NHWC)",
    "dw_weight_addr": "dw weights in `weight_beats` order (DW_PW, DW)",
    "dw_param_addr": "dw per-channel parameter records (DW_PW, DW)",
    "pw_weight_addr": "pw weight tiles in beat order (CONV0, DW_PW, PW, FC; POOL and DW "
                      "use identity tiles made on chip)",
    "pw_param_addr": "pw per-channel parameter records (DW: the identity's)",
}


class ParamRecord(data.Struct):
    """Per-output-channel requantization parameters, one 128-bit record in memory."""

    bias: signed(32)
    multiplier: signed(32)
    shift: signed(8)
    round_up: unsigned(1)
    reserved: unsigned(55)


PARAM_RECORD = data.Layout.cast(ParamRecord)
PARAM_BYTES = 16

#: Meanings of the parameter record's fields.
PARAM_DOCS: dict[str, str] = {
    "bias": "int32 bias with the input zero point folded in: `bias − zp_in·Σw[c]`",
    "multiplier": "Q31 multiplier `M0`",
    "shift": "shift in [−31, 31] (left if > 0)",
    "round_up": "1: ties of the final shift round up (optimized kernels), 0: away from zero",
    "reserved": "0",
}


def _layout(layout) -> data.StructLayout:
    return data.Layout.cast(layout)


def pack(layout, values: dict[str, int]) -> int:
    """The integer a layout's signal holds for ``values`` (plain ints or enum members).

    Missing fields are 0. Raises ValueError naming the field if a value does not fit.
    """
    layout = _layout(layout)
    unknown = set(values) - {name for name, _ in layout}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    word = 0
    for name, field in layout:
        value = values.get(name, 0)
        value = int(getattr(value, "value", value))
        shape = Shape.cast(field.shape)
        lo, hi = ((-(1 << shape.width - 1), (1 << shape.width - 1) - 1) if shape.signed
                  else (0, (1 << shape.width) - 1))
        if not lo <= value <= hi:
            raise ValueError(f"field {name} = {value} does not fit {shape}")
        word |= (value & ((1 << shape.width) - 1)) << field.offset
    return word


def unpack(layout, word: int) -> dict[str, int]:
    """Inverse of :func:`pack`: field values as ints (signed fields sign-extended)."""
    layout = _layout(layout)
    out = {}
    for name, field in layout:
        shape = Shape.cast(field.shape)
        value = (word >> field.offset) & ((1 << shape.width) - 1)
        if shape.signed and value >> (shape.width - 1):
            value -= 1 << shape.width
        out[name] = value
    return out


def to_bytes(layout, values: dict[str, int], size: int | None = None) -> bytes:
    """:func:`pack` as little-endian bytes, ``size`` bytes (default: the layout's)."""
    layout = _layout(layout)
    size = (layout.size + 7) // 8 if size is None else size
    if size * 8 < layout.size:
        raise ValueError(f"{size} bytes cannot hold a {layout.size}-bit layout")
    return pack(layout, values).to_bytes(size, "little")


def from_bytes(layout, blob: bytes) -> dict[str, int]:
    """Inverse of :func:`to_bytes`."""
    return unpack(layout, int.from_bytes(bytes(blob), "little"))


def markdown_table(layout=Descriptor, docs: dict[str, str] | None = None) -> str:
    """The layout's fields as a markdown table (bits, width, type, meaning)."""
    layout = _layout(layout)
    if docs is None:
        docs = FIELD_DOCS if layout == _layout(Descriptor) else PARAM_DOCS
    lines = ["| field | bits | width | type | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, field in layout:
        shape = Shape.cast(field.shape)
        kind = (field.shape.__name__ if isinstance(field.shape, type)
                else ("signed" if shape.signed else "unsigned"))
        bits = f"{field.offset}–{field.offset + shape.width - 1}"
        lines.append(f"| `{name}` | {bits} | {shape.width} | {kind} | {docs[name]} |")
    return "\n".join(lines) + "\n"


if _layout(Descriptor).size > DESCRIPTOR_BYTES * 8:  # pragma: no cover - a format edit error
    raise AssertionError(f"Descriptor is {_layout(Descriptor).size} bits, more than "
                         f"{DESCRIPTOR_BYTES} bytes")
