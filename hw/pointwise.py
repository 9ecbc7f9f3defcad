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

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mnaccel.hw._checks import check_pow2
from mnaccel.hw.pe import PE
from mnaccel.hw.systolic_array import SystolicArray, weight_write_layout

__all__ = ["Pointwise", "input_layout", "output_layout", "weight_layout"]

ACC_WIDTH = 32

# DP16KD geometry: data bits of one block RAM's port by depth (the 36-bit mode, for 512
# entries, has no single read port with an output register of its own).
_ECP5_RAM_WIDTHS = {1024: 18, 2048: 9, 4096: 4, 8192: 2, 16384: 1}
_ECP5_RAM_MAX_DEPTH = max(_ECP5_RAM_WIDTHS)

# Beats ahead of one whose accumulator entry they may still write after it was read (see
# Pointwise.elaborate): their totals are forwarded.
_ACC_HAZARD = 4


def weight_layout(cols: int, weight_rows: int = 1) -> data.StructLayout:
    """Payload of the weight stream: ``weight_rows`` consecutive rows of a weight tile,
    ``cols`` int8 weights each (row ``i`` of the beat at ``data[i·cols:(i + 1)·cols]``)."""
    return data.StructLayout({"data": data.ArrayLayout(signed(8), weight_rows * cols)})


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
        "addr": range(acc_depth),
        "first": unsigned(1),
        "writes": unsigned(1),       # a beat without `last`: its total is written back
        "out": unsigned(1),          # a beat with `last`: its total is output
        "out_first": unsigned(1),
        "out_last": unsigned(1),
        # Set from stage 2 on: which beat ahead writes the entry this one reads (one-hot,
        # bit d - 1 for the beat d ahead), and whether the RAM's data is not to be used.
        "forward": unsigned(_ACC_HAZARD),
        "forward_old": unsigned(1),  # forward from the beat 3 or 4 ahead
        "no_read": unsigned(1),
    })


