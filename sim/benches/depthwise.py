# amaranth: UnusedElaboratable=no
"""Bench of :class:`mnaccel.hw.depthwise.DepthwiseEngine` (line buffer → depthwise array).

Per layer: the weights on ``w`` (:func:`~mnaccel.hw.depthwise.weight_beats`), then the
configuration on ``cfg`` and the pixels on ``i``; every accumulator vector on ``o`` is
checked against :func:`mnaccel.golden.ops.depthwise_conv2d_acc` plus the zero-point term
the hardware keeps (``Σx·w = Σ(x − zp)·w + zp·Σw``, padded taps being ``zp``), the whole
layer at once; a mismatch names the layer, output position, channel and both values.

Parameters: ``block`` (DepthwiseEngine keyword arguments), ``layers`` (``{"h", "w", "c",
"k", "stride", "padding", "zp", "seed"}``), ``bubble``, ``backpressure``, ``seed``,
``extremes``. Records ``outputs``, ``spans`` (cycles from the first to the last output of
each layer) and ``expected_spans`` (from ``DepthwiseEngine.frame_cycles``).
"""

# (First line: blocks are also built only to query their timing models.)

from __future__ import annotations

import cocotb
import numpy as np
from amaranth.hdl import signed
from amaranth.lib import data

from mnaccel.golden.ops import depthwise_conv2d_acc
from mnaccel.hw.depthwise import DepthwiseEngine, output_layout, weight_beats, weight_layout
from mnaccel.hw.line_buffer import Padding, layer_config_layout
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
from mnaccel.sim.benches.line_buffer import random_input


@cocotb.test()
async def accumulators(dut):
    p = bench_params()
    block = DepthwiseEngine(**p["block"])
    lb, arr = block.line_buffer, block.array
    lanes, in_lanes = lb.lanes, lb.in_lanes
    cfg_layout = layer_config_layout(lb.max_width, lb.max_channels)
    in_layout = data.ArrayLayout(signed(8), in_lanes)
    w_layout = weight_layout(lanes, arr.kernel, arr.max_kernel, arr.max_channels)
    o_layout = output_layout(lanes, arr.max_channels)
    seed, bubble = p.get("seed", 0), p.get("bubble", 0.0)

    start_clock(dut.clk)
    await reset(dut)
    sink = StreamSink(dut, "o", dut.clk, backpressure=p.get("backpressure", 0.0), seed=seed + 1)
    cfg_src = StreamSource(dut, "cfg", dut.clk, bubble=bubble, seed=seed + 2)
    src = StreamSource(dut, "i", dut.clk, bubble=bubble, seed=seed + 3)
    w_src = StreamSource(dut, "w", dut.clk, bubble=bubble, seed=seed + 4)

    spans, expected_spans, total = [], [], 0
    for n, layer in enumerate(p["layers"]):
        h, w, c, k, s, pad, zp = (layer[key] for key in ("h", "w", "c", "k", "stride",
                                                         "padding", "zp"))
        lb.check_layer(h, w, c, k, s, pad)
        rng = np.random.default_rng(layer.get("seed", n))
        x = random_input(rng, (h, w, c), p.get("extremes", 0.1))
        wt = random_input(rng, (k, k, c), p.get("extremes", 0.1))

        await w_src.send([pack(w_layout, beat) for beat in weight_beats(wt, lanes, arr.kernel)])
        cfg_task = cocotb.start_soon(cfg_src.send([pack(cfg_layout, {
            "height": h, "width": w, "channels": c, "kernel": k, "stride": s,
            "padding": Padding[pad], "zero_point": zp})]))
        data_task = cocotb.start_soon(src.send([
            pack(in_layout, [int(v) for v in x[yy, xx, g * in_lanes:(g + 1) * in_lanes]])
            for yy in range(h) for xx in range(w) for g in range(c // in_lanes)]))

        golden = depthwise_conv2d_acc(x[None], wt[None], input_zp=zp, stride=s,
                                      padding=pad)[0]
        want = golden + zp * wt.astype(np.int64).sum(axis=(0, 1))
        oh, ow, _ = want.shape
        groups = c // lanes
        count = oh * ow * groups
        words = await sink.recv(count, timeout_cycles=10_000 + 20 * count * k * k)
        cycles = sink.cycles[total:total + count]
        total += count
        got = np.empty((oh, ow, c), dtype=np.int64)
        for idx, word in enumerate(words):
            out = unpack(o_layout, word)
            oy, rest = divmod(idx, ow * groups)
            ox, g = divmod(rest, groups)
            flags = (out["group"], out["first"], out["last"])
            expect = (g, int(idx == 0), int(idx == count - 1))
            assert flags == expect, (
                f"layer {n} {layer}: output {idx} (oy={oy}, ox={ox}, group {g}): "
                f"(group, first, last) = {flags}, expected {expect}")
            got[oy, ox, g * lanes:(g + 1) * lanes] = out["acc"]
        if not np.array_equal(got, want):
            oy, ox, ch = np.argwhere(got != want)[0]
            raise AssertionError(
                f"layer {n} {layer}: output ({oy}, {ox}) channel {ch}: got {got[oy, ox, ch]}, "
                f"expected {want[oy, ox, ch]}")
        # A VALID layer's last rows/columns may follow its last output: finish sending
        # before the next layer's weights (one driver per stream at a time).
        await cfg_task
        await data_task
        spans.append(cycles[-1] - cycles[0])
        first, last = block.frame_cycles(h, w, c, k, s, pad)
        expected_spans.append(last - first)
    await cocotb.triggers.ClockCycles(dut.clk, 20)
    assert sink.pending == 0, f"{sink.pending} outputs more than the layers have"
    record(outputs=total, spans=spans, expected_spans=expected_spans)
