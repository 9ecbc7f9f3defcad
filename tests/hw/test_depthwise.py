# amaranth: UnusedElaboratable=no
"""Tests of the depthwise PE array, the engine and the int8 depthwise layer.

The Verilator benches run the whole :class:`DepthwiseLayer` (line buffer → array →
requantizer), one build per preset; the int32 array is checked alone in amaranth.sim. The
presets cover both product variants: ``tiny`` multiplies on DSPs, ``small`` in LUTs
(``dw_mul_luts``).
"""

# (First line: blocks are also built only to query their timing models.)

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from mnaccel.hw.config import preset
from mnaccel.hw.depthwise import (
    DepthwiseArray,
    DepthwiseEngine,
    DepthwiseLayer,
    param_beats,
    weight_beats,
)
from mnaccel.hw.line_buffer import axis_geometry, window_layout
from mnaccel.sim.runner import run_bench
from mnaccel.sim.synth import synth_stats

#: Models of the ECP5 primitives of ``ecp5_dsp=True`` (Yosys has none).
ECP5_MODELS = [Path(__file__).with_name(f) for f in ("dp16kd_model.v", "mult18x18d_model.v")]


def engine_kwargs(name: str) -> dict:
    cfg = preset(name)
    return dict(lanes=cfg.dw_lanes, in_lanes=cfg.lb_in_lanes,
                kernel=cfg.dw_kernel, max_kernel=cfg.max_kernel, max_width=cfg.lb_max_width,
                max_channels=cfg.lb_max_channels, max_row_bytes=cfg.lb_max_row_bytes,
                mul_luts=cfg.dw_mul_luts)


def test_benched_presets_cover_both_product_variants():
    assert {preset(name).dw_mul_luts for name in ("tiny", "small")} == {False, True}


ACTIVATIONS = ["NONE", "RELU", "RELU6"]


