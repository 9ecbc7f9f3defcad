# amaranth: UnusedElaboratable=no
"""Pointwise engine: cocotb bench on Verilator (bit-exact against NumPy, throughput,
latency), parameter checks, the docstring's members, ECP5 synthesis."""

import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from mnaccel.hw.config import preset
from mnaccel.hw.pointwise import Pointwise
from mnaccel.sim.runner import run_bench

BENCH = "mnaccel.sim.benches.pointwise"
PRESETS = ["tiny", "small"]


def _bench(name, mode, **params):
    cfg = preset(name)
    dut = Pointwise.from_config(cfg)
    base = {"rows": dut.rows, "cols": dut.cols, "acc_depth": dut.acc_depth,
            "latency": dut.latency, "mode": mode}
    return dut, run_bench(dut, name=f"pointwise_{name}", bench=BENCH, params=base | params)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize(
    ("bubble", "backpressure"), [(0.0, 0.0), (0.3, 0.0), (0.0, 0.4), (0.3, 0.4)]
)
def test_tiles_bit_exact(name, bubble, backpressure):
    seed = int(bubble * 10) + int(backpressure * 100) + len(name)
    _, rec = _bench(name, "random", jobs=8, bubble=bubble, backpressure=backpressure, seed=seed)
    assert rec["outputs"] > 0
    if bubble == backpressure == 0.0:
        # Random jobs include tiles shorter than `rows` beats, whose weight loads show.
        assert 0.0 < rec["inputs_per_cycle"] <= 1.0


@pytest.mark.parametrize("name", PRESETS)
def test_sustained_throughput_is_one_beat_per_cycle(name):
    dut, rec = _bench(name, "throughput", jobs=24, seed=3)
    print(f"pointwise {name}: {rec}")
    # Long run across many weight-tile switches: every PE busy every cycle.
    assert rec["inputs_per_cycle"] == dut.inputs_per_cycle == 1
    assert rec["macs_per_cycle"] == dut.macs_per_cycle == dut.rows * dut.cols
    assert rec["latency"] == dut.latency
    assert rec["beats"] > 20 * dut.rows


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"rows": 3, "cols": 4, "acc_depth": 16}, "rows must be a power of two, not 3"),
        ({"rows": 4, "cols": 0, "acc_depth": 16}, "cols must be a power of two, not 0"),
        ({"rows": 4, "cols": 4, "acc_depth": 24}, "acc_depth must be a power of two, not 24"),
    ],
)
def test_rejects_bad_sizes(kwargs, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        Pointwise(**kwargs)


def test_properties_follow_size():
    dut = Pointwise(rows=8, cols=4, acc_depth=64)
    assert (dut.rows, dut.cols, dut.acc_depth) == (8, 4, 64)
    assert dut.latency == 8 + 4 + 1
    assert dut.weight_load_cycles == dut.min_tile_beats == 8
    assert dut.macs_per_cycle == 32


def test_docstring_lists_the_ports():
    dut = Pointwise(rows=4, cols=4, acc_depth=16)
    documented = set(re.findall(r"^    (\w+) : (?:In|Out)\(", Pointwise.__doc__, re.M))
    assert documented == set(dut.signature.members)


def _simulate(dut, x, w):
    """One job in amaranth.sim: x (P, K·rows) int8 through weights w (K·rows, cols).

    Returns the output sums and the cycles in which ``i`` beats were taken.
    """
    rows, pixels, chunks = dut.rows, x.shape[0], x.shape[1] // dut.rows
    got, taken = [], []

    async def weights(ctx):
        ctx.set(dut.w.valid, 1)
        for row in w:
            ctx.set(dut.w.payload.data, [int(v) for v in row])
            await ctx.tick().until(dut.w.ready)
        ctx.set(dut.w.valid, 0)

    async def inputs(ctx):
        ctx.set(dut.i.valid, 1)
        cycle = 0
        for k in range(chunks):
            for q in range(pixels):
                ctx.set(dut.i.payload, {
                    "data": [int(v) for v in x[q, k * rows:(k + 1) * rows]], "addr": q,
                    "first": k == 0, "last": k == chunks - 1, "swap": q == 0,
                    "out_first": 0, "out_last": 0,
                })
                while True:
                    _, _, ready = await ctx.tick().sample(dut.i.ready)
                    cycle += 1
                    if ready:
                        taken.append(cycle)
                        break
        ctx.set(dut.i.valid, 0)

    async def outputs(ctx):
        ctx.set(dut.o.ready, 1)
        while len(got) < pixels:
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.append([payload.data[c] for c in range(dut.cols)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in (weights, inputs, outputs):
        sim.add_testbench(bench)
    sim.run_until(1e-6 * (50 + 10 * x.size))
    return np.array(got, dtype=np.int64), taken


def test_one_row_one_pixel_accumulates_back_to_back():
    # With one row a weight tile loads in one cycle, so a one-pixel tile (the FC layer's
    # shape) sends the same accumulator entry in consecutive cycles: the read must see the
    # write of the cycle before.
    dut = Pointwise(rows=1, cols=2, acc_depth=2)
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(1, 12))
    w = rng.integers(-128, 128, size=(12, 2))
    x[0, :3], w[:3] = -128, -128
    got, taken = _simulate(dut, x, w)
    assert np.diff(taken).tolist() == [1] * 11, taken
    np.testing.assert_array_equal(got, x @ w)


@pytest.mark.parametrize(("rows", "cols"), [(2, 1), (2, 8)])
def test_odd_shapes_match_numpy(rows, cols):
    dut = Pointwise(rows=rows, cols=cols, acc_depth=4)
    rng = np.random.default_rng(rows + cols)
    x = rng.integers(-128, 128, size=(4, 3 * rows))
    w = rng.integers(-128, 128, size=(3 * rows, cols))
    got, _ = _simulate(dut, x, w)
    np.testing.assert_array_equal(got, x @ w)
