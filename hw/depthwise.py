# amaranth: UnusedElaboratable=no
"""Depthwise PE array: ``lanes`` × ``kernel²`` int8 multipliers, adder trees, int32 out.

Each lane computes one channel's window sum ``Σ x·w`` over raw int8 taps and weights (the
compiler folds the input zero point into the bias: ``Σ(x − zp)·w = Σx·w − zp·Σw``, exact
because padded taps carry ``zp``). The array has the native ``kernel × kernel`` (3×3)
multipliers per lane; a 5×5 window is summed from three *passes* of nine taps each over the
row-major flattened window (taps 0–8, 9–17, 18–24 plus two zero-weight slots), one pass
per cycle, accumulating in the lane's int32 register. Three passes rather than four 3×3
sub-windows (3×3, 3×2, 2×3, 2×2): the whole window is in registers already, tap
positions do not matter to a multiplier, and 27 slots for 25 taps (93 % busy) beat 36.

Pipeline (free-running, a valid bit per pass; one adder or one LUT level per stage, for
200 MHz on an ECP5)::

    window + pass ─► tap select ─► weight read ─► ×: Booth addends ─► adder tree ─► Σ passes
       stage 1        stage 2       stages 3-4       stages 5-6        stages 7-10   stage 11
    ─► output FIFO ─► o      (credits: `i.ready` is a flip-flop, nothing combinational
                               runs from `o.ready` back into the array)

The products are DSP multipliers (``mul_luts=False``) or radix-4 Booth multipliers built
from LUTs and carry chains (``mul_luts=True``, :func:`~mnaccel.hw.lut_mul.booth_terms_s8`:
their three addends enter the window's adder tree, so the multiplier's last adds and the
window's sum are levels of one pipelined tree), which leave the FPGA's 18×18 multipliers
to the pointwise array and the requantizers; the pipeline, its latency and its rate are
the same either way.

:class:`DepthwiseEngine` joins a :class:`~mnaccel.hw.line_buffer.LineBuffer` to the array:
pixel stream in, one int32 vector of ``lanes`` accumulators per window out.
:class:`DepthwiseLayer` is the whole depthwise layer: the engine followed by a
:class:`~mnaccel.hw.requantizer.Requantizer` of ``lanes`` lanes, with the per-channel bias,
M0, shift and tie rounding in a parameter memory beside the weights: pixels in, int8
outputs out.
"""

# (First line: DepthwiseEngine builds its two blocks at construction, for their timing
# models; they are elaborated exactly when the engine is, which Amaranth still checks.)

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from mnaccel.hw._checks import is_pow2
from mnaccel.hw.line_buffer import (
    LineBuffer,
    RegisteredMemory,
    layer_config_layout,
    window_layout,
)
from mnaccel.hw.lut_mul import booth_terms_s8
from mnaccel.hw.requantizer import LANE_LAYOUT, Requantizer
from mnaccel.hw.requantizer import output_layout as requantizer_output_layout

__all__ = [
    "PARAM_LANE_LAYOUT",
    "DepthwiseArray",
    "DepthwiseEngine",
    "DepthwiseLayer",
    "layer_config",
    "layer_output_layout",
    "param_beats",
    "param_layout",
    "weight_beats",
]