def random_layers(block: DepthwiseLayer, n: int, seed: int) -> list[dict]:
    """``n`` random layers that fit ``block``: every kernel, stride, padding, activation,
    TFLite flavour and scale mode, input and output zero points including −128 and 127."""
    rng = random.Random(seed)
    lb = block.engine.line_buffer
    # Channel counts around multiples of 8, so that the optimized flavour has vectorized
    # channels (ties up) and, where in_lanes allows, leftover ones (ties away).
    channels = sorted({lb.in_lanes * j for j in range(1, 4)} | {8, 10, 16})
    channels = [c for c in channels if c % lb.in_lanes == 0 and c <= lb.max_channels]
    layers, extremes = [], [-128, 127]
    while len(layers) < n:
        i = len(layers)
        # Layers 0, 1, 4, 5, …: exact power-of-two scales, many ties, activation NONE and an
        # output zero point near 0 (a tie is a negative value: RELU clamps it away); they
        # get at least 8 channels, so that the optimized flavour has channels rounding up.
        # The others: random scales, every activation, zero points −128 and 127 (layers 2
        # and 3) or random.
        pow2 = i % 4 < 2
        wide = [c for c in channels if c >= 8]
        if pow2:
            zp, output_zp, activation = rng.randint(-128, 127), rng.randint(-30, 30), "NONE"
        else:
            zp = extremes[i % 2] if i < 4 else rng.randint(-128, 127)
            output_zp = extremes[1 - i % 2] if i < 4 else rng.choice([0, rng.randint(-128, 127)])
            activation = ACTIVATIONS[(i // 4 + i) % 3]
        layer = dict(k=rng.choice([3, 5]), stride=rng.choice([1, 2]),
                     padding=rng.choice(["SAME", "VALID"]), h=rng.randint(1, 8),
                     w=rng.randint(1, 8), c=rng.choice(wide if pow2 else channels),
                     zp=zp, output_zp=output_zp, activation=activation,
                     kernel=["reference", "optimized"][i % 2],
                     scales="pow2" if pow2 else "random",
                     seed=rng.randrange(1 << 30))
        try:
            lb.check_layer(layer["h"], layer["w"], layer["c"], layer["k"], layer["stride"],
                           layer["padding"])
        except ValueError:
            continue
        layers.append(layer)
    return layers


def _run_layer_bench(config: str, ecp5: bool = False, **params) -> dict:
    kw = engine_kwargs(config) | (dict(ecp5_dsp=True) if ecp5 else {})
    return run_bench(DepthwiseLayer(**kw), name=f"depthwise_layer_{config}" + "_ecp5" * ecp5,
                     bench="mnaccel.sim.benches.depthwise_layer", params=dict(block=kw, **params),
                     extra_sources=ECP5_MODELS if ecp5 else ())


@pytest.mark.parametrize("bubble,backpressure", [(0.0, 0.0), (0.3, 0.4)])
@pytest.mark.parametrize("config", ["tiny", "small"])
def test_int8_bit_exact(config, bubble, backpressure):
    """Whole int8 outputs vs golden depthwise_conv2d, reference and optimized flavours."""
    block = DepthwiseLayer(**engine_kwargs(config))
    layers = random_layers(block, 8, seed=len(config) * 31 + int(bubble * 10))
    rec = _run_layer_bench(config, layers=layers, bubble=bubble, backpressure=backpressure,
                           seed=5)
    assert rec["outputs"] == sum(
        axis_geometry(ly["h"], ly["k"], ly["stride"], ly["padding"])[0]
        * axis_geometry(ly["w"], ly["k"], ly["stride"], ly["padding"])[0]
        * ly["c"] for ly in layers)
    # The rounding bits mattered: outputs on which the two flavours differ were checked
    # under each flavour.
    assert rec["flavour_sensitive"]["reference"] > 0, rec["flavour_sensitive"]
    assert rec["flavour_sensitive"]["optimized"] > 0, rec["flavour_sensitive"]
    if not bubble and not backpressure:
        assert rec["spans"] == rec["expected_spans"]


@pytest.mark.parametrize("bubble,backpressure", [(0.0, 0.0), (0.3, 0.4)])
def test_int8_bit_exact_ecp5(bubble, backpressure):
    """The ECP5 build (``ecp5_dsp``: DSP and block-RAM primitives, simulated with models;
    the block-RAM model poisons a read during a write of the same entry): bit-exact, and
    cycle-exact without stalls."""
    block = DepthwiseLayer(**engine_kwargs("small"), ecp5_dsp=True)
    layers = random_layers(block, 8, seed=4099 + int(bubble * 10))
    rec = _run_layer_bench("small", ecp5=True, layers=layers, bubble=bubble,
                           backpressure=backpressure, seed=9)
    assert rec["outputs"] == sum(
        axis_geometry(ly["h"], ly["k"], ly["stride"], ly["padding"])[0]
        * axis_geometry(ly["w"], ly["k"], ly["stride"], ly["padding"])[0]
        * ly["c"] for ly in layers)
    if not bubble and not backpressure:
        assert rec["spans"] == rec["expected_spans"]


@pytest.mark.parametrize("config", ["tiny", "small"])
def test_sustained_throughput(config):
    """Long layers: one 3×3 window per lane per cycle inside rows (1/3 for 5×5), and each
    layer's cycles equal the timing model."""
    kw = engine_kwargs(config)
    block = DepthwiseLayer(**kw)
    lb = block.engine.line_buffer
    c = 2 * lb.in_lanes
    w = min(lb.max_width, lb.max_row_bytes // c)
    base = dict(output_zp=-5, activation="NONE", kernel="optimized", scales="random")
    layers = [dict(base, h=20, w=w, c=c, k=3, stride=s, padding="VALID", zp=1, seed=s)
              for s in (1, 2)]
    layers.append(dict(base, h=8, w=w, c=c, k=5, stride=1, padding="SAME", zp=-1, seed=3))
    rec = _run_layer_bench(config, layers=layers, seed=1)
    assert rec["spans"] == rec["expected_spans"]
    assert rec["row_rates"][0] == [block.windows_per_cycle(3)] * 2
    assert rec["row_rates"][2] == [block.windows_per_cycle(5)] * 2
    groups = c // lb.lanes
    print(f"{config}: latency {block.latency}; 3×3 VALID s1: {18 * (w - 2) * groups} "
          f"windows in {rec['spans'][0] + 1} cycles, rate inside rows "
          f"{rec['row_rates'][0]}; s2: {rec['spans'][1] + 1} cycles; 5×5 SAME: "
          f"{rec['spans'][2] + 1} cycles, rate inside rows {rec['row_rates'][2]}")


def test_latency_is_sum_of_parts():
    block = DepthwiseLayer(**engine_kwargs("tiny"))
    engine, rq = block.engine, block.requantizer
    assert block.latency == (engine.line_buffer.latency + engine.array.latency
                             + DepthwiseLayer.JOIN_LATENCY + rq.latency)
    first, last = block.frame_cycles(5, 5, 2, 3, 1, "SAME")
    e_first, e_last = engine.frame_cycles(5, 5, 2, 3, 1, "SAME")
    assert (first - e_first, last - e_last) == (DepthwiseLayer.JOIN_LATENCY + rq.latency,) * 2


@pytest.mark.parametrize("k,stride,c", [(3, 1, 32), (3, 2, 32), (3, 1, 8), (3, 2, 8),
                                         (5, 1, 32), (5, 2, 16)])
def test_cycles_per_output_pixel_is_the_frame_pace(k, stride, c):
    """The steady pace against frame_cycles' average over a 60×60 map (`small`)."""
    block = DepthwiseLayer(**engine_kwargs("small"))
    out = axis_geometry(60, k, stride, "SAME")[0]
    first, last = block.engine.frame_cycles(60, 60, c, k, stride, "SAME")
    average = (last - first) / (out * out - 1)
    pace = block.cycles_per_output_pixel(k, stride, c)
    if (k, stride) == (5, 2):
        assert pace <= average, (pace, average)      # a lower bound (see the docstring)
    else:
        assert abs(pace - average) <= 0.02 * pace, (pace, average)


def test_param_beats_layout():
    beats = param_beats([10, 20, 30], [2**30, 2**30 + 1, 2**31 - 1], [-1, -2, 0],
                        [1, 1, 0], lanes=2)
    assert [b["group"] for b in beats] == [0, 1]
    assert beats[1]["lanes"][0] == {"bias": 30, "multiplier": 2**31 - 1, "shift": 0,
                                    "round_up": 0}
    assert beats[1]["lanes"][1] == {"bias": 0, "multiplier": 0, "shift": 0, "round_up": 0}
    with pytest.raises(ValueError, match="one entry per channel"):
        param_beats([1, 2], [1], [0, 0], [0, 0], lanes=1)


@pytest.mark.parametrize("mul_luts", [False, True])
def test_array_unit(mul_luts):
    """The array alone in amaranth.sim: 3×3 and 5×5 windows, back-to-back, vs NumPy, with
    the products on DSPs and from LUTs; the extreme int8 values included."""
    lanes, kmax, cmax = 2, 5, 8
    dut = DepthwiseArray(lanes=lanes, max_kernel=kmax, max_channels=cmax, mul_luts=mul_luts)
    assert dut.dsp_multipliers == (0 if mul_luts else dut.multipliers)
    layout = window_layout(lanes, kmax, cmax)
    rng = np.random.default_rng(3)
    cases = []
    for i, k in enumerate((3, 5, 3, 3)):
        wt = rng.integers(-128, 128, size=(k, k, cmax))
        if i == 3:
            # The largest sums: every product −128·−128 or −128·127.
            wt = rng.choice([-128, 127], size=(k, k, cmax))
        wins = [(g, rng.integers(-128, 128, size=(k, k, lanes)) if i < 3
                 else np.full((k, k, lanes), -128)) for g in range(cmax // lanes)]
        cases.append((k, wt, wins))
    got, want = [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for k, wt, wins in cases:
            for beat in weight_beats(wt, lanes):
                ctx.set(dut.w.payload, dut.w.payload.shape().const(beat))
                ctx.set(dut.w.valid, 1)
                await ctx.tick()
            ctx.set(dut.w.valid, 0)
            for g, taps in wins:
                full = np.zeros((kmax, kmax, lanes), dtype=np.int64)
                full[:k, :k] = taps
                ctx.set(dut.i.payload, layout.const({
                    "taps": full.tolist(), "group": g, "kernel5": int(k == 5), "first": 0,
                    "last": 0}))
                ctx.set(dut.i.valid, 1)
                want.append([int((taps[:, :, ln] * wt[:, :, g * lanes + ln]).sum())
                             for ln in range(lanes)])
                await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            for _ in range(dut.latency + 1):
                await ctx.tick()

    async def monitor(ctx):
        async for _, _, valid, payload in ctx.tick().sample(dut.o.valid, dut.o.payload):
            if valid:
                got.append([int(v) for v in payload.acc])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(monitor)
    sim.run_until(1e-6 * 400)
    assert len(got) == len(want)
    for j, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"window {j}: array {g}, NumPy {w}"


def test_weight_beats_layout():
    wt = np.arange(5 * 5 * 3).reshape(5, 5, 3) % 100
    beats = weight_beats(wt, lanes=2)
    assert [(b["group"], b["part"]) for b in beats] == [(g, p) for g in range(2) for p in range(3)]
    flat = wt.reshape(25, 3)
    assert beats[4]["taps"][4] == [int(flat[13, 2]), 0]  # group 1, pass 1, slot 4 = tap 13
    assert beats[2]["taps"][7] == [0, 0]                  # tap 25: past the window


@pytest.mark.parametrize("kw,bad", [(dict(lanes=3), "lanes"), (dict(kernel=5), "kernel"),
                                    (dict(max_kernel=7), "max_kernel"),
                                    (dict(max_channels=6), "max_channels")])
def test_constructor_validation(kw, bad):
    with pytest.raises(ValueError, match=bad):
        DepthwiseArray(**(dict(lanes=2, max_channels=64) | kw))


def test_documented_members():
    kw = dict(lanes=2, max_width=16, max_channels=64, max_row_bytes=256)
    for block in (DepthwiseArray(lanes=2, max_channels=64), DepthwiseEngine(**kw),
                  DepthwiseLayer(**kw)):
        for member in block.signature.members:
            assert f"\n    {member} :" in type(block).__doc__, member


@pytest.mark.parametrize("mul_luts", [False, True])
def test_array_products_reach_yosys_as_configured(mul_luts):
    """The array's Verilog holds one ``*`` per product, or none when built from LUTs (so
    Yosys has nothing to put on a DSP block)."""
    dut = DepthwiseArray(lanes=2, max_kernel=5, max_channels=8, mul_luts=mul_luts)
    cells = re.findall(r"^\s*cell \$mul\b", rtlil.convert(dut, name="array"), re.M)
    assert len(cells) == dut.dsp_multipliers == (0 if mul_luts else 2 * 9)


def test_synth_small():
    """The small configuration's int8 layer maps to ECP5 DSPs and block RAM; its array's
    products (``dw_mul_luts``) to LUTs and carry chains."""
    kw = engine_kwargs("small")
    assert kw["mul_luts"]
    stats = synth_stats(DepthwiseLayer(**kw, ecp5_dsp=True), name="depthwise_layer_small")
    print({k: v for k, v in stats.items() if v})
    lanes = kw["lanes"]
    # 4 multipliers per lane in the requantizer; the array's 9 per lane are in LUTs.
    assert stats["MULT18X18D"] == lanes * 4
    assert stats["DP16KD"] >= 2
    assert 0 < stats["LUT4"] < 25_000
