"""Tests of the LUT-built multipliers: every int8 pair, the pipelined n × n one exhaustively
on small shapes and randomly on the requantizer's, and no ``*`` reaching Yosys."""

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Fragment, Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from mnaccel.hw.lut_mul import (
    adder_tree,
    booth_addends,
    booth_mul,
    booth_mul_s8,
    booth_terms_s8,
)

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


# The pipelined n × n multiplier (booth_mul, booth_addends, adder_tree), as the requantizer
# uses it for its 16 × 16 partial products.


class _Pipelined(wiring.Component):
    """``p = a * b`` through :func:`booth_mul`, ``stages`` cycles after ``a`` and ``b``."""

    def __init__(self, a_shape, b_shape, stages):
        self._stages = stages
        width = (a_shape.width + (not a_shape.signed)) + (b_shape.width + (not b_shape.signed))
        super().__init__({"a": In(a_shape), "b": In(b_shape), "p": Out(signed(width))})

    def elaborate(self, platform):
        m = Module()
        product = booth_mul(m, self.a, self.b, stages=self._stages, name="mul")
        assert product.shape() == self.p.shape()
        m.d.comb += self.p.eq(product)
        return m


def _check_pipelined(a_shape, b_shape, stages, pairs):
    """Feeds one pair a cycle; each product must appear exactly ``stages`` cycles later."""
    dut = _Pipelined(a_shape, b_shape, stages)
    wrong = []

    async def bench(ctx):
        # The pair set before tick t is sampled by it; its product shows after tick
        # t + stages − 1.
        for cycle in range(len(pairs) + stages - 1):
            if cycle < len(pairs):
                ctx.set(dut.a, pairs[cycle][0])
                ctx.set(dut.b, pairs[cycle][1])
            await ctx.tick()
            k = cycle + 1 - stages
            if k >= 0:
                x, y = pairs[k]
                got = ctx.get(dut.p)
                if got != x * y:
                    wrong.append((x, y, x * y, got))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not wrong, f"{len(wrong)} wrong products, e.g. (a, b, a·b, got) {wrong[:5]}"


def _lo(shape):
    return -(1 << (shape.width - 1)) if shape.signed else 0


def _hi(shape):
    return (1 << (shape.width - shape.signed)) - 1


def _range(shape):
    return range(_lo(shape), _hi(shape) + 1)


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "stages"),
    [
        (signed(6), signed(6), 3),    # 4 addends: 2 levels, first shares the selection's stage
        (signed(5), signed(7), 4),    # odd b: sign-extended to 8 bits; addends registered first
        (unsigned(5), signed(6), 5),  # unsigned a; a delay stage at the end
        (signed(6), unsigned(5), 2),  # unsigned b: 6 bits signed, so 3 digits + top, 2 levels
        (signed(2), signed(2), 1),    # one digit: the partial product and its +1
    ],
)
def test_pipelined_exhaustive_small(a_shape, b_shape, stages):
    """Every operand pair of small shapes, signed and unsigned, odd and even widths."""
    pairs = [(x, y) for x in _range(a_shape) for y in _range(b_shape)]
    _check_pipelined(a_shape, b_shape, stages, pairs)


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "stages"),
    [
        (signed(16), signed(16), 5),    # the requantizer's xh·mh
        (signed(16), signed(16), 4),    # its minimum: 9 addends, 4 levels
        (unsigned(16), signed(16), 5),  # ml·xh
        (signed(16), unsigned(16), 4),  # xh·ml: 9 digits, the top one never negative
        (signed(32), signed(32), 6),    # a wider one: 17 addends, 5 levels
    ],
)
def test_pipelined_random_and_corners(a_shape, b_shape, stages):
    """Random pairs plus every combination of the extremes and their neighbours."""
    rng = np.random.default_rng(a_shape.width * 100 + b_shape.width + stages)
    corners_a, corners_b = (
        sorted(v for v in {_lo(sh), _lo(sh) + 1, -1, 0, 1, 2, _hi(sh) - 1, _hi(sh)}
               if _lo(sh) <= v <= _hi(sh))
        for sh in (a_shape, b_shape))
    pairs = [(x, y) for x in corners_a for y in corners_b]
    pairs += [(int(x), int(y)) for x, y in zip(
        rng.integers(_lo(a_shape), _hi(a_shape) + 1, 3000),
        rng.integers(_lo(b_shape), _hi(b_shape) + 1, 3000), strict=True)]
    _check_pipelined(a_shape, b_shape, stages, pairs)


