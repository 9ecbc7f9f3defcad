"""The pointwise engine synthesizes for ECP5: one DSP per MAC, the accumulators in RAM."""

import math

import pytest

from mnaccel.hw.config import preset
from mnaccel.hw.pointwise import Pointwise
from mnaccel.sim.synth import synth_stats


@pytest.mark.parametrize("config", ["tiny", "small"])
def test_ecp5_resources(config):
    dut = Pointwise.from_config(preset(config))
    rows, cols, depth = dut.rows, dut.cols, dut.acc_depth
    stats = synth_stats(dut, name=f"pointwise_r{rows}c{cols}d{depth}")
    print(f"pointwise {config} ({rows}x{cols}, {depth} entries): {stats}")
    # Every int8 x int8 product on its own 18x18 multiplier, none in LUTs.
    assert stats["MULT18X18D"] == rows * cols
    # The accumulator buffer (depth x cols int32): block RAM (512 x 36 per DP16KD) when
    # deep enough, else distributed RAM (16 x 4 per TRELLIS_DPR16X4).
    bits = cols * 32
    if depth >= 64:
        assert stats["DP16KD"] == math.ceil(bits / 36) * math.ceil(depth / 512)
    else:
        assert stats["TRELLIS_DPR16X4"] == math.ceil(bits / 4) * math.ceil(depth / 16)
    # Per PE: 8-bit activation, bank bit, two weights, a ~20-bit sum: ~45 flip-flops, plus
    # the skew/deskew triangles and the output register. Bounds catch a blow-up, not noise.
    assert 40 * rows * cols < stats["TRELLIS_FF"] < 90 * rows * cols
    assert stats["LUT4"] < 40 * rows * cols
