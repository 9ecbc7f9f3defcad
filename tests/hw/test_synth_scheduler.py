"""The scheduler synthesizes for ECP5 without DSPs: the array and requantizers need them all."""

import pytest

from mnaccel.hw.config import preset
from mnaccel.hw.scheduler import Scheduler
from mnaccel.sim.synth import synth_stats


@pytest.mark.parametrize("config", ["tiny", "small"])
def test_ecp5_uses_no_dsp(config):
    # Small buffers: block-RAM mapping of the presets' 192 KiB is what takes Yosys long,
    # and the buffers hold no multiplier. Every engine and check is built as for the preset.
    cfg = preset(config).replace(act_buf_bytes=2048, out_buf_bytes=1024)
    stats = synth_stats(Scheduler(cfg), name=f"scheduler_{config}_small_buffers")
    print(f"scheduler {config} (2 KiB + 1 KiB buffers): {stats}")
    # The per-step products are shift-and-add multipliers and counters; a '*' of two
    # descriptor fields (or of one by a constant) would each take a MULT18X18D.
    assert stats["MULT18X18D"] == 0
    # Eleven shift-and-add multipliers (~80 flip-flops each), the descriptor (512), the
    # engines' counters and pointers, the parameter banks (2·pw_cols records of 71 bits):
    # a few thousand flip-flops; bounds catch a blow-up.
    assert 1500 < stats["TRELLIS_FF"] < 8000
    assert 1000 < stats["LUT4"] < 12000
