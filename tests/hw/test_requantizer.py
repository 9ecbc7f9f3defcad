"""Requantizer: bit-exact against golden/ in Verilator, throughput, latency, interface."""

import gc
import inspect
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Fragment, UnusedElaboratable
from amaranth.sim import Simulator

from mnaccel.hw.config import preset
from mnaccel.hw.requantizer import Requantizer, RequantizerLane, input_layout, output_layout
from mnaccel.sim.benches.common import pack, unpack
from mnaccel.sim.benches.requantizer import beats_of, golden, make_layer, make_operands
from mnaccel.sim.runner import run_bench

# Written from Lattice's documentation of the primitive; Yosys ships only a black box.
MULT18X18D_MODEL = Path(__file__).with_name("mult18x18d_model.v")

BENCH = "mnaccel.sim.benches.requantizer"

# Two presets, one Verilator build each (plus one of the ecp5_dsp variant, below).
CONFIGS = {"tiny": preset("tiny").rq_lanes, "small": preset("small").rq_lanes}
STALLS = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.3, 0.5)]


def _run(design, **params):
    return run_bench(
        design, name=f"requantizer_l{design.lanes}", bench=BENCH,
        params={"lanes": design.lanes, **params},
    )


def _elaborated(design):
    # Designs built only to read their properties are elaborated here, so that Amaranth
    # does not warn about unused elaboratables (warnings are errors in the tests).
    Fragment.get(design, None)
    return design


@pytest.mark.parametrize(("bubble", "backpressure"), STALLS)
@pytest.mark.parametrize("config", CONFIGS)
def test_bit_exact_under_stalls(config, bubble, backpressure):
    lanes = CONFIGS[config]
    seed = 10 * list(CONFIGS).index(config) + STALLS.index((bubble, backpressure))
    rec = _run(
        Requantizer(lanes=lanes), layers=4, beats=120, seed=seed, throughput_beats=0,
        bubble=bubble, backpressure=backpressure,
    )
    assert rec["checked_results"] == 4 * 120 * lanes
    # Negative ties, where the roundings differ, met with both values of round_up.
    assert rec["ties_up"] > 0 and rec["ties_away"] > 0, rec


@pytest.mark.parametrize("config", CONFIGS)
def test_sustained_throughput_and_latency(config):
    lanes = CONFIGS[config]
    design = Requantizer(lanes=lanes)
    rec = _run(design, layers=0, throughput_beats=3000, seed=5)
    print(f"{config}: {rec}")
    assert rec["throughput_checked"] == 3000 * lanes
    assert rec["outputs_per_cycle"] == design.outputs_per_cycle
    assert rec["input_cycles"] == 3000 - 1  # a beat accepted every cycle
    assert rec["latency_cycles"] == design.latency


