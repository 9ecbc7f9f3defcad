"""The pointwise engine synthesizes for ECP5: one DSP per MAC, the accumulators in RAM."""

import math

import pytest

from mnaccel.hw.config import preset
from mnaccel.hw.pointwise import Pointwise, output_layout
from mnaccel.sim.synth import synth_stats


@pytest.mark.parametrize("ecp5", [False, True], ids=["inferred", "ecp5"])
@pytest.mark.parametrize("config", ["tiny", "small"])
def test_ecp5_resources(config, ecp5):
    dut = Pointwise.from_config(preset(config), ecp5=ecp5)
    rows, cols, depth = dut.rows, dut.cols, dut.acc_depth
    name = f"pointwise_{'ecp5_' if ecp5 else ''}r{rows}c{cols}d{depth}"
    stats = synth_stats(dut, name=name)
    print(f"pointwise {config} ({rows}x{cols}, {depth} entries, ecp5={ecp5}): {stats}")
    # Every int8 x int8 product on its own 18x18 multiplier, none in LUTs.
    assert stats["MULT18X18D"] == rows * cols
    # The accumulator buffer (depth x cols int32). Instantiated: 18-bit wide DP16KDs (the
    # read port's output register needs a port of its own). Inferred: block RAM (512 x 36
    # per DP16KD) when deep enough, else distributed RAM (16 x 4 per TRELLIS_DPR16X4).
    # Plus the output buffer in distributed RAM: out_buffer_depth finished beats.
    bits = cols * 32
    out = math.ceil(output_layout(cols, depth).size / 4) * math.ceil(dut.out_buffer_depth / 16)
    if ecp5:
        assert (stats["DP16KD"], stats["TRELLIS_DPR16X4"]) == (math.ceil(bits / 18), out)
    elif depth >= 64:
        assert stats["DP16KD"] == math.ceil(bits / 36) * math.ceil(depth / 512)
        assert stats["TRELLIS_DPR16X4"] == out
    else:
        assert stats["TRELLIS_DPR16X4"] == math.ceil(bits / 4) * math.ceil(depth / 16) + out
    # Per PE: activation and bank bit (9), two weights (16), the selected weight (8), both
    # operands again for the DSP (16), the product twice (32), a 16-20-bit sum; inferred
    # also the multiplier's operand and product registers (32), which ecp5 keeps inside
    # the DSP. Besides: the accumulator stage (RAM data, the operands, totals, output
    # register: up to 8 x 32 per column) and the skew/deskew triangles, the weight hops and
    # the metadata and countdown lines (~(rows + cols)^2 / 2 registers of ~10-30 bits).
    # Bounds catch a blow-up, not noise.
    per_pe = 97 if ecp5 else 129
    low = per_pe * rows * cols
    assert low < stats["TRELLIS_FF"] < low + 8 * 32 * cols + 16 * (rows + cols) ** 2
    assert stats["LUT4"] < 40 * rows * cols + 4 * 32 * cols  # + the accumulator's muxes
