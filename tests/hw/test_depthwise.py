# amaranth: UnusedElaboratable=no
"""Tests of the depthwise PE array and the line buffer → array engine."""

# (First line: blocks are also built only to query their timing models.)

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from mnaccel.hw.config import preset
from mnaccel.hw.depthwise import DepthwiseArray, DepthwiseEngine, weight_beats
from mnaccel.hw.line_buffer import axis_geometry, window_layout
from mnaccel.sim.runner import run_bench
from mnaccel.sim.synth import synth_stats


def engine_kwargs(name: str) -> dict:
    cfg = preset(name)
    return dict(lanes=cfg.dw_lanes, in_lanes=cfg.lb_in_lanes,
                kernel=cfg.dw_kernel, max_kernel=cfg.max_kernel, max_width=cfg.lb_max_width,
                max_channels=cfg.lb_max_channels, max_row_bytes=cfg.lb_max_row_bytes)


def random_layers(block: DepthwiseEngine, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    layers, zps = [], [-128, 127]
    while len(layers) < n:
        layer = dict(k=rng.choice([3, 5]), stride=rng.choice([1, 2]),
                     padding=rng.choice(["SAME", "VALID"]), h=rng.randint(1, 10),
                     w=rng.randint(1, 10), c=block.line_buffer.in_lanes * rng.randint(1, 2),
                     zp=zps[len(layers)] if len(layers) < 2 else rng.randint(-128, 127),
                     seed=rng.randrange(1 << 30))
        try:
            block.line_buffer.check_layer(layer["h"], layer["w"], layer["c"], layer["k"],
                                          layer["stride"], layer["padding"])
        except ValueError:
            continue
        layers.append(layer)
    return layers


@pytest.mark.parametrize("bubble,backpressure", [(0.0, 0.0), (0.3, 0.4)])
@pytest.mark.parametrize("config", ["tiny", "small"])
def test_accumulators_bit_exact(config, bubble, backpressure):
    kw = engine_kwargs(config)
    block = DepthwiseEngine(**kw)
    layers = random_layers(block, 10, seed=len(config) * 31 + int(bubble * 10))
    rec = run_bench(block, name=f"depthwise_{config}", bench="mnaccel.sim.benches.depthwise",
                    params=dict(block=kw, layers=layers, bubble=bubble,
                                backpressure=backpressure, seed=5))
    assert rec["outputs"] == sum(
        axis_geometry(ly["h"], ly["k"], ly["stride"], ly["padding"])[0]
        * axis_geometry(ly["w"], ly["k"], ly["stride"], ly["padding"])[0]
        * ly["c"] // block.line_buffer.lanes for ly in layers)
    if not bubble and not backpressure:
        assert rec["spans"] == rec["expected_spans"]


@pytest.mark.parametrize("config", ["tiny", "small"])
def test_sustained_throughput(config):
    """Long layers: measured cycles equal the model, stride 1 at one window per cycle."""
    kw = engine_kwargs(config)
    block = DepthwiseEngine(**kw)
    lb = block.line_buffer
    c = 2 * lb.in_lanes
    w = min(lb.max_width, lb.max_row_bytes // c)
    layers = [dict(h=20, w=w, c=c, k=3, stride=s, padding="VALID", zp=1, seed=s) for s in (1, 2)]
    layers.append(dict(h=8, w=w, c=c, k=5, stride=1, padding="SAME", zp=-1, seed=3))
    rec = run_bench(block, name=f"depthwise_{config}", bench="mnaccel.sim.benches.depthwise",
                    params=dict(block=kw, layers=layers, seed=1))
    assert rec["spans"] == rec["expected_spans"]
    # VALID stride 1: inside each row one window per cycle; between rows K−1 columns that
    # emit nothing, so the span is the windows plus those gaps.
    groups = c // lb.lanes
    ow = w - 2
    gaps = (20 - 2 - 1) * 2 * (c // lb.in_lanes)
    windows = 18 * ow * groups
    assert rec["spans"][0] + 1 <= windows + gaps
    assert rec["spans"][0] + 1 >= windows
    print(f"{config}: stride-1 3×3 VALID {windows} windows in {rec['spans'][0] + 1} cycles; "
          f"stride 2: {rec['spans'][1] + 1}; 5×5 SAME: {rec['spans'][2] + 1}")


def test_array_unit():
    """The array alone in amaranth.sim: 3×3 and 5×5 windows, back-to-back, vs NumPy."""
    lanes, kmax, cmax = 2, 5, 8
    dut = DepthwiseArray(lanes=lanes, max_kernel=kmax, max_channels=cmax)
    layout = window_layout(lanes, kmax, cmax)
    rng = np.random.default_rng(3)
    cases = []
    for k in (3, 5, 3):
        wt = rng.integers(-128, 128, size=(k, k, cmax))
        wins = [(g, rng.integers(-128, 128, size=(k, k, lanes))) for g in range(cmax // lanes)]
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
    assert got == want


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
    for block in (DepthwiseArray(lanes=2, max_channels=64),
                  DepthwiseEngine(lanes=2, max_width=16, max_channels=64, max_row_bytes=256)):
        for member in block.signature.members:
            assert f"\n    {member} :" in type(block).__doc__, member


def test_synth_small():
    """The small configuration's engine maps to ECP5 DSPs and block RAM."""
    kw = engine_kwargs("small")
    stats = synth_stats(DepthwiseEngine(**kw), name="depthwise_small")
    print({k: v for k, v in stats.items() if v})
    lanes = kw["lanes"]
    assert stats["MULT18X18D"] == lanes * 9
    assert stats["DP16KD"] >= 2
    assert 0 < stats["LUT4"] < 20_000
