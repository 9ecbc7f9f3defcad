"""Tests of the LUT-built int8 multiplier: every int8 pair, and no ``*`` reaching Yosys."""

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from mnaccel.hw.lut_mul import booth_mul_s8

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
def test_operand_width_is_checked(shape):
    with pytest.raises(ValueError, match=r"a must be signed\(8\)"):
        booth_mul_s8(Signal(shape), Signal(signed(8)))
    with pytest.raises(ValueError, match=r"b must be signed\(8\)"):
        booth_mul_s8(Signal(signed(8)), Signal(shape))
