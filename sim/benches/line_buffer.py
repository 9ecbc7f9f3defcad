# amaranth: UnusedElaboratable=no
"""Bench of :class:`mnaccel.hw.line_buffer.LineBuffer`: every window of random layers.

Driver: the layer configurations on ``cfg`` and all layers' pixels on ``i`` (NHWC raster,
``in_lanes`` channels per beat), back to back. Monitor: every window on ``o``. Scoreboard:
an independent NumPy model — the input padded with its zero point (pad split of
:func:`mnaccel.golden.ops.compute_padding`) and sliced at every output position — compared
whole, per layer; a mismatch names the layer, output position, channel, tap and both values.

Parameters (``bench_params()``): ``block`` (the LineBuffer keyword arguments), ``layers``
(list of ``{"h", "w", "c", "k", "stride", "padding", "zp", "seed"}``), ``bubble``,
``backpressure``, ``seed``, ``extremes`` (fraction of input values set to −128/127).

Records ``windows`` (received), ``spans`` (per layer: cycles from its first to its last
window) and ``expected_spans`` (the same from ``LineBuffer.frame_cycles``).
"""

# (First line: blocks are also built only to query their timing models.)

from __future__ import annotations

import cocotb
import numpy as np
from amaranth.hdl import signed
from amaranth.lib import data

from mnaccel.golden.ops import compute_padding
from mnaccel.hw.line_buffer import LineBuffer, Padding, layer_config_layout, window_layout
from mnaccel.sim.benches.common import (
    StreamSink,
    StreamSource,
    bench_params,
    pack,
    record,
    reset,
    start_clock,
    unpack,
)


def random_input(rng, shape, extremes: float) -> np.ndarray:
    """int8 data with a fraction ``extremes`` of the values at −128 or 127."""
    x = rng.integers(-128, 128, size=shape, dtype=np.int64)
    hit = rng.random(shape) < extremes
    x[hit] = rng.choice([-128, 127], size=int(hit.sum()))
    return x.astype(np.int8)


def reference_windows(x, k, stride, padding, zp):
    """``win[oy, ox, ky, kx, c]``: the window taps of every output position."""
    h, w, _ = x.shape
    oh, pt, pb = compute_padding(h, k, stride, padding)
    ow, pl, pr = compute_padding(w, k, stride, padding)
    xp = np.pad(x.astype(np.int64), ((pt, pb), (pl, pr), (0, 0)), constant_values=zp)
    win = np.empty((oh, ow, k, k, x.shape[2]), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            win[:, :, ky, kx, :] = xp[ky:ky + (oh - 1) * stride + 1:stride,
                                      kx:kx + (ow - 1) * stride + 1:stride, :]
    return win


@cocotb.test()
async def windows(dut):
    p = bench_params()
    kw = p["block"]
    block = LineBuffer(**kw)
    lanes, in_lanes, kmax = block.lanes, block.in_lanes, block.max_kernel
    cfg_layout = layer_config_layout(block.max_width, block.max_channels)
    win_layout = window_layout(lanes, kmax, block.max_channels)
    in_layout = data.ArrayLayout(signed(8), in_lanes)

    start_clock(dut.clk)
    await reset(dut)

    configs, beats, expected = [], [], []
    for n, layer in enumerate(p["layers"]):
        h, w, c, k, s, pad, zp = (layer[key] for key in ("h", "w", "c", "k", "stride",
                                                         "padding", "zp"))
        block.check_layer(h, w, c, k, s, pad)
        rng = np.random.default_rng(layer.get("seed", n))
        x = random_input(rng, (h, w, c), p.get("extremes", 0.1))
        configs.append(pack(cfg_layout, {
            "height": h, "width": w, "channels": c, "kernel": k, "stride": s,
            "padding": Padding[pad], "zero_point": zp}))
        beats += [pack(in_layout, [int(v) for v in x[yy, xx, g * in_lanes:(g + 1) * in_lanes]])
                  for yy in range(h) for xx in range(w) for g in range(c // in_lanes)]
        expected.append(reference_windows(x, k, s, pad, zp))

    sink = StreamSink(dut, "o", dut.clk, backpressure=p.get("backpressure", 0.0),
                      seed=p.get("seed", 0) + 1)
    cfg_src = StreamSource(dut, "cfg", dut.clk, bubble=p.get("bubble", 0.0),
                           seed=p.get("seed", 0) + 2)
    src = StreamSource(dut, "i", dut.clk, bubble=p.get("bubble", 0.0), seed=p.get("seed", 0) + 3)
    cocotb.start_soon(cfg_src.send(configs))
    cocotb.start_soon(src.send(beats))

    spans, expected_spans, total = [], [], 0
    for n, (layer, ref) in enumerate(zip(p["layers"], expected, strict=True)):
        oh, ow, k, _, c = ref.shape
        groups = c // lanes
        count = oh * ow * groups
        words = await sink.recv(count)
        cycles = sink.cycles[total:total + count]
        total += count
        got = np.empty((oh, ow, groups, k, k, lanes), dtype=np.int64)
        for idx, word in enumerate(words):
            win = unpack(win_layout, word)
            oy, rest = divmod(idx, ow * groups)
            ox, g = divmod(rest, groups)
            flags = (win["group"], win["kernel5"], win["first"], win["last"])
            want = (g, int(k == 5), int(idx == 0), int(idx == count - 1))
            assert flags == want, (
                f"layer {n} {layer}: window {idx} (oy={oy}, ox={ox}, group {g}): "
                f"(group, kernel5, first, last) = {flags}, expected {want}")
            got[oy, ox, g] = np.array(win["taps"])[:k, :k, :]
        want = ref.reshape(oh, ow, k, k, groups, lanes).transpose(0, 1, 4, 2, 3, 5)
        if not np.array_equal(got, want):
            oy, ox, g, ky, kx, lane = np.argwhere(got != want)[0]
            raise AssertionError(
                f"layer {n} {layer}: output ({oy}, {ox}) channel {g * lanes + lane} tap "
                f"({ky}, {kx}): got {got[oy, ox, g, ky, kx, lane]}, expected "
                f"{want[oy, ox, g, ky, kx, lane]}")
        spans.append(cycles[-1] - cycles[0])
        first, last = block.frame_cycles(layer["h"], layer["w"], layer["c"], layer["k"],
                                         layer["stride"], layer["padding"])
        expected_spans.append(last - first)
    await cocotb.triggers.ClockCycles(dut.clk, 20)
    assert sink.pending == 0, f"{sink.pending} windows more than the layers have"
    record(windows=total, spans=spans, expected_spans=expected_spans)