def test_fifo_groups_bit_exact_under_stalls():
    """5 lanes: three output FIFOs of 2, 2 and 1 lanes (``Requantizer._FIFO_GROUP_LANES``),
    the first with the flags, which must stay in step under bubbles and backpressure. About
    a minute (one Verilator build)."""
    design = Requantizer(lanes=5)
    assert -(-design.lanes // design._FIFO_GROUP_LANES) == 3
    rec = _run(design, layers=3, beats=150, seed=61, throughput_beats=600,
               bubble=0.3, backpressure=0.5)
    assert rec["checked_results"] == 3 * 150 * 5
    assert rec["throughput_checked"] == 600 * 5
    assert rec["latency_cycles"] == design.latency


def test_ecp5_dsp_variant_bit_exact():
    """``ecp5_dsp=True`` (MULT18X18D primitives) simulated with a model of the primitive.

    The DSP variant differs from the default only in stages 4-5; this proves its operand
    split, sign handling and register alignment against golden/, with stalls, and that its
    latency and throughput equal the documented ones.
    """
    design = Requantizer(lanes=2, ecp5_dsp=True)
    rec = run_bench(
        design, name="requantizer_dsp_l2", bench=BENCH, extra_sources=[MULT18X18D_MODEL],
        params=dict(lanes=design.lanes, layers=3, beats=150, seed=41, bubble=0.2,
                    backpressure=0.3, throughput_beats=600),
    )
    assert rec["checked_results"] == 3 * 150 * 2
    assert rec["ties_up"] > 0 and rec["ties_away"] > 0, rec
    assert rec["throughput_checked"] == 600 * 2
    assert rec["outputs_per_cycle"] == design.outputs_per_cycle
    assert rec["latency_cycles"] == design.latency


@pytest.mark.parametrize(("lut_products", "ecp5_dsp"), [(2, False), (2, True), (1, True)],
                         ids=["lut2", "lut2_dsp", "lut1_dsp"])
def test_lut_products_bit_exact(lut_products, ecp5_dsp):
    """Partial products from LUTs (``lut_products``), with inferred multipliers and with the
    MULT18X18D model for the rest: the same bench as above against golden/ (INT32_MIN
    operands, ties, saturation; bubbles and backpressure), latency and throughput unchanged.
    About a minute each (one Verilator build)."""
    design = Requantizer(lanes=2, ecp5_dsp=ecp5_dsp, lut_products=lut_products)
    rec = run_bench(
        design, name=f"requantizer_lut{lut_products}{'_dsp' if ecp5_dsp else ''}_l2",
        bench=BENCH, extra_sources=[MULT18X18D_MODEL] if ecp5_dsp else [],
        params=dict(lanes=design.lanes, layers=3, beats=150, seed=43 + lut_products,
                    bubble=0.2, backpressure=0.3, throughput_beats=600),
    )
    assert rec["checked_results"] == 3 * 150 * 2
    assert rec["ties_up"] > 0 and rec["ties_away"] > 0, rec
    assert rec["throughput_checked"] == 600 * 2
    assert rec["outputs_per_cycle"] == design.outputs_per_cycle
    assert rec["latency_cycles"] == design.latency


def test_lut_products_properties():
    for lut_products in (0, 1, 2):
        rq = _elaborated(Requantizer(lanes=8, lut_products=lut_products))
        assert rq.lut_products == lut_products
        assert rq.dsp_multipliers == 8 * (4 - lut_products)
        # Same pipeline whatever the multipliers are made of.
        assert rq.latency == _elaborated(Requantizer(lanes=8)).latency
        assert _elaborated(RequantizerLane(lut_products=lut_products)).latency == 17
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        for bad in (3, -1, True, 1.0, "2"):
            with pytest.raises(ValueError, match=f"lut_products must be 0, 1 or 2, not "
                                                 f"{re.escape(repr(bad))}"):
                Requantizer(lanes=2, lut_products=bad)
            with pytest.raises(ValueError, match="lut_products must be 0, 1 or 2"):
                RequantizerLane(lut_products=bad)
        gc.collect()


def test_constructor_validates_lanes():
    with warnings.catch_warnings():
        # The rejected objects were created (then __init__ raised) and are never elaborated.
        warnings.simplefilter("ignore", UnusedElaboratable)
        for bad in (0, -1, 1.5, "2", True):
            with pytest.raises(ValueError, match=re.escape(repr(bad))):
                Requantizer(lanes=bad)
        gc.collect()
    rq = _elaborated(Requantizer(lanes=3))
    assert (rq.lanes, rq.outputs_per_cycle) == (3, 3)
    with pytest.raises(AttributeError):
        rq.lanes = 4


def test_documented_members_match_signature():
    for cls, obj in ((Requantizer, Requantizer(lanes=2)), (RequantizerLane, RequantizerLane())):
        _elaborated(obj)
        doc = inspect.getdoc(cls)
        members = doc.split("Members\n-------\n")[1].split("\n\n")[0]
        documented = set()
        for line in members.splitlines():
            if line and not line.startswith(" "):
                documented |= {name.strip() for name in line.split(":")[0].split(",")}
        assert documented == set(obj.signature.members), cls.__name__


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Operands whose 16-bit halves are extreme: the corners of every partial product.
_CORNERS = [INT32_MIN, INT32_MIN + 1, -(2**16), -(2**16) + 1, -(2**15), -1, 0, 1, 2**15 - 1,
            2**15, 2**16 - 1, 2**16, 0x7FFF8000, 0x12345678, -0x789ABCDF, INT32_MAX - 1,
            INT32_MAX]


def _product_operands(rng, n):
    """Operands that expose the whole product ``x·M0``: any ``x`` and ``M0`` (corners of
    the 16-bit halves, then random), with the right shift that brings ``SRDHM(x, M0)``
    just into int8, so that its top bits and its rounding reach the output unclamped."""
    corners = [(x, mult) for x in _CORNERS for mult in _CORNERS]
    pairs = corners + [tuple(int(v) for v in rng.integers(INT32_MIN, INT32_MAX + 1, 2))
                       for _ in range(max(0, n - len(corners)))]
    acc, mult, shift = [], [], []
    for x, m0 in pairs[:n]:
        high = INT32_MAX if x == m0 == INT32_MIN else (x * m0 + 2**30) >> 31
        acc.append(x)
        mult.append(m0)
        shift.append(-min(31, max(0, (high + (high < 0)).bit_length() - 6)))
    return {"acc": np.array(acc, np.int64), "bias": np.zeros(n, np.int64),
            "multiplier": np.array(mult, np.int64), "shift": np.array(shift, np.int64),
            "round_up": rng.integers(0, 2, size=n)}


@pytest.mark.parametrize("lut_products", [0, 1, 2])
def test_amaranth_sim_matches_golden_and_latency(lut_products):
    """A quick pure-Python simulation: results, flags and latency, without Verilator; the
    bench's operand mix plus products exposed through a fitting shift (:func:`_product_operands`,
    every pair of 16-bit-half corners including INT32_MIN), for each ``lut_products``."""
    lanes = 2
    dut = Requantizer(lanes=lanes, lut_products=lut_products)
    rng = np.random.default_rng(3 + lut_products)
    zp, act_min, act_max = make_layer(rng, unclamped=True)
    ops = make_operands(rng, 150 * lanes)
    extra = _product_operands(rng, 2 * len(_CORNERS) ** 2)
    ops = {key: np.concatenate([ops[key], extra[key]]) for key in ops}
    beats = beats_of(ops, lanes, rng)
    expected = golden(ops, zp, act_min, act_max).reshape(-1, lanes)
    got, t_in, t_out = [], [], []

    async def testbench(ctx):
        ctx.set(dut.output_zp, zp)
        ctx.set(dut.act_min, act_min)
        ctx.set(dut.act_max, act_max)
        ctx.set(dut.o.ready, 1)
        sent, cycle = 0, 0
        while len(got) < len(beats):
            ctx.set(dut.i.valid, sent < len(beats))
            if sent < len(beats):
                ctx.set(dut.i.payload.as_value(), pack(input_layout(lanes), beats[sent]))
            *_, i_valid, i_ready, o_valid, o_payload = await ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.o.valid, dut.o.payload.as_value()
            )
            if i_valid and i_ready:
                t_in.append(cycle)
                sent += 1
            if o_valid:
                got.append(unpack(output_layout(lanes), o_payload))
                t_out.append(cycle)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    data = np.array([beat["data"] for beat in got])
    bad = np.argwhere(data != expected)
    assert not bad.size, [
        (f"beat {b} lane {k}: got {data[b, k]}, expected {expected[b, k]}",
         beats[b]["lanes"][k]) for b, k in bad[:5]]
    # The product operands do reach the output unclamped, mostly.
    tail = expected.reshape(-1)[-len(extra["acc"]):]
    assert np.mean((tail > -128) & (tail < 127)) > 0.9
    assert [(g["first"], g["last"]) for g in got] == [(b["first"], b["last"]) for b in beats]
    assert t_out[0] - t_in[0] == dut.latency
    assert t_out[-1] - t_out[0] == len(beats) - 1
