"""The scheduler: fetches the program's descriptors and runs each step, tile by tile.

It is the control of the accelerator and the glue of its datapath: it owns the on-chip
activation and output buffers, the pointwise weight FIFO, the parameter banks and the
read demultiplexer, and drives the blocks that :class:`~mnaccel.hw.accelerator.Accelerator`
instantiates beside it (DMA, depthwise layer, CONV0 line buffer and vector adapter,
pointwise array, output requantizer). docs/hw/accelerator.md has the diagram and the state
machine.

A step (one descriptor) runs as engines that work at once, coupled only by the buffers'
full/claimed flags, credit counters and stream handshakes:

* **read issuer** — setup reads (``DW_PW``, ``DW``: the dw weights and parameter records),
  then per pixel tile ``t``: for ``PW``/``FC``/``POOL``, once activation-buffer half
  ``t % 2`` is free, one read of the tile's ``P × in_stride`` input bytes; then per
  output-channel chunk ``j`` its ``pw_cols`` parameter records and (not for ``POOL`` and
  ``DW``, whose weight tiles are identities made on chip) its ``K`` weight tiles,
  one command per tile, restarted for every pixel tile. **line-buffer reader**
  (``CONV0``/``DW_PW``): the input map in chunks of :data:`LB_CHUNK_BEATS` beats. Every
  command is issued only when its destination FIFO has room for all of its beats (credits),
  so the single in-order AXI read channel never blocks behind a full consumer. A tag FIFO
  remembers where each command's beats go.
* **producers** of the activation buffer (words of ``pw_rows`` bytes, pixel ``p`` at words
  ``p·S … p·S + S − 1``): the DMA (``PW``/``FC``/``POOL``, ``S = in_stride / pw_rows``), the
  depthwise layer's int8 outputs packed ``pw_rows / dw_lanes`` beats per word (``DW_PW``,
  ``DW``),
  or the CONV0 vector adapter's 27-byte vectors as ``K`` words (``CONV0``, ``S = K``).
* **beat generator** — per tile, once its half is full: ``for j: for k: for p:`` one beat
  ``(p, k)`` from word ``p·S + k`` of the half, ``swap`` at ``p = 0``, ``first``/``last`` at
  ``k = 0``/``K − 1``; the half is released after its last beat. ``POOL`` and ``DW``
  (``K = 1``): word ``p·S + (j·cols)/rows`` and identity weight tiles from a generator
  (``J`` per pixel tile), which pick the chunk's ``cols`` channels out of that word; POOL
  accumulates every pixel in entry 0 (``first``/``last`` at the first/last pixel), DW
  passes each pixel through alone, so that the depthwise layer's output reaches the
  requantizer and the write-back unchanged.
* **post-processing and write-back** — the array's ``pw_cols`` sums per pixel are cut into
  ``pw_cols / rq_lanes`` requantizer beats with the records of chunk ``j`` (two banks: one
  in use, the next loading), the int8 results written at byte ``p·out_stride + j·pw_cols +
  lane`` of output-buffer half ``t % 2``; a full half goes out as one write command of
  ``P × out_stride`` bytes.

Loads of tile ``t + 1`` overlap the compute of tile ``t``, write-back of tile ``t`` overlaps
compute of ``t + 1``, weight loads overlap compute. Steps do not overlap.

**Descriptor checks** (docs/robustness.md): a program is data from memory, so nothing in it
may hang the scheduler or make it write outside the step's output tensor. An unaligned
program address or descriptor address stops the run before the step starts
(``ErrorCode.ALIGN``); the shape checks (sizes against the buffers and the line buffer, tile
sizes against the pixel counts and the window geometry, :func:`check_descriptor`) run
beside the step's first cycles on shift-and-add multipliers (no DSP: the products of
descriptor sizes the engines need come from the same ones, :data:`PRODUCT_CYCLES`,
:data:`IN_BYTES_CYCLES`), and the write-back waits for them,
so that a bad step ends with ``ErrorCode.SHAPE`` before it has written anything and a good
one is not slowed down. After an error the engines are left mid-step: the top resets them
and aborts the DMA (:class:`~mnaccel.hw.accelerator.Accelerator`).
"""

from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mnaccel.hw.config import AccelConfig
from mnaccel.hw.depthwise import PARAM_LANE_LAYOUT
from mnaccel.hw.depthwise import layer_config as dw_layer_config
from mnaccel.hw.depthwise import layer_output_layout as dw_output_layout
from mnaccel.hw.depthwise import param_layout as dw_param_layout
from mnaccel.hw.depthwise import weight_layout as dw_weight_layout
from mnaccel.hw.descriptor import DESCRIPTOR_BYTES, PARAM_BYTES, Descriptor, Opcode
from mnaccel.hw.dma import (
    command_layout,
    done_layout,
    read_data_layout,
    status_layout,
    write_data_layout,
)
from mnaccel.hw.line_buffer import Padding, layer_config_layout
from mnaccel.hw.pointwise import input_layout as pw_input_layout
from mnaccel.hw.pointwise import output_layout as pw_output_layout
from mnaccel.hw.pointwise import weight_layout as pw_weight_layout
from mnaccel.hw.requantizer import input_layout as rq_input_layout
from mnaccel.hw.requantizer import output_layout as rq_output_layout

__all__ = ["CHECK_CYCLES", "ErrorCode", "IN_BYTES_CYCLES", "PRODUCT_CYCLES", "Scheduler",
           "SUPPORTED_OPCODES", "check_descriptor"]

#: Opcodes the scheduler executes; any other raises ``ErrorCode.OPCODE``.
SUPPORTED_OPCODES = (Opcode.END, Opcode.CONV0, Opcode.DW_PW, Opcode.PW, Opcode.DW,
                     Opcode.POOL, Opcode.FC)

#: The first convolution the CONV0 path takes (ConvVectorAdapter is built for one shape):
#: MobileNet's 3×3 over RGB.
CONV0_KERNEL = 3
CONV0_CHANNELS = 3

#: Beats of the line-buffer input FIFO, and of one read command into it.
LB_FIFO_BEATS = 64
LB_CHUNK_BEATS = 32

#: Bits of a DMA command's byte length.
LEN_WIDTH = 24

#: Bits of a descriptor size: the per-step products are computed by shift and add, one bit
#: of the second operand per cycle (:func:`_serial_mul`), so that the scheduler needs no DSP.
_MUL_BITS = 16
#: Cycles from a step's start (``step_go``, in DECODE) until the products of descriptor sizes
#: (the byte counts of the tiles' activation reads and write-backs) are known: the issuer's
#: first activation read waits for them.
PRODUCT_CYCLES = _MUL_BITS + 1
#: Cycles from ``step_go`` until its shape checks are known (the products, then two
#: registered stages of comparisons); no write command is issued before.
CHECK_CYCLES = _MUL_BITS + 4
#: Cycles from ``step_go`` until the input map's byte count (a second pass on the products)
#: is known: the line-buffer reader's first read waits for it.
IN_BYTES_CYCLES = 2 * _MUL_BITS + 2


class ErrorCode(enum.Enum, shape=8):
    """``STATUS.ERROR_CODE`` values the scheduler reports."""

    NONE = 0
    #: A descriptor's opcode is not executed (reserved, or not implemented yet).
    OPCODE = 1
    #: The read DMA reported an error (see the DMA's status).
    DMA_READ = 2
    #: The write DMA reported an error.
    DMA_WRITE = 3
    #: A descriptor's sizes are out of range or inconsistent (:func:`check_descriptor`).
    SHAPE = 4
    #: The program address or an address in a descriptor is not a multiple of the AXI
    #: beat (``axi_data_width / 8`` bytes).
    ALIGN = 5


class _Tag(enum.Enum, shape=3):
    """Where a read command's beats go."""

    DESC = 0
    ACT = 1
    PARAM = 2
    WEIGHT = 3
    DW_WEIGHT = 4
    DW_PARAM = 5
    LB_IN = 6


#: One channel's requantization parameters, as held in the banks.
_RECORD = data.StructLayout({
    "bias": signed(32), "multiplier": signed(32), "shift": signed(6), "round_up": 1})


def _log2(n: int) -> int:
    return n.bit_length() - 1


def _serial_mul(m: Module, a, b, start, name: str, width: int = 32) -> Signal:
    """``a·b`` (unsigned, modulo ``2**width``) by shift and add: one bit of ``b`` per cycle.

    The operands are taken in the cycle ``start`` is high; the product is final ``len(b)``
    cycles after the next one and holds until the next ``start``. A 32-bit adder and three
    shift registers instead of a DSP: the scheduler's products are per step, not per beat.
    """
    acc = Signal(width, name=f"{name}")
    a_sh = Signal(width, name=f"{name}_a")
    b_sh = Signal(len(b), name=f"{name}_b")
    with m.If(start):
        m.d.sync += [acc.eq(0), a_sh.eq(a), b_sh.eq(b)]
    with m.Else():
        m.d.sync += [a_sh.eq(a_sh << 1), b_sh.eq(b_sh >> 1)]
        with m.If(b_sh[0]):
            m.d.sync += acc.eq(acc + a_sh)
    return acc


def _misaligned(value, n: int):
    """Whether ``value`` is not a multiple of the power of two ``n`` (combinational)."""
    return value[:_log2(n)].any() if n > 1 else Const(0)


def _decode(d, beat: int) -> dict:
    """The per-step flags of descriptor ``d``: what the engines and the decode ask of its
    opcode, and ``run``: a step the scheduler runs, its addresses aligned to the ``beat``
    (combinational)."""
    op = d.opcode
    f = {"pool": op == Opcode.POOL, "conv": op == Opcode.CONV0, "dwpw": op == Opcode.DW_PW,
         "dw": op == Opcode.DW,
         "pw": (op == Opcode.PW) | (op == Opcode.FC),
         "end": op == Opcode.END}
    # The depthwise layer runs (DW_PW, DW); the activation buffer is fed on chip (those and
    # CONV0); the pointwise array applies identity tiles from the generator, one input word
    # per output chunk (POOL, DW).
    f["dwe"] = f["dwpw"] | f["dw"]
    f["from_lb"] = f["dwe"] | f["conv"]
    f["diag"] = f["pool"] | f["dw"]
    f["step"] = f["pool"] | f["from_lb"] | f["pw"]
    f["addr_bad"] = (
        _misaligned(d.in_addr, beat) | _misaligned(d.out_addr, beat)
        | _misaligned(d.pw_param_addr, beat) | (~f["diag"] & _misaligned(d.pw_weight_addr, beat))
        | (f["dwe"] & (_misaligned(d.dw_weight_addr, beat)
                       | _misaligned(d.dw_param_addr, beat))))
    f["run"] = f["step"] & ~f["addr_bad"]
    return f


def _const_mul(x, k: int):
    """``x·k`` for a constant ``k`` as a sum of shifts: Yosys maps even a constant ``*`` to
    a DSP."""
    terms = [x << i for i in range(k.bit_length()) if k >> i & 1]
    total = terms[0] if terms else Const(0)
    for t in terms[1:]:
        total = total + t
    return total


