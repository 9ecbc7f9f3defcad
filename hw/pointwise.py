"""The pointwise (1×1 convolution) engine: the systolic array with its skew, weight loading
and accumulator buffer.

Dataflow: weight-stationary. A 1×1 convolution multiplies every pixel's channel vector by
the same ``C_in × C_out`` matrix, so a ``rows × cols`` weight tile is reused for every pixel
of a pixel tile — hundreds of activation vectors per tile load in MobileNet's 1×1 layers —
while each activation chunk is used once per output-channel tile. Keeping the weights still
and streaming pixels through costs one weight load (``rows`` beats) per ``P`` pixel beats;
double-buffered weights (two banks per PE, the bank bit travelling with each activation)
hide that load entirely once ``P >= rows``. The partial sums over input-channel chunks stay
in an on-chip int32 accumulator buffer, one entry per pixel of the tile.

Arithmetic contract: the array multiplies raw int8 activations by raw int8 weights and adds
in int32 (two's complement, wrapping); it subtracts no zero point. The compiler folds the
input zero point into the bias, ``Σ(x − zp)·w = Σx·w − zp·Σw``, and the line buffer pads
with ``zp``, so padded taps fold the same way. Weight zero points are 0 (TFLite int8).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mnaccel.hw._checks import check_pow2
from mnaccel.hw.systolic_array import SystolicArray, weight_write_layout

__all__ = ["Pointwise", "input_layout", "output_layout", "weight_layout"]

ACC_WIDTH = 32


def weight_layout(cols: int) -> data.StructLayout:
    """Payload of the weight stream: one row of a weight tile, ``cols`` int8 weights."""
    return data.StructLayout({"data": data.ArrayLayout(signed(8), cols)})


def input_layout(rows: int, acc_depth: int) -> data.StructLayout:
    """Payload of the activation stream: one pixel's chunk of ``rows`` input channels.

    Fields: ``data`` (the chunk), ``addr`` (accumulator entry of the pixel), ``first``
    (first chunk of the pixel's reduction: the sum starts from zero), ``last`` (last chunk:
    the sum is emitted), ``swap`` (first beat of a new weight tile: switch to the next tile
    of the weight stream), ``out_first``/``out_last`` (copied to the output beat's
    ``first``/``last``; only meaningful with ``last``).
    """
    return data.StructLayout({
        "data": data.ArrayLayout(signed(8), rows),
        "addr": range(acc_depth),
        "first": unsigned(1),
        "last": unsigned(1),
        "swap": unsigned(1),
        "out_first": unsigned(1),
        "out_last": unsigned(1),
    })


def output_layout(cols: int, acc_depth: int) -> data.StructLayout:
    """Payload of the output stream: the finished int32 sums of one pixel, ``cols`` channels."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(ACC_WIDTH), cols),
        "addr": range(acc_depth),
        "first": unsigned(1),
        "last": unsigned(1),
    })


def _meta_layout(acc_depth: int) -> data.StructLayout:
    return data.StructLayout({
        "valid": unsigned(1),
        "addr": range(acc_depth),
        "first": unsigned(1),
        "last": unsigned(1),
        "out_first": unsigned(1),
        "out_last": unsigned(1),
    })


