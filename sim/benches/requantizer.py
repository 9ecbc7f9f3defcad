"""cocotb bench of :class:`mnaccel.hw.requantizer.Requantizer` against the golden model.

Driver, monitor and an in-order scoreboard: every int8 result is compared with
:func:`mnaccel.golden.quant.requantize` on the same accumulator, bias, multiplier, shift,
tie rounding (``rounding=`` the lanes' random ``round_up`` bits), zero point and clamp; the
``first``/``last`` flags must come out with their beat.

Parameters (``bench_params()``):

``lanes`` (int)
    Lanes of the design under test.
``layers``, ``beats`` (int)
    Layers (each with its own zero point and activation clamp) and beats per layer of the
    ``scoreboard`` test; ``layers = 0`` skips it.
``bubble``, ``backpressure`` (float)
    Input idle and output stall probabilities of the ``scoreboard`` test.
``throughput_beats`` (int)
    Beats of the ``throughput`` test, a long run without bubbles or backpressure; 0 skips it.
``seed`` (int)

Records ``checked_results`` (int8 results compared by ``scoreboard``), ``ties_up`` and
``ties_away`` (results among them on which the two tie roundings disagree, checked with
``round_up`` 1 and 0 respectively: proof that both modes met real ties), and from
``throughput``: ``outputs_per_cycle`` (int8 results per cycle between the first and the last
output), ``latency_cycles`` (first input transfer to first output transfer) and
``throughput_checked`` (results compared).
"""

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from mnaccel.golden.quant import (
    INT32_MAX,
    INT32_MIN,
    activation_range,
    multiply_by_quantized_multiplier,
    requantize,
    wrap_int32,
)
from mnaccel.hw.requantizer import input_layout, output_layout
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

PERIOD_NS = 10


