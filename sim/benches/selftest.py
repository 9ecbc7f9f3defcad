"""A bench for the bench infrastructure itself: any one-in, one-out stream register.

The design must have a stream input ``i`` and output ``o`` with the same payload and pass
each word through unchanged, in order. Parameters (all optional):

``n`` (int)
    Words to send (default 200).
``width`` (int)
    Payload width in bits (default 8).
``bubble``, ``backpressure`` (float)
    Input idle and output stall probabilities (default 0).
``seed`` (int)
    Seed of data, bubbles and backpressure.
``corrupt`` (bool)
    Expect one wrong word, so that the scoreboard must fail (tests the failure path).

Records ``received`` (words) and ``outputs_per_cycle`` (over the whole transfer).
"""

from __future__ import annotations

import random

import cocotb

from mnaccel.sim.benches.common import (
    StreamSink,
    StreamSource,
    bench_params,
    record,
    reset,
    start_clock,
)


@cocotb.test()
async def passthrough(dut):
    p = bench_params()
    n, width, seed = p.get("n", 200), p.get("width", 8), p.get("seed", 0)
    rng = random.Random(seed)
    start_clock(dut.clk)
    await reset(dut)
    words = [rng.getrandbits(width) for _ in range(n)]
    sink = StreamSink(dut, "o", dut.clk, backpressure=p.get("backpressure", 0.0), seed=seed + 1)
    source = StreamSource(dut, "i", dut.clk, bubble=p.get("bubble", 0.0), seed=seed + 2)
    cocotb.start_soon(source.send(words))
    got = await sink.recv(n)
    expected = list(words)
    if p.get("corrupt"):
        expected[n // 2] ^= 1
    for k, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e, f"word {k}: got {g:#x}, expected {e:#x}"
    span = sink.cycles[-1] - sink.cycles[0]
    record(received=len(got), outputs_per_cycle=(n - 1) / span if span else 0.0)
