# amaranth: UnusedElaboratable=no
"""Bench of :class:`mnaccel.hw.depthwise.DepthwiseLayer`: int8 pixels in, int8 outputs out.

Per layer: weights on ``w`` (:func:`~mnaccel.hw.depthwise.weight_beats`), per-channel
parameters on ``p`` (:func:`~mnaccel.hw.depthwise.param_beats`: ``bias − zp_in·Σw``, M0 and
shift from :func:`mnaccel.golden.quant.conv_multipliers`, and the tie rounding of the
layer's TFLite flavour), then the configuration on ``cfg`` and the pixels on ``i``. The
whole int8 output tensor is compared with :func:`mnaccel.golden.ops.depthwise_conv2d` with
``kernel`` = the layer's flavour: ``"reference"`` loads ``round_up = 0`` for every channel,
``"optimized"`` loads :func:`mnaccel.golden.ops.optimized_ties_up` ``(C, 8)``. A mismatch
names the layer, output position, channel and both values.

Parameters: ``block`` (DepthwiseLayer keyword arguments); ``layers``, each ``{"h", "w",
"c", "k", "stride", "padding", "zp", "output_zp", "activation", "kernel", "scales",
"seed"}`` where ``scales`` is ``"random"`` (effective multipliers ~10^-3.5…10^-1.5) or
``"pow2"`` (exact powers of two 2**-2 … 2**-5 with weights in [-2, 2]: many exact
rounding ties);
``bubble``, ``backpressure``, ``seed``, ``extremes``.

Records ``outputs`` (int8 values compared), ``flavour_sensitive`` (per flavour, the number
of output elements on which the reference and optimized flavours differ: the elements
where the loaded rounding bits mattered), ``spans`` / ``expected_spans`` (cycles from the
first to the last output beat of each layer; expected from
``DepthwiseLayer.frame_cycles``) and ``row_rates`` (per layer, ``[min, max]`` over output
rows of ``(beats − 1) / cycles`` between a row's first and last beat: the sustained rate
inside rows).
"""

# (First line: blocks are also built only to query their timing models.)

from __future__ import annotations

import cocotb
import numpy as np
from amaranth.hdl import signed
from amaranth.lib import data

from mnaccel.golden.ops import depthwise_conv2d, optimized_ties_up
from mnaccel.golden.quant import activation_range, conv_multipliers
from mnaccel.hw.depthwise import (
    DepthwiseLayer,
    layer_config,
    layer_output_layout,
    param_beats,
    param_layout,
    weight_beats,
    weight_layout,
)
from mnaccel.hw.line_buffer import Padding
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


def make_layer_tensors(layer: dict, extremes: float) -> dict:
    """Input, weights, bias and scales of a layer, from its ``seed`` and ``scales`` mode."""
    h, w, c, k = layer["h"], layer["w"], layer["c"], layer["k"]
    rng = np.random.default_rng(layer["seed"])
    x = random_input(rng, (h, w, c), extremes)
    if layer["scales"] == "pow2":
        # Effective multipliers 2**-e exactly, e in 2..5: M0 = 2**30, shift = 1 - e. With
        # weights in [-2, 2] the outputs mostly stay inside int8, and one negative value in
        # 2**(e-1) is a tie of the final shift, on which the flavours differ.
        wt = rng.integers(-2, 3, size=(k, k, c)).astype(np.int8)
        input_scale = 2.0**-4
        weight_scales = 2.0 ** -rng.integers(0, 2, size=c).astype(np.float64)
        output_scale = input_scale * 2.0 ** int(rng.integers(2, 5))
        bias = rng.integers(-300, 301, size=c)
    else:
        wt = random_input(rng, (k, k, c), extremes)
        wt[wt == -128] = -127  # TFLite's symmetric int8 weights
        input_scale = float(rng.uniform(0.005, 0.05))
        weight_scales = rng.uniform(0.002, 0.02, size=c)
        # |acc| reaches ~2·10**4: effective multipliers of ~10**-3.5 … 10**-1.5 (times the
        # spread of the weight scales) put the outputs anywhere in int8, clamped or not.
        ratio = 10 ** rng.uniform(-3.5, -1.5)
        output_scale = float(input_scale * np.median(weight_scales) / ratio)
        bias = rng.integers(-(2**15), 2**15, size=c)
        bias[rng.random(c) < 0.1] = rng.choice([-(2**24), 2**24])
    return dict(x=x, wt=wt, bias=bias, input_scale=input_scale, weight_scales=weight_scales,
                output_scale=output_scale)


def golden_output(layer: dict, t: dict, kernel: str) -> np.ndarray:
    act_args = dict(input_scale=t["input_scale"], input_zp=layer["zp"],
                    weight_scales=t["weight_scales"], output_scale=t["output_scale"],
                    output_zp=layer["output_zp"], stride=layer["stride"],
                    padding=layer["padding"], activation=layer["activation"], kernel=kernel)
    return depthwise_conv2d(t["x"][None], t["wt"][None], t["bias"], **act_args)[0].astype(
        np.int64)


