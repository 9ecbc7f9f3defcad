"""The requantizer: int32 accumulators to int8 outputs, TFLite-exact, several lanes a cycle.

Each lane computes, for one output channel,

``clamp(MultiplyByQuantizedMultiplier(acc + bias, M0, shift) + output_zp, act_min, act_max)``

bit for bit as :func:`mnaccel.golden.quant.requantize` with ``rounding`` given per channel
(TFLite's default double-rounding ``MultiplyByQuantizedMultiplier``):

1. ``x = acc + bias``, wrapping to int32 like C on two's-complement hardware;
2. ``x << shift`` for ``shift > 0``, again wrapping to int32;
3. ``SaturatingRoundingDoublingHighMul(x, M0)``, which for every int32 pair equals
   ``(x * M0 + 2**30) >> 31`` (an arithmetic shift: gemmlowp's sign-dependent nudge and
   truncating division cancel out), except that ``INT32_MIN * INT32_MIN`` saturates to
   ``INT32_MAX``;
4. the rounding right shift by ``r = -shift`` for ``shift < 0``, per channel either
   ``RoundingDivideByPOT(high, r)`` = ``(high + 2**(r-1) - (high < 0)) >> r`` (ties away from
   zero: TFLite's reference kernels) or ``(high + 2**(r-1)) >> r`` (ties up, toward +inf:
   the optimized kernels' vector rounding shift), chosen by the lane's ``round_up`` bit;
5. ``+ output_zp`` and the activation clamp.

The two roundings differ only for a negative ``high`` exactly halfway between two multiples
of ``2**r`` (docs/numerics.md, "Two flavours of TFLite"); ``round_up`` merely drops the
``- (high < 0)`` correction.
"""

from amaranth import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from mnaccel.hw.ecp5 import mult18x18d
from mnaccel.hw.lut_mul import adder_tree, booth_addends, booth_mul

__all__ = [
    "LANE_LAYOUT",
    "Requantizer",
    "RequantizerLane",
    "input_layout",
    "output_layout",
]

#: One lane of the input payload: an accumulator and its output channel's parameters.
LANE_LAYOUT = data.StructLayout(
    {
        "acc": signed(32),  # int32 accumulator
        "bias": signed(32),  # int32 bias of the channel
        "multiplier": signed(32),  # Q31 multiplier M0 (TFLite: [2**30, 2**31) or 0)
        "shift": signed(6),  # left shift if > 0, right shift if < 0; in [-31, 31]
        "round_up": 1,  # final shift's ties: 1 up (toward +inf), 0 away from zero
    }
)


def input_layout(lanes: int) -> data.StructLayout:
    """Input payload: ``lanes`` × :data:`LANE_LAYOUT` plus the beat's ``first``/``last`` flags."""
    return data.StructLayout(
        {"lanes": data.ArrayLayout(LANE_LAYOUT, lanes), "first": 1, "last": 1}
    )


def output_layout(lanes: int) -> data.StructLayout:
    """Output payload: ``lanes`` int8 results plus the ``first``/``last`` flags of their beat."""
    return data.StructLayout(
        {"data": data.ArrayLayout(signed(8), lanes), "first": 1, "last": 1}
    )