def make_operands(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``n`` lanes' worth of (acc, bias, multiplier, shift, round_up), five kinds of case.

    random: TFLite-like values (multiplier in [2**30, 2**31), modest shifts); wide: anything
    in range; extreme: the int32 and shift boundaries; tie: a high product exactly halfway
    between two multiples of 2**-shift (tests RoundingDivideByPOT's tie rule); saturate:
    ``INT32_MIN * INT32_MIN`` in SaturatingRoundingDoublingHighMul. ``round_up`` (the tie
    rounding of the final shift) is a random bit per lane, independent of the kind, so that
    ties of both signs meet both roundings.
    """
    acc = np.zeros(n, np.int64)
    bias = np.zeros(n, np.int64)
    mult = np.zeros(n, np.int64)
    shift = np.zeros(n, np.int64)
    # Ties get a large share: only a negative tie tells the two roundings apart.
    kind = rng.choice(5, size=n, p=[0.35, 0.1, 0.15, 0.3, 0.1])
    for k in range(n):
        if kind[k] == 0:  # random, TFLite-like
            acc[k] = rng.normal(0, 2.0 ** rng.integers(4, 24))
            bias[k] = rng.integers(-(2**16), 2**16)
            mult[k] = rng.integers(2**30, 2**31)
            shift[k] = rng.integers(-15, 2)
        elif kind[k] == 1:  # wide: anything the golden model accepts
            acc[k] = rng.integers(INT32_MIN, INT32_MAX + 1)
            bias[k] = rng.integers(INT32_MIN, INT32_MAX + 1)
            mult[k] = rng.integers(INT32_MIN, INT32_MAX + 1)
            shift[k] = rng.integers(-31, 32)
        elif kind[k] == 2:  # extremes
            acc[k] = rng.choice([INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX])
            bias[k] = rng.choice([INT32_MIN, -1, 0, 1, INT32_MAX])
            mult[k] = rng.choice(
                [0, 1, 2**30, 2**30 + 1, 2**31 - 2, 2**31 - 1, -1, INT32_MIN, INT32_MIN + 1]
            )
            shift[k] = rng.choice([-31, -30, -16, -1, 0, 1, 16, 30, 31])
        elif kind[k] == 3:  # ties: with M0 = 2**30, high = (x + 1) >> 1, so x = 2h - 1 gives h
            r = int(rng.integers(1, 31))
            # A small quotient, so that the tie shows in the output and is not clamped away.
            q = int(rng.integers(0, min(100, max(1, (2**29 >> r) - 1))))
            h = (q << r) + (1 << (r - 1))
            h = h if rng.random() < 0.5 else -h
            x = 2 * h - 1
            bias[k] = rng.integers(-1000, 1000)
            acc[k] = x - bias[k]
            mult[k] = 2**30
            shift[k] = -r
        else:  # INT32_MIN * INT32_MIN saturates; reach INT32_MIN via the bias or a shift
            if rng.random() < 0.5:
                acc[k], bias[k], shift[k] = INT32_MIN, 0, -int(rng.integers(0, 32))
            else:
                acc[k], bias[k], shift[k] = 1, 0, 31
            mult[k] = INT32_MIN
    acc = np.clip(acc, INT32_MIN, INT32_MAX)
    round_up = rng.integers(0, 2, size=n)
    return {"acc": acc, "bias": bias, "multiplier": mult, "shift": shift, "round_up": round_up}


def golden(ops: dict[str, np.ndarray], zp: int, act_min: int, act_max: int) -> np.ndarray:
    """The golden int8 results of ``ops``, each lane with its own tie rounding."""
    return requantize(
        ops["acc"], ops["bias"], ops["multiplier"], ops["shift"], zp, act_min, act_max,
        rounding=ops["round_up"].astype(bool),
    )


def rounding_sensitive(ops: dict[str, np.ndarray]) -> np.ndarray:
    """Lanes whose scaled value the two tie roundings round differently (negative ties)."""
    x = wrap_int32(ops["acc"] + ops["bias"])
    args = (x, ops["multiplier"], ops["shift"])
    return multiply_by_quantized_multiplier(*args, "away") != multiply_by_quantized_multiplier(
        *args, "up"
    )


def make_layer(rng: np.random.Generator, unclamped: bool = False) -> tuple[int, int, int]:
    """A layer's (output_zp, act_min, act_max), including zero points -128 and 127.

    ``unclamped`` gives activation NONE and a zero point near 0, so that results of either
    sign reach the output: an extreme zero point or a RELU clamps half of them away.
    """
    if unclamped:
        return int(rng.integers(-20, 21)), -128, 127
    zp = int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))
    activation = str(rng.choice(["NONE", "RELU", "RELU6"]))
    scale = float(10 ** rng.uniform(-3, 0))
    act_min, act_max = activation_range(activation, scale, zp)
    return zp, act_min, act_max


def beats_of(ops: dict[str, np.ndarray], lanes: int, rng: np.random.Generator) -> list[dict]:
    n = len(ops["acc"]) // lanes
    flags = rng.integers(0, 2, size=(n, 2))
    return [
        {
            "lanes": [
                {key: int(ops[key][b * lanes + k]) for key in ops} for k in range(lanes)
            ],
            "first": int(flags[b, 0]),
            "last": int(flags[b, 1]),
        }
        for b in range(n)
    ]


def check(got: list[dict], beats: list[dict], expected: np.ndarray, where: str, layer) -> int:
    """Compare the received beats with the golden results; return results compared."""
    zp, act_min, act_max = layer
    flat = np.array([beat["data"] for beat in got], dtype=np.int64)
    exp = expected.reshape(flat.shape)
    bad = np.argwhere(flat != exp)
    messages = []
    for b, k in bad[:5]:
        lane = beats[b]["lanes"][k]
        messages.append(
            f"{where} beat {b} lane {k}: got {flat[b, k]}, expected {exp[b, k]} "
            f"({lane}, zp={zp}, clamp=[{act_min}, {act_max}])"
        )
    for b, (g, beat) in enumerate(zip(got, beats, strict=True)):
        if (g["first"], g["last"]) != (beat["first"], beat["last"]):
            messages.append(
                f"{where} beat {b}: flags first/last {g['first']}/{g['last']}, "
                f"expected {beat['first']}/{beat['last']}"
            )
            break
    assert not messages, f"{len(bad)} mismatching results; first ones:\n" + "\n".join(messages)
    return flat.size


async def _run_layer(dut, source, sink, lanes, layer, ops, rng, where) -> int:
    zp, act_min, act_max = layer
    dut.output_zp.value = zp
    dut.act_min.value = act_min
    dut.act_max.value = act_max
    beats = beats_of(ops, lanes, rng)
    layout_in, layout_out = input_layout(lanes), output_layout(lanes)
    sender = cocotb.start_soon(source.send([pack(layout_in, beat) for beat in beats]))
    got = [unpack(layout_out, word) for word in await sink.recv(len(beats))]
    await sender
    return check(got, beats, golden(ops, zp, act_min, act_max), where, layer)


@cocotb.test()
async def scoreboard(dut):
    """Random and extreme operands over several layers, with bubbles and backpressure."""
    p = bench_params()
    lanes, layers, n = p["lanes"], p.get("layers", 4), p.get("beats", 100)
    seed = p.get("seed", 0)
    rng = np.random.default_rng(seed)
    start_clock(dut.clk, PERIOD_NS)
    await reset(dut)
    sink = StreamSink(dut, "o", dut.clk, backpressure=p.get("backpressure", 0.0), seed=seed)
    source = StreamSource(dut, "i", dut.clk, bubble=p.get("bubble", 0.0), seed=seed + 1)
    checked = ties_up = ties_away = 0
    for layer_index in range(layers):
        # The per-layer ports change only here, with the pipeline empty (all results in).
        layer = make_layer(rng, unclamped=layer_index == 0)
        ops = make_operands(rng, n * lanes)
        checked += await _run_layer(
            dut, source, sink, lanes, layer, ops, rng, f"layer {layer_index}"
        )
        sensitive = rounding_sensitive(ops)
        ties_up += int((sensitive & (ops["round_up"] == 1)).sum())
        ties_away += int((sensitive & (ops["round_up"] == 0)).sum())
    await RisingEdge(dut.clk)
    assert sink.pending == 0, f"{sink.pending} results beyond those sent"
    record(checked_results=checked, ties_up=ties_up, ties_away=ties_away)


@cocotb.test()
async def throughput(dut):
    """A long run without stalls: outputs per cycle and latency, results still checked."""
    p = bench_params()
    lanes, n = p["lanes"], p.get("throughput_beats", 0)
    if n == 0:
        return
    rng = np.random.default_rng(p.get("seed", 0) + 100)
    start_clock(dut.clk, PERIOD_NS)
    await reset(dut)
    sink = StreamSink(dut, "o", dut.clk)
    source = StreamSource(dut, "i", dut.clk)
    layer = make_layer(rng, unclamped=True)
    ops = make_operands(rng, n * lanes)
    checked = await _run_layer(dut, source, sink, lanes, layer, ops, rng, "throughput run")
    span = sink.cycles[-1] - sink.cycles[0]
    record(
        outputs_per_cycle=lanes * (n - 1) / span,
        latency_cycles=round((sink.times[0] - source.times[0]) / PERIOD_NS),
        input_cycles=source.cycles[-1] - source.cycles[0],
        throughput_checked=checked,
    )