class Pointwise(wiring.Component):
    """Weight-stationary int8 systolic array computing 1×1 convolutions into int32 sums.

    Usage, per pixel tile of ``P <= acc_depth`` pixels and output-channel tile: for each of
    the ``K`` input-channel chunks ``k``, send the ``rows × cols`` weight tile of chunk ``k``
    on ``w`` (``rows / weight_rows`` beats of ``weight_rows`` rows, row ``r`` = input
    channel ``k·rows + r``) and the ``P`` pixel
    beats of chunk ``k`` on ``i`` (``swap`` on the first, ``first`` iff ``k == 0``, ``last``
    iff ``k == K − 1``, ``addr`` = pixel index). The ``P`` output beats (in input order)
    carry ``Σ_k Σ_r x[p][k·rows + r] · w[k·rows + r][c]`` for the ``cols`` channels. Weight
    tiles are taken from ``w`` in order; the very first ``i`` beat after reset must have
    ``swap`` set. A single-pixel tile (the FC layer) and ``K = 1`` (``first`` and ``last``
    together) work too. Addresses may come in any order; consecutive beats on the same
    entry (a one-pixel tile with ``rows == 1``) accumulate correctly.

    Stall: the block behaves as if the whole pipeline advanced only while the output
    register is empty or taken (``ce = ~o.valid | o.ready``): ``i`` and ``w`` beats are
    taken only in such *enabled* cycles, and a beat's output appears after :attr:`latency`
    of them, so backpressure loses nothing. Inside, only the handshakes, a one-bit-per-stage
    countdown and the output register see ``ce``; the grid, the skews and the accumulator
    run freely and finished sums wait in a small buffer until their countdown ends. (A real
    global enable fans out to every register and DSP of the grid: on the LFE5U-85F its
    route alone took 5.6 ns.) ``i.ready`` depends on ``i.payload.swap`` (a ``swap`` beat
    waits for its weight tile) and ``w.ready`` on ``i.valid`` (the first weight row of the
    next tile may load in the cycle of the swap).

    Pipeline, in cycles: the input register; the skewed grid with the PEs' product pipeline
    and the output deskew (``rows + cols − 1 + PE.PRODUCT_STAGES``, the grid's latency);
    the accumulate (its entry read three cycles earlier through the RAM's output register,
    the sums of the four beats ahead that may write it meanwhile forwarded) into a
    register, from which it is written back; the output buffer's write; the output
    register.

    Parameters
    ----------
    rows : int
        Input channels per activation beat (systolic array rows). Power of two.
    cols : int
        Output channels per beat (array columns). Power of two.
    acc_depth : int
        Accumulator buffer entries (pixels per tile). Power of two.
    weight_rows : int
        Weight-tile rows taken per ``w`` beat: a power of two dividing ``rows``. More rows
        per beat load a tile sooner, which only matters to tiles of fewer than ``rows``
        pixels (the FC layer: one pixel per tile, bound by its weight loads).
    ecp5 : bool
        Build from ECP5 primitives with their own registers, which Yosys does not infer:
        the multipliers from ``MULT18X18D`` with input and output registers (see
        :class:`~mnaccel.hw.pe.PE`), the accumulator buffer from ``DP16KD`` block RAMs with
        the read port's output register (``REGMODE_B = "OUTREG"``: the RAM's clock-to-output
        drops from 5.8 to 0.9 ns); ``acc_depth`` at most 16384. Same timing and arithmetic
        as the default. Simulating it needs models of the primitives
        (``tests/hw/mult18x18d_model.v``, ``tests/hw/dp16kd_model.v``).

    Members
    -------
    w : In(stream.Signature(weight_layout(cols, weight_rows)))
        Weight rows; ``rows / weight_rows`` beats per weight tile.
    i : In(stream.Signature(input_layout(rows, acc_depth)))
        Activation chunks with accumulation control.
    o : Out(stream.Signature(output_layout(cols, acc_depth)))
        Finished int32 sums, one beat per input beat with ``last``, in input order.

    Attributes
    ----------
    rows, cols, acc_depth : int
        The parameters.
    latency : int
        Enabled cycles from an ``i`` beat's transfer to its output beat's ``o.valid`` (clock
        cycles without stalls): ``rows + cols + 9`` (the pipeline above:
        ``1 + (rows + cols − 1 + 6) + 1 + 1 + 1``).
    inputs_per_cycle : int
        Sustained ``i`` beats per cycle: 1, i.e. ``macs_per_cycle`` MACs per cycle, when
        every weight tile is used by at least ``min_tile_beats`` beats and the weight
        stream keeps up.
    macs_per_cycle : int
        ``rows * cols``.
    weight_load_cycles : int
        Cycles (``w`` beats) to load one weight tile: ``rows / weight_rows``; overlapped
        with compute.
    min_tile_beats : int
        ``i`` beats per weight tile that hide the next tile's load: ``weight_load_cycles``.
        Shorter tiles (e.g. the FC layer, one pixel) run at one tile per
        ``weight_load_cycles`` cycles.
    out_buffer_depth : int
        Entries of the buffer where finished sums wait for their stalled-schedule output
        cycle: ``latency − 1`` at most, rounded up to a power of two (32 for the default
        preset).
    """

    def __init__(self, *, rows: int, cols: int, acc_depth: int, weight_rows: int = 1,
                 ecp5: bool = False):
        self._rows = check_pow2("rows", rows)
        self._cols = check_pow2("cols", cols)
        self._acc_depth = check_pow2("acc_depth", acc_depth)
        self._weight_rows = check_pow2("weight_rows", weight_rows)
        if weight_rows > rows:
            raise ValueError(f"weight_rows must be at most rows = {rows}, not {weight_rows!r}")
        if ecp5 and acc_depth > _ECP5_RAM_MAX_DEPTH:
            raise ValueError(f"acc_depth must be at most {_ECP5_RAM_MAX_DEPTH} with ecp5=True, "
                             f"not {acc_depth!r}")
        self._ecp5 = bool(ecp5)
        super().__init__({
            "w": In(stream.Signature(weight_layout(cols, weight_rows))),
            "i": In(stream.Signature(input_layout(rows, acc_depth))),
            "o": Out(stream.Signature(output_layout(cols, acc_depth))),
        })

    @classmethod
    def from_config(cls, config, *, ecp5: bool = False) -> Pointwise:
        """The block sized by an :class:`~mnaccel.hw.config.AccelConfig`."""
        return cls(rows=config.pw_rows, cols=config.pw_cols, acc_depth=config.pw_acc_depth,
                   weight_rows=config.pw_weight_rows, ecp5=ecp5)

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
    def weight_rows(self) -> int:
        return self._weight_rows

    @property
    def ecp5(self) -> bool:
        return self._ecp5

    @property
    def latency(self) -> int:
        # Input register, the skewed grid with its deskew (SystolicArray.latency: the
        # skew plus the PEs' product pipeline), the accumulator's total register, the
        # output buffer's write, the output register.
        return 1 + (self._rows + self._cols - 1 + PE.PRODUCT_STAGES) + 3

    @property
    def out_buffer_depth(self) -> int:
        # Finished sums wait while their countdown (latency - 1 stages) runs.
        return 1 << (self.latency - 2).bit_length()

    @property
    def inputs_per_cycle(self) -> int:
        return 1

    @property
    def macs_per_cycle(self) -> int:
        return self._rows * self._cols

    @property
    def weight_load_cycles(self) -> int:
        return self._rows // self._weight_rows

    @property
    def min_tile_beats(self) -> int:
        return self.weight_load_cycles

    def elaborate(self, platform):
        m = Module()
        rows, cols, wr = self._rows, self._cols, self._weight_rows
        writes = rows // wr          # w beats per weight tile
        m.submodules.array = array = SystolicArray(rows=rows, cols=cols, weight_rows=wr,
                                                   ecp5_dsp=self._ecp5)
        # The datapath runs freely (see the class docstring): only the handshakes, the
        # output countdown and the output register see the stall.
        m.d.comb += array.en.eq(1)

        # The stall signal, twice: once beside the output register, once beside the input
        # handshakes, each from its own copy of `o.valid` (`idle` is its complement, which
        # synthesis cannot merge with it), so that neither side waits for a route across
        # the block.
        ce, ce_in = Signal(), Signal()
        idle = Signal(init=1)
        m.d.comb += [ce.eq(~self.o.valid | self.o.ready), ce_in.eq(idle | self.o.ready)]

        # Weight banks: `front` is the bank of the tile in use; the other (shadow) bank
        # receives the next tile. `loaded` counts its writes (of `weight_rows` rows) so
        # far, `full` is `loaded == rows / weight_rows`. The handshakes only choose among
        # registered candidates for the next count (`loaded_p1 = loaded + 1` is kept beside
        # it), so that no adder or compare follows the stall signal in its cycle.
        front = Signal()
        loaded = Signal(range(writes + 1))
        loaded_p1 = Signal(range(writes + 2), init=1)
        full = Signal()

        i_fire = Signal()
        swap = Signal()
        w_fire = Signal()
        m.d.comb += [
            self.i.ready.eq(ce_in & (~self.i.payload.swap | full)),
            i_fire.eq(self.i.valid & self.i.ready),
            swap.eq(i_fire & self.i.payload.swap),
            # After a swap the old front bank becomes the shadow; its row 0 may already be
            # taken in the swap cycle (see the weight-write skew below for why it is safe).
            self.w.ready.eq(ce_in & (~full | swap)),
            w_fire.eq(self.w.valid & self.w.ready),
        ]
        with m.If(swap):
            m.d.sync += [
                front.eq(~front),
                loaded.eq(w_fire),
                loaded_p1.eq(w_fire + 1),
                full.eq(w_fire & (writes == 1)),
            ]
        with m.Elif(w_fire):
            m.d.sync += [
                loaded.eq(loaded_p1),
                loaded_p1.eq(loaded_p1 + 1),
                full.eq(loaded_p1 == writes),
            ]

        # Input skew: row r's activation (and bank bit) passes r + 1 registers, so it meets
        # the partial sum coming down from row r - 1. Cycles without a beat carry junk,
        # which its metadata marks (it neither `writes` nor is `out`).
        beat_bank = Mux(self.i.payload.swap, ~front, front)
        skew = [[Signal(signed(8), name=f"x_skew_{r}_{k}", reset_less=True)
                 for k in range(r + 1)] for r in range(rows)]
        bank_skew = [[Signal(name=f"bank_skew_{r}_{k}", reset_less=True) for k in range(r + 1)]
                     for r in range(rows)]
        for r in range(rows):
            m.d.sync += [skew[r][0].eq(self.i.payload.data[r]), bank_skew[r][0].eq(beat_bank)]
            for k in range(1, r + 1):
                m.d.sync += [skew[r][k].eq(skew[r][k - 1]), bank_skew[r][k].eq(bank_skew[r][k - 1])]
            m.d.comb += [array.x[r].eq(skew[r][r]), array.bank[r].eq(bank_skew[r][r])]

        # Weight-write skew: column c's write passes c + 1 registers, like row 0's
        # activation and then c PEs; in the grid it travels down the column. By
        # SystolicArray's timing, a weight row taken in cycle b is then seen exactly by the
        # beats taken after cycle b. Rows of a shadow tile are taken no earlier than the
        # swap beat (cycle a), so no beat of the old tile (all taken before a) sees them,
        # and all of them before the next swap beat (which waits for `full`), which
        # therefore sees all of them.
        wlay = weight_write_layout(rows, wr)
        wskew = [[Signal(wlay, name=f"w_skew_{c}_{k}") for k in range(c + 1)]
                 for c in range(cols)]
        for c in range(cols):
            m.d.sync += [
                wskew[c][0].en.eq(w_fire),
                wskew[c][0].row.eq(Mux(swap, 0, loaded)),
                wskew[c][0].bank.eq(Mux(swap, front, ~front)),
                wskew[c][0].data.eq(Cat(self.w.payload.data[i * cols + c] for i in range(wr))),
            ]
            for k in range(1, c + 1):
                m.d.sync += wskew[c][k].eq(wskew[c][k - 1])
            m.d.comb += array.w[c].eq(wskew[c][c])

        # Output deskew: column c's sum waits cols - 1 - c cycles for the last column.
        aligned = []
        for c in range(cols):
            stage = array.sums[c]
            for k in range(cols - 1 - c):
                nxt = Signal(signed(array.sum_width), name=f"sum_deskew_{c}_{k}",
                             reset_less=True)
                m.d.sync += nxt.eq(stage)
                stage = nxt
            aligned.append(stage)

        # Beat metadata rides a plain delay line alongside the grid; stage k holds the beat
        # transferred k + 1 cycles ago, and the beat in stage k + d is d beats ahead of it
        # (the line never stalls). The sums of a beat are aligned when its metadata is in
        # stage h (`here`); its total is registered with it in stage h + 1.
        h = array.latency
        meta = [Signal(_meta_layout(self._acc_depth), name=f"meta_{k}")
                for k in range(h + 2)]
        beat = self.i.payload
        m.d.sync += [
            meta[0].addr.eq(beat.addr),
            meta[0].first.eq(beat.first),
            meta[0].writes.eq(i_fire & ~beat.last),
            meta[0].out.eq(i_fire & beat.last),
            meta[0].out_first.eq(beat.out_first),
            meta[0].out_last.eq(beat.out_last),
        ]
        for k in range(1, h + 2):
            m.d.sync += meta[k].eq(meta[k - 1])
        # Which of the W beats ahead last writes the entry this one reads (one-hot, newest
        # first), found near the head of the line where its registers sit together. A beat
        # with `first` reads nothing.
        hits = [meta[1 + d].writes & (meta[1 + d].addr == meta[1].addr)
                for d in range(1, _ACC_HAZARD + 1)]
        forward = [(hits[d] & ~Cat(*hits[:d]).any() if d else hits[d]) & ~meta[1].first
                   for d in range(_ACC_HAZARD)]
        m.d.sync += [
            meta[2].forward.eq(Cat(*forward)),
            meta[2].forward_old.eq(forward[2] | forward[3]),
            meta[2].no_read.eq(meta[1].first | Cat(*hits).any()),
        ]

        # Accumulator buffer. A beat's entry is read three cycles before its add: the
        # address in the cycle its metadata is in stage h - 3, the data into the read
        # port's output register (the DP16KD's own with `ecp5`), whose slow block-RAM read
        # is thus in a cycle of its own, then into `base`. Totals are written back one
        # cycle after the add, from a register. So the W = 4 beats ahead of a beat may
        # write its entry after (or, the fourth, while) it is read: their totals are
        # forwarded. Each operand of the add is zeroed by its register's synchronous reset
        # unless it is the one to use (`base` with `first` or a hit, the forwarded ones
        # unless hit), so the add sees `base | near | far` and no wide multiplexer or
        # high-fan-out select; the choice among the beats 2-4 ahead takes two cycles of
        # 2-way choices.
        acc_shape = data.ArrayLayout(signed(ACC_WIDTH), cols)
        reading, early, forming, done = meta[h - 3], meta[h - 2], meta[h - 1], meta[h + 1]
        total = Signal(acc_shape)
        # The totals of the last two beats: in the cycle before its add, a beat finds the
        # beat 1 ahead in `total` and the beat 2 ahead in `total_q[0]`; a cycle earlier the
        # beats 3 and 4 ahead in `total_q[0]` and `total_q[1]`.
        total_q = [Signal(acc_shape, name=f"total_q{k}", reset_less=True) for k in range(2)]
        read = Signal(acc_shape)
        if self._ecp5:
            m.d.comb += read.eq(_ecp5_ram(
                m, width=cols * ACC_WIDTH, depth=self._acc_depth, r_addr=reading.addr,
                w_en=done.writes, w_addr=done.addr, w_data=total_q[0], name="acc"))
        else:
            m.submodules.acc = acc = Memory(shape=acc_shape, depth=self._acc_depth, init=[])
            wr = acc.write_port()
            rd = acc.read_port()
            m.d.comb += [
                rd.addr.eq(reading.addr),
                wr.en.eq(done.writes),
                wr.addr.eq(done.addr),
                wr.data.eq(total_q[0]),
            ]
            read_q = Signal(acc_shape, reset_less=True)   # stands for the output register
            m.d.sync += read_q.eq(rd.data)
            m.d.comb += read.eq(read_q)

        base = Signal(acc_shape, reset_less=True)
        near = Signal(acc_shape, reset_less=True)       # total of the beat 1 ahead
        older = Signal(acc_shape, reset_less=True)      # total of the beat 3 or 4 ahead
        far = Signal(acc_shape, reset_less=True)        # total of the beat 2, 3 or 4 ahead
        sel = forming.forward
        m.d.sync += [
            older.eq(Mux(early.forward[2], total_q[0], total_q[1])),
            base.eq(Mux(forming.no_read, 0, read)),
            near.eq(Mux(sel[0], total, 0)),
            far.eq(Mux(sel[1], total_q[0], Mux(forming.forward_old, older, 0))),
            total_q[0].eq(total),
            total_q[1].eq(total_q[0]),
        ]
        for c in range(cols):
            operand = (base[c].as_unsigned() | near[c].as_unsigned()
                       | far[c].as_unsigned()).as_signed()
            m.d.comb += total[c].eq(operand + aligned[c])

        # Finished sums wait in a ring buffer until the stalled schedule presents them: a
        # countdown of enabled cycles (`due`, one bit per stage, advancing with `ce`) says
        # when, exactly as if the whole pipeline had stalled. The datapath only ever runs
        # ahead of it, so the sum is in the buffer by then, and at most `len(due)` sums
        # wait: the buffer needs no level or full flag (which would put an adder behind
        # the stall signal).
        olay = output_layout(cols, self._acc_depth)
        finished = Signal(olay)
        m.d.comb += [
            finished.data.eq(total_q[0]),
            finished.addr.eq(done.addr),
            finished.first.eq(done.out_first),
            finished.last.eq(done.out_last),
        ]
        due = [Signal(name=f"due_{k}") for k in range(self.latency - 1)]
        slots = self.out_buffer_depth
        m.submodules.out_buffer = buf = Memory(shape=olay, depth=slots, init=[])
        put = buf.write_port()
        get = buf.read_port(domain="comb")
        put_at = Signal(range(slots))
        get_at = Signal(range(slots))
        m.d.comb += [
            put.en.eq(done.out),
            put.addr.eq(put_at),
            put.data.eq(finished),
            get.addr.eq(get_at),
        ]
        m.d.sync += put_at.eq(put_at + done.out)
        # The input side's stall copy drives only the handshakes and the countdown's entry.
        with m.If(ce_in):
            m.d.sync += [due[0].eq(i_fire & beat.last), idle.eq(~due[-1])]
        with m.If(ce):
            m.d.sync += [
                *[due[k].eq(due[k - 1]) for k in range(1, len(due))],
                get_at.eq(get_at + due[-1]),
                self.o.valid.eq(due[-1]),
                self.o.payload.eq(get.data),
            ]
        return m