class RequantizerLane(wiring.Component):
    """One requantizer lane: a free-running 17-stage pipeline, one result per cycle.

    It has no handshake: the inputs are sampled every cycle and the result for them appears
    on ``out`` :attr:`latency` cycles later. :class:`Requantizer` adds the stream interface.

    Pipeline, one register stage per line, cut so that each stage holds at most one carry
    chain of ~34 bits, one 4- or 8-way multiplexer level, or one DSP register hop: that is
    what an ECP5 does in 5 ns (200 MHz). Measured with nextpnr-ecp5 (see
    ``docs/hw/requantizer.md``).

    1. ``x = acc + bias`` (32-bit add, wrapping); ``shift`` split into left and right.
    2. ``x << 8·(left >> 3)`` and 3. ``<< (left & 7)``: the wrapping left shift in two
       narrow multiplexer stages (one 32-way barrel shifter takes ~6 ns).
    4. and 5. The 32 × 32-bit signed product as four partial products, one 18×18 DSP each:
       with ``x = xh·2**16 + xl`` and ``M0 = mh·2**16 + ml`` (``xh``, ``mh`` signed 16
       bits, ``xl``, ``ml`` unsigned 16 bits), ``xh·mh``, ``xh·ml``, ``xl·mh`` and ``xl·ml``
       each fit a ``MULT18X18D``. Stage 4 is the DSP's input register, stage 5 its output
       register; with ``ecp5_dsp=True`` these are the primitive's own registers (a
       ``MULT18X18D`` between fabric flip-flops alone takes ~7.4 ns, so Yosys' inference,
       which registers nothing inside the DSP, tops out near 135 MHz).
       ``INT32_MIN · INT32_MIN`` is recognised on the operands meanwhile.
    6. The products again, in fabric flip-flops (the route out of the DSP row is ~2.5 ns).
    7. ``mid = xh·ml + xl·mh`` (34 bits) and ``lo = xl·ml + 2**30`` (the SRDHM nudge).
    8. ``t = lo + mid·2**16``.
    9. ``high = 2·(xh·mh) + (t >> 31)`` = ``(x·M0 + 2**30) >> 31`` without forming the
       64-bit product, as ``xh·mh·2**32`` is a multiple of ``2**31``. The rounding addends
       ``2**(r-1)`` and ``2**(r-1) - 1`` are decoded from ``r`` by table meanwhile.
    10. Multiplexers only: ``INT32_MAX`` for the saturating case, and the rounding addend:
        ``2**(r-1)``, or one less for negative ``high`` unless ``round_up`` (ties away from
        zero, RoundingDivideByPOT; with ``round_up`` ties go up).
    11. The rounding addition (a bare carry chain).
    12. ``>> 8·(r >> 3)`` and 13. ``>> (r & 7)``: the arithmetic right shift, split as above.
    14. and 15. Saturation to 10 bits (values beyond ``[-512, 511]`` clamp exactly as the
        bounds do, since ``|output_zp| <= 128``): OR/AND reductions, then a multiplexer.
    16. The clamp decisions ``z < act_min - output_zp``, ``z > act_max - output_zp`` (limits
        precomputed from the per-layer ports) beside the 8-bit ``z + output_zp``.
    17. The clamp multiplexer.

    With ``lut_products`` the first one or two partial products are built from LUTs and
    carry chains instead (:func:`~mnaccel.hw.lut_mul.booth_mul`, radix-4 Booth, no ``*``
    for Yosys to map to a DSP), in the same stages and with the same results:

    * ``xh·mh`` (``lut_products >= 1``) is only consumed at stage 9, so its multiplier has
      stages 4-8: Booth selection of its 9 addends (``xh`` recoded; stage 4), then a
      two-input adder tree of 4 levels, one per stage (5-8), none wider than ~34 bits.
    * ``xh·ml`` (``lut_products == 2``) is consumed at stage 7, so it has stages 4-6: the
      Booth selection of ``xh``'s 8 digits shares stage 4 with the first adder level (like
      the depthwise array's int8 products), levels 2 and 3 follow. The top digit's
      two's-complement ``+1`` (``xh``'s sign at weight ``2**14`` of ``xh·ml``, so
      ``2**30`` of the full product) would be a ninth addend and a fourth level; it has
      the weight of the SRDHM nudge, so it joins that in stage 7 instead:
      ``lo = xl·ml + 2**30·(1 + (xh < 0))``. Stage 4 of ``xh·ml`` (``x3`` → selection →
      a ~23-bit carry chain) is the lane's worst path then, ~5.1 ns.

    Parameters
    ----------
    ecp5_dsp : bool
        Instantiate ECP5 ``MULT18X18D`` primitives with their input and output registers
        instead of inferring multipliers (stages 4-5); same latency and arithmetic as the
        default. Simulating it needs a model of the primitive (the tests use
        ``tests/hw/mult18x18d_model.v``).
    lut_products : int
        How many of the four 16 × 16 partial products are built from LUTs rather than
        multipliers (DSPs): 0, 1 (``xh·mh``) or 2 (``xh·mh`` and ``xh·ml``). A lane takes
        ``4 - lut_products`` ``MULT18X18D``.

    Members
    -------
    acc, bias, multiplier : In(signed(32))
        Accumulator, bias and Q31 multiplier of the channel.
    shift : In(signed(6))
        Shift in ``[-31, 31]`` (TFLite's ``shift``: left if positive, right if negative).
    round_up : In(1)
        Tie rounding of the final right shift: 1 rounds ties up (toward +inf, TFLite's
        optimized kernels), 0 away from zero (``RoundingDivideByPOT``, the reference ones).
    output_zp, act_min, act_max : In(signed(8))
        Output zero point and clamp bounds (``act_min <= act_max``).
    out : Out(signed(8))
        The requantized value, :attr:`latency` cycles after its inputs.

    Attributes
    ----------
    latency : int
        Cycles from inputs to ``out`` (:attr:`STAGES`, 17), whatever the options.
    lut_products : int
        Partial products built from LUTs.
    """

    acc: In(signed(32))
    bias: In(signed(32))
    multiplier: In(signed(32))
    shift: In(signed(6))
    round_up: In(1)
    output_zp: In(signed(8))
    act_min: In(signed(8))
    act_max: In(signed(8))
    out: Out(signed(8))

    def __init__(self, *, ecp5_dsp: bool = False, lut_products: int = 0):
        self._ecp5_dsp = bool(ecp5_dsp)
        self._lut_products = _check_lut_products(lut_products)
        super().__init__()

    #: Register stages of the lane pipeline; see the class docstring for each one's job.
    STAGES = 17

    #: The partial products that ``lut_products`` moves to LUTs, in that order.
    LUT_PRODUCT_ORDER = ("hh", "hl")

    @property
    def latency(self) -> int:
        return self.STAGES

    @property
    def lut_products(self) -> int:
        return self._lut_products

    def elaborate(self, platform):
        m = Module()

        def reg(shape, value, name):
            # A pipeline register. Reset-less: the valid bits live in Requantizer, so the
            # datapath needs no reset (and no reset routed to every bit).
            r = Signal(shape, name=name, reset_less=True)
            m.d.sync += r.eq(value)
            return r

        def delay(value, cycles, name):
            for k in range(cycles):
                value = reg(value.shape(), value, f"{name}_d{k}")
            return value

        # 1: bias add (wrapping) and shift split into a left and a right amount.
        x1 = reg(signed(32), (self.acc + self.bias)[:32], "x1")
        m1 = reg(signed(32), self.multiplier, "m1")
        left1 = reg(range(32), Mux(self.shift > 0, self.shift[:5], 0), "left1")
        right1 = reg(range(32), Mux(self.shift < 0, (-self.shift)[:5], 0), "right1")

        # 2-3: left shift, wrapping to int32 as C's int32 multiplication by 2**shift does;
        # by a multiple of 8 first, then by 0-7, so that each stage is one narrow mux.
        x2 = reg(signed(32), (x1 << Cat(C(0, 3), left1[3:]))[:32], "x2")
        x3 = reg(signed(32), (x2 << delay(left1[:3], 1, "left_lo"))[:32], "x3")
        m3 = delay(m1, 2, "m")
        right3 = delay(right1, 2, "right3")

        # 4-5: four partial products, one 18×18 DSP each, with the DSP's input registers
        # (stage 4) and output registers (stage 5); those in LUTs (lut_products) instead
        # have every stage up to their first use (stages 4-8 and 4-6, see below).
        on_luts = self.LUT_PRODUCT_ORDER[:self._lut_products]

        def split(x, mult):
            # Operand pairs of the partial products: xh, mh signed; xl, ml unsigned.
            xh, xl, mh, ml = x[16:].as_signed(), x[:16], mult[16:].as_signed(), mult[:16]
            return {"hh": (xh, mh), "hl": (xh, ml), "lh": (xl, mh), "ll": (xl, ml)}

        halves = split(x3, m3)
        shapes = {"hh": signed(32), "hl": signed(33), "lh": signed(33), "ll": unsigned(32)}
        prods = {}
        if self._ecp5_dsp:
            for key, (a, b) in halves.items():
                if key not in on_luts:
                    p = mult18x18d(m, a, b, name=f"dsp_{key}")
                    prods[key] = p[:shapes[key].width]
                    if shapes[key].signed:
                        prods[key] = prods[key].as_signed()
        else:
            x4 = reg(signed(32), x3, "x4")
            m4 = reg(signed(32), m3, "m4")
            for key, (a, b) in split(x4, m4).items():
                if key not in on_luts:
                    prods[key] = reg(shapes[key], a * b, f"p_{key}")
        # 6: the products again, in fabric flip-flops next to the adders: the DSP blocks sit
        # in rows of their own, and the route from them would otherwise share a cycle
        # with a carry chain.
        prods = {key: reg(shapes[key], p, f"p_{key}6") for key, p in prods.items()}

        # xh·ml from LUTs (stages 4-6): xh is Booth-recoded; the last addend, the top
        # digit's +1 (xh's sign, at weight 2**14 of xh·ml, so 2**30 of x·M0), is left out of
        # the tree (8 addends: 3 levels, the first beside the selection) and added to the
        # SRDHM nudge in stage 7.
        if "hl" in on_luts:
            xh3, ml3 = halves["hl"]
            *addends, (top, top_shift) = booth_addends(ml3, xh3)
            assert top_shift == 14  # weight 2**(16 + 14) in x·M0
            prods["hl"] = adder_tree(m, addends, width=33, stages=3, name="p_hl6")
            top6 = delay(top, 3, "hl_top")
        p_hl, p_lh, p_ll = prods["hl"], prods["lh"], prods["ll"]
        # INT32_MIN * INT32_MIN, the one product whose doubled high half overflows, is
        # recognised on the operands.
        sat4 = reg(1, (x3 == -(2**31)) & (m3 == -(2**31)), "sat4")

        # 7: cross terms summed; the SRDHM nudge 2**30 enters with the low product (and,
        # with xh·ml in LUTs, its Booth top-digit +1 of the same weight: 2**30·(1 + top)).
        mid7 = reg(signed(34), p_hl + p_lh, "mid7")
        if "hl" in on_luts:
            lo7 = reg(unsigned(33), p_ll + (Cat(~top6, top6) << 30), "lo7")
        else:
            lo7 = reg(unsigned(33), p_ll + (1 << 30), "lo7")

        # 8: the low part of the product plus nudge, with its carries into bit 31 and above.
        t8 = reg(signed(52), lo7 + (mid7 << 16), "t8")
        # xh·mh reaches stage 9 from stage 8: through stages 6-8 from the DSP, or from a
        # LUT multiplier that takes all of stages 4-8.
        if "hh" in on_luts:
            xh3, mh3 = halves["hh"]
            hh8 = booth_mul(m, mh3, xh3, stages=5, name="hh8")
        else:
            hh8 = delay(prods["hh"], 2, "hh")

        # 9: high = (x * M0 + 2**30) >> 31 = 2 * hh + (t >> 31), in [-2**31, 2**31].
        high9 = reg(signed(34), (hh8 << 1) + (t8 >> 31), "high9")
        # Meanwhile the rounding addends are decoded from r (carried this far as 5 bits, not
        # 2 × 32): half = 2**(r-1) and mask = 2**(r-1) - 1, both 0 for r = 0. A 32-entry
        # table rather than comparisons: each bit is one 5-input LUT.
        right8 = delay(right3, 5, "right8")
        half9 = Signal(unsigned(32), name="half9", reset_less=True)
        mask9 = Signal(unsigned(32), name="mask9", reset_less=True)
        with m.Switch(right8):
            for r in range(32):
                with m.Case(r):
                    m.d.sync += [
                        half9.eq((1 << r) >> 1),
                        mask9.eq(((1 << r) >> 1) - (r != 0)),
                    ]

        # 10: saturation, and the rounding addend: 2**(r-1), one less for negative values
        # when rounding ties away from zero (RoundingDivideByPOT), not when rounding them up.
        # Only multiplexers here, so that stage 11 is a bare carry chain.
        round_up9 = delay(self.round_up, 9, "round_up")
        a10 = reg(signed(32), Mux(delay(sat4, 5, "sat"), 2**31 - 1, high9[:32]), "a10")
        b10 = reg(unsigned(32), Mux(high9[-1] & ~round_up9, mask9, half9), "b10")
        right10 = delay(right8, 2, "right10")

        # 11: the rounding addition.
        y11 = reg(signed(33), a10 + b10, "y11")
        right11 = reg(range(32), right10, "right11")

        # 12-13: the arithmetic right shift, by a multiple of 8, then by 0-7.
        y12 = reg(signed(33), y11 >> Cat(C(0, 3), right11[3:]), "y12")
        z13 = reg(signed(32), y12 >> delay(right11[:3], 1, "right_lo"), "z13")

        # 14-15: narrow to 10 bits, saturating: with |output_zp| <= 128, any value beyond
        # [-512, 511] is clamped to the same bound as the bound itself would be. The wide
        # OR/AND reductions get a stage of their own.
        hi_bits = z13[9:]
        big14 = reg(1, ~z13[-1] & hi_bits.any(), "big14")
        small14 = reg(1, z13[-1] & ~hi_bits.all(), "small14")
        low14 = reg(signed(10), z13[:10], "low14")
        z15 = reg(signed(10), Mux(big14, 511, Mux(small14, -512, low14)), "z15")

        # 16: zero point and clamp decisions. The bounds are compared before the zero point
        # is added, against limits precomputed from the per-layer ports, so that the two
        # compares and the 8-bit add run side by side; compared as offset-binary (sign bit
        # flipped) unsigned numbers, which map to a single carry chain each.
        lo_lim = reg(signed(10), self.act_min - self.output_zp, "lo_lim")
        hi_lim = reg(signed(10), self.act_max - self.output_zp, "hi_lim")

        def offset(v):
            return Cat(v[:9], ~v[9])

        below16 = reg(1, offset(z15) < offset(lo_lim), "below16")
        above16 = reg(1, offset(z15) > offset(hi_lim), "above16")
        sum16 = reg(signed(8), (z15 + self.output_zp)[:8], "sum16")

        # 17: the clamp multiplexer.
        m.d.sync += self.out.eq(Mux(below16, self.act_min, Mux(above16, self.act_max, sum16)))
        return m