def _window_out(size: int, kernel: int, stride: int, same: bool) -> int:
    """Output size of a window axis (0 if a VALID window does not fit), as the checks
    compute it for strides 1 and 2."""
    if same:
        return (size + stride - 1) // stride
    return (size - kernel) // stride + 1 if size >= kernel else 0


def check_descriptor(fields: dict, config: AccelConfig) -> list[tuple[ErrorCode, str]]:
    """The rules a step's descriptor must meet, as the scheduler checks them.

    They are the conditions under which no engine of the step can wait forever and the step
    reads and writes only its tensors: exactly ``out_h·out_w`` pixels of ``out_stride``
    bytes at ``out_addr`` (``POOL``: one pixel). The compiler's descriptors meet them
    (``tests/hw/test_robustness.py`` checks MobileNetV1 and single layers on every preset);
    the gateware implements the same rules, and the tests compare its verdict with this
    function's.

    Parameters
    ----------
    fields : dict
        A descriptor's field values (:func:`mnaccel.hw.descriptor.from_bytes`).
    config : AccelConfig

    Returns
    -------
    list of (ErrorCode, str)
        The broken rules, ``[]`` if the scheduler runs the step. ``ALIGN`` rules stop the
        run when the descriptor is decoded, ``SHAPE`` rules :data:`CHECK_CYCLES` cycles
        later; the run reports ``ALIGN`` if any ``ALIGN`` rule is broken. ``END`` and the
        opcodes the scheduler does not execute (``ErrorCode.OPCODE``) have no rules.
    """
    cfg = config
    f = {name: int(getattr(v, "value", v)) for name, v in fields.items()}
    if f["opcode"] not in {o.value for o in SUPPORTED_OPCODES if o is not Opcode.END}:
        return []
    op = Opcode(f["opcode"])
    beat, align = cfg.axi_data_width // 8, cfg.channel_align
    R, C, depth = cfg.pw_rows, cfg.pw_cols, cfg.pw_acc_depth
    pool, conv, dwpw, dw = (op is Opcode.POOL, op is Opcode.CONV0, op is Opcode.DW_PW,
                            op is Opcode.DW)
    dwe = dwpw or dw
    window, pw = conv or dwe, op in (Opcode.PW, Opcode.FC)
    problems = []

    def rule(broken: bool, code: ErrorCode, what: str) -> None:
        if broken:
            problems.append((code, what))

    addrs = ["in_addr", "out_addr", "pw_param_addr"] + ([] if pool or dw else ["pw_weight_addr"])
    if dwe:
        addrs += ["dw_weight_addr", "dw_param_addr"]
    for name in addrs:
        rule(f[name] % beat != 0, ErrorCode.ALIGN,
             f"{name} = {f[name]:#x} is not a multiple of the {beat}-byte AXI beat")

    SHAPE = ErrorCode.SHAPE
    n, first, mid, last = (f["n_tiles"], f["first_tile_pixels"], f["tile_pixels"],
                           f["last_tile_pixels"])
    K, J = f["k_chunks"], f["j_chunks"]
    rule(0 in (n, first, mid, last, K, J), SHAPE,
         "n_tiles, the tile sizes, k_chunks and j_chunks must be at least 1")
    for name in ("in_stride", "out_stride"):
        rule(f[name] % align != 0, SHAPE,
             f"{name} = {f[name]} is not a multiple of the channel alignment {align}")
    rule(J * C > f["out_stride"], SHAPE,
         f"j_chunks·pw_cols = {J * C} output bytes do not fit out_stride = {f['out_stride']}")
    rule(not pool and max(first, mid, last) > depth, SHAPE,
         f"a tile of {max(first, mid, last)} pixels exceeds pw_acc_depth = {depth}")
    rule((pw or dwpw) and K * R > f["in_stride"], SHAPE,
         f"k_chunks·pw_rows = {K * R} input bytes exceed in_stride = {f['in_stride']}")
    if window:
        s, k, same = f["stride"], f["kernel"], f["padding"] == Padding.SAME.value
        rule(s not in (1, 2), SHAPE, f"stride {s} (1 or 2)")
        rule(f["in_stride"] != f["in_c"], SHAPE,
             f"in_stride = {f['in_stride']} differs from in_c = {f['in_c']} (the line buffer "
             f"reads the map densely)")
        rule(f["in_w"] > cfg.lb_max_width, SHAPE,
             f"width {f['in_w']} > lb_max_width = {cfg.lb_max_width}")
        if s in (1, 2):
            oh = _window_out(f["in_h"], k, s, same)
            ow = _window_out(f["in_w"], k, s, same)
            rule((f["out_h"], f["out_w"]) != (oh, ow), SHAPE,
                 f"output {f['out_h']}×{f['out_w']} is not the window's {oh}×{ow}")
    if dwe:
        rule(f["kernel"] not in ((3, 5) if cfg.max_kernel == 5 else (3,)), SHAPE,
             f"kernel {f['kernel']} (3, or 5 if max_kernel = 5)")
        rule(f["in_c"] > cfg.lb_max_channels or f["in_c"] % cfg.dw_lanes != 0, SHAPE,
             f"in_c = {f['in_c']}: at most lb_max_channels = {cfg.lb_max_channels}, a multiple "
             f"of dw_lanes = {cfg.dw_lanes}")
        rule(f["in_w"] * f["in_c"] > cfg.lb_max_row_bytes, SHAPE,
             f"a row of {f['in_w']}×{f['in_c']} bytes > lb_max_row_bytes = "
             f"{cfg.lb_max_row_bytes}")
    if conv:
        words = -(-(CONV0_KERNEL**2 * CONV0_CHANNELS) // R)
        rule((f["kernel"], f["conv_c"]) != (CONV0_KERNEL, CONV0_CHANNELS), SHAPE,
             f"CONV0 is {CONV0_KERNEL}×{CONV0_KERNEL} over {CONV0_CHANNELS} channels, not "
             f"{f['kernel']}×{f['kernel']} over {f['conv_c']}")
        rule(f["in_c"] != align, SHAPE, f"CONV0's in_c = {f['in_c']} must be {align}")
        rule(K != words, SHAPE, f"CONV0's k_chunks = {K} must be {words}")
    if pool:
        rule((n, K, f["out_h"], f["out_w"]) != (1, 1, 1, 1), SHAPE,
             "POOL has one tile, k_chunks = 1 and a 1×1 output")
    if dw:
        rule(K != 1, SHAPE, f"DW's k_chunks = {K} must be 1 (one identity tile per chunk)")
    if pool or dw:
        rule(J * C > f["in_stride"], SHAPE,
             f"j_chunks·pw_cols = {J * C} channels exceed in_stride = {f['in_stride']}")
    # The products.
    pixels = f["out_h"] * f["out_w"]
    tiles = first if n == 1 else first + ((n - 2) & 0xFFFF) * mid + last
    rule(not pool and tiles != pixels, SHAPE,
         f"the tiles hold {tiles} pixels, the output {pixels}")
    rule(pw and f["in_h"] * f["in_w"] != pixels, SHAPE,
         f"{f['in_h']}×{f['in_w']} input pixels for {pixels} output pixels")
    rule(pool and first != f["in_h"] * f["in_w"], SHAPE,
         f"POOL's tile of {first} pixels is not its {f['in_h']}×{f['in_w']} input")
    a_bytes = K * R if conv else f["in_stride"]
    rule(max(first, mid, last) * a_bytes > cfg.act_buf_bytes // 2, SHAPE,
         f"a tile of {max(first, mid, last)} × {a_bytes} bytes does not fit an activation "
         f"buffer half ({cfg.act_buf_bytes // 2} bytes)")
    w_pixels = 1 if pool else max(first, mid, last)
    rule(w_pixels * f["out_stride"] > cfg.out_buf_bytes // 2, SHAPE,
         f"a tile of {w_pixels} × {f['out_stride']} bytes does not fit an output buffer "
         f"half ({cfg.out_buf_bytes // 2} bytes)")
    return problems


class Scheduler(wiring.Component):
    """Descriptor fetch, step sequencing, buffers and the pointwise schedule.

    Parameters
    ----------
    config : AccelConfig
        The hardware configuration. Constraints of this implementation (checked):
        ``pw_rows`` bytes = one AXI beat (``axi_data_width == 8·pw_rows``),
        ``pw_weight_rows·pw_cols <= pw_rows`` (the weight rows the array takes per cycle fit
        one beat), ``axi_data_width <= 128``
        (a parameter record spans whole beats), the AXI beat a multiple of ``lb_in_lanes``
        bytes and ``rq_lanes <= pw_cols``. Programs must pad channels to
        ``config.channel_align`` (the compiler does), so that pixels start on buffer words
        and tiles on beats.

    Members
    -------
    start : In(1)
        Pulse: run the program at ``program_addr``.
    program_addr : In(axi_addr_width)
        Byte address of the first descriptor.
    done : Out(1)
        Pulse: the run ended (END reached, or an error).
    error : Out(1)
        Pulse with ``done`` when the run ended on an error; ``error_code`` says which (valid
        with ``done``). The engines are then left as they were: reset them (and abort the
        DMA) before the next start.
    error_code : Out(ErrorCode)
    layer_done : Out(1)
        Pulse: a step (descriptor) has finished.
    read_stall, write_stall : Out(1)
        The pointwise array waits for input or weights from memory / the post-processing
        waits for an output-buffer half still being written back.
    rd_cmd, rd_data, rd_status, wr_cmd, wr_data, wr_done, wr_status
        To the :class:`~mnaccel.hw.dma.DMA`'s ports of the same names.
    pw_w, pw_i, pw_o
        To the :class:`~mnaccel.hw.pointwise.Pointwise` array's ``w``, ``i``, ``o``.
    rq_i, rq_o, rq_output_zp, rq_act_min, rq_act_max
        To the output :class:`~mnaccel.hw.requantizer.Requantizer`.
    dw_cfg, dw_i, dw_w, dw_p, dw_o
        To the :class:`~mnaccel.hw.depthwise.DepthwiseLayer`'s ``cfg``, ``i``, ``w``, ``p``,
        ``o`` (``DW_PW`` steps).
    cv_cfg, cv_i, cv_o
        ``CONV0``: to its :class:`~mnaccel.hw.line_buffer.LineBuffer`'s ``cfg`` and ``i``,
        from the :class:`~mnaccel.hw.line_buffer.ConvVectorAdapter`'s ``o``
        (:data:`CONV0_KERNEL` × :data:`CONV0_KERNEL` over :data:`CONV0_CHANNELS` channels).
    opcode : Out(Opcode)
        The opcode of the step being run (for waveforms and the top's status).

    Attributes
    ----------
    act_words, out_words : int
        Words of the activation buffer (``pw_rows`` bytes each) and of the output buffer
        (one AXI beat each), both halves.
    weight_fifo_beats : int
        Beats of the weight FIFO (``pw_weight_fifo_bytes`` / bytes per beat).
    """

    def __init__(self, config: AccelConfig):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, not {config!r}")
        cfg = config
        beat = cfg.axi_data_width // 8
        if beat != cfg.pw_rows:
            raise ValueError(f"the scheduler needs axi_data_width == 8·pw_rows, not "
                             f"{cfg.axi_data_width} with pw_rows={cfg.pw_rows}")
        # The compiler pads channels to cfg.channel_align, a multiple of pw_rows and of the
        # beat: every pixel starts on an activation-buffer word and every tile's read and
        # write-back on a beat.
        if cfg.pw_weight_rows * cfg.pw_cols > cfg.pw_rows:
            raise ValueError(f"pw_weight_rows·pw_cols = {cfg.pw_weight_rows * cfg.pw_cols} "
                             f"must be <= pw_rows={cfg.pw_rows} (the weight rows the array "
                             f"takes per cycle must fit one beat)")
        if beat > PARAM_BYTES:
            raise ValueError(f"axi_data_width must be <= 128 bits, not {cfg.axi_data_width}")
        if beat % cfg.lb_in_lanes:
            raise ValueError(f"the AXI beat ({beat} bytes) must be a multiple of "
                             f"lb_in_lanes={cfg.lb_in_lanes}")
        if cfg.rq_lanes > cfg.pw_cols:
            raise ValueError(f"rq_lanes={cfg.rq_lanes} must be <= pw_cols={cfg.pw_cols}")
        self._cfg = cfg
        aw = cfg.axi_addr_width
        cmd = command_layout(aw, LEN_WIDTH)
        super().__init__({
            "start": In(1),
            "program_addr": In(aw),
            "done": Out(1),
            "error": Out(1),
            "error_code": Out(ErrorCode),
            "layer_done": Out(1),
            "read_stall": Out(1),
            "write_stall": Out(1),
            "opcode": Out(Opcode),
            "rd_cmd": Out(stream.Signature(cmd)),
            "rd_data": In(stream.Signature(read_data_layout(cfg.axi_data_width))),
            "rd_status": In(status_layout()),
            "wr_cmd": Out(stream.Signature(cmd)),
            "wr_data": Out(stream.Signature(write_data_layout(cfg.axi_data_width))),
            "wr_done": In(stream.Signature(done_layout())),
            "wr_status": In(status_layout()),
            "pw_w": Out(stream.Signature(pw_weight_layout(cfg.pw_cols, cfg.pw_weight_rows))),
            "pw_i": Out(stream.Signature(pw_input_layout(cfg.pw_rows, cfg.pw_acc_depth))),
            "pw_o": In(stream.Signature(pw_output_layout(cfg.pw_cols, cfg.pw_acc_depth))),
            "rq_i": Out(stream.Signature(rq_input_layout(cfg.rq_lanes))),
            "rq_o": In(stream.Signature(rq_output_layout(cfg.rq_lanes))),
            "rq_output_zp": Out(signed(8)),
            "rq_act_min": Out(signed(8)),
            "rq_act_max": Out(signed(8)),
            "dw_cfg": Out(stream.Signature(dw_layer_config(cfg.lb_max_width,
                                                           cfg.lb_max_channels))),
            "dw_i": Out(stream.Signature(data.ArrayLayout(signed(8), cfg.lb_in_lanes))),
            "dw_w": Out(stream.Signature(dw_weight_layout(cfg.dw_lanes, cfg.dw_kernel,
                                                          cfg.max_kernel,
                                                          cfg.lb_max_channels))),
            "dw_p": Out(stream.Signature(dw_param_layout(cfg.dw_lanes, cfg.lb_max_channels))),
            "dw_o": In(stream.Signature(dw_output_layout(cfg.dw_lanes))),
            "cv_cfg": Out(stream.Signature(layer_config_layout(cfg.lb_max_width,
                                                                  cfg.channel_align))),
            "cv_i": Out(stream.Signature(data.ArrayLayout(signed(8), cfg.lb_in_lanes))),
            "cv_o": In(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(8), CONV0_KERNEL**2 * CONV0_CHANNELS),
                "first": 1, "last": 1}))),
        })

    @property
    def config(self) -> AccelConfig:
        return self._cfg

    @property
    def act_words(self) -> int:
        return self._cfg.act_buf_bytes // self._cfg.pw_rows

    @property
    def out_words(self) -> int:
        return self._cfg.out_buf_bytes // (self._cfg.axi_data_width // 8)

    @property
    def weight_fifo_beats(self) -> int:
        return self._cfg.pw_weight_fifo_bytes // (self._cfg.axi_data_width // 8)

    def _checks(self, m: Module, d, flag, step_go):
        """The gateware of :func:`check_descriptor` for the decoded descriptor ``d`` (``flag``:
        its opcode's registered decode, :func:`_decode`), and the step's products.

        Returns ``(chk_done, chk_bad, prods)`` (the address rules are ``flag["addr_bad"]``,
        for the decode). The shape rules are evaluated beside the step: the cheap ones registered
        from ``d``, the products on shift-and-add multipliers (:func:`_serial_mul`, no DSP)
        from ``step_go`` on, then the comparisons in two registered stages; ``chk_done``
        rises :data:`CHECK_CYCLES` cycles after ``step_go``, with ``chk_bad``, and both hold
        until the next ``step_go``. ``prods`` holds the products the engines use: the
        activation reads' and write-backs' byte counts of the first, middle and last tile
        (``act``, ``out``) with ``ready`` (:data:`PRODUCT_CYCLES` after ``step_go``), and the
        input map's bytes ``in_bytes`` with ``in_ready`` (:data:`IN_BYTES_CYCLES`).
        """
        cfg = self._cfg
        R, C = cfg.pw_rows, cfg.pw_cols
        AL = cfg.channel_align
        is_pool, is_conv, is_dwpw = flag["pool"], flag["conv"], flag["dwpw"]
        is_dw, is_dwe = flag["dw"], flag["dwe"]
        is_window, is_pw = flag["from_lb"], flag["pw"]

        K, J, n = d.k_chunks, d.j_chunks, d.n_tiles
        first, mid, last = d.first_tile_pixels, d.tile_pixels, d.last_tile_pixels
        kr = Signal(16)
        jc = Signal(16 + _log2(C))
        m.d.comb += [kr.eq(K << _log2(R)), jc.eq(J << _log2(C))]

        def window_out(size):
            k, s2 = d.kernel, d.stride == 2
            same = Mux(s2, (size + 1) >> 1, size)
            valid = Mux(size >= k, Mux(s2, (size - k) >> 1, size - k) + 1, 0)
            return Mux(d.padding == Padding.SAME, same, valid)

        # Registered first (the rules' register is read only at the products' end).
        wo_h, wo_w = Signal(17), Signal(17)
        m.d.sync += [wo_h.eq(window_out(d.in_h)), wo_w.eq(window_out(d.in_w))]
        dw_kernel_ok = (d.kernel == 3) | (d.kernel == 5) if cfg.max_kernel == 5 else d.kernel == 3
        vwords = -(-(CONV0_KERNEL**2 * CONV0_CHANNELS) // R)
        rules = [
            (n == 0) | (first == 0) | (mid == 0) | (last == 0) | (K == 0) | (J == 0),
            _misaligned(d.in_stride, AL) | _misaligned(d.out_stride, AL),
            jc > d.out_stride,
            ~is_pool & ((first > cfg.pw_acc_depth) | (mid > cfg.pw_acc_depth)
                        | (last > cfg.pw_acc_depth)),
            (is_pw | is_dwpw) & (kr > d.in_stride),
            is_window & (~((d.stride == 1) | (d.stride == 2)) | (d.in_stride != d.in_c)
                         | (d.in_w > cfg.lb_max_width)
                         | (d.out_h != wo_h) | (d.out_w != wo_w)),
            is_dwe & (~dw_kernel_ok | (d.in_c > cfg.lb_max_channels)
                      | _misaligned(d.in_c, cfg.dw_lanes)),
            is_conv & ((d.kernel != CONV0_KERNEL) | (d.conv_c != CONV0_CHANNELS)
                       | (d.in_c != AL) | (K != vwords)),
            is_pool & ((n != 1) | (K != 1) | (d.out_h != 1) | (d.out_w != 1)),
            is_dw & (K != 1),
            flag["diag"] & (jc > d.in_stride),
        ]
        # Registered rule by rule, then OR-ed: one wide OR of compares is too slow a cycle.
        cheap = Signal(len(rules))
        m.d.sync += cheap.eq(Cat(*rules))

        # The products, all at once from step_go, one bit of the second operand per cycle.
        # Operands that share that bit stream (the tile sizes) share its shift register.
        a_bytes = Mux(is_conv, kr, d.in_stride)
        n_out = _serial_mul(m, d.out_w, d.out_h, step_go, "n_out")
        n_in = _serial_mul(m, d.in_w, d.in_h, step_go, "n_in")
        p_mid = _serial_mul(m, mid, (n - 2)[:16], step_go, "p_mid")
        act = [_serial_mul(m, px, a_bytes, step_go, f"act_{i}")
               for i, px in enumerate((first, mid, last))]
        out = [_serial_mul(m, px, d.out_stride, step_go, f"out_{i}")
               for i, px in enumerate((first, mid, last))]
        row_bytes = _serial_mul(m, d.in_c, d.in_w, step_go, "row_bytes")
        # The input map's bytes (line-buffer steps), a second pass: (in_h·in_w)·in_stride.
        ck_end = 2 * _MUL_BITS + 1
        ck = Signal(range(ck_end + 1), init=ck_end)
        with m.If(ck != ck_end):
            m.d.sync += ck.eq(ck + 1)
        in_go = ck == _MUL_BITS
        in_bytes = _serial_mul(m, n_in, d.in_stride, in_go, "in_bytes")
        tiles = Signal(34)
        late_a = Signal(8)
        late_b = Signal()
        chk_done, chk_bad = Signal(), Signal()
        ready, in_ready = Signal(), Signal()
        half_a, half_o = cfg.act_buf_bytes // 2, cfg.out_buf_bytes // 2
        with m.Switch(ck):
            with m.Case(_MUL_BITS - 1):
                m.d.sync += ready.eq(1)
            with m.Case(_MUL_BITS):
                m.d.sync += [
                    tiles.eq(Mux(n == 1, first, first + p_mid + last)),
                    late_a.eq(Cat(
                        is_pw & (n_in != n_out),
                        is_pool & (first != n_in),
                        act[0] > half_a, act[1] > half_a, act[2] > half_a,
                        Mux(is_pool, d.out_stride > half_o,
                            (out[0] > half_o) | (out[1] > half_o) | (out[2] > half_o)),
                        is_dwe & (row_bytes > cfg.lb_max_row_bytes),
                        cheap.any())),
                ]
            with m.Case(_MUL_BITS + 1):
                m.d.sync += late_b.eq(~is_pool & (tiles != n_out))
            with m.Case(_MUL_BITS + 2):
                m.d.sync += [chk_done.eq(1), chk_bad.eq(late_a.any() | late_b)]
            with m.Case(IN_BYTES_CYCLES - 2):
                m.d.sync += in_ready.eq(1)
        with m.If(step_go):
            m.d.sync += [ck.eq(0), chk_done.eq(0), chk_bad.eq(0), ready.eq(0),
                         in_ready.eq(0)]
        prods = {"act": act, "out": out, "ready": ready, "in_bytes": in_bytes,
                 "in_ready": in_ready}
        return chk_done, chk_bad, prods

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, L = cfg.pw_rows, cfg.pw_cols, cfg.rq_lanes
        DL = cfg.dw_lanes
        AB = cfg.axi_data_width // 8
        aw = cfg.axi_addr_width
        ab_log = _log2(AB)

        # --- descriptor --------------------------------------------------------------------------
        desc_bits = DESCRIPTOR_BYTES * 8
        desc_raw = Signal(desc_bits)
        d = data.View(Descriptor, desc_raw[:data.Layout.cast(Descriptor).size])
        m.d.comb += [
            self.rq_output_zp.eq(d.out_zp),
            self.rq_act_min.eq(d.act_min),
            self.rq_act_max.eq(d.act_max),
            self.opcode.eq(d.opcode),
        ]
        K, J = d.k_chunks, d.j_chunks
        n_tiles = d.n_tiles
        # The opcode's decode in flip-flops, loaded with every descriptor beat from the value
        # desc_raw takes (see the read demultiplexer): always the decode of d.opcode, without
        # a cycle of delay, but the engines' many loads hang on a register, not on a LUT.
        # Reset: desc_raw is all zeros, an END (aligned addresses).
        flag = {k: Signal(name=f"is_{k}", init=k == "end") for k in _decode(d, AB)}
        is_pool, is_conv = flag["pool"], flag["conv"]
        is_dwe = flag["dwe"]                 # the depthwise layer runs (DW_PW, DW)
        is_diag = flag["diag"]               # identity weight tiles (POOL, DW)
        from_lb = flag["from_lb"]            # the activation buffer is fed on chip

        # Counts minus one, registered after decode like the values below: the engines
        # compare their counters with them (equality only, no subtraction in the loop).
        km1, jm1, nm1, nm2 = Signal(8), Signal(16), Signal(16), Signal(16)
        pm1 = [Signal(16, name=f"pm1_{i}") for i in range(3)]   # first, middle, last tile
        m.d.sync += [km1.eq(K - 1), jm1.eq(J - 1), nm1.eq(n_tiles - 1), nm2.eq(n_tiles - 2),
                     pm1[0].eq(d.first_tile_pixels - 1), pm1[1].eq(d.tile_pixels - 1),
                     pm1[2].eq(d.last_tile_pixels - 1)]
        # Which tiles have one pixel (pm1 == 0), for the engines' registered compares.
        p_one = [Signal(name=f"p_one_{i}") for i in range(3)]
        m.d.sync += [p_one[i].eq(pm1[i] == 0) for i in range(3)]

        def tile_pixels(t):
            return Mux(t == 0, d.first_tile_pixels,
                       Mux(t == nm1, d.last_tile_pixels, d.tile_pixels))

        def tile_last(t, name):
            """A register holding ``tile_pixels(t) − 1``: ``next_tile()`` keeps it so when
            the engine moves on from tile ``t``, ``restart()`` (under ``step_go``) sets the
            first tile's."""
            r = Signal(16, name=name)

            def next_tile():
                m.d.sync += r.eq(Mux(t == nm2, pm1[2], pm1[1]))

            def restart():
                m.d.sync += r.eq(d.first_tile_pixels - 1)
            return r, next_tile, restart

        def tile_ends(t, name):
            """Registers ``first`` (``t == 0``) and ``last`` (``t == n_tiles − 1``) beside an
            engine's tile counter ``t``, so that its paths hold no compare with ``t``:
            ``next_tile()`` when the engine moves on from tile ``t``, ``restart()`` under
            ``step_go`` (nm1 and nm2 are not registered yet then: n_tiles itself is read)."""
            first, last = Signal(name=f"{name}_first"), Signal(name=f"{name}_last")

            def next_tile():
                m.d.sync += [first.eq(0), last.eq(t == nm2)]

            def restart():
                m.d.sync += [first.eq(1), last.eq(n_tiles == 1)]
            return first, last, next_tile, restart

        # Per-step values, registered after decode (they settle before any engine runs); the
        # products of two descriptor sizes come from _checks' shift-and-add multipliers.
        in_words = Signal(16)        # S: activation-buffer words per pixel
        in_wm1 = Signal(16)          # S − 1
        dw_groups = Signal(16)       # dw channel groups
        dw_passes = Signal(2)
        dw_entries = Signal(16)      # dw weight entries: groups × passes
        dw_bytes = Signal(LEN_WIDTH)  # ... of dw_lanes·dw_kernel² bytes each
        groups = d.in_c >> _log2(DL)
        passes3 = (d.kernel == 5) if cfg.max_kernel == 5 else Const(0)
        entries = Mux(passes3, _const_mul(groups, 3), groups)
        m.d.sync += [
            in_words.eq(Mux(is_conv, K, d.in_stride >> _log2(R))),
            in_wm1.eq(Mux(is_conv, K, d.in_stride >> _log2(R)) - 1),
            dw_groups.eq(groups),
            dw_passes.eq(Mux(passes3, 3, 1)),
            dw_entries.eq(entries),
            dw_bytes.eq(_const_mul(entries[:16], DL * cfg.dw_kernel**2)),
        ]

        # --- main state machine signals ----------------------------------------------------------
        g_active = Signal()          # the beat generator has tiles left in this step
        step_running = Signal()      # from the cycle after step_go to the step's end
        pc = Signal(aw)
        step_go = Signal()           # pulse: a step starts (descriptor decoded)
        step_busy = Signal()         # engines of the step still working
        lb_go = Signal()             # pulse: the line buffer's layer is configured
        chk_done, chk_bad, prods = self._checks(m, d, flag, step_go)
        in_bytes = prods["in_bytes"]

        def by_tile(ends, values):
            """The first, middle or last tile's value of ``values`` for the tile whose
            :func:`tile_ends` are ``ends``."""
            first, last = ends
            return Mux(first, values[0], Mux(last, values[2], values[1]))

        # --- buffers, FIFOs and their flags ------------------------------------------------------
        act_half_words = self.act_words // 2
        m.submodules.act_buf = act_buf = Memory(shape=unsigned(R * 8), depth=self.act_words,
                                                init=[])
        act_wp = act_buf.write_port()
        act_rp = act_buf.read_port()
        act_claimed = [Signal(name=f"act_claimed_{h}") for h in range(2)]
        act_full = [Signal(name=f"act_full_{h}") for h in range(2)]

        out_half_words = self.out_words // 2
        m.submodules.out_buf = out_buf = Memory(shape=unsigned(AB * 8), depth=self.out_words,
                                                init=[])
        out_wp = out_buf.write_port(granularity=8)
        out_rp = out_buf.read_port()
        out_full = [Signal(name=f"out_full_{h}") for h in range(2)]

        wf_depth = self.weight_fifo_beats
        m.submodules.wfifo = wfifo = SyncFIFOBuffered(width=AB * 8, depth=wf_depth)
        pf_depth = 2 * C + 1
        m.submodules.pfifo = pfifo = SyncFIFOBuffered(width=_RECORD.size, depth=pf_depth)
        lb_depth = LB_FIFO_BEATS
        m.submodules.lbfifo = lbfifo = SyncFIFOBuffered(width=AB * 8, depth=lb_depth)

        # Credits: every read command is issued only once its destination can take all of
        # its beats, so the single in-order read channel never blocks on a full consumer.
        w_res = Signal(range(wf_depth + 1))
        p_res = Signal(range(pf_depth + 1))
        lb_res = Signal(range(lb_depth + 1))
        # Room for one more command's beats (the credits start at 0: room).
        w_room, p_room, lb_room = Signal(init=1), Signal(init=1), Signal(init=1)
        tile_wbeats = R * C // AB

        # --- read commands: three sources, one tag FIFO ------------------------------------------
        m.submodules.tags = tags = SyncFIFO(width=3, depth=16)
        fetch_req = Signal()
        ri_cmd = Signal(command_layout(aw, LEN_WIDTH))
        ri_tag = Signal(_Tag)
        ri_valid = Signal()
        lr_cmd = Signal(command_layout(aw, LEN_WIDTH))
        lr_valid = Signal()
        sel_fetch = fetch_req
        sel_lb = ~fetch_req & lr_valid
        m.d.comb += [
            self.rd_cmd.valid.eq((fetch_req | lr_valid | ri_valid) & tags.w_rdy),
            self.rd_cmd.payload.eq(Mux(sel_fetch, Cat(pc, Const(DESCRIPTOR_BYTES, LEN_WIDTH)),
                                       Mux(sel_lb, lr_cmd, ri_cmd))),
            tags.w_data.eq(Mux(sel_fetch, _Tag.DESC, Mux(sel_lb, _Tag.LB_IN, ri_tag))),
        ]
        cmd_fire = Signal()
        m.d.comb += [cmd_fire.eq(self.rd_cmd.valid & self.rd_cmd.ready),
                     tags.w_en.eq(cmd_fire)]
        ri_fire = Signal()
        lr_fire = Signal()
        m.d.comb += [ri_fire.eq(cmd_fire & ~sel_fetch & ~sel_lb),
                     lr_fire.eq(cmd_fire & sel_lb)]

        # --- read issuer: setup reads, then per tile ACT, PARAM j, WEIGHT (j, k) -----------------
        ri_t = Signal(16)
        ri_half = Signal()
        ri_j = Signal(16)
        ri_k = Signal(8)
        ri_in_ptr = Signal(aw)
        ri_param_ptr = Signal(aw)
        ri_weight_ptr = Signal(aw)
        ri_done = Signal()
        ri_len = Signal(LEN_WIDTH)   # the tile's input bytes
        ri_first, ri_last, ri_ends_next, ri_ends_restart = tile_ends(ri_t, "ri")
        m.d.comb += ri_len.eq(by_tile((ri_first, ri_last), prods["act"]))
        w_issue_beats = Signal(range(wf_depth + 1))
        p_issue_recs = Signal(range(pf_depth + 1))

        def next_tile():
            m.d.sync += [ri_t.eq(ri_t + 1), ri_half.eq(~ri_half), ri_j.eq(0), ri_k.eq(0),
                         ri_param_ptr.eq(d.pw_param_addr), ri_weight_ptr.eq(d.pw_weight_addr)]
            ri_ends_next()
            with m.If(ri_last):
                m.d.sync += ri_done.eq(1)
                m.next = "IDLE"
            with m.Elif(from_lb):
                m.next = "PARAM"
            with m.Else():
                m.next = "ACT"

        with m.FSM(name="issuer"):
            with m.State("IDLE"):
                with m.If(step_go):
                    m.d.sync += [ri_t.eq(0), ri_half.eq(0), ri_j.eq(0), ri_k.eq(0),
                                 ri_done.eq(0), ri_in_ptr.eq(d.in_addr),
                                 ri_param_ptr.eq(d.pw_param_addr),
                                 ri_weight_ptr.eq(d.pw_weight_addr)]
                    ri_ends_restart()
                    with m.If(is_dwe):
                        m.next = "DW_WEIGHT"
                    with m.Elif(is_conv):
                        m.next = "PARAM"
                    with m.Else():
                        m.next = "ACT"
            with m.State("DW_WEIGHT"):
                m.d.comb += [ri_valid.eq(1), ri_tag.eq(_Tag.DW_WEIGHT),
                             ri_cmd.addr.eq(d.dw_weight_addr),
                             ri_cmd.length.eq(dw_bytes)]
                with m.If(ri_fire):
                    m.next = "DW_PARAM"
            with m.State("DW_PARAM"):
                m.d.comb += [ri_valid.eq(1), ri_tag.eq(_Tag.DW_PARAM),
                             ri_cmd.addr.eq(d.dw_param_addr),
                             ri_cmd.length.eq(d.in_c * PARAM_BYTES)]
                with m.If(ri_fire):
                    m.next = "PARAM"
            with m.State("ACT"):
                m.d.comb += [
                    ri_valid.eq(~Array(act_claimed)[ri_half] & prods["ready"]),
                    ri_tag.eq(_Tag.ACT),
                    ri_cmd.addr.eq(ri_in_ptr),
                    ri_cmd.length.eq(ri_len),
                ]
                with m.If(ri_fire):
                    with m.Switch(ri_half):
                        for h in range(2):
                            with m.Case(h):
                                m.d.sync += act_claimed[h].eq(1)
                    m.d.sync += ri_in_ptr.eq(ri_in_ptr + ri_len)
                    m.next = "PARAM"
            with m.State("PARAM"):
                m.d.comb += [
                    ri_valid.eq(p_room),
                    ri_tag.eq(_Tag.PARAM),
                    ri_cmd.addr.eq(ri_param_ptr),
                    ri_cmd.length.eq(C * PARAM_BYTES),
                    p_issue_recs.eq(Mux(ri_fire, C, 0)),
                ]
                with m.If(ri_fire):
                    m.d.sync += ri_param_ptr.eq(ri_param_ptr + C * PARAM_BYTES)
                    with m.If(is_diag):       # identity tiles: no weights to read
                        m.d.sync += ri_j.eq(ri_j + 1)
                        with m.If(ri_j == jm1):
                            next_tile()
                    with m.Else():
                        m.next = "WEIGHT"
            with m.State("WEIGHT"):
                m.d.comb += [
                    ri_valid.eq(w_room),
                    ri_tag.eq(_Tag.WEIGHT),
                    ri_cmd.addr.eq(ri_weight_ptr),
                    ri_cmd.length.eq(R * C),
                    w_issue_beats.eq(Mux(ri_fire, tile_wbeats, 0)),
                ]
                with m.If(ri_fire):
                    m.d.sync += [ri_weight_ptr.eq(ri_weight_ptr + R * C), ri_k.eq(ri_k + 1)]
                    with m.If(ri_k == km1):
                        m.d.sync += [ri_k.eq(0), ri_j.eq(ri_j + 1)]
                        with m.If(ri_j == jm1):
                            next_tile()
                        with m.Else():
                            m.next = "PARAM"

        # --- line-buffer input reader: the whole map, in chunks the input FIFO can take ----------
        lr_ptr = Signal(aw)
        lr_left = Signal(32)
        lr_chunk = LB_CHUNK_BEATS * AB
        # The next command's length min(lr_left, chunk), its beats and lr_left != 0 are
        # registers, loaded with lr_left: the command and the credits add no compare. What
        # they become (after a command, or with the map's byte count) is worked out from
        # registers beforehand, so that the handshakes only select.
        lr_len = Signal(LEN_WIDTH)
        lr_beats = Signal(range(LB_CHUNK_BEATS + 1))
        lr_any = Signal()
        # lr_chunk is a power of two: "below it" is a test of the high bits, not a
        # subtraction, and a short command's beats come from the low bits beside that test.
        assert lr_chunk & (lr_chunk - 1) == 0

        def lr_load(left):
            low, short = left[:_log2(lr_chunk)], left[_log2(lr_chunk):] == 0
            return [lr_left.eq(left), lr_len.eq(Mux(short, low, lr_chunk)),
                    lr_beats.eq(Mux(short, (low + (AB - 1)) >> ab_log, LB_CHUNK_BEATS)),
                    lr_any.eq(left != 0)]

        lr_after = Signal.like(lr_left)
        m.d.comb += [
            lr_after.eq(lr_left - lr_len),
            lr_cmd.addr.eq(lr_ptr),
            lr_cmd.length.eq(lr_len),
            lr_valid.eq(lr_any & lb_room),
        ]
        with m.If(lr_fire):
            m.d.sync += [lr_ptr.eq(lr_ptr + lr_len), *lr_load(lr_after)]
        # The map's byte count may come after lb_go (CONV0 configures its line buffer at once).
        lr_wait = Signal()
        with m.If((lb_go | lr_wait) & prods["in_ready"]):
            m.d.sync += [lr_ptr.eq(d.in_addr), lr_wait.eq(0), *lr_load(in_bytes)]
        with m.Elif(lb_go):
            m.d.sync += lr_wait.eq(1)
        with m.If(step_go):
            m.d.sync += [lr_wait.eq(0), lr_left.eq(0), lr_len.eq(0), lr_beats.eq(0),
                         lr_any.eq(0)]

        # --- read demultiplexer ------------------------------------------------------------------
        head = Signal(_Tag)
        m.d.comb += head.eq(tags.r_data)
        rd = self.rd_data
        rd_fire = Signal()
        desc_fire = Signal()
        desc_last = Signal()
        fill_half = Signal()
        fill_addr = Signal(range(act_half_words))
        rec_beats = PARAM_BYTES // AB
        rec_shift = Signal(PARAM_BYTES * 8)
        rec_cnt = Signal(range(max(2, rec_beats)))
        rec_full = rec_cnt == rec_beats - 1
        dwp_ok = Signal()
        dww_ok = Signal()
        # When the head command's destination takes a beat; each destination's enable is
        # its own beat's fire, not a decode of the multiplexed rd.ready.
        take = {_Tag.DESC: Const(1), _Tag.ACT: Const(1), _Tag.PARAM: ~rec_full | pfifo.w_rdy,
                _Tag.WEIGHT: wfifo.w_rdy, _Tag.DW_WEIGHT: dww_ok, _Tag.DW_PARAM: dwp_ok,
                _Tag.LB_IN: lbfifo.w_rdy}
        fire = {tag: Signal(name=f"fire_{tag.name.lower()}") for tag in take}
        for tag, ok in take.items():
            m.d.comb += fire[tag].eq(rd.valid & tags.r_rdy & (head == tag) & ok)
        m.d.comb += [
            rd.ready.eq(tags.r_rdy & Cat(*((head == tag) & ok for tag, ok in take.items())).any()),
            rd_fire.eq(Cat(*fire.values()).any()),
            tags.r_en.eq(rd_fire & rd.payload.last),
        ]
        # Descriptor: beats shift in from the top, little-endian.
        m.d.comb += [desc_fire.eq(fire[_Tag.DESC]),
                     desc_last.eq(desc_fire & rd.payload.last)]
        desc_next = Signal(desc_bits)
        m.d.comb += desc_next.eq(Cat(desc_raw[AB * 8:], rd.payload.data)
                                 if desc_bits > AB * 8 else rd.payload.data)
        with m.If(desc_fire):
            m.d.sync += desc_raw.eq(desc_next)
            d_next = data.View(Descriptor, desc_next[:data.Layout.cast(Descriptor).size])
            for k, v in _decode(d_next, AB).items():
                m.d.sync += flag[k].eq(v)
        # Parameter records (pointwise and depthwise): PARAM_BYTES / AB beats each.
        rec_fire = fire[_Tag.PARAM] | fire[_Tag.DW_PARAM]
        rec_word = Signal(PARAM_BYTES * 8)
        if rec_beats > 1:
            m.d.comb += rec_word.eq(Cat(rec_shift[AB * 8:], rd.payload.data))
        else:
            m.d.comb += rec_word.eq(rd.payload.data)
        rec = data.View(data.StructLayout({"bias": signed(32), "multiplier": signed(32),
                                           "shift": signed(8), "round_up": 1}),
                        rec_word[:73])
        rec_out = Signal(_RECORD)
        m.d.comb += [rec_out.bias.eq(rec.bias), rec_out.multiplier.eq(rec.multiplier),
                     rec_out.shift.eq(rec.shift), rec_out.round_up.eq(rec.round_up)]
        with m.If(rec_fire):
            m.d.sync += [rec_shift.eq(rec_word), rec_cnt.eq(Mux(rec_full, 0, rec_cnt + 1))]
        m.d.comb += [pfifo.w_en.eq(fire[_Tag.PARAM] & rec_full),
                     pfifo.w_data.eq(rec_out)]
        # Weights and line-buffer input.
        m.d.comb += [wfifo.w_en.eq(fire[_Tag.WEIGHT]),
                     wfifo.w_data.eq(rd.payload.data),
                     lbfifo.w_en.eq(fire[_Tag.LB_IN]),
                     lbfifo.w_data.eq(rd.payload.data)]
        # The credits, and whether each has room for one more command, registered from
        # their next values: a command's valid holds no adder or compare.
        w_next, p_next, lb_next = Signal.like(w_res), Signal.like(p_res), Signal.like(lb_res)
        m.d.comb += [
            w_next.eq(w_res + w_issue_beats - (wfifo.r_rdy & wfifo.r_en)),
            p_next.eq(p_res + p_issue_recs - (pfifo.r_rdy & pfifo.r_en)),
            # A map's last chunk is shorter: credit the beats it brings, or the credits
            # leak run after run until the reader stalls for good.
            lb_next.eq(lb_res + Mux(lr_fire, lr_beats, 0) - (lbfifo.r_rdy & lbfifo.r_en)),
        ]
        m.d.sync += [
            w_res.eq(w_next), p_res.eq(p_next), lb_res.eq(lb_next),
            w_room.eq(w_next <= wf_depth - tile_wbeats),
            p_room.eq(p_next <= pf_depth - C),
            lb_room.eq(lb_next <= lb_depth - LB_CHUNK_BEATS),
        ]

        # --- depthwise weights: a byte stream cut into entries of 9·dw_lanes bytes ---------------
        E = cfg.dw_kernel**2 * DL
        dww_buf = Signal((E + AB) * 8)
        dww_n = Signal(range(E + AB + 1))
        dww_group = Signal(16)
        dww_part = Signal(2)
        dww_count = Signal(16)
        dww_fire = fire[_Tag.DW_WEIGHT]
        # dww_n >= E, registered from dww_n's next value: no compare before the handshakes.
        dww_have = Signal()
        dww_n_next = Signal.like(dww_n)
        # dww_n only moves by E and AB: a multiple of their (power-of-two) gcd, below E when
        # a beat comes in. The beat's byte offset is that multiple's few low bits.
        gcd = math.gcd(E, AB)
        dww_at = dww_n[_log2(gcd):][:max(1, ((E - 1) // gcd).bit_length())]
        m.d.comb += [
            dww_ok.eq(~dww_have),
            self.dw_w.valid.eq(dww_have),
            self.dw_w.payload.taps.eq(dww_buf[:E * 8]),
            self.dw_w.payload.group.eq(dww_group),
            self.dw_w.payload.part.eq(dww_part),
        ]
        m.d.comb += dww_n_next.eq(dww_n)
        m.d.sync += [dww_n.eq(dww_n_next), dww_have.eq(dww_n_next >= E)]
        with m.If(self.dw_w.valid & self.dw_w.ready):
            m.d.comb += dww_n_next.eq(dww_n - E)
            m.d.sync += [dww_buf.eq(dww_buf >> (E * 8)), dww_count.eq(dww_count + 1)]
            with m.If(dww_part == dw_passes - 1):
                m.d.sync += [dww_part.eq(0), dww_group.eq(dww_group + 1)]
            with m.Else():
                m.d.sync += dww_part.eq(dww_part + 1)
        with m.Elif(dww_fire):
            m.d.comb += dww_n_next.eq(dww_n + AB)
            m.d.sync += dww_buf.eq(dww_buf | (rd.payload.data << (dww_at * (gcd * 8))))

        # --- depthwise parameters: dw_lanes records per beat -------------------------------------
        dwp_lanes = [Signal(PARAM_LANE_LAYOUT, name=f"dwp_lane_{k}") for k in range(DL)]
        dwp_idx = Signal(range(DL + 1))
        dwp_group = Signal(16)
        m.d.comb += [
            dwp_ok.eq(dwp_idx < DL),
            self.dw_p.valid.eq(dwp_idx == DL),
            self.dw_p.payload.group.eq(dwp_group),
        ]
        for k in range(DL):
            m.d.comb += self.dw_p.payload.lanes[k].eq(dwp_lanes[k])
        with m.If(self.dw_p.valid & self.dw_p.ready):
            m.d.sync += [dwp_idx.eq(0), dwp_group.eq(dwp_group + 1)]
        with m.If(fire[_Tag.DW_PARAM] & rec_full):
            for k in range(DL):
                with m.If(dwp_idx == k):
                    m.d.sync += [dwp_lanes[k].bias.eq(rec_out.bias),
                                 dwp_lanes[k].multiplier.eq(rec_out.multiplier),
                                 dwp_lanes[k].shift.eq(rec_out.shift),
                                 dwp_lanes[k].round_up.eq(rec_out.round_up)]
            m.d.sync += dwp_idx.eq(dwp_idx + 1)
        with m.If(step_go):
            # dww_n too: bytes a previous step left in the gearbox must not shift this one's.
            m.d.sync += [dww_group.eq(0), dww_part.eq(0), dww_count.eq(0), dwp_group.eq(0),
                         dwp_idx.eq(0)]
            m.d.comb += dww_n_next.eq(0)
        dw_loaded = (dww_count == dw_entries) & (dwp_group == dw_groups)

        # --- line-buffer input: AXI beats → lb_in_lanes-byte pixels to the dw layer or CONV0 -----
        IN_L = cfg.lb_in_lanes
        lsubs = AB // IN_L
        lsub = Signal(range(max(2, lsubs)))
        lsub_last = lsub == lsubs - 1
        lpix = Signal(IN_L * 8)
        with m.Switch(lsub):
            for i in range(lsubs):
                with m.Case(i):
                    m.d.comb += lpix.eq(lbfifo.r_data[i * IN_L * 8:(i + 1) * IN_L * 8])
        lb_ready = Mux(is_conv, self.cv_i.ready, self.dw_i.ready)
        m.d.comb += [
            self.dw_i.valid.eq(lbfifo.r_rdy & is_dwe),
            self.cv_i.valid.eq(lbfifo.r_rdy & is_conv),
            self.dw_i.payload.eq(lpix),
            self.cv_i.payload.eq(lpix),
            lbfifo.r_en.eq(lb_ready & lsub_last),
        ]
        if lsubs > 1:
            with m.If(lbfifo.r_rdy & lb_ready):
                m.d.sync += lsub.eq(Mux(lsub_last, 0, lsub + 1))

        # --- layer configurations for the dw layer and the CONV0 line buffer ---------------------
        dc = self.dw_cfg.payload
        m.d.comb += [
            dc.height.eq(d.in_h), dc.width.eq(d.in_w), dc.channels.eq(d.in_c),
            dc.kernel.eq(d.kernel), dc.stride.eq(d.stride), dc.padding.eq(d.padding),
            dc.zero_point.eq(d.in_zp), dc.output_zp.eq(d.mid_zp),
            dc.act_min.eq(d.mid_act_min), dc.act_max.eq(d.mid_act_max),
        ]
        cc = self.cv_cfg.payload
        m.d.comb += [
            cc.height.eq(d.in_h), cc.width.eq(d.in_w), cc.channels.eq(d.in_c),
            cc.kernel.eq(d.kernel), cc.stride.eq(d.stride), cc.padding.eq(d.padding),
            cc.zero_point.eq(d.in_zp),
        ]

        # --- on-chip producers into the activation buffer: words of pw_rows bytes ----------------
        # DW_PW: R / dw_lanes dw output beats per word. CONV0: a 27-byte vector as K words.
        dsubs = R // DL
        dsub = Signal(range(max(2, dsubs)))
        dword = Signal(R * 8)
        V = CONV0_KERNEL**2 * CONV0_CHANNELS
        vwords = -(-V // R)
        cvec = Signal(vwords * R * 8)
        cvec_valid = Signal()
        ck = Signal(range(max(2, vwords)))
        fw_valid = Signal()
        fw_data = Signal(R * 8)
        fw_ready = Signal()
        fill_t = Signal(16)
        fill_k = Signal(16)          # word of the pixel (on-chip producers)
        fill_p = Signal(16)          # pixel of the tile
        fill_free = Signal(init=1)   # ~act_full[fill_half], registered (see the halves' flags)
        # DW_PW packer.
        dw_word_done = Signal()
        m.d.comb += dw_word_done.eq(dsub == dsubs - 1)
        m.d.comb += self.dw_o.ready.eq(~dw_word_done | fw_ready)
        with m.If(self.dw_o.valid & self.dw_o.ready):
            m.d.sync += dsub.eq(Mux(dw_word_done, 0, dsub + 1))
            for i in range(dsubs - 1):
                with m.If(dsub == i):
                    m.d.sync += dword[i * DL * 8:(i + 1) * DL * 8].eq(self.dw_o.payload.data)
        dw_fw = Signal(R * 8)
        m.d.comb += dw_fw.eq(Cat(dword[:(dsubs - 1) * DL * 8], self.dw_o.payload.data)
                             if dsubs > 1 else self.dw_o.payload.data)
        # CONV0 vector to words.
        m.d.comb += self.cv_o.ready.eq(~cvec_valid)
        with m.If(self.cv_o.valid & self.cv_o.ready):
            m.d.sync += [cvec_valid.eq(1), cvec.eq(self.cv_o.payload.data), ck.eq(0)]
        cv_fw = Signal(R * 8)
        with m.Switch(ck):
            for i in range(vwords):
                with m.Case(i):
                    m.d.comb += cv_fw.eq(cvec[i * R * 8:(i + 1) * R * 8])
        with m.If(cvec_valid & fw_ready & is_conv):
            m.d.sync += ck.eq(ck + 1)
            with m.If(ck == vwords - 1):
                m.d.sync += cvec_valid.eq(0)
        m.d.comb += [
            fw_valid.eq(Mux(is_conv, cvec_valid, self.dw_o.valid & dw_word_done)),
            fw_data.eq(Mux(is_conv, cv_fw, dw_fw)),
            fw_ready.eq(from_lb & fill_free),
        ]

        # --- activation-buffer writes: from the DMA (ACT) or the on-chip producers ---------------
        act_fire = fire[_Tag.ACT]
        fw_fire = fw_valid & fw_ready
        m.d.comb += [
            act_wp.addr.eq(Cat(fill_addr, fill_half)),
            act_wp.data.eq(Mux(from_lb, fw_data, rd.payload.data)),
            act_wp.en.eq(act_fire | fw_fire),
        ]
        # A tile from the on-chip producers ends with its last pixel's last word (counted:
        # no pixels × words product).
        # The compares with the counters are registers loaded from their next values, as in
        # the beat generator: pixel_end = (fill_k == in_wm1), fill_plast = (fill_p == fill_pm1).
        pixel_end = Signal()
        fill_plast = Signal()
        s_one = Signal()             # in_wm1 == 0: one word per pixel
        m.d.sync += s_one.eq(in_wm1 == 0)
        fill_pm1, fill_next_tile, fill_restart = tile_last(fill_t, "fill_pm1")
        tile_end = Mux(from_lb, pixel_end & fill_plast, rd.payload.last)
        fill_done = Signal()         # a tile's last word is written: its half is full
        m.d.comb += fill_done.eq((act_fire | fw_fire) & tile_end)
        with m.If(act_fire | fw_fire):
            m.d.sync += [fill_addr.eq(fill_addr + 1), fill_k.eq(fill_k + 1),
                         pixel_end.eq((fill_k + 1)[:16] == in_wm1)]
            with m.If(pixel_end):
                m.d.sync += [fill_k.eq(0), fill_p.eq(fill_p + 1), pixel_end.eq(s_one),
                             fill_plast.eq((fill_p + 1)[:16] == fill_pm1)]
            with m.If(tile_end):
                next_one = Mux(fill_t == nm2, p_one[2], p_one[1])
                m.d.sync += [fill_addr.eq(0), fill_half.eq(~fill_half), fill_t.eq(fill_t + 1),
                             fill_k.eq(0), fill_p.eq(0), pixel_end.eq(s_one),
                             fill_plast.eq(next_one)]
                fill_next_tile()

        # Weight gearbox: one AXI beat = AB / C rows of the pointwise weight tile, WR of them
        # per transfer to the array; the identity tiles of POOL and DW come from a generator
        # instead.
        WR = cfg.pw_weight_rows
        w_per_beat = AB // (C * WR)
        wsub = Signal(range(max(2, w_per_beat)))
        wsub_last = wsub == w_per_beat - 1
        wrow = Signal(WR * C * 8)
        with m.Switch(wsub):
            for r in range(w_per_beat):
                with m.Case(r):
                    m.d.comb += wrow.eq(wfifo.r_data[r * WR * C * 8:(r + 1) * WR * C * 8])
        id_row = Signal(range(R // WR))  # the transfer of the tile being generated
        id_off = Signal(16)          # j·cols of the tile being generated
        id_j = Signal(16)            # chunk j of the tile being generated
        id_t = Signal(16)            # ... for pixel tile id_t
        id_more = Signal()           # tiles left: exactly J per pixel tile, so that no extra
                                     # tile is left in the array's shadow bank
        id_valid = Signal()
        # Not g_active: with one-pixel tiles the last tile's rows are still loading after the
        # generator's last beat. Not before step_go: the counters are reset then.
        m.d.comb += id_valid.eq(is_diag & step_running & id_more)
        id_data = Signal(WR * C * 8)
        off = id_off[:_log2(R)] if R > 1 else Const(0)
        for i in range(WR):
            row = Cat(Const(i, _log2(WR)), id_row) if WR > 1 else id_row
            for c in range(C):
                m.d.comb += id_data[(i * C + c) * 8:(i * C + c + 1) * 8].eq(
                    Mux(row == off + c, 1, 0))
        m.d.comb += [
            self.pw_w.valid.eq(Mux(is_diag, id_valid, wfifo.r_rdy)),
            self.pw_w.payload.eq(Mux(is_diag, id_data, wrow)),
            wfifo.r_en.eq(self.pw_w.ready & wsub_last & ~is_diag),
        ]
        with m.If(self.pw_w.valid & self.pw_w.ready):
            with m.If(is_diag):
                m.d.sync += id_row.eq(id_row + 1)
                with m.If(id_row == R // WR - 1):
                    m.d.sync += [id_row.eq(0), id_off.eq(id_off + C), id_j.eq(id_j + 1)]
                    with m.If(id_j == jm1):
                        m.d.sync += [id_off.eq(0), id_j.eq(0), id_t.eq(id_t + 1)]
                        with m.If(id_t == nm1):
                            m.d.sync += id_more.eq(0)
            if w_per_beat > 1:
                with m.Else():
                    m.d.sync += wsub.eq(Mux(wsub_last, 0, wsub + 1))

        # --- beat generator ----------------------------------------------------------------------
        g_t = Signal(16)
        g_half = Signal()
        g_j = Signal(16)
        g_k = Signal(8)
        g_p = Signal(16)
        g_poff = Signal(16)          # POOL, DW: j·cols, whose word is (j·cols) / rows
        g_pm1, g_next_tile, g_restart = tile_last(g_t, "g_pm1")
        _, g_tlast, g_ends_next, g_ends_restart = tile_ends(g_t, "g")
        # The counters' compares, in registers loaded from the counters' next values: a
        # beat's enables are ANDs of flip-flops, not compares of 16-bit counters.
        g_plast = Signal()           # g_p == g_pm1: the tile's last pixel
        g_pzero = Signal()           # g_p == 0
        g_pone = Signal()            # g_pm1 == 0: a tile of one pixel
        g_klast = Signal()           # g_k == km1
        g_kzero = Signal()           # g_k == 0
        g_jlast = Signal()           # g_j == jm1
        g_tend = Signal()            # g_plast & g_klast & g_jlast: the tile's last beat, so
                                     # that g_tile_done is one LUT of flip-flops and the
                                     # array's ready, not a chain behind g_issue
        # The same of the per-step counts (registered after decode like km1, ...).
        k_one, j_one = Signal(), Signal()
        m.d.sync += [k_one.eq(km1 == 0), j_one.eq(jm1 == 0)]
        st_valid = Signal()
        st = Signal(pw_input_layout(R, cfg.pw_acc_depth))
        stage_free = ~st_valid | self.pw_i.ready
        g_issue = Signal()
        g_tile_done = Signal()       # the tile's last beat: its half is released
        # g_active & act_full[g_half], registered from the next values of the three: the
        # issue is one AND with the stage's room.
        g_avail = Signal()
        # The beat's word in the half, p·S + k (POOL, DW: p·S + (j·cols) / rows), kept in a
        # register that steps with the counters: the read address comes straight from
        # flip-flops to the many block RAMs, no adder between.
        g_word = Signal(range(act_half_words + 1))
        m.d.comb += [
            g_issue.eq(g_avail & stage_free),
            g_tile_done.eq(g_issue & g_tend),
            act_rp.addr.eq(Cat(g_word[:len(fill_addr)], g_half)),
            act_rp.en.eq(stage_free),
            self.pw_i.valid.eq(st_valid),
            self.pw_i.payload.eq(st),
            self.pw_i.payload.data.eq(act_rp.data),
        ]
        with m.If(g_issue):
            m.d.sync += [
                st_valid.eq(1),
                st.addr.eq(Mux(is_pool, 0, g_p)),
                st.first.eq(Mux(is_pool, g_pzero, g_kzero)),
                st.last.eq(Mux(is_pool, g_plast, g_klast)),
                st.swap.eq(g_pzero),
                # out_first marks the tile's last chunk, out_last the chunk's last pixel.
                st.out_first.eq(g_jlast),
                st.out_last.eq(g_plast),
            ]
            # g_tend follows the three flags: each branch sets it to the AND of their new
            # values (the tile's end, under g_tile_done below, overrides the last branch).
            with m.If(g_plast):
                k_last_next = (g_k + 1)[:8] == km1
                m.d.sync += [g_p.eq(0), g_pzero.eq(1), g_plast.eq(g_pone),
                             g_k.eq(g_k + 1), g_kzero.eq(0), g_klast.eq(k_last_next),
                             g_tend.eq(g_pone & k_last_next & g_jlast),
                             g_word.eq(Mux(is_diag, g_poff >> _log2(R), g_k + 1))]
                with m.If(g_klast):
                    j_last_next = (g_j + 1)[:16] == jm1
                    m.d.sync += [g_k.eq(0), g_kzero.eq(1), g_klast.eq(k_one),
                                 g_j.eq(g_j + 1), g_jlast.eq(j_last_next),
                                 g_tend.eq(g_pone & k_one & j_last_next),
                                 g_poff.eq(g_poff + C),
                                 g_word.eq(Mux(is_diag, (g_poff + C) >> _log2(R), 0))]
            with m.Else():
                p_last_next = (g_p + 1)[:16] == g_pm1
                m.d.sync += [g_p.eq(g_p + 1), g_pzero.eq(0), g_plast.eq(p_last_next),
                             g_tend.eq(p_last_next & g_klast & g_jlast),
                             g_word.eq(g_word + in_words)]
        with m.Elif(self.pw_i.ready):
            m.d.sync += st_valid.eq(0)
        # The tile's last beat (g_issue with g_plast, g_klast and g_jlast): its enables come
        # from g_tile_done, one LUT from flip-flops and the array's ready.
        with m.If(g_tile_done):
            next_one = Mux(g_t == nm2, p_one[2], p_one[1])
            m.d.sync += [g_j.eq(0), g_jlast.eq(j_one), g_poff.eq(0), g_word.eq(0),
                         g_t.eq(g_t + 1), g_pone.eq(next_one), g_plast.eq(next_one),
                         g_tend.eq(next_one & k_one & j_one)]
            g_next_tile()
            g_ends_next()
        with m.If(step_go):
            # km1, jm1 and pm1 are not registered yet: the compares read the descriptor.
            first_one = (d.first_tile_pixels - 1)[:16] == 0
            m.d.sync += [g_t.eq(0), g_j.eq(0), g_k.eq(0), g_p.eq(0), g_word.eq(0),
                         g_poff.eq(0), g_pzero.eq(1), g_kzero.eq(1), g_pone.eq(first_one),
                         g_plast.eq(first_one), g_klast.eq((K - 1)[:8] == 0),
                         g_jlast.eq((J - 1)[:16] == 0),
                         g_tend.eq(first_one & ((K - 1)[:8] == 0) & ((J - 1)[:16] == 0))]
            g_restart()
            g_ends_restart()
        # The halves' flags: a half is filled (fill_done) and released by its tile's last
        # beat, never both at once (the filler waits for a free half, the generator for a
        # full one).
        full_next = [Signal(name=f"act_full_next_{h}") for h in range(2)]
        g_half_next = Signal()
        g_active_next = Signal()
        for h in range(2):
            m.d.comb += full_next[h].eq(Mux(fill_done & (fill_half == h), 1,
                                            Mux(g_tile_done & (g_half == h), 0, act_full[h])))
            with m.If(g_tile_done & (g_half == h)):
                m.d.sync += act_claimed[h].eq(0)
        m.d.comb += [
            g_half_next.eq(Mux(step_go, 0, g_half ^ g_tile_done)),
            g_active_next.eq(Mux(step_go, 1, g_active & ~(g_tile_done & g_tlast))),
        ]
        m.d.sync += [act_full[h].eq(full_next[h]) for h in range(2)]
        fill_half_next = Mux(step_go, 0, fill_half ^ fill_done)
        m.d.sync += fill_free.eq(~Array(full_next)[fill_half_next])
        m.d.sync += [g_half.eq(g_half_next), g_active.eq(g_active_next)]
        # g_avail's next value, g_active_next & full_next[g_half_next], with the tile's end
        # (behind the array's ready) as the last select: the generator stays on its half
        # (filled by now?) or moves to the other one (full already or by now?).
        filled = [act_full[h] | (fill_done & (fill_half == h)) for h in range(2)]
        stay = g_avail | (g_active & fill_done & (fill_half == g_half))
        move = ~g_tlast & Mux(g_half, filled[0], filled[1])
        m.d.sync += g_avail.eq(Mux(step_go, full_next[0], Mux(g_tile_done, move, stay)))
        # Waiting for memory: the tile's input is not in yet, or a beat waits for weights.
        m.d.comb += self.read_stall.eq(
            (g_active & ~Array(act_full)[g_half])
            | (st_valid & st.swap & ~self.pw_i.ready & ~self.pw_w.valid))
        # --- parameter banks ---------------------------------------------------------------------
        bank = [[Signal(_RECORD, name=f"bank_{b}_{c}") for c in range(C)] for b in range(2)]
        bank_full = [Signal(name=f"bank_full_{b}") for b in range(2)]
        ld_sel = Signal()
        ld_idx = Signal(range(C))
        use_sel = Signal()
        ld_ok = ~Array(bank_full)[ld_sel]
        m.d.comb += pfifo.r_en.eq(ld_ok)
        with m.If(pfifo.r_rdy & ld_ok):
            for b in range(2):
                for c in range(C):
                    with m.If((ld_sel == b) & (ld_idx == c)):
                        m.d.sync += bank[b][c].eq(pfifo.r_data)
            m.d.sync += ld_idx.eq(ld_idx + 1)
            with m.If(ld_idx == C - 1):
                m.d.sync += [ld_idx.eq(0), ld_sel.eq(~ld_sel)]
                for b in range(2):
                    with m.If(ld_sel == b):
                        m.d.sync += bank_full[b].eq(1)

        # --- serializer: pointwise sums → requantizer beats --------------------------------------
        subs = C // L
        sub = Signal(range(max(2, subs)))
        sub_last = sub == subs - 1
        use_ok = Array(bank_full)[use_sel]
        o = self.pw_o.payload
        m.d.comb += [
            self.rq_i.valid.eq(self.pw_o.valid & use_ok),
            self.pw_o.ready.eq(self.rq_i.ready & use_ok & sub_last),
            self.rq_i.payload.first.eq(sub_last & o.last),
            self.rq_i.payload.last.eq(sub_last & o.last & o.first),
        ]
        for lane in range(L):
            rec_l = Signal(_RECORD, name=f"rec_lane_{lane}")
            acc_l = Signal(signed(32), name=f"acc_lane_{lane}")
            with m.Switch(Cat(sub if subs > 1 else Const(0, 1), use_sel)):
                for s_ in range(max(2, subs)):
                    for b in range(2):
                        c = s_ * L + lane
                        if c >= C:
                            continue
                        with m.Case(s_ | b << len(sub)):
                            m.d.comb += [rec_l.eq(bank[b][c]), acc_l.eq(o.data[c])]
            tgt = self.rq_i.payload.lanes[lane]
            m.d.comb += [tgt.acc.eq(acc_l), tgt.bias.eq(rec_l.bias),
                         tgt.multiplier.eq(rec_l.multiplier), tgt.shift.eq(rec_l.shift),
                         tgt.round_up.eq(rec_l.round_up)]
        with m.If(self.rq_i.valid & self.rq_i.ready):
            if subs > 1:
                m.d.sync += sub.eq(Mux(sub_last, 0, sub + 1))
            with m.If(sub_last & o.last):
                m.d.sync += use_sel.eq(~use_sel)
                for b in range(2):
                    with m.If(use_sel == b):
                        m.d.sync += bank_full[b].eq(0)

        # --- output buffer writer ----------------------------------------------------------------
        oh = Signal()
        # The byte of lane 0: pixel·out_stride + j·pw_cols (pix_col) + the lane group's
        # offset in the chunk (loff). out_stride is a multiple of the channel alignment, so
        # pix_col is one of pw_cols and the sum is an OR: no adder before the RAM's port.
        pix_col = Signal(range(self._cfg.out_buf_bytes))
        colj = Signal(16)
        loff = Signal(range(C + 1))
        byte_off = Signal(range(self._cfg.out_buf_bytes))
        m.d.comb += byte_off.eq(pix_col | loff)
        q = self.rq_o
        q_fire = Signal()
        m.d.comb += [
            q.ready.eq(~Array(out_full)[oh]),
            q_fire.eq(q.valid & q.ready),
            out_wp.addr.eq(Cat(byte_off[ab_log:][:len(out_wp.addr) - 1], oh)),
            out_wp.data.eq(q.payload.data.as_value() << (byte_off[:ab_log] * 8)
                           if ab_log else q.payload.data.as_value()),
            out_wp.en.eq(Mux(q_fire, Const((1 << L) - 1, AB) << byte_off[:ab_log]
                             if ab_log else 1, 0)),
            self.write_stall.eq(q.valid & ~q.ready),
        ]
        with m.If(q_fire):
            with m.If(loff == C - L):
                m.d.sync += [loff.eq(0), pix_col.eq(pix_col + d.out_stride)]
            with m.Else():
                m.d.sync += loff.eq(loff + L)
            with m.If(q.payload.first):
                m.d.sync += [pix_col.eq(colj + C), loff.eq(0), colj.eq(colj + C)]
            with m.If(q.payload.last):
                m.d.sync += [pix_col.eq(0), colj.eq(0), oh.eq(~oh)]
                for h in range(2):
                    with m.If(oh == h):
                        m.d.sync += out_full[h].eq(1)

        # --- write-back --------------------------------------------------------------------------
        w_t = Signal(16)
        wh = Signal()
        w_ptr = Signal(aw)
        w_cnt = Signal(range(out_half_words + 1))
        w_wm1 = Signal(len(w_cnt))   # the command's beats − 1: ceil(len / AB) − 1
        w_len = Signal(LEN_WIDTH)
        w_pending = Signal(16)
        wst_valid = Signal()
        w_done_all = Signal()
        # POOL's tile is its input map; its output is one pixel.
        w_first, w_last, w_ends_next, w_ends_restart = tile_ends(w_t, "w")
        m.d.comb += w_len.eq(Mux(is_pool, d.out_stride, by_tile((w_first, w_last), prods["out"])))
        wr_cmd_fire = Signal()
        wd_free = ~wst_valid | self.wr_data.ready
        w_issue = Signal()
        m.d.comb += [
            self.wr_cmd.payload.addr.eq(w_ptr),
            self.wr_cmd.payload.length.eq(w_len),
            wr_cmd_fire.eq(self.wr_cmd.valid & self.wr_cmd.ready),
            out_rp.addr.eq(Cat(w_cnt[:len(out_rp.addr) - 1], wh)),
            out_rp.en.eq(wd_free),
            self.wr_data.valid.eq(wst_valid),
            self.wr_data.payload.data.eq(out_rp.data),
            self.wr_done.ready.eq(1),
        ]
        with m.FSM(name="writer"):
            with m.State("IDLE"):
                with m.If(step_go):
                    m.d.sync += [w_t.eq(0), wh.eq(0), w_ptr.eq(d.out_addr),
                                 w_done_all.eq(0)]
                    w_ends_restart()
                    m.next = "WAIT"
            with m.State("WAIT"):
                # Nothing is written before the descriptor has passed its checks.
                m.d.comb += self.wr_cmd.valid.eq(Array(out_full)[wh] & chk_done)
                with m.If(wr_cmd_fire):
                    m.d.sync += [w_cnt.eq(0), w_wm1.eq((w_len - 1) >> ab_log),
                                 w_ptr.eq(w_ptr + w_len)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += w_issue.eq(wd_free)
                with m.If(w_issue):
                    m.d.sync += [w_cnt.eq(w_cnt + 1), wst_valid.eq(1)]
                    with m.If(w_cnt == w_wm1):
                        m.d.sync += [wh.eq(~wh), w_t.eq(w_t + 1)]
                        w_ends_next()
                        for h in range(2):
                            with m.If(wh == h):
                                m.d.sync += out_full[h].eq(0)
                        with m.If(w_last):
                            m.d.sync += w_done_all.eq(1)
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "WAIT"
        with m.If(~w_issue & self.wr_data.ready):
            m.d.sync += wst_valid.eq(0)
        m.d.sync += w_pending.eq(w_pending + wr_cmd_fire
                                 - (self.wr_done.valid & self.wr_done.ready))

        m.d.comb += step_busy.eq(~ri_done | g_active | ~w_done_all | (w_pending != 0)
                                 | wst_valid | lr_any | lr_wait)

        # Every engine starts a step on half 0 and bank 0: a step with an odd number of
        # tiles leaves the half selects at 1.
        with m.If(step_go):
            fill_restart()
            # in_wm1 and pm1 are not registered yet: the compares read the descriptor.
            words = Mux(is_conv, K, d.in_stride >> _log2(R))
            m.d.sync += [pixel_end.eq((words - 1)[:16] == 0),
                         fill_plast.eq((d.first_tile_pixels - 1)[:16] == 0)]
            m.d.sync += [fill_half.eq(0), fill_addr.eq(0), fill_t.eq(0), fill_k.eq(0),
                         fill_p.eq(0), oh.eq(0),
                         pix_col.eq(0), colj.eq(0), loff.eq(0), id_row.eq(0), id_off.eq(0),
                         id_j.eq(0), id_t.eq(0), id_more.eq(1), dsub.eq(0), ck.eq(0),
                         cvec_valid.eq(0)]

        # --- main state machine ------------------------------------------------------------------
        dma_error = Signal()
        m.d.comb += dma_error.eq(self.rd_status.error | self.wr_status.error)
        err = Signal(ErrorCode)      # the error the run ends with, reported with done

        def fail(code):
            m.d.sync += err.eq(code)
            m.next = "FINISH"

        def fail_dma():
            fail(Mux(self.rd_status.error, ErrorCode.DMA_READ, ErrorCode.DMA_WRITE))

        with m.If(step_go):
            m.d.sync += step_running.eq(1)
        with m.Elif(self.layer_done | self.done):
            m.d.sync += step_running.eq(0)
        with m.FSM(name="main"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pc.eq(self.program_addr), err.eq(ErrorCode.NONE)]
                    if ab_log:
                        with m.If(self.program_addr[:ab_log].any()):
                            fail(ErrorCode.ALIGN)
                        with m.Else():
                            m.next = "FETCH"
                    else:
                        m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += fetch_req.eq(1)
                with m.If(cmd_fire):
                    m.next = "WAIT_DESC"
            with m.State("WAIT_DESC"):
                with m.If(desc_last):
                    m.next = "DECODE"
                with m.Elif(dma_error):
                    fail_dma()
            with m.State("DECODE"):
                m.d.sync += pc.eq(pc + DESCRIPTOR_BYTES)
                with m.If(dma_error):
                    # The descriptor itself may be garbage (a SLVERR on its fetch).
                    fail_dma()
                with m.Elif(flag["run"]):
                    # The decode is registered (flag): step_go, with its hundreds of loads,
                    # is an AND of the state, the DMA's error and one flip-flop.
                    m.d.comb += step_go.eq(1)
                    with m.If(is_dwe):
                        m.next = "DW_LOAD"
                    with m.Elif(is_conv):
                        m.next = "CV_CFG"
                    with m.Else():
                        m.next = "START"
                with m.Elif(flag["end"]):
                    m.next = "FINISH"
                with m.Elif(flag["step"]):         # not run: an address is misaligned
                    fail(ErrorCode.ALIGN)
                with m.Else():
                    fail(ErrorCode.OPCODE)
            with m.State("DW_LOAD"):
                # The layer's weights and parameters must be in before its windows.
                with m.If(chk_bad):
                    fail(ErrorCode.SHAPE)
                with m.Elif(dma_error):
                    fail_dma()
                with m.Elif(dw_loaded):
                    m.next = "DW_CFG"
            with m.State("DW_CFG"):
                with m.If(chk_bad):
                    fail(ErrorCode.SHAPE)
                with m.Else():
                    m.d.comb += self.dw_cfg.valid.eq(1)
                    with m.If(self.dw_cfg.ready):
                        m.d.comb += lb_go.eq(1)
                        m.next = "RUN"
            with m.State("CV_CFG"):
                with m.If(chk_bad):
                    fail(ErrorCode.SHAPE)
                with m.Else():
                    m.d.comb += self.cv_cfg.valid.eq(1)
                    with m.If(self.cv_cfg.ready):
                        m.d.comb += lb_go.eq(1)
                        m.next = "RUN"
            with m.State("START"):
                # step_go's registers take effect this cycle; step_busy is valid from now.
                m.next = "RUN"
            with m.State("RUN"):
                # A step cannot end before its checks: its write-back waits for them.
                with m.If(chk_bad):
                    fail(ErrorCode.SHAPE)
                with m.Elif(dma_error):
                    fail_dma()
                with m.Elif(~step_busy):
                    m.d.comb += self.layer_done.eq(1)
                    m.next = "FETCH"
            with m.State("FINISH"):
                m.d.comb += [self.done.eq(1), self.error.eq(err != ErrorCode.NONE),
                             self.error_code.eq(err)]
                m.next = "IDLE"
        return m
