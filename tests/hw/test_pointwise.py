# amaranth: UnusedElaboratable=no
"""Pointwise engine: cocotb bench on Verilator (bit-exact against NumPy, throughput,
latency), parameter checks, the docstring's members, ECP5 synthesis."""

import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from mnaccel.hw.config import preset
from mnaccel.hw.pe import PE
from mnaccel.hw.pointwise import Pointwise
from mnaccel.sim.runner import run_bench

BENCH = "mnaccel.sim.benches.pointwise"
PRESETS = ["tiny", "small"]
# Written from Lattice's documentation of the primitives; Yosys ships only black boxes.
ECP5_MODELS = [Path(__file__).with_name(f) for f in ("mult18x18d_model.v", "dp16kd_model.v")]


def _run(dut, name, mode, **params):
    base = {"rows": dut.rows, "cols": dut.cols, "acc_depth": dut.acc_depth,
            "weight_rows": dut.weight_rows, "latency": dut.latency, "mode": mode}
    return run_bench(dut, name=f"pointwise_{'ecp5_' if dut.ecp5 else ''}{name}", bench=BENCH,
                     params=base | params, extra_sources=ECP5_MODELS if dut.ecp5 else [])


def _bench(name, mode, **params):
    dut = Pointwise.from_config(preset(name))
    return dut, _run(dut, name, mode, **params)


def test_presets_cover_one_and_two_weight_rows_per_beat():
    assert [preset(name).pw_weight_rows for name in PRESETS] == [1, 2]


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


@pytest.mark.parametrize("mode", ["random", "throughput"])
def test_ecp5_variant_bit_exact(mode):
    """``ecp5=True`` (MULT18X18D and DP16KD primitives with their registers, enabled by
    the stall signal) simulated with models of the primitives: same sums, latency and rate.
    """
    dut = Pointwise.from_config(preset("tiny"), ecp5=True)
    stalls = {"bubble": 0.3, "backpressure": 0.4} if mode == "random" else {}
    rec = _run(dut, "tiny", mode, jobs=8, seed=11, **stalls)
    assert rec["outputs"] > 0
    if mode == "throughput":
        assert rec["inputs_per_cycle"] == dut.inputs_per_cycle == 1
        assert rec["latency"] == dut.latency


def test_ecp5_variant_forwards_around_ram_collisions():
    """One row: one- and two-pixel tiles put beats on the same accumulator entry one and
    two cycles apart, i.e. the RAM reads an entry while it is being written. The DP16KD
    model returns garbage then (the device's data is undefined), so the sums are right
    only if the accumulator forwards them."""
    dut = Pointwise(rows=1, cols=2, acc_depth=4, ecp5=True)
    rec = _run(dut, "r1c2d4", "random", jobs=12, seed=5, bubble=0.2, backpressure=0.3)
    assert rec["outputs"] > 0


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
    # Input register, the skewed grid with the PEs' product pipeline, the accumulator's
    # total, the output buffer, the output register.
    assert dut.latency == 1 + (8 + 4 - 1 + PE.PRODUCT_STAGES) + 3
    assert dut.weight_load_cycles == dut.min_tile_beats == 8
    assert dut.macs_per_cycle == 32
    two = Pointwise(rows=8, cols=4, acc_depth=64, weight_rows=2)
    assert two.weight_load_cycles == two.min_tile_beats == 4
    assert two.latency == dut.latency
    with pytest.raises(ValueError, match="weight_rows must be at most rows = 8, not 16"):
        Pointwise(rows=8, cols=4, acc_depth=64, weight_rows=16)


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
        wr = dut.weight_rows
        for r in range(0, len(w), wr):
            ctx.set(dut.w.payload.data, [int(v) for v in w[r:r + wr].ravel()])
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


@pytest.mark.parametrize(("rows", "weight_rows"), [(1, 1), (2, 2), (4, 2), (8, 4)])
def test_one_pixel_tiles_take_one_beat_per_weight_load(rows, weight_rows):
    # A one-pixel tile (the FC layer's shape) waits for its weight tile: one beat per
    # rows / weight_rows cycles. With a one-cycle load the same accumulator entry comes in
    # consecutive cycles: the read must see the write of the cycle before.
    dut = Pointwise(rows=rows, cols=2, acc_depth=2, weight_rows=weight_rows)
    rng = np.random.default_rng(rows)
    x = rng.integers(-128, 128, size=(1, 12 * rows))
    w = rng.integers(-128, 128, size=(12 * rows, 2))
    x[0, :3], w[:3] = -128, -128
    got, taken = _simulate(dut, x, w)
    assert np.diff(taken).tolist() == [dut.weight_load_cycles] * 11, taken
    np.testing.assert_array_equal(got, x @ w)


@pytest.mark.parametrize(
    ("rows", "cols", "pixels"), [(2, 1, 4), (2, 8, 4), (2, 2, 2), (1, 2, 3), (1, 2, 4), (1, 2, 5)]
)
def test_odd_shapes_match_numpy(rows, cols, pixels):
    # pixels >= rows: tiles back to back, so every beat's entry was written `pixels` beats
    # before, i.e. possibly after the accumulator read it ahead of its add (2, 3 and 4
    # beats: forwarded; 5: read from the RAM). test_one_row_one_pixel... covers 1 beat.
    dut = Pointwise(rows=rows, cols=cols, acc_depth=8)
    rng = np.random.default_rng(rows + cols + pixels)
    x = rng.integers(-128, 128, size=(pixels, 3 * rows))
    w = rng.integers(-128, 128, size=(3 * rows, cols))
    got, taken = _simulate(dut, x, w)
    np.testing.assert_array_equal(got, x @ w)
    assert np.diff(taken).tolist()[rows:] == [1] * (3 * pixels - rows - 1), taken