def _ecp5_ram(m: Module, *, width: int, depth: int, r_addr, w_en, w_addr, w_data,
              name: str) -> Signal:
    """A simple dual-port RAM of ECP5 ``DP16KD`` blocks, read through their output registers.

    Port A of each block writes ``w_data`` to ``w_addr`` when ``w_en``; port B reads
    ``r_addr`` every cycle and its output register passes the word on in the next: the
    returned signal holds it two cycles after the address. A read of the address written
    in the same cycle returns undefined data. Yosys
    maps ``amaranth.lib.memory`` only to blocks without output registers, hence the
    instances; the tests simulate them with ``tests/hw/dp16kd_model.v``.
    """
    bits = next(b for d, b in sorted(_ECP5_RAM_WIDTHS.items()) if d >= depth)
    low = {18: 4, 9: 3, 4: 2, 2: 1, 1: 0}[bits]  # address bits below the word address
    q = Signal(width, name=f"{name}_q")
    for k in range(-(-width // bits)):
        lo, hi = k * bits, min((k + 1) * bits, width)
        ports = {f"i_ADA{i}": 0 for i in range(low)} | {f"i_ADB{i}": 0 for i in range(low)}
        if bits == 18:  # ADA1:0 are the byte-write enables in this mode
            ports |= {"i_ADA0": 1, "i_ADA1": 1}
        ports |= {f"i_ADA{low + i}": (w_addr[i] if i < len(w_addr) else 0)
                  for i in range(14 - low)}
        ports |= {f"i_ADB{low + i}": (r_addr[i] if i < len(r_addr) else 0)
                  for i in range(14 - low)}
        ports |= {f"i_DIA{i}": (w_data.as_value()[lo + i] if lo + i < hi else 0)
                  for i in range(18)}
        ports |= {f"i_DIB{i}": 0 for i in range(18)}
        ports |= {f"o_DOB{i}": q[lo + i] for i in range(hi - lo)}
        m.submodules[f"{name}_{k}"] = Instance(
            "DP16KD",
            p_DATA_WIDTH_A=bits,
            p_DATA_WIDTH_B=bits,
            p_REGMODE_A="NOREG",
            p_REGMODE_B="OUTREG",
            p_RESETMODE="SYNC",
            p_ASYNC_RESET_RELEASE="SYNC",
            p_CSDECODE_A="0b000",
            p_CSDECODE_B="0b000",
            p_WRITEMODE_A="NORMAL",
            p_WRITEMODE_B="NORMAL",
            p_GSR="DISABLED",
            i_CLKA=ClockSignal(),
            i_CEA=1,
            i_OCEA=0,
            i_WEA=w_en,
            i_RSTA=0,
            i_CSA0=0, i_CSA1=0, i_CSA2=0,
            i_CLKB=ClockSignal(),
            i_CEB=1,
            i_OCEB=1,
            i_WEB=0,
            i_RSTB=0,
            i_CSB0=0, i_CSB1=0, i_CSB2=0,
            **ports,
        )
    return q