def hardware_params(layer: dict, t: dict, lanes: int) -> list[dict]:
    """The ``p`` beats: bias with ``zp_in·Σw`` folded in, M0, shift, rounding bits."""
    c = layer["c"]
    m0, shift = conv_multipliers(t["input_scale"], t["weight_scales"], t["output_scale"])
    folded = t["bias"] - layer["zp"] * t["wt"].astype(np.int64).sum(axis=(0, 1))
    if layer["kernel"] == "optimized":
        round_up = optimized_ties_up(c, 8)
    else:
        round_up = np.zeros(c, dtype=bool)
    return param_beats(folded, m0, shift, round_up.astype(np.int64), lanes)


@cocotb.test()
async def int8_outputs(dut):
    p = bench_params()
    block = DepthwiseLayer(**p["block"])
    lb, arr = block.engine.line_buffer, block.engine.array
    lanes, in_lanes = lb.lanes, lb.in_lanes
    cfg_layout = layer_config(lb.max_width, lb.max_channels)
    in_layout = data.ArrayLayout(signed(8), in_lanes)
    w_layout = weight_layout(lanes, arr.kernel, arr.max_kernel, arr.max_channels)
    p_layout = param_layout(lanes, arr.max_channels)
    o_layout = layer_output_layout(lanes)
    seed, bubble = p.get("seed", 0), p.get("bubble", 0.0)

    start_clock(dut.clk)
    await reset(dut)
    sink = StreamSink(dut, "o", dut.clk, backpressure=p.get("backpressure", 0.0), seed=seed + 1)
    cfg_src = StreamSource(dut, "cfg", dut.clk, bubble=bubble, seed=seed + 2)
    src = StreamSource(dut, "i", dut.clk, bubble=bubble, seed=seed + 3)
    w_src = StreamSource(dut, "w", dut.clk, bubble=bubble, seed=seed + 4)
    p_src = StreamSource(dut, "p", dut.clk, bubble=bubble, seed=seed + 5)

    spans, expected_spans, row_rates, total = [], [], [], 0
    sensitive = {"reference": 0, "optimized": 0}
    for n, layer in enumerate(p["layers"]):
        h, w, c, k, s, pad, zp = (layer[key] for key in ("h", "w", "c", "k", "stride",
                                                         "padding", "zp"))
        lb.check_layer(h, w, c, k, s, pad)
        t = make_layer_tensors(layer, p.get("extremes", 0.1))
        act_min, act_max = activation_range(layer["activation"], t["output_scale"],
                                            layer["output_zp"])
        want = golden_output(layer, t, layer["kernel"])
        other = "optimized" if layer["kernel"] == "reference" else "reference"
        sensitive[layer["kernel"]] += int((want != golden_output(layer, t, other)).sum())

        await w_src.send([pack(w_layout, b) for b in weight_beats(t["wt"], lanes, arr.kernel)])
        await p_src.send([pack(p_layout, b) for b in hardware_params(layer, t, lanes)])
        cfg_task = cocotb.start_soon(cfg_src.send([pack(cfg_layout, {
            "height": h, "width": w, "channels": c, "kernel": k, "stride": s,
            "padding": Padding[pad], "zero_point": zp, "output_zp": layer["output_zp"],
            "act_min": act_min, "act_max": act_max})]))
        x = t["x"]
        data_task = cocotb.start_soon(src.send([
            pack(in_layout, [int(v) for v in x[yy, xx, g * in_lanes:(g + 1) * in_lanes]])
            for yy in range(h) for xx in range(w) for g in range(c // in_lanes)]))

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
            flags = (out["first"], out["last"])
            expect = (int(idx == 0), int(idx == count - 1))
            assert flags == expect, (
                f"layer {n} {layer}: output {idx} (oy={oy}, ox={ox}, group {g}): "
                f"(first, last) = {flags}, expected {expect}")
            got[oy, ox, g * lanes:(g + 1) * lanes] = out["data"]
        if not np.array_equal(got, want):
            bad = np.argwhere(got != want)
            oy, ox, ch = bad[0]
            raise AssertionError(
                f"layer {n} {layer}: {len(bad)} of {got.size} outputs differ; first at "
                f"({oy}, {ox}) channel {ch}: got {got[oy, ox, ch]}, expected "
                f"{want[oy, ox, ch]} (kernel={layer['kernel']!r}, clamp [{act_min}, "
                f"{act_max}])")
        # A VALID layer's last rows/columns may follow its last output: finish sending
        # before the next layer's weights (one driver per stream at a time).
        await cfg_task
        await data_task
        spans.append(cycles[-1] - cycles[0])
        first, last = block.frame_cycles(h, w, c, k, s, pad)
        expected_spans.append(last - first)
        per_row = ow * groups
        rates = [(per_row - 1) / (cycles[r * per_row + per_row - 1] - cycles[r * per_row])
                 for r in range(oh) if per_row > 1]
        row_rates.append([min(rates), max(rates)] if rates else None)
    await cocotb.triggers.ClockCycles(dut.clk, 30)
    assert sink.pending == 0, f"{sink.pending} outputs more than the layers have"
    record(outputs=total * lanes, flavour_sensitive=sensitive, spans=spans,
           expected_spans=expected_spans, row_rates=row_rates)
