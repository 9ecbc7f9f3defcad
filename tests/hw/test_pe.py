# amaranth: UnusedElaboratable=no
"""The MAC processing element, in amaranth.sim."""

import random
import re

import pytest
from amaranth.sim import Simulator

from mnaccel.hw.pe import PE, product_sum_width


@pytest.mark.parametrize("terms", [1, 2, 3, 4, 5, 16, 17, 1024])
def test_product_sum_width_is_the_smallest_that_fits(terms):
    lo, hi = -128 * 127 * terms, 128 * 128 * terms
    width = product_sum_width(terms)
    assert -(2 ** (width - 1)) <= lo and hi < 2 ** (width - 1)
    assert hi >= 2 ** (width - 2)  # one bit fewer would overflow


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"sum_in_width": 0}, "sum_in_width must be a positive int, not 0"),
        ({"sum_out_width": 15}, "sum_out_width must be an int >= max(16, sum_in_width=16), not 15"),
        ({"sum_in_width": 20, "sum_out_width": 18}, "sum_in_width=20), not 18"),
    ],
)
def test_rejects_bad_widths(kwargs, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        PE(**kwargs)


def test_macs_switch_banks_and_stall():
    """Against a model of the documented timing, in enabled cycles ``t``:
    ``x_out(t + 1) = x_in(t)`` and ``sum_out(t + L) = sum_in(t + L - 1) + x_in(t) * w``."""
    dut = PE(sum_in_width=18, sum_out_width=19)
    lat = dut.latency
    rng = random.Random(5)
    extremes = [-128, 127, -1, 0]

    def int8():
        return rng.choice(extremes) if rng.random() < 0.3 else rng.randint(-128, 127)

    async def bench(ctx):
        weights = [None, None]  # the model: what each bank holds
        # Per enabled cycle: (x, bank, sum_in, product or None while the bank is unwritten).
        history = []
        checked = 0
        for cycle in range(800):
            en = rng.random() < 0.8
            x, bank = int8(), rng.randint(0, 1)
            s = rng.randint(-(2**17), 2**17 - 1)
            w_en, w_bank, w_data = rng.random() < 0.3, rng.randint(0, 1), int8()
            ctx.set(dut.en, en)
            ctx.set(dut.x_in, x)
            ctx.set(dut.bank_in, bank)
            ctx.set(dut.sum_in, s)
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_bank, w_bank)
            ctx.set(dut.w_data, w_data)
            n = len(history)
            if n >= 1:
                got = (ctx.get(dut.x_out), ctx.get(dut.bank_out))
                assert got == history[-1][:2], f"cycle {cycle}: x, bank {got}"
            if n >= lat and history[n - lat][3] is not None:
                expect = history[-1][2] + history[n - lat][3]
                got = ctx.get(dut.sum_out)
                assert got == expect, f"cycle {cycle}: sum_out {got}, expected {expect}"
                checked += 1
            if en:
                w = weights[bank]
                history.append((x, bank, s, None if w is None else x * w))
            if en and w_en:
                weights[w_bank] = w_data
            await ctx.tick()
        assert checked > 500

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_extreme_product_fits_sixteen_bits():
    dut = PE()

    async def bench(ctx):
        ctx.set(dut.en, 1)
        ctx.set(dut.w_en, 1)
        ctx.set(dut.w_data, -128)
        await ctx.tick()
        ctx.set(dut.w_en, 0)
        ctx.set(dut.x_in, -128)
        await ctx.tick()
        ctx.set(dut.x_in, 127)
        await ctx.tick()
        await ctx.tick().repeat(dut.latency - 2)
        assert ctx.get(dut.sum_out) == 16384
        await ctx.tick()
        assert ctx.get(dut.sum_out) == -16256

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_properties():
    dut = PE(sum_in_width=16, sum_out_width=17)
    # Fabric operands (twice), DSP input and output registers, fabric product (twice),
    # the sum.
    assert dut.latency == PE.PRODUCT_STAGES + 1 == 7
    assert (dut.sum_in_width, dut.sum_out_width, dut.macs_per_cycle, dut.ecp5_dsp) == (
        16, 17, 1, False)


def test_docstring_lists_the_ports():
    documented = set(re.findall(r"^    (\w+) : (?:In|Out)\(", PE.__doc__, re.M))
    assert documented == set(PE().signature.members)