def _passes(k: int, native: int) -> int:
    return -(-k * k // native**2)


def weight_layout(lanes: int, kernel: int, max_kernel: int, max_channels: int):
    """Payload of :class:`DepthwiseArray`'s ``w`` stream: one weight-memory entry."""
    return data.StructLayout({
        "taps": data.ArrayLayout(data.ArrayLayout(signed(8), lanes), kernel * kernel),
        "group": unsigned((max(2, max_channels // lanes) - 1).bit_length()),
        "part": unsigned(2),
    })


def output_layout(lanes: int, max_channels: int):
    """Payload of :class:`DepthwiseArray`'s ``o`` stream."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(32), lanes),
        "group": unsigned((max(2, max_channels // lanes) - 1).bit_length()),
        "first": 1,
        "last": 1,
    })


def weight_beats(weights, lanes: int, kernel: int = 3) -> list[dict]:
    """The ``w`` stream beats loading depthwise ``weights`` of shape ``(K, K, C)``.

    ``C`` is padded with zero weights to a multiple of ``lanes``. Pass ``p`` of channel
    group ``g`` holds taps ``p·kernel² … (p+1)·kernel² − 1`` of the row-major flattened
    K×K window (zero beyond ``K²``).
    """
    w = np.asarray(weights, dtype=np.int64)
    if w.ndim != 3 or w.shape[0] != w.shape[1] or w.shape[0] not in (3, 5):
        raise ValueError(f"weights must have shape (K, K, C) with K 3 or 5, not {w.shape}")
    k, _, c = w.shape
    n = kernel * kernel
    groups = -(-c // lanes)
    passes = _passes(k, kernel)
    flat = np.zeros((passes * n, groups * lanes), dtype=np.int64)
    flat[:k * k, :c] = w.reshape(k * k, c)
    beats = []
    for g in range(groups):
        for p in range(passes):
            taps = flat[p * n:(p + 1) * n, g * lanes:(g + 1) * lanes]
            beats.append({"taps": taps.tolist(), "group": g, "part": p})
    return beats


class DepthwiseArray(wiring.Component):
    """``lanes`` lanes of ``kernel²`` int8 multipliers with adder trees and int32 outputs.

    Parameters
    ----------
    lanes : int
        Channels computed per cycle (power of two).
    kernel : int
        Native window side (3): ``kernel²`` multipliers per lane.
    max_kernel : int
        Largest window side accepted (3 or 5); larger than ``kernel`` takes several passes.
    max_channels : int
        Channels the weight memory holds (power of two).
    mul_luts : bool
        Build the int8 × int8 products from LUTs and carry chains (radix-4 Booth,
        :func:`~mnaccel.hw.lut_mul.booth_terms_s8`: no ``*``, so Yosys cannot map them to
        DSP blocks) rather than with ``*`` (one DSP multiplier each). Same latency and rate.
    ecp5_bram : bool
        The weight memory from ECP5 ``DP16KD`` primitives with their output registers
        (:class:`~mnaccel.hw.line_buffer.RegisteredMemory`); same timing.
    late_taps : bool
        Take a window's taps from :attr:`taps_late` in the cycle after each pass is issued
        instead of from ``i.payload.taps`` (which is then unused): the line buffer's
        :attr:`~mnaccel.hw.line_buffer.LineBuffer.taps_late`, so that its output
        multiplexer gets a cycle of its own (:class:`DepthwiseEngine`). Same latency.
    registered_ready : bool
        Make ``i.ready`` a flip-flop, loaded with its next value, for which the window's
        ``kernel5`` of the next cycle comes from :attr:`kernel5_next` (the line buffer's
        :attr:`~mnaccel.hw.line_buffer.LineBuffer.kernel5_next`). Same values every cycle.

    Members
    -------
    w : In(stream.Signature(weight_layout(lanes, kernel, max_kernel, max_channels)))
        Weight-memory writes (always ready); see :func:`weight_beats`. Load a layer's
        weights before its windows.
    i : In(stream.Signature(window_layout(lanes, max_kernel, max_channels)))
        Windows from the line buffer; ``group`` selects the weights, ``kernel5`` the passes.
    o : Out(stream.Signature(output_layout(lanes, max_channels)))
        ``acc[lane] = Σ taps·weights`` of channel ``group·lanes + lane``.

    Attributes
    ----------
    latency : int
        Cycles from the acceptance of a window (its last pass) to its sum on ``o``:
        ``STAGES`` (11) + the output FIFO's 2 = 13.
    fifo_depth : int
        Windows the output FIFO holds; a window is accepted while fewer are in flight.
    passes(k) : int
        Cycles per window of side ``k`` (1 for 3×3, 3 for 5×5); the array takes one window
        per lane group every ``passes(k)`` cycles: ``windows_per_cycle(k) = 1/passes(k)``.
    multipliers : int
        ``lanes · kernel²`` int8 multipliers.
    dsp_multipliers : int
        Those of them built as DSP blocks: ``multipliers``, or 0 with ``mul_luts``.
    mul_luts : bool
    taps_late : Signal(window_layout(...)["taps"].shape)
        With ``late_taps``: the taps of the window on ``i`` one cycle before, driven by the
        parent.
    kernel5_next : Signal(1)
        With ``registered_ready``: ``i.payload.kernel5`` of the next cycle, driven by the
        parent.
    """

    def __init__(self, *, lanes: int, kernel: int = 3, max_kernel: int = 5, max_channels: int,
                 mul_luts: bool = False, ecp5_bram: bool = False, late_taps: bool = False,
                 registered_ready: bool = False):
        if not is_pow2(lanes):
            raise ValueError(f"lanes must be a power of two, not {lanes!r}")
        if kernel != 3:
            raise ValueError(f"kernel (the native window) must be 3, not {kernel!r}")
        if max_kernel not in (3, 5):
            raise ValueError(f"max_kernel must be 3 or 5, not {max_kernel!r}")
        if not is_pow2(max_channels) or max_channels < lanes:
            raise ValueError(f"max_channels must be a power of two >= lanes, "
                             f"not {max_channels!r}")
        self._lanes, self._kernel = lanes, kernel
        self._max_kernel, self._max_channels = max_kernel, max_channels
        self._mul_luts = bool(mul_luts)
        self._ecp5_bram = bool(ecp5_bram)
        self._late_taps = bool(late_taps)
        self._registered_ready = bool(registered_ready)
        super().__init__({
            "w": In(stream.Signature(weight_layout(lanes, kernel, max_kernel, max_channels))),
            "i": In(stream.Signature(window_layout(lanes, max_kernel, max_channels))),
            "o": Out(stream.Signature(output_layout(lanes, max_channels))),
        })
        self.taps_late = Signal(window_layout(lanes, max_kernel, max_channels)["taps"].shape,
                                name="taps_late")
        self.kernel5_next = Signal(name="kernel5_next")

    lanes = property(lambda self: self._lanes)
    kernel = property(lambda self: self._kernel)
    max_kernel = property(lambda self: self._max_kernel)
    max_channels = property(lambda self: self._max_channels)
    mul_luts = property(lambda self: self._mul_luts)
    ecp5_bram = property(lambda self: self._ecp5_bram)
    late_taps = property(lambda self: self._late_taps)
    registered_ready = property(lambda self: self._registered_ready)

    #: Register stages from ``i`` to the accumulators (see :meth:`elaborate`).
    STAGES = 11
    # SyncFIFOBuffered: a word written into the empty FIFO is readable two cycles later.
    _FIFO_LATENCY = 2

    @property
    def latency(self) -> int:
        return self.STAGES + self._FIFO_LATENCY

    @property
    def fifo_depth(self) -> int:
        # As Requantizer.fifo_depth: a credit for every window between acceptance and
        # leaving the FIFO, rounded up to 2**k + 1 entries.
        need = self.latency + 1
        return 1 + (1 << (need - 2).bit_length())

    @property
    def multipliers(self) -> int:
        return self._lanes * self._kernel**2

    @property
    def dsp_multipliers(self) -> int:
        return 0 if self._mul_luts else self.multipliers

    def passes(self, k: int) -> int:
        """Cycles the array spends on one window of side ``k``."""
        if k not in (3, 5) or k > self._max_kernel:
            raise ValueError(f"k must be 3 or 5 and at most {self._max_kernel}, not {k!r}")
        return _passes(k, self._kernel)

    def windows_per_cycle(self, k: int) -> float:
        return 1 / self.passes(k)

    @property
    def weight_depth(self) -> int:
        """Weight words a layer can use: channel groups × passes of the largest kernel."""
        return self._max_channels // self._lanes * _passes(self._max_kernel, self._kernel)

    @staticmethod
    def _address(group, part, passes):
        # The pass in the low bits: no adder between the `i` port and the read address (the
        # memory then has a power of two of words per group, 4 for 3 passes; since the
        # groups are a power of two, that needs the same block RAMs as `weight_depth`).
        if passes == 1:
            return group
        return Cat(part[:(passes - 1).bit_length()], group)

    def elaborate(self, platform):
        m = Module()
        L, N, KM = self._lanes, self._kernel**2, self._max_kernel
        PM = _passes(KM, self._kernel)
        slots = data.ArrayLayout(data.ArrayLayout(signed(8), L), N)
        win = self.i.payload
        gshape = len(win.group)

        def pipe(shape, name):
            # Datapath register: no reset, no enable (the valid bits are in `ctl`).
            return Signal(shape, name=name, reset_less=True)

        # Weight memory, read through a register (RegisteredMemory: the word arrives two
        # cycles after its address). Writes are registered first (the `w` port's address
        # arithmetic then stays off the memory's inputs); a layer's weights precede its
        # windows, so a read never meets a write of its entry.
        mem = RegisteredMemory(width=slots.size,
                               depth=self._max_channels // L << (PM - 1).bit_length(),
                               ecp5_bram=self._ecp5_bram, name="weights")
        mem.build(m)
        w_addr = pipe(len(mem.w_addr), "w_addr")
        w_data = pipe(slots, "w_data")
        w_en = Signal(name="w_en")
        m.d.sync += [
            w_addr.eq(self._address(self.w.payload.group, self.w.payload.part, PM)),
            w_data.eq(self.w.payload.taps),
            w_en.eq(self.w.valid),
        ]
        m.d.comb += [self.w.ready.eq(1), mem.w_addr.eq(w_addr), mem.w_data.eq(w_data),
                     mem.w_en.eq(w_en)]

        # Issue: one pass per cycle while the window waits on `i` (the last pass takes
        # it), when the output FIFO has room for it (credits, below).
        full = Signal()
        part = Signal(2)
        last_part = Mux(win.kernel5, part == PM - 1, 1) if PM > 1 else Const(1)
        issue = self.i.valid & ~full
        part_next = Signal(2)
        m.d.comb += part_next.eq(Mux(issue, Mux(last_part, 0, part + 1), part))
        m.d.sync += part.eq(part_next)

        ctl_layout = data.StructLayout({"valid": 1, "first_part": 1, "last_part": 1,
                                        "group": gshape, "first": 1, "last": 1})

        def stage(prev, name):
            ctl = Signal(ctl_layout, name=name)
            m.d.sync += ctl.eq(prev)
            return ctl

        # 1: the window and the pass, registered as they are (the line buffer's output
        # multiplexer stays in the previous cycle); the weight address, which is only
        # wires of the group and the pass.
        r_win = pipe(win.shape(), "r_win")
        r_part = pipe(2, "r_part")
        a_addr = pipe(len(mem.r_addr), "a_addr")
        ctl = Signal(ctl_layout, name="ctl_1")
        m.d.sync += [
            r_win.eq(win), r_part.eq(part), a_addr.eq(self._address(win.group, part, PM)),
            ctl.valid.eq(issue), ctl.first_part.eq(part == 0), ctl.last_part.eq(last_part),
            ctl.group.eq(win.group), ctl.first.eq(win.first), ctl.last.eq(win.last),
        ]

        def pass_taps(taps, kernel5, part_):
            # The taps of pass `part_` into the nine slots.
            sel = Signal(slots)
            for n in range(N):
                tap3 = taps[n // 3][n % 3]
                if PM == 1:
                    m.d.comb += sel[n].eq(tap3)
                    continue
                choice = tap3
                for p in range(PM):
                    t = p * N + n
                    tap5 = taps[t // 5][t % 5] if t < 25 else 0
                    choice = Mux(kernel5 & (part_ == p), tap5, choice)
                m.d.comb += sel[n].eq(choice)
            return sel

        if not self._late_taps:
            # 2: the taps of this pass into the nine slots.
            a_taps = pipe(slots, "a_taps")
            m.d.sync += a_taps.eq(pass_taps(r_win.taps, r_win.kernel5, r_part))
        else:
            # 2: the window's taps arrive (`taps_late`, a cycle after `i`); 3: registered
            # again, a cycle for the route from the line buffer's slots to the array; 4:
            # this pass's taps.
            a_win = pipe(r_win.taps.shape(), "a_win")
            a_k5 = pipe(1, "a_kernel5")
            a_part = pipe(2, "a_part")
            m.d.sync += [a_win.eq(self.taps_late), a_k5.eq(r_win.kernel5), a_part.eq(r_part)]
            b_win = pipe(r_win.taps.shape(), "b_win")
            b_k5 = pipe(1, "b_kernel5")
            b_part = pipe(2, "b_part")
            m.d.sync += [b_win.eq(a_win), b_k5.eq(a_k5), b_part.eq(a_part)]
        ctl = stage(ctl, "ctl_2")

        # 2-4: the weight memory reads at the address of stage 1; its word comes out of the
        # read's output register in stage 3 and is registered once more in the fabric (4),
        # so that the route from the block RAMs to the products has a cycle of its own
        # (3.0 ns of the 6.8 ns path without it). The taps are delayed alongside.
        m.d.comb += mem.r_addr.eq(a_addr)
        if not self._late_taps:
            b_taps = pipe(slots, "b_taps")
            m.d.sync += b_taps.eq(a_taps)
        ctl = stage(ctl, "ctl_3")
        c_taps = pipe(slots, "c_taps")
        c_w = pipe(slots, "c_w")
        m.d.sync += [c_taps.eq(pass_taps(b_win, b_k5, b_part) if self._late_taps else b_taps),
                     c_w.eq(mem.r_data)]
        ctl = stage(ctl, "ctl_4")

        # 5-10: the products and their sum, one adder per stage. From LUTs (mul_luts) each
        # product is three Booth addends (5); the first two are summed per product (6)
        # while the one-bit third ones are counted; DSP products take the same stages.
        prods, counts = [], []
        for lane in range(L):
            terms, tops = [], []
            for n in range(N):
                a, b = c_taps[n][lane], c_w[n][lane]
                if self._mul_luts:
                    lo, hi, top = booth_terms_s8(a, b)
                    lo_r = pipe(lo.shape(), f"lo_{lane}_{n}")
                    hi_r = pipe(hi.shape(), f"hi_{lane}_{n}")
                    top_r = pipe(1, f"top_{lane}_{n}")
                    m.d.sync += [lo_r.eq(lo), hi_r.eq(hi), top_r.eq(top)]
                    terms.append(lo_r + (hi_r << 2))
                    tops.append(top_r)
                else:
                    prod = pipe(signed(16), f"mul_{lane}_{n}")
                    m.d.sync += prod.eq(a * b)
                    terms.append(prod)
            prods.append(terms)
            counts.append(tops)
        ctl = stage(ctl, "ctl_5")

        totals = []
        for lane in range(L):
            # 6: products (Booth: low + 4·high; the count of the tops in two halves).
            level = []
            for n, term in enumerate(prods[lane]):
                r = pipe(signed(16), f"p_{lane}_{n}")
                m.d.sync += r.eq(term)
                level.append(r)
            tops = counts[lane]
            halves = []
            for h, part_tops in enumerate((tops[:5], tops[5:])):
                c_h = pipe(3, f"tops_{lane}_{h}")
                m.d.sync += c_h.eq(sum(part_tops) if part_tops else 0)
                halves.append(c_h)
            # 7-10: pairwise sums; the tops' count (weight 64) joins the odd one out.
            count = None
            for depth in range(4):
                nxt = []
                for j in range(0, len(level) - 1, 2):
                    s = pipe(signed(len(level[j]) + 1), f"s{depth}_{lane}_{j // 2}")
                    m.d.sync += s.eq(level[j] + level[j + 1])
                    nxt.append(s)
                if len(level) % 2:
                    odd = level[-1]
                    if count is not None and self._mul_luts:
                        value, count = odd + (count << 6), None
                    else:
                        value = odd
                    s = pipe(signed(len(odd) + 1), f"s{depth}_{lane}_{len(nxt)}")
                    m.d.sync += s.eq(value)
                    nxt.append(s)
                if depth == 0 and self._mul_luts:
                    count = pipe(4, f"tops_{lane}")
                    m.d.sync += count.eq(halves[0] + halves[1])
                level = nxt
            assert len(level) == 1 and count is None
            totals.append(level[0])
        for k in range(6, 11):
            ctl = stage(ctl, f"ctl_{k}")

        # 11: the accumulators, over the passes of a window.
        acc = [pipe(signed(32), f"acc_{lane}") for lane in range(L)]
        for lane in range(L):
            with m.If(ctl.valid):
                m.d.sync += acc[lane].eq(Mux(ctl.first_part, totals[lane],
                                             acc[lane] + totals[lane]))
        # The FIFO's write enable, `valid & last_part` of stage 11, as a flip-flop of its
        # own that the placer can put beside the FIFO: its level → `w_rdy` → the write →
        # the level's enable went to the stage-11 flags and back (9.24 ns in the engine).
        w_en = Signal(name="fifo_w_en")
        m.d.sync += w_en.eq(ctl.valid & ctl.last_part)
        ctl = stage(ctl, "ctl_11")

        # Output FIFO and credits, as in the requantizer: a window is accepted only while
        # fewer than the FIFO's depth are in the pipeline or the FIFO, so `i.ready` is a
        # flip-flop and a stalled output loses nothing.
        result = Signal(output_layout(L, self._max_channels))
        m.d.comb += [result.group.eq(ctl.group), result.first.eq(ctl.first),
                     result.last.eq(ctl.last)]
        for lane in range(L):
            m.d.comb += result.acc[lane].eq(acc[lane])
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=len(result.as_value()),
                                                    depth=self.fifo_depth)
        m.d.comb += [
            fifo.w_en.eq(w_en),
            fifo.w_data.eq(result.as_value()),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
        ]
        accept = self.i.valid & self.i.ready
        send = self.o.valid & self.o.ready
        in_flight = Signal(range(self.fifo_depth + 1))
        m.d.sync += in_flight.eq(in_flight + accept - send)
        full_next = Mux(accept & ~send & (in_flight == self.fifo_depth - 1), 1,
                        Mux(send, 0, full))
        m.d.sync += full.eq(full_next)
        if not self._registered_ready:
            m.d.comb += self.i.ready.eq(~full & last_part)
        else:
            # `~full & last_part` of the next cycle, so that the line buffer's many users of
            # `ready` (its handshake state and the `fire` copies) start from a flip-flop.
            ready = Signal(init=1, name="i_ready")
            last_next = (Mux(self.kernel5_next, part_next == PM - 1, 1) if PM > 1
                         else Const(1))
            m.d.sync += ready.eq(~full_next & last_next)
            m.d.comb += self.i.ready.eq(ready)
        return m


class DepthwiseEngine(wiring.Component):
    """Line buffer → depthwise PE array: a depthwise convolution's int32 accumulators.

    Beside the window stream, the array takes the taps a cycle after the handshake from the
    line buffer's slot (``late_taps``) and registers its ``ready`` from the next window's
    ``kernel5`` (``registered_ready``): the same cycles, a shorter clock period.

    Parameters
    ----------
    lanes, in_lanes, max_kernel, max_width, max_channels, max_row_bytes : int
        As :class:`~mnaccel.hw.line_buffer.LineBuffer`.
    kernel : int
        Native window of the array (3).
    mul_luts : bool
        The array's products from LUTs rather than DSP blocks (:class:`DepthwiseArray`).
    ecp5_bram : bool
        Line buffer and weight memories from ECP5 block-RAM primitives with their output
        registers (:class:`~mnaccel.hw.line_buffer.RegisteredMemory`).

    Members
    -------
    cfg : In(stream.Signature(layer_config_layout(max_width, max_channels)))
        The layer's shape (see :class:`~mnaccel.hw.line_buffer.LineBuffer`).
    i : In(stream.Signature(data.ArrayLayout(signed(8), in_lanes)))
        Input pixels, NHWC raster, ``in_lanes`` channels per beat.
    w : In(stream.Signature(weight_layout(lanes, kernel, max_kernel, max_channels)))
        Weights, loaded before the layer (:func:`weight_beats`).
    o : Out(stream.Signature(output_layout(lanes, max_channels)))
        Accumulators, NHWC order, ``lanes`` channels per beat.

    Attributes
    ----------
    line_buffer : LineBuffer
    array : DepthwiseArray
    latency : int
        Line buffer latency + array latency.
    """

    def __init__(self, *, lanes: int, in_lanes: int | None = None, kernel: int = 3,
                 max_kernel: int = 5, max_width: int, max_channels: int, max_row_bytes: int,
                 mul_luts: bool = False, ecp5_bram: bool = False):
        self.line_buffer = LineBuffer(lanes=lanes, in_lanes=in_lanes, max_kernel=max_kernel,
                                      max_width=max_width, max_channels=max_channels,
                                      max_row_bytes=max_row_bytes, ecp5_bram=ecp5_bram)
        self.array = DepthwiseArray(lanes=lanes, kernel=kernel, max_kernel=max_kernel,
                                    max_channels=max_channels, mul_luts=mul_luts,
                                    ecp5_bram=ecp5_bram, late_taps=True,
                                    registered_ready=True)
        lb, arr = self.line_buffer.signature.members, self.array.signature.members
        super().__init__({"cfg": lb["cfg"], "i": lb["i"], "w": arr["w"], "o": arr["o"]})

    @property
    def latency(self) -> int:
        return self.line_buffer.latency + self.array.latency

    def frame_cycles(self, height, width, channels, kernel, stride, padding) -> tuple[int, int]:
        """Cycles (from ``cfg`` accepted) of the first and last output, no stalls."""
        first, last = self.line_buffer.frame_cycles(
            height, width, channels, kernel, stride, padding,
            cycles_per_window=self.array.passes(kernel))
        return first + self.array.latency, last + self.array.latency

    def cycles_per_output_pixel(self, kernel: int, stride: int, channels: int) -> int:
        """Steady-state cycles per output pixel (all its channels) inside a large layer.

        The slower of the PE array (``ceil(channels / lanes)`` windows of
        :meth:`DepthwiseArray.passes` cycles each) and the line buffer
        (:meth:`~mnaccel.hw.line_buffer.LineBuffer.cycles_per_output_pixel`). Row edges and
        the start are not counted, nor how the two wait on each other when their paces are
        close (5×5 at stride 2: the line buffer's gearbox against the array's passes), where
        it is a lower bound; :meth:`frame_cycles` counts all of it.
        """
        windows = -(-channels // self.array.lanes)
        return max(windows * self.array.passes(kernel),
                   self.line_buffer.cycles_per_output_pixel(stride, channels))

    def elaborate(self, platform):
        m = Module()
        m.submodules.line_buffer = self.line_buffer
        m.submodules.array = self.array
        wiring.connect(m, self.line_buffer.o, self.array.i)
        # The array registers the window's taps a cycle after the handshake, from the line
        # buffer's slot (`taps_late`): its output multiplexer and the route to the array
        # (9.8 ns when the array registered `o.payload.taps`) get a cycle of their own.
        m.d.comb += self.array.taps_late.eq(self.line_buffer.taps_late)
        # And its `i.ready` is a flip-flop, for which it needs the next window's `kernel5`.
        m.d.comb += self.array.kernel5_next.eq(self.line_buffer.kernel5_next)
        wiring.connect(m, wiring.flipped(self.cfg), self.line_buffer.cfg)
        wiring.connect(m, wiring.flipped(self.i), self.line_buffer.i)
        wiring.connect(m, wiring.flipped(self.w), self.array.w)
        wiring.connect(m, self.array.o, wiring.flipped(self.o))
        return m


#: One channel's requantization parameters: the requantizer's lane input without ``acc``.
PARAM_LANE_LAYOUT = data.StructLayout(
    {name: field.shape for name, field in LANE_LAYOUT if name != "acc"})


def _group_shape(lanes: int, max_channels: int):
    return unsigned((max(2, max_channels // lanes) - 1).bit_length())


def param_layout(lanes: int, max_channels: int) -> data.StructLayout:
    """Payload of :class:`DepthwiseLayer`'s ``p`` stream: one channel group's parameters."""
    return data.StructLayout({
        "lanes": data.ArrayLayout(PARAM_LANE_LAYOUT, lanes),
        "group": _group_shape(lanes, max_channels),
    })


def layer_config(max_width: int, max_channels: int) -> data.StructLayout:
    """Payload of :class:`DepthwiseLayer`'s ``cfg`` stream: one layer.

    The line buffer's fields (:func:`~mnaccel.hw.line_buffer.layer_config_layout`: shape,
    kernel, stride, padding and the input ``zero_point``) plus the requantizer's per-layer
    values: ``output_zp`` and the activation clamp ``act_min <= act_max`` (int8 each).
    """
    fields = {name: field.shape for name, field in layer_config_layout(max_width, max_channels)}
    return data.StructLayout(fields | {
        "output_zp": signed(8), "act_min": signed(8), "act_max": signed(8)})


def layer_output_layout(lanes: int) -> data.StructLayout:
    """Payload of :class:`DepthwiseLayer`'s ``o`` stream: ``data[lanes]`` int8, flags."""
    return requantizer_output_layout(lanes)


def param_beats(bias, multiplier, shift, round_up, lanes: int) -> list[dict]:
    """The ``p`` stream beats loading a layer's per-channel requantization parameters.

    ``bias`` must already hold the folded input zero point, ``bias − zp_in·Σw[c]`` (the
    array sums raw int8 products). All four arguments have one entry per channel ``C``;
    ``C`` is padded to a multiple of ``lanes`` with zeros.
    """
    cols = [np.asarray(v, dtype=np.int64).reshape(-1) for v in (bias, multiplier, shift,
                                                                 round_up)]
    c = cols[0].size
    if any(col.size != c for col in cols):
        raise ValueError(f"bias, multiplier, shift and round_up must have one entry per "
                         f"channel, not sizes {[col.size for col in cols]}")
    groups = -(-c // lanes)
    padded = np.zeros((4, groups * lanes), dtype=np.int64)
    for row, col in zip(padded, cols, strict=True):
        row[:c] = col
    names = ("bias", "multiplier", "shift", "round_up")
    return [{"group": g, "lanes": [
        {name: int(padded[j, g * lanes + ln]) for j, name in enumerate(names)}
        for ln in range(lanes)]} for g in range(groups)]


class DepthwiseLayer(wiring.Component):
    """A depthwise convolution layer, int8 in, int8 out: engine → parameters → requantizer.

    :class:`DepthwiseEngine` (line buffer and PE array) produces one vector of ``lanes``
    int32 accumulators per window; a join stage pairs it with its channel group's bias, M0,
    shift and tie rounding, read from a parameter memory (``lib.memory``) in the same cycle
    as the accumulators are registered; a :class:`~mnaccel.hw.requantizer.Requantizer` of
    ``lanes`` lanes turns it into ``lanes`` int8 outputs. Every stage takes one vector per
    cycle, so the layer keeps the array's rate of one window per lane per cycle (3×3).

    A layer: load its weights on ``w`` (:func:`weight_beats`) and its parameters on ``p``
    (:func:`param_beats`, bias with the input zero point folded in), then give its
    configuration on ``cfg`` and its pixels on ``i``. The per-layer requantizer values
    (``output_zp``, ``act_min``, ``act_max``) arrive with ``cfg`` and are held in registers;
    so that a layer's tail is never requantized with the next layer's values, ``cfg`` is
    accepted only once the previous layer's last output has left on ``o`` (a gap of about
    :attr:`latency` cycles between layers).

    Parameters
    ----------
    lanes, in_lanes, max_kernel, max_width, max_channels, max_row_bytes : int
        As :class:`~mnaccel.hw.line_buffer.LineBuffer`.
    kernel : int
        Native window of the array (3).
    mul_luts : bool
        The array's int8 products from LUTs rather than DSP blocks (:class:`DepthwiseArray`);
        the requantizer's wide products stay on DSPs.
    ecp5_dsp : bool
        Requantizer multipliers as ECP5 primitives (see
        :class:`~mnaccel.hw.requantizer.Requantizer`).
    ecp5_bram : bool, optional
        Block RAMs (line buffer, weights, parameters) as ECP5 primitives with their output
        registers (:class:`~mnaccel.hw.line_buffer.RegisteredMemory`); by default as
        ``ecp5_dsp``, so that an ECP5 build gets both.

    Members
    -------
    cfg : In(stream.Signature(layer_config(max_width, max_channels)))
        The layer: the line buffer's fields plus ``output_zp``, ``act_min``, ``act_max``.
    i : In(stream.Signature(data.ArrayLayout(signed(8), in_lanes)))
        Input pixels, NHWC raster, ``in_lanes`` channels per beat.
    w : In(stream.Signature(weight_layout(lanes, kernel, max_kernel, max_channels)))
        Weights (always ready), loaded before the layer (:func:`weight_beats`).
    p : In(stream.Signature(param_layout(lanes, max_channels)))
        Per-channel parameters (always ready), one beat per channel group, loaded before
        the layer (:func:`param_beats`).
    o : Out(stream.Signature(layer_output_layout(lanes)))
        int8 outputs, NHWC order, ``lanes`` channels per beat; ``first``/``last`` mark the
        layer's first and last beat.

    Attributes
    ----------
    engine : DepthwiseEngine
    requantizer : Requantizer
    latency : int
        Cycles from the input beat completing a window to its int8 outputs on ``o``
        (3×3, no stalls): ``engine.latency`` + :attr:`JOIN_LATENCY` (2) +
        ``requantizer.latency``.
    param_depth : int
        Entries of the parameter memory: ``max_channels / lanes`` channel groups.
    """

    JOIN_LATENCY = 2

    def __init__(self, *, lanes: int, in_lanes: int | None = None, kernel: int = 3,
                 max_kernel: int = 5, max_width: int, max_channels: int, max_row_bytes: int,
                 mul_luts: bool = False, ecp5_dsp: bool = False, ecp5_bram: bool | None = None):
        self._ecp5_bram = ecp5_dsp if ecp5_bram is None else bool(ecp5_bram)
        self.engine = DepthwiseEngine(
            lanes=lanes, in_lanes=in_lanes, kernel=kernel, max_kernel=max_kernel,
            max_width=max_width, max_channels=max_channels, max_row_bytes=max_row_bytes,
            mul_luts=mul_luts, ecp5_bram=self._ecp5_bram)
        self.requantizer = Requantizer(lanes=lanes, ecp5_dsp=ecp5_dsp)
        members = self.engine.signature.members
        super().__init__({
            "cfg": In(stream.Signature(layer_config(max_width, max_channels))),
            "i": members["i"],
            "w": members["w"],
            "p": In(stream.Signature(param_layout(lanes, max_channels))),
            "o": Out(stream.Signature(layer_output_layout(lanes))),
        })

    @property
    def latency(self) -> int:
        return self.engine.latency + self.JOIN_LATENCY + self.requantizer.latency

    @property
    def param_depth(self) -> int:
        return self.engine.array.max_channels // self.engine.array.lanes

    def passes(self, k: int) -> int:
        """Cycles per window of side ``k`` (:meth:`DepthwiseArray.passes`)."""
        return self.engine.array.passes(k)

    def windows_per_cycle(self, k: int) -> float:
        """Windows per lane per cycle, sustained, for side ``k``: 1 (3×3) or 1/3 (5×5)."""
        return self.engine.array.windows_per_cycle(k)

    def cycles_per_output_pixel(self, kernel: int, stride: int, channels: int) -> int:
        """:meth:`DepthwiseEngine.cycles_per_output_pixel`."""
        return self.engine.cycles_per_output_pixel(kernel, stride, channels)

    def frame_cycles(self, height, width, channels, kernel, stride, padding) -> tuple[int, int]:
        """Cycles (from ``cfg`` accepted) of the first and last output beat, no stalls."""
        extra = self.JOIN_LATENCY + self.requantizer.latency
        first, last = self.engine.frame_cycles(height, width, channels, kernel, stride,
                                               padding)
        return first + extra, last + extra

    def elaborate(self, platform):
        m = Module()
        lanes = self.engine.array.lanes
        m.submodules.engine = engine = self.engine
        m.submodules.requantizer = rq = self.requantizer

        # Layer configuration: the shape to the line buffer, the requantizer's values into
        # registers, taken only when no output of the previous layer is still on its way.
        busy = Signal()
        output_zp = Signal(signed(8))
        act_min = Signal(signed(8))
        act_max = Signal(signed(8))
        for name, _ in engine.cfg.payload.shape():
            m.d.comb += engine.cfg.payload[name].eq(self.cfg.payload[name])
        m.d.comb += [
            engine.cfg.valid.eq(self.cfg.valid & ~busy),
            self.cfg.ready.eq(engine.cfg.ready & ~busy),
        ]
        with m.If(self.cfg.valid & self.cfg.ready):
            m.d.sync += [
                busy.eq(1),
                output_zp.eq(self.cfg.payload.output_zp),
                act_min.eq(self.cfg.payload.act_min),
                act_max.eq(self.cfg.payload.act_max),
            ]
        with m.Elif(self.o.valid & self.o.ready & self.o.payload.last):
            m.d.sync += busy.eq(0)
        m.d.comb += [rq.output_zp.eq(output_zp), rq.act_min.eq(act_min),
                     rq.act_max.eq(act_max)]

        wiring.connect(m, wiring.flipped(self.i), engine.i)
        wiring.connect(m, wiring.flipped(self.w), engine.w)

        # Parameter memory, one entry per channel group, written from `p` (loaded before
        # the layer, so never read while its entry is written), read through a register.
        mem = RegisteredMemory(width=data.ArrayLayout(PARAM_LANE_LAYOUT, lanes).size,
                               depth=self.param_depth, ecp5_bram=self._ecp5_bram,
                               name="params")
        mem.build(m)
        m.d.comb += [
            self.p.ready.eq(1),
            mem.w_addr.eq(self.p.payload.group),
            mem.w_data.eq(self.p.payload.lanes),
            mem.w_en.eq(self.p.valid),
        ]

        # Join, two stages that advance together with the memory's two read stages: the
        # accumulators are registered while their group's parameters are read (1), and
        # again while the read word goes into the memory's output register (2). The
        # requantizer's first adder thus takes the parameters from flip-flops, and each
        # pair stays aligned through stalls.
        held1 = Signal(engine.o.payload.shape(), name="join_acc1")
        held2 = Signal(engine.o.payload.shape(), name="join_acc2")
        valid1, valid2 = Signal(name="join_valid1"), Signal(name="join_valid2")
        params2 = Signal(data.ArrayLayout(PARAM_LANE_LAYOUT, lanes))
        advance = Signal()
        m.d.comb += [
            advance.eq(~valid2 | rq.i.ready),
            engine.o.ready.eq(advance),
            mem.r_addr.eq(engine.o.payload.group),
            mem.r_en.eq(advance),
            params2.eq(mem.r_data),
        ]
        with m.If(advance):
            m.d.sync += [held1.eq(engine.o.payload), valid1.eq(engine.o.valid),
                         held2.eq(held1), valid2.eq(valid1)]
        m.d.comb += [
            rq.i.valid.eq(valid2),
            rq.i.payload.first.eq(held2.first),
            rq.i.payload.last.eq(held2.last),
        ]
        for k in range(lanes):
            lane = rq.i.payload.lanes[k]
            m.d.comb += lane.acc.eq(held2.acc[k])
            for name, _ in PARAM_LANE_LAYOUT:
                m.d.comb += lane[name].eq(params2[k][name])

        wiring.connect(m, rq.o, wiring.flipped(self.o))
        return m
