"""Tests of the LUT-built int8 multiplier: every int8 pair, and no ``*`` reaching Yosys."""

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from mnaccel.hw.lut_mul import booth_mul_s8, booth_terms_s8

BATCH = 16


class _Batch(wiring.Component):
    """``BATCH`` multipliers side by side: ``p[j] = a[j] * b``."""

    a: In(signed(8)).array(BATCH)
    b: In(signed(8))
    p: Out(signed(16)).array(BATCH)

    def elaborate(self, platform):
        m = Module()
        for j in range(BATCH):
            m.d.comb += self.p[j].eq(booth_mul_s8(self.a[j], self.b))
        return m


def test_all_int8_pairs():
    """All 65 536 products, checked against Python's integer product."""
    dut = _Batch()
    wrong = []

    async def bench(ctx):
        for base in range(-128, 128, BATCH):
            for j in range(BATCH):
                ctx.set(dut.a[j], base + j)
            for y in range(-128, 128):
                ctx.set(dut.b, y)
                for j in range(BATCH):
                    got = ctx.get(dut.p[j])
                    if got != (base + j) * y:
                        wrong.append((base + j, y, got))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert not wrong, f"{len(wrong)} wrong products, e.g. (a, b, a·b) {wrong[:5]}"


class _Terms(wiring.Component):
    """``BATCH`` × :func:`booth_terms_s8`: ``low[j]``, ``high[j]``, ``top[j]`` of ``a[j] * b``."""

    a: In(signed(8)).array(BATCH)
    b: In(signed(8))
    low: Out(signed(13)).array(BATCH)
    high: Out(signed(15)).array(BATCH)
    top: Out(1).array(BATCH)

    def elaborate(self, platform):
        m = Module()
        for j in range(BATCH):
            low, high, top = booth_terms_s8(self.a[j], self.b)
            assert (low.shape(), high.shape(), top.shape()) == (signed(13), signed(15),
                                                                unsigned(1))
            m.d.comb += [self.low[j].eq(low), self.high[j].eq(high), self.top[j].eq(top)]
        return m


def test_terms_all_int8_pairs():
    """The three addends sum to the product for all 65 536 pairs: ``low + 4·high + 64·top``
    (the identity a pipelined adder tree relies on)."""
    dut = _Terms()
    wrong = []

    async def bench(ctx):
        for base in range(-128, 128, BATCH):
            for j in range(BATCH):
                ctx.set(dut.a[j], base + j)
            for y in range(-128, 128):
                ctx.set(dut.b, y)
                for j in range(BATCH):
                    low, high, top = (ctx.get(s[j]) for s in (dut.low, dut.high, dut.top))
                    if low + 4 * high + 64 * top != (base + j) * y:
                        wrong.append((base + j, y, low, high, top))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert not wrong, f"{len(wrong)} wrong sums, e.g. (a, b, low, high, top) {wrong[:5]}"


def test_no_multiplier_cell():
    """The product is shifts, muxes and adds: no ``$mul`` for Yosys to put on a DSP."""
    m = Module()
    a, b, p = Signal(signed(8)), Signal(signed(8)), Signal(signed(16))
    m.d.comb += p.eq(booth_mul_s8(a, b))
    text = rtlil.convert(m, ports=[a, b, p])
    assert "$add" in text
    assert "$mul" not in text
    # The reference point: the same product written with `*` does make one.
    m2 = Module()
    m2.d.comb += p.eq(a * b)
    assert "$mul" in rtlil.convert(m2, ports=[a, b, p])


@pytest.mark.parametrize("shape", [signed(9), unsigned(8), signed(7)])
@pytest.mark.parametrize("function", [booth_mul_s8, booth_terms_s8])
def test_operand_width_is_checked(shape, function):
    with pytest.raises(ValueError, match=r"a must be signed\(8\)"):
        function(Signal(shape), Signal(signed(8)))
    with pytest.raises(ValueError, match=r"b must be signed\(8\)"):
        function(Signal(signed(8)), Signal(shape))