class Pointwise(wiring.Component):
    """Weight-stationary int8 systolic array computing 1×1 convolutions into int32 sums.

    Usage, per pixel tile of ``P <= acc_depth`` pixels and output-channel tile: for each of
    the ``K`` input-channel chunks ``k``, send the ``rows × cols`` weight tile of chunk ``k``
    on ``w`` (``rows`` beats, row ``r`` = input channel ``k·rows + r``) and the ``P`` pixel
    beats of chunk ``k`` on ``i`` (``swap`` on the first, ``first`` iff ``k == 0``, ``last``
    iff ``k == K − 1``, ``addr`` = pixel index). The ``P`` output beats (in input order)
    carry ``Σ_k Σ_r x[p][k·rows + r] · w[k·rows + r][c]`` for the ``cols`` channels. Weight
    tiles are taken from ``w`` in order; the very first ``i`` beat after reset must have
    ``swap`` set. A single-pixel tile (the FC layer) and ``K = 1`` (``first`` and ``last``
    together) work too. Addresses may come in any order; consecutive beats on the same
    entry (a one-pixel tile with ``rows == 1``) accumulate correctly.

    Stall: the whole pipeline advances only while the output register is empty or taken
    (``ce = ~o.valid | o.ready``), so backpressure freezes the array with nothing lost.
    ``i.ready`` depends on ``i.payload.swap`` (a ``swap`` beat waits for its weight tile) and
    ``w.ready`` on ``i.valid`` (the first weight row of the next tile may load in the cycle
    of the swap).

    Parameters
    ----------
    rows : int
        Input channels per activation beat (systolic array rows). Power of two.
    cols : int
        Output channels per beat (array columns). Power of two.
    acc_depth : int
        Accumulator buffer entries (pixels per tile). Power of two.

    Members
    -------
    w : In(stream.Signature(weight_layout(cols)))
        Weight rows; ``rows`` beats per weight tile.
    i : In(stream.Signature(input_layout(rows, acc_depth)))
        Activation chunks with accumulation control.
    o : Out(stream.Signature(output_layout(cols, acc_depth)))
        Finished int32 sums, one beat per input beat with ``last``, in input order.

    Attributes
    ----------
    rows, cols, acc_depth : int
        The parameters.
    latency : int
        Cycles from an ``i`` beat's transfer to its output beat's ``o.valid``, without
        stalls: ``rows + cols + 1`` (input register, ``rows + cols − 1`` through the
        skewed grid and deskew, accumulator read, output register).
    inputs_per_cycle : int
        Sustained ``i`` beats per cycle: 1, i.e. ``macs_per_cycle`` MACs per cycle, when
        every weight tile is used by at least ``min_tile_beats`` beats and the weight
        stream keeps up.
    macs_per_cycle : int
        ``rows * cols``.
    weight_load_cycles : int
        Cycles (``w`` beats) to load one weight tile: ``rows``; overlapped with compute.
    min_tile_beats : int
        ``i`` beats per weight tile that hide the next tile's load: ``rows``. Shorter tiles
        (e.g. the FC layer, one pixel) run at one tile per ``rows`` cycles.
    """

    def __init__(self, *, rows: int, cols: int, acc_depth: int):
        self._rows = check_pow2("rows", rows)
        self._cols = check_pow2("cols", cols)
        self._acc_depth = check_pow2("acc_depth", acc_depth)
        super().__init__({
            "w": In(stream.Signature(weight_layout(cols))),
            "i": In(stream.Signature(input_layout(rows, acc_depth))),
            "o": Out(stream.Signature(output_layout(cols, acc_depth))),
        })

    @classmethod
    def from_config(cls, config) -> Pointwise:
        """The block sized by an :class:`~mnaccel.hw.config.AccelConfig`."""
        return cls(rows=config.pw_rows, cols=config.pw_cols, acc_depth=config.pw_acc_depth)

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def acc_depth(self) -> int:
        return self._acc_depth

    @property
    def latency(self) -> int:
        # Input register, the skewed grid with its deskew (SystolicArray.latency), the
        # accumulator stage's output register.
        return 1 + (self._rows + self._cols - 1) + 1

    @property
    def inputs_per_cycle(self) -> int:
        return 1

    @property
    def macs_per_cycle(self) -> int:
        return self._rows * self._cols

    @property
    def weight_load_cycles(self) -> int:
        return self._rows

    @property
    def min_tile_beats(self) -> int:
        return self._rows

    def elaborate(self, platform):
        m = Module()
        rows, cols = self._rows, self._cols
        m.submodules.array = array = SystolicArray(rows=rows, cols=cols)

        ce = Signal()
        m.d.comb += [ce.eq(~self.o.valid | self.o.ready), array.en.eq(ce)]

        # Weight banks: `front` is the bank of the tile in use; the other (shadow) bank
        # receives the next tile. `loaded` counts its rows written so far.
        front = Signal()
        loaded = Signal(range(rows + 1))
        full = Signal()
        m.d.comb += full.eq(loaded == rows)

        i_fire = Signal()
        swap = Signal()
        w_fire = Signal()
        m.d.comb += [
            self.i.ready.eq(ce & (~self.i.payload.swap | full)),
            i_fire.eq(self.i.valid & self.i.ready),
            swap.eq(i_fire & self.i.payload.swap),
            # After a swap the old front bank becomes the shadow; its row 0 may already be
            # taken in the swap cycle (see the weight-write skew below for why it is safe).
            self.w.ready.eq(ce & (~full | swap)),
            w_fire.eq(self.w.valid & self.w.ready),
        ]
        with m.If(swap):
            m.d.sync += front.eq(~front)
        m.d.sync += loaded.eq(Mux(swap, 0, loaded) + w_fire)

        # Input skew: row r's activation (and bank bit) passes r + 1 registers, so it meets
        # the partial sum coming down from row r - 1.
        beat_bank = Mux(self.i.payload.swap, ~front, front)
        skew = [[Signal(signed(8), name=f"x_skew_{r}_{k}") for k in range(r + 1)]
                for r in range(rows)]
        bank_skew = [[Signal(name=f"bank_skew_{r}_{k}") for k in range(r + 1)]
                     for r in range(rows)]
        with m.If(ce):
            for r in range(rows):
                m.d.sync += [skew[r][0].eq(self.i.payload.data[r]), bank_skew[r][0].eq(beat_bank)]
                for k in range(1, r + 1):
                    m.d.sync += [skew[r][k].eq(skew[r][k - 1]),
                                 bank_skew[r][k].eq(bank_skew[r][k - 1])]
        for r in range(rows):
            m.d.comb += [array.x[r].eq(skew[r][r]), array.bank[r].eq(bank_skew[r][r])]

        # Weight-write skew: column c's write passes c + 1 registers, like row 0's
        # activation and then c PEs. By SystolicArray's timing, weight row r taken in cycle
        # b is then seen exactly by the beats taken after cycle b - r. Rows of a shadow
        # tile are taken in order, the first no earlier than the swap beat (cycle a), so
        # row r in cycle b >= a + r: no beat of the old tile (all taken before a) sees it.
        # All rows are taken before the next swap beat, which therefore sees all of them.
        wlay = weight_write_layout(rows)
        wskew = [[Signal(wlay, name=f"w_skew_{c}_{k}") for k in range(c + 1)]
                 for c in range(cols)]
        with m.If(ce):
            for c in range(cols):
                m.d.sync += [
                    wskew[c][0].en.eq(w_fire),
                    wskew[c][0].row.eq(Mux(swap, 0, loaded)),
                    wskew[c][0].bank.eq(Mux(swap, front, ~front)),
                    wskew[c][0].data.eq(self.w.payload.data[c]),
                ]
                for k in range(1, c + 1):
                    m.d.sync += wskew[c][k].eq(wskew[c][k - 1])
        for c in range(cols):
            m.d.comb += array.w[c].eq(wskew[c][c])

        # Output deskew: column c's sum waits cols - 1 - c cycles for the last column.
        aligned = []
        for c in range(cols):
            stage = array.sums[c]
            for k in range(cols - 1 - c):
                nxt = Signal(signed(array.sum_width), name=f"sum_deskew_{c}_{k}")
                with m.If(ce):
                    m.d.sync += nxt.eq(stage)
                stage = nxt
            aligned.append(stage)

        # Beat metadata rides a plain delay line alongside the grid; stage k holds the beat
        # transferred k + 1 enabled cycles ago. The sums of a beat are aligned when its
        # metadata is in stage rows + cols - 1.
        mlay = _meta_layout(self._acc_depth)
        depth = array.latency + 1
        meta = [Signal(mlay, name=f"meta_{k}") for k in range(depth)]
        with m.If(ce):
            m.d.sync += [
                meta[0].valid.eq(i_fire),
                meta[0].addr.eq(self.i.payload.addr),
                meta[0].first.eq(self.i.payload.first),
                meta[0].last.eq(self.i.payload.last),
                meta[0].out_first.eq(self.i.payload.out_first),
                meta[0].out_last.eq(self.i.payload.out_last),
            ]
            for k in range(1, depth):
                m.d.sync += meta[k].eq(meta[k - 1])
        here = meta[depth - 1]

        # Accumulator buffer: read one stage ahead, add, write back. The read port is
        # transparent to the write port, so a beat reading the entry the previous beat is
        # writing (e.g. a one-pixel tile) sees the new sum.
        acc_shape = data.ArrayLayout(signed(ACC_WIDTH), cols)
        m.submodules.acc = acc = Memory(shape=acc_shape, depth=self._acc_depth, init=[])
        wr = acc.write_port()
        rd = acc.read_port(transparent_for=(wr,))
        total = Signal(acc_shape)
        for c in range(cols):
            m.d.comb += total[c].eq(Mux(here.first, aligned[c], rd.data[c] + aligned[c]))
        m.d.comb += [
            rd.en.eq(ce),
            rd.addr.eq(meta[depth - 2].addr),
            wr.en.eq(ce & here.valid & ~here.last),
            wr.addr.eq(here.addr),
            wr.data.eq(total),
        ]

        with m.If(ce):
            m.d.sync += [
                self.o.valid.eq(here.valid & here.last),
                self.o.payload.data.eq(total),
                self.o.payload.addr.eq(here.addr),
                self.o.payload.first.eq(here.out_first),
                self.o.payload.last.eq(here.out_last),
            ]
        return m