def _check_lut_products(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2:
        raise ValueError(f"lut_products must be 0, 1 or 2, not {value!r}")
    return value


class Requantizer(wiring.Component):
    """Requantizes ``lanes`` int32 accumulators to int8 per cycle, TFLite-exact.

    The datapath is ``lanes`` × :class:`RequantizerLane`, free-running (no clock enable, so
    the DSP and pipeline registers need no enable fan-out). Backpressure is handled by
    credits: results enter an output FIFO with room for every beat in flight, and ``i.ready``
    is high while fewer beats than the FIFO's depth are in the pipeline or the FIFO. So
    ``i.ready`` is a flip-flop, with no combinational path from ``o.ready``, and a stalled
    output loses nothing. Sustaining one beat per cycle takes ``latency + 1`` credits (a
    credit comes back the cycle after its beat leaves), so the FIFO is that deep, rounded
    up to ``2**k + 1`` entries (see :attr:`fifo_depth`). It is one ``SyncFIFOBuffered`` per
    two lanes, written and read together, so that each one's level logic stays beside its
    lanes (at 8 lanes one 66-bit FIFO limited the block to 142 MHz).

    The per-channel parameters (bias, M0, shift and the tie rounding) travel with each
    accumulator (the scheduler pairs them from
    its parameter buffer); the per-layer ones are plain ports that must stay constant while
    any beat of the layer is in the pipeline (from its transfer on ``i`` until its result
    has left the pipeline for the FIFO, :attr:`RequantizerLane.latency` cycles).

    Parameters
    ----------
    lanes : int
        Accumulators requantized per cycle (``AccelConfig.rq_lanes``); at least 1.
    ecp5_dsp : bool
        Build the lanes' multipliers from ECP5 ``MULT18X18D`` primitives with their own
        registers, for 200 MHz on an ECP5 (see :class:`RequantizerLane`); simulation needs a
        model of the primitive.
    lut_products : int
        Partial products per lane built from LUTs instead of multipliers (0, 1 or 2; see
        :class:`RequantizerLane`): ``lanes · (4 - lut_products)`` DSPs in all.

    Members
    -------
    i : In(stream.Signature(input_layout(lanes)))
        Per beat, for each lane ``k``: ``lanes[k].acc``, ``.bias``, ``.multiplier`` (Q31
        M0, any int32), ``.shift`` (in ``[-31, 31]``) and ``.round_up`` (tie rounding of the
        final shift: 1 up, 0 away from zero); plus ``first`` and ``last``, which are passed
        through unchanged to the beat's output.
    o : Out(stream.Signature(output_layout(lanes)))
        Per beat: ``data[k]``, the int8 result of lane ``k``, and the beat's flags.
    output_zp : In(signed(8))
        Output zero point of the layer.
    act_min, act_max : In(signed(8))
        Activation clamp of the layer, ``act_min <= act_max`` (``NONE``: -128, 127).

    Attributes
    ----------
    lanes : int
        Lanes (results per beat).
    ecp5_dsp : bool
        Whether the multipliers are ECP5 primitives.
    lut_products : int
        Partial products per lane built from LUTs.
    dsp_multipliers : int
        18×18 multipliers (DSPs) of all lanes: ``lanes · (4 - lut_products)``.
    latency : int
        Cycles from a beat's transfer on ``i`` to its result being valid on ``o`` when the
        output is not stalled: the lane pipeline plus the output FIFO's 2-cycle latency.
    outputs_per_cycle : int
        Sustained throughput without stalls: ``lanes`` int8 results (one beat) per cycle.
    fifo_depth : int
        Beats the output FIFO holds; the pipeline accepts a beat while fewer are in flight.
    """

    def __init__(self, *, lanes: int, ecp5_dsp: bool = False, lut_products: int = 0):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self._lanes = lanes
        self._ecp5_dsp = bool(ecp5_dsp)
        self._lut_products = _check_lut_products(lut_products)
        super().__init__(
            {
                "i": In(stream.Signature(input_layout(lanes))),
                "o": Out(stream.Signature(output_layout(lanes))),
                "output_zp": In(signed(8)),
                "act_min": In(signed(8)),
                "act_max": In(signed(8)),
            }
        )

    # SyncFIFOBuffered: a beat written into the empty FIFO is readable two cycles later.
    _FIFO_LATENCY = 2

    # Lanes per output FIFO (the last group may have fewer): see ``elaborate``.
    _FIFO_GROUP_LANES = 2

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def ecp5_dsp(self) -> bool:
        return self._ecp5_dsp

    @property
    def lut_products(self) -> int:
        return self._lut_products

    @property
    def dsp_multipliers(self) -> int:
        return self._lanes * (4 - self._lut_products)

    @property
    def latency(self) -> int:
        return RequantizerLane.STAGES + self._FIFO_LATENCY

    @property
    def outputs_per_cycle(self) -> int:
        return self._lanes

    @property
    def fifo_depth(self) -> int:
        # Full rate needs a credit for every beat between acceptance and leaving the FIFO:
        # the pipeline's stages, the FIFO's latency and one beat being read. Rounded up to
        # 2**k + 1 (an output register and a 2**k-entry memory), whose level logic is the
        # fastest.
        need = self.latency + 1
        return 1 + (1 << (need - 2).bit_length())

    def elaborate(self, platform):
        m = Module()
        stages = RequantizerLane.STAGES
        accept = self.i.valid & self.i.ready
        send = self.o.valid & self.o.ready

        result = Signal(output_layout(self._lanes))
        for k in range(self._lanes):
            lane = m.submodules[f"lane_{k}"] = RequantizerLane(
                ecp5_dsp=self._ecp5_dsp, lut_products=self._lut_products)
            inp = self.i.payload.lanes[k]
            m.d.comb += [
                lane.acc.eq(inp.acc),
                lane.bias.eq(inp.bias),
                lane.multiplier.eq(inp.multiplier),
                lane.shift.eq(inp.shift),
                lane.round_up.eq(inp.round_up),
                lane.output_zp.eq(self.output_zp),
                lane.act_min.eq(self.act_min),
                lane.act_max.eq(self.act_max),
                result.data[k].eq(lane.out),
            ]

        # Valid bit and flags travel beside the lanes, delayed by the same number of stages.
        valid = Signal(stages)
        first = Signal(stages)
        last = Signal(stages)
        m.d.sync += [
            valid.eq(Cat(accept, valid[:-1])),
            first.eq(Cat(self.i.payload.first, first[:-1])),
            last.eq(Cat(self.i.payload.last, last[:-1])),
        ]
        m.d.comb += [result.first.eq(first[-1]), result.last.eq(last[-1])]

        # The output FIFO, split by groups of lanes: one SyncFIFOBuffered per group (the
        # first also holds the flags), each with its own level logic, which then sits with
        # its group's lanes and LUT RAMs instead of fanning out over the whole block (at 8
        # lanes one 66-bit FIFO's level -> write enable -> level loop took 7 ns of
        # routing). All groups are written by the same valid bit and read by the same
        # o.ready from the same reset state, so their levels are always equal and the first
        # group's r_rdy stands for all; none can overflow, as the credits below bound
        # every group's level.
        groups = [range(k, min(k + self._FIFO_GROUP_LANES, self._lanes))
                  for k in range(0, self._lanes, self._FIFO_GROUP_LANES)]
        for g, group in enumerate(groups):
            w_data = Cat(*(result.data[k] for k in group))
            r_data = Cat(*(self.o.payload.data[k] for k in group))
            if g == 0:
                w_data = Cat(w_data, result.first, result.last)
                r_data = Cat(r_data, self.o.payload.first, self.o.payload.last)
            fifo = m.submodules[f"fifo_{g}"] = SyncFIFOBuffered(
                width=len(w_data), depth=self.fifo_depth
            )
            m.d.comb += [
                fifo.w_en.eq(valid[-1]),
                fifo.w_data.eq(w_data),
                r_data.eq(fifo.r_data),
                fifo.r_en.eq(self.o.ready),
            ]
            if g == 0:
                m.d.comb += self.o.valid.eq(fifo.r_rdy)

        # Credits: beats accepted but not yet sent. Never more than the FIFO can hold, so the
        # FIFO's w_rdy is always high when the pipeline writes. ``full`` is kept as its own
        # register so that ``i.ready`` comes straight from a flip-flop.
        in_flight = Signal(range(self.fifo_depth + 1))
        full = Signal()
        m.d.sync += in_flight.eq(in_flight + accept - send)
        with m.If(accept & ~send & (in_flight == self.fifo_depth - 1)):
            m.d.sync += full.eq(1)
        with m.Elif(send):
            m.d.sync += full.eq(0)
        m.d.comb += self.i.ready.eq(~full)
        return m
