# amaranth: UnusedElaboratable=no
"""Tests of the line buffer: cocotb benches on Verilator, unit tests, synthesis."""

# (First line: blocks are also built only to query their timing models.)

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from mnaccel.golden.ops import compute_padding
from mnaccel.hw.config import preset
from mnaccel.hw.line_buffer import ConvVectorAdapter, LineBuffer, axis_geometry, window_layout
from mnaccel.sim.runner import run_bench

#: Model of the ECP5 block RAM primitive for ``ecp5_bram=True`` (Yosys has none).
DP16KD_MODEL = Path(__file__).with_name("dp16kd_model.v")


def block_kwargs(name: str) -> dict:
    cfg = preset(name)
    return dict(lanes=cfg.dw_lanes, in_lanes=cfg.lb_in_lanes,
                max_kernel=cfg.max_kernel, max_width=cfg.lb_max_width,
                max_channels=cfg.lb_max_channels, max_row_bytes=cfg.lb_max_row_bytes)


def random_layers(block: LineBuffer, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    zps = [-128, 127, 0]
    layers = []
    while len(layers) < n:
        k = rng.choice([3, 5])
        layer = dict(k=k, stride=rng.choice([1, 2]), padding=rng.choice(["SAME", "VALID"]),
                     h=rng.randint(1, 11), w=rng.randint(1, 13),
                     c=block.in_lanes * rng.randint(1, 4),
                     zp=zps[len(layers)] if len(layers) < 3 else rng.randint(-128, 127),
                     seed=rng.randrange(1 << 30))
        try:
            block.check_layer(layer["h"], layer["w"], layer["c"], k, layer["stride"],
                              layer["padding"])
        except ValueError:
            continue  # VALID windows larger than the map
        layers.append(layer)
    return layers


def check_run(rec: dict, block: LineBuffer, layers: list[dict], *, stalls: bool) -> None:
    """Every window of every layer came out (the bench compared their contents), and
    without stalls each layer's windows spanned exactly the cycles ``frame_cycles`` gives."""
    assert rec["windows"] == sum(
        axis_geometry(ly["h"], ly["k"], ly["stride"], ly["padding"])[0]
        * axis_geometry(ly["w"], ly["k"], ly["stride"], ly["padding"])[0]
        * ly["c"] // block.lanes for ly in layers)
    if not stalls:
        assert rec["spans"] == rec["expected_spans"]


@pytest.mark.parametrize("bubble,backpressure", [(0.0, 0.0), (0.3, 0.4)])
@pytest.mark.parametrize("config", ["tiny", "small"])
def test_windows_bit_exact(config, bubble, backpressure):
    kw = block_kwargs(config)
    block = LineBuffer(**kw)
    layers = random_layers(block, 14, seed=len(config) * 131 + int(bubble * 10))
    rec = run_bench(block, name=f"line_buffer_{config}", bench="mnaccel.sim.benches.line_buffer",
                    params=dict(block=kw, layers=layers, bubble=bubble,
                                backpressure=backpressure, seed=7))
    check_run(rec, block, layers, stalls=bool(bubble or backpressure))


@pytest.mark.parametrize("bubble,backpressure", [(0.0, 0.0), (0.3, 0.4)])
def test_windows_bit_exact_ecp5_bram(bubble, backpressure):
    """The row memories as ECP5 primitives (``ecp5_bram``), simulated with a model that
    returns a poisoned word for a read during a write of the same entry: the bypasses
    must cover every such read. Layers of 1 to 4 channel groups and widths from 1 (the
    near-write cases), with and without stalls; cycle-exact without them."""
    kw = block_kwargs("small") | dict(ecp5_bram=True)
    block = LineBuffer(**kw)
    layers = random_layers(block, 14, seed=977 + int(bubble * 10))
    rec = run_bench(block, name="line_buffer_small_ecp5", bench="mnaccel.sim.benches.line_buffer",
                    extra_sources=[DP16KD_MODEL],
                    params=dict(block=kw, layers=layers, bubble=bubble,
                                backpressure=backpressure, seed=11))
    check_run(rec, block, layers, stalls=bool(bubble or backpressure))


@pytest.mark.parametrize("config", ["tiny", "small"])
def test_sustained_throughput(config):
    """Long layers without bubbles or backpressure: cycles match the documented model."""
    kw = block_kwargs(config)
    block = LineBuffer(**kw)
    c = 4 * block.in_lanes
    w = min(block.max_width, block.max_row_bytes // c)
    layers = [dict(h=24, w=w, c=c, k=3, stride=s, padding="SAME", zp=-3, seed=s)
              for s in (1, 2)]
    layers.append(dict(h=12, w=w, c=c, k=5, stride=1, padding="VALID", zp=5, seed=9))
    rec = run_bench(block, name=f"line_buffer_{config}", bench="mnaccel.sim.benches.line_buffer",
                    params=dict(block=kw, layers=layers, seed=3))
    assert rec["spans"] == rec["expected_spans"]
    # The stride-1 layer runs at one window per cycle except for its right-edge flush.
    s1, s2 = rec["spans"][0], rec["spans"][1]
    windows_s1 = 24 * w * c // block.lanes
    out_w = axis_geometry(w, 3, 2, "SAME")[0]
    pad_cycles = (24 + 1) * (w + 1) * (c // block.in_lanes) - windows_s1 // (
        block.in_lanes // block.lanes)
    print(f"{config}: stride 1 {windows_s1} windows in {s1 + 1} cycles; stride 2 "
          f"{12 * out_w * c // block.lanes} windows in {s2 + 1} cycles")
    assert windows_s1 <= s1 + 1 <= windows_s1 + max(pad_cycles, 0) + w * c // block.in_lanes


def test_model_steady_state_matches_frame_model():
    """cycles_per_output_pixel is the slope of frame_cycles over large layers."""
    block = LineBuffer(lanes=2, in_lanes=8, max_width=224, max_channels=1024,
                       max_row_bytes=8192)
    for stride, c in [(1, 64), (2, 64), (2, 128)]:
        a = block.frame_cycles(40, 40, c, 3, stride, "VALID")
        b = block.frame_cycles(80, 40, c, 3, stride, "VALID")
        extra_pixels = 40 // stride * axis_geometry(40, 3, stride, "VALID")[0]
        slope = ((b[1] - b[0]) - (a[1] - a[0])) / extra_pixels
        assert abs(slope - block.cycles_per_output_pixel(stride, c)) < 0.05 * slope


def test_geometry_matches_golden():
    for size in range(1, 20):
        for k in (3, 5):
            for s in (1, 2):
                for pad in ("SAME", "VALID"):
                    if pad == "VALID" and size < k:
                        continue
                    assert axis_geometry(size, k, s, pad) == compute_padding(size, k, s, pad)


@pytest.mark.parametrize("kw,bad", [
    (dict(lanes=3), "lanes"), (dict(in_lanes=1), "in_lanes"), (dict(max_kernel=7), "max_kernel"),
    (dict(max_channels=48), "max_channels"), (dict(max_row_bytes=100), "max_row_bytes"),
])
def test_constructor_validation(kw, bad):
    args = dict(lanes=2, in_lanes=4, max_width=32, max_channels=64, max_row_bytes=512) | kw
    with pytest.raises(ValueError, match=bad):
        LineBuffer(**args)


def test_signature_members():
    block = LineBuffer(lanes=2, in_lanes=4, max_width=32, max_channels=64, max_row_bytes=512)
    assert set(block.signature.members) == {"cfg", "i", "o"}
    doc = LineBuffer.__doc__
    for member in block.signature.members:
        assert f"\n    {member} :" in doc


def test_conv_vector_adapter():
    """RGB padded to 4 channels, 2 lanes: two windows per pixel make one 27-vector."""
    lanes, kmax = 2, 5
    dut = ConvVectorAdapter(lanes=lanes, max_kernel=kmax, max_channels=64, kernel=3,
                            channels=3, padded_channels=4)
    layout = window_layout(lanes, kmax, 64)
    rng = np.random.default_rng(1)
    pixels = [rng.integers(-128, 128, size=(3, 3, 4)) for _ in range(5)]
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for n, px in enumerate(pixels):
            for g in range(2):
                taps = [[[0] * lanes for _ in range(kmax)] for _ in range(kmax)]
                for ky in range(3):
                    for kx in range(3):
                        taps[ky][kx] = [int(v) for v in px[ky, kx, g * 2:g * 2 + 2]]
                ctx.set(dut.i.payload, layout.const({
                    "taps": taps, "group": g, "kernel5": 0,
                    "first": int(n == 0 and g == 0), "last": int(n == 4 and g == 1)}))
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
                if ctx.get(dut.o.valid):
                    got.append(ctx.get(dut.o.payload))
            ctx.set(dut.i.valid, 0)
        for _ in range(3):
            await ctx.tick()
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(got) == len(pixels)
    for n, (vec, px) in enumerate(zip(got, pixels, strict=True)):
        assert [int(v) for v in vec.data] == px[:, :, :3].reshape(-1).tolist(), f"pixel {n}"
        assert (vec.first, vec.last) == (int(n == 0), int(n == 4)), f"pixel {n} flags"


def test_synth_small():
    """The small line buffer maps its rows to ECP5 block RAM and uses no multiplier."""
    from mnaccel.sim.synth import synth_stats

    stats = synth_stats(LineBuffer(**block_kwargs("small")), name="line_buffer_small")
    print({k: v for k, v in stats.items() if v})
    assert stats["DP16KD"] >= 2
    assert stats["MULT18X18D"] == 0
    assert 0 < stats["LUT4"] < 20_000
