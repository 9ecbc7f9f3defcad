"""The requantizer synthesizes for ECP5 with the DSP budget its docstring promises."""

import re

import pytest
from amaranth.back import rtlil

from mnaccel.hw.config import preset
from mnaccel.hw.requantizer import Requantizer
from mnaccel.sim.synth import synth_stats


@pytest.mark.parametrize("ecp5_dsp", [False, True], ids=["inferred", "ecp5_dsp"])
@pytest.mark.parametrize("config", ["tiny", "small"])
def test_ecp5_resources(config, ecp5_dsp):
    lanes = preset(config).rq_lanes
    name = f"requantizer_{'dsp_' if ecp5_dsp else ''}l{lanes}"
    stats = synth_stats(Requantizer(lanes=lanes, ecp5_dsp=ecp5_dsp), name=name)
    print(f"{name} ({config}): {stats}")
    # Four 18×18 multipliers per lane: the 32×32 product as four partial products.
    assert stats["MULT18X18D"] == 4 * lanes
    assert stats["DP16KD"] == 0  # the output FIFO is far too small for block RAM
    # Per lane 16 pipeline stages, most 32-52 bits wide: several hundred flip-flops; logic
    # of the same order (adders, two barrel shifters, clamp). Bounds catch a blow-up.
    assert 400 * lanes < stats["TRELLIS_FF"] < 1100 * lanes
    assert 200 * lanes < stats["LUT4"] < 1200 * lanes


@pytest.mark.parametrize("lut_products", [1, 2])
def test_ecp5_lut_products(lut_products):
    """``lut_products`` takes that many MULT18X18D per lane off (the ``ecp5-85f`` preset's
    8 lanes with 2: 16 rather than 32), and the products it moves leave no ``$mul`` behind
    for Yosys to infer one from: every remaining MULT18X18D is an instantiated one."""
    lanes = 2
    design = Requantizer(lanes=lanes, ecp5_dsp=True, lut_products=lut_products)
    name = f"requantizer_dsp_lut{lut_products}_l{lanes}"
    stats = synth_stats(design, name=name)
    print(f"{name}: {stats}")
    assert stats["MULT18X18D"] == (4 - lut_products) * lanes == design.dsp_multipliers
    assert stats["DP16KD"] == 0
    # The Booth multipliers are LUTs, carry chains and their pipeline registers.
    base = synth_stats(Requantizer(lanes=lanes, ecp5_dsp=True), name=f"requantizer_dsp_l{lanes}")
    assert stats["CCU2C"] > base["CCU2C"] + 50 * lut_products * lanes
    assert stats["LUT4"] > base["LUT4"] + 150 * lut_products * lanes


@pytest.mark.parametrize("lut_products", [0, 1, 2])
def test_lut_products_leave_no_mul_cell(lut_products):
    """In the RTLIL that Yosys reads, the inferred-multiplier variant has one ``$mul`` per
    partial product still on a multiplier: the LUT-built ones (``xh·mh``, then ``xh·ml``)
    have none."""
    design = Requantizer(lanes=1, lut_products=lut_products)
    text = rtlil.convert(design)
    # Which product each $mul is, from the operand halves it reads (x4, m4: stage 4).
    halves = {"[31:16]": "h", "[15:0]": "l"}
    products = []
    for cell in re.findall(r"cell \$mul .*?\n  end", text, re.S):
        a = re.search(r"connect \\A .*?\\x4 (\[\d+:\d+\])", cell).group(1)
        b = re.search(r"connect \\B .*?\\m4 (\[\d+:\d+\])", cell).group(1)
        products.append(halves[a] + halves[b])
    on_luts = {"hh", "hl"} if lut_products == 2 else {"hh"} if lut_products else set()
    assert sorted(products) == sorted({"hh", "hl", "lh", "ll"} - on_luts)
