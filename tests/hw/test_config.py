import dataclasses

import pytest

from mnaccel.hw.config import DEFAULT_PRESET, PRESETS, AccelConfig, preset
from mnaccel.hw.depthwise import DepthwiseLayer
from mnaccel.sim.synth import synth_stats


def test_default_preset_fits_ecp5_85f_multipliers():
    cfg = preset(DEFAULT_PRESET)
    # The LFE5U-85F has 156 18x18 multipliers; the datapath's int8 multipliers must leave
    # room on it (the requantizer's wide products may use the rest or LUTs).
    assert cfg.multipliers == cfg.pw_rows * cfg.pw_cols + cfg.dw_lanes * cfg.dw_kernel**2
    assert cfg.multipliers <= 156


def test_default_preset_fits_ecp5_85f_dsp_blocks():
    # Every 18x18 DSP the default preset's datapath takes: one per pointwise PE, four per
    # depthwise requantizer lane, 4 - rq_lut_products per output requantizer lane, and one
    # per depthwise product unless those are built from LUTs.
    cfg = preset(DEFAULT_PRESET)
    dsp = cfg.pw_rows * cfg.pw_cols + 4 * cfg.dw_lanes + (4 - cfg.rq_lut_products) * cfg.rq_lanes
    dsp += 0 if cfg.dw_mul_luts else cfg.dw_lanes * cfg.dw_kernel**2
    assert dsp <= 156, f"{DEFAULT_PRESET} needs {dsp} MULT18X18D, the LFE5U-85F has 156"
    assert dsp == 152  # the figure hw/config.py's preset comment gives


def test_default_preset_requantizer_keeps_pace_with_the_array():
    # The pointwise array emits pw_cols sums a cycle in a pixel's last input-channel chunk;
    # as many requantizer lanes take them without stalling it (issue #5).
    cfg = preset(DEFAULT_PRESET)
    assert cfg.rq_lanes == cfg.pw_cols
    assert cfg.rq_lut_products == 2


def test_default_depthwise_layer_synthesizes_to_requantizer_dsps_only():
    """Yosys (synth_ecp5) on the default preset's DepthwiseLayer: with dw_mul_luts its only
    MULT18X18Ds are the requantizer's four per lane."""
    cfg = preset(DEFAULT_PRESET)
    assert cfg.dw_mul_luts
    block = DepthwiseLayer(
        lanes=cfg.dw_lanes, in_lanes=cfg.lb_in_lanes, kernel=cfg.dw_kernel,
        max_kernel=cfg.max_kernel, max_width=cfg.lb_max_width,
        max_channels=cfg.lb_max_channels, max_row_bytes=cfg.lb_max_row_bytes,
        mul_luts=cfg.dw_mul_luts, ecp5_dsp=True)
    stats = synth_stats(block, name="depthwise_layer_default")
    print({k: v for k, v in stats.items() if v})
    assert stats["MULT18X18D"] == 4 * cfg.dw_lanes
    assert stats["LUT4"] > 0


def test_default_depthwise_lanes_keep_pace_with_pointwise_on_mobilenet_v1():
    # Fused dw->pw: per pixel the pointwise array needs ceil(C/rows)*ceil(Cout/cols) cycles,
    # the depthwise array ceil(C/lanes). MobileNetV1's dw/pw pairs (C, Cout) at alpha 1.0:
    pairs = [(32, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512)]
    pairs += [(512, 512)] * 5 + [(512, 1024), (1024, 1024)]
    cfg = preset(DEFAULT_PRESET)
    for c, cout in pairs:
        pw = -(-c // cfg.pw_rows) * -(-cout // cfg.pw_cols)
        dw = -(-c // cfg.dw_lanes)
        assert dw <= pw, (c, cout, dw, pw)


def test_large_preset_is_larger():
    assert PRESETS["large"].pw_multipliers == 32 * 32
    assert PRESETS["large"].multipliers > PRESETS[DEFAULT_PRESET].multipliers


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("pw_rows", 12, "pw_rows must be a power of two, not 12"),
        ("pw_cols", 0, "pw_cols must be a power of two, not 0"),
        ("dw_kernel", 7, "dw_kernel must be 3 or 5, not 7"),
        ("acc_width", 24, "acc_width must be 32"),
        ("axi_data_width", 48, "axi_data_width must be"),
        ("lb_max_width", 4, "lb_max_width must be in [8, 4096], not 4"),
        ("dw_mul_luts", 1, "dw_mul_luts must be a bool, not 1"),
        ("rq_lut_products", 3, "rq_lut_products must be 0, 1 or 2, not 3"),
        ("rq_lut_products", -1, "rq_lut_products must be 0, 1 or 2, not -1"),
        ("rq_lut_products", True, "rq_lut_products must be 0, 1 or 2, not True"),
        ("rq_lut_products", 1.0, "rq_lut_products must be 0, 1 or 2, not 1.0"),
    ],
)
def test_bad_values_are_named(field, value, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        AccelConfig(**{field: value})


def test_frozen_and_replace():
    cfg = AccelConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.pw_rows = 32
    bigger = cfg.replace(pw_rows=32)
    assert bigger.pw_rows == 32 and cfg.pw_rows == 16
    assert bigger.config_id != cfg.config_id
    # Every field reaches the ID, the multiplier options too.
    assert cfg.replace(rq_lut_products=1).config_id != cfg.config_id
    assert "rq_lut_products" in cfg.to_dict()


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError, match="unknown configuration preset 'nope'.*ecp5-85f"):
        preset("nope")
