"""The requantizer synthesizes for ECP5 with the DSP budget its docstring promises."""

import pytest

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