@pytest.mark.parametrize(("a_shape", "b_shape"), [(signed(16), signed(16)),
                                                  (unsigned(16), signed(16)),
                                                  (signed(16), unsigned(16)),
                                                  (signed(7), unsigned(8))])
def test_booth_addends_sum_to_product(a_shape, b_shape):
    """``Σ value·2**shift == a·b`` over :func:`booth_addends`, sorted by shift; for a signed
    ``b`` the last one is ``b``'s sign at the top digit's weight (the requantizer moves
    addends out of the tree by position, so the order is part of the contract)."""
    a, b = Signal(a_shape), Signal(b_shape)
    addends = booth_addends(a, b)
    n = b_shape.width + (not b_shape.signed)
    n += n % 2
    assert len(addends) == n // 2 + b_shape.signed
    assert [s for _, s in addends] == sorted(s for _, s in addends)
    if b_shape.signed:
        assert addends[-1][1] == n - 2 and addends[-1][0].shape() == unsigned(1)
    m = Module()
    outs = [Signal(v.shape(), name=f"t{j}") for j, (v, _) in enumerate(addends)]
    m.d.comb += [o.eq(v) for o, (v, _) in zip(outs, addends, strict=True)]
    rng = np.random.default_rng(7)
    pairs = [(int(x), int(y)) for x, y in zip(
        rng.integers(_lo(a_shape), _hi(a_shape) + 1, 2000),
        rng.integers(_lo(b_shape), _hi(b_shape) + 1, 2000), strict=True)]
    pairs += [(_lo(a_shape), _lo(b_shape)), (_hi(a_shape), _lo(b_shape)),
              (_lo(a_shape), _hi(b_shape)), (_hi(a_shape), _hi(b_shape))]
    wrong = []

    async def bench(ctx):
        for x, y in pairs:
            ctx.set(a, x)
            ctx.set(b, y)
            total = sum(ctx.get(o) << s for o, (_, s) in zip(outs, addends, strict=True))
            if total != x * y:
                wrong.append((x, y, total))
            if b_shape.signed and ctx.get(outs[-1]) != (y < 0):
                wrong.append((x, y, "top"))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not wrong, f"{len(wrong)} wrong, e.g. {wrong[:5]}"


def test_pipelined_has_no_multiplier_cell():
    m = Module()
    a, b = Signal(signed(16)), Signal(signed(16))
    p = Signal(signed(32))
    m.d.comb += p.eq(booth_mul(m, a, b, stages=5, name="mul"))
    text = rtlil.convert(m, ports=[a, b, p])
    assert "$add" in text
    assert "$mul" not in text


def test_adder_tree_checks_its_arguments():
    a, b = Signal(signed(16)), Signal(signed(16))
    m = Module()
    with pytest.raises(ValueError, match=r"stages must be an integer >= 4 .* 9 addends, not 3"):
        booth_mul(m, a, b, stages=3, name="mul")
    with pytest.raises(ValueError, match="width must be a positive integer, not 0"):
        adder_tree(m, [(a, 0)], width=0, stages=1, name="t")
    with pytest.raises(ValueError, match=r"addend shifts must be in \[0, 8\)"):
        adder_tree(m, [(a, 8)], width=8, stages=1, name="t")
    with pytest.raises(ValueError, match="at least one addend"):
        adder_tree(m, [], width=8, stages=1, name="t")
    Fragment.get(m, None)  # used, so that Amaranth does not warn (warnings are errors)
