"""Bench for :class:`mnaccel.hw.pointwise.Pointwise`: 1×1 convolution tiles against NumPy.

The driver sends a sequence of *jobs* — one pixel tile × one output-channel tile each, with
``K`` input-channel chunks of ``rows`` channels and ``P`` pixels — as the block's usage
contract says: per chunk one weight tile on ``w`` and ``P`` activation beats on ``i``. The
scoreboard compares every output sum, in order, with the golden model's accumulators of the
same int8 data (a 1×1 convolution over a pixel tile is a fully connected layer:
:func:`mnaccel.golden.ops.fully_connected_acc` with input zero point 0, as the compiler folds
the zero point into the bias), and the flags and addresses with what was sent.

Parameters (``bench_params()``):

``rows``, ``cols``, ``acc_depth``, ``weight_rows`` (int)
    The block's size and weight rows per ``w`` beat (must match the Verilog).
``latency`` (int)
    The block's documented latency; the bench checks it when there is no backpressure.
``mode`` (str)
    ``"random"``: random jobs (``K`` in 1..4, ``P`` in 1..acc_depth, one job filling the
    whole accumulator buffer, one single-pixel job, extreme-value jobs, random addresses).
    ``"throughput"``: long jobs with ``P >= rows`` (including ``P == rows``, the documented
    minimum) run without bubbles or backpressure; the bench asserts one ``i`` beat per cycle.
``jobs`` (int)
    Number of jobs.
``bubble``, ``w_bubble``, ``backpressure`` (float)
    Idle probability of the ``i`` and ``w`` sources, stall probability of the ``o`` sink.
``seed`` (int)
    Seed of data and handshake patterns.

Records ``beats``, ``weight_tiles``, ``outputs``, ``input_cycles`` (cycles from the first
to the last ``i`` transfer, both included), ``inputs_per_cycle``, ``macs``,
``macs_per_cycle`` and, without backpressure, ``latency`` (cycles from each output's last
``i`` beat to its ``o`` transfer; all equal).
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from mnaccel.golden.ops import fully_connected_acc
from mnaccel.hw.pointwise import input_layout, output_layout, weight_layout
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

_EXTREMES = np.array([-128, 127, -127, -1, 0, 1])


def _int8(rng, shape, flavour):
    if flavour == "max":  # (-128)·(-128) everywhere: the largest sum
        return np.full(shape, -128)
    if flavour == "min_x":
        return np.full(shape, -128)
    if flavour == "min_w":
        return np.full(shape, 127)
    values = rng.integers(-128, 128, size=shape)
    # Sprinkle extremes so every job exercises the corners of the multiplier.
    mask = rng.random(shape) < 0.2
    values[mask] = rng.choice(_EXTREMES, size=int(mask.sum()))
    return values


def _jobs(p, rng):
    rows, cols, depth = p["rows"], p["cols"], p["acc_depth"]
    n = p.get("jobs", 6)
    jobs = []
    for j in range(n):
        if p["mode"] == "throughput":
            # P >= rows hides each weight load; the first two jobs sit exactly on the bound.
            pixels = rows if j < 2 else int(rng.integers(rows, depth + 1))
            chunks = int(rng.integers(1, 4))
            flavour = ("x", "w")
        else:
            special = {0: (depth, 3), 1: (1, 4), 2: (depth, 2), 3: (min(3, depth), 2)}
            pixels, chunks = special.get(
                j, (int(rng.integers(1, depth + 1)), int(rng.integers(1, 5)))
            )
            flavour = {2: ("max", "max"), 3: ("min_x", "min_w")}.get(j, ("x", "w"))
        x = _int8(rng, (pixels, chunks * rows), flavour[0])
        w = _int8(rng, (chunks * rows, cols), flavour[1])
        # A permutation for a full buffer, a random start for sequential addresses, or a
        # random sample: the block must not care which.
        kind = int(rng.integers(3))
        if pixels == depth or kind == 0:
            addrs = rng.permutation(depth)[:pixels]
        elif kind == 1:
            addrs = (int(rng.integers(depth)) + np.arange(pixels)) % depth
        else:
            addrs = rng.choice(depth, size=pixels, replace=False)
        jobs.append({"x": x, "w": w, "chunks": chunks, "addrs": addrs.tolist()})
    return jobs


def _streams(p, jobs):
    rows, wr = p["rows"], p.get("weight_rows", 1)
    ilay, wlay = input_layout(rows, p["acc_depth"]), weight_layout(p["cols"], wr)
    w_words, i_words, last_beat = [], [], []
    for job in jobs:
        x, w, chunks, addrs = job["x"], job["w"], job["chunks"], job["addrs"]
        pixels = len(addrs)
        for k in range(chunks):
            for r in range(0, rows, wr):
                w_words.append(pack(wlay, {"data": w[k * rows + r:k * rows + r + wr].ravel()
                                                   .tolist()}))
            for q in range(pixels):
                if k == chunks - 1:
                    last_beat.append(len(i_words))
                i_words.append(pack(ilay, {
                    "data": x[q, k * rows:(k + 1) * rows].tolist(),
                    "addr": addrs[q],
                    "first": int(k == 0),
                    "last": int(k == chunks - 1),
                    "swap": int(q == 0),
                    "out_first": int(q == 0),
                    "out_last": int(q == pixels - 1),
                }))
    return w_words, i_words, last_beat


@cocotb.test()
async def pointwise(dut):
    p = bench_params()
    cols, depth = p["cols"], p["acc_depth"]
    seed = p.get("seed", 0)
    rng = np.random.default_rng(seed)
    throughput = p["mode"] == "throughput"
    bubble = 0.0 if throughput else p.get("bubble", 0.0)
    w_bubble = 0.0 if throughput else p.get("w_bubble", bubble)
    backpressure = 0.0 if throughput else p.get("backpressure", 0.0)

    jobs = _jobs(p, rng)
    w_words, i_words, last_beat = _streams(p, jobs)
    expected = []
    for job in jobs:
        sums = fully_connected_acc(
            job["x"].astype(np.int8), job["w"].T.astype(np.int8), input_zp=0
        )
        pixels = len(job["addrs"])
        for q in range(pixels):
            expected.append((sums[q], job["addrs"][q], q == 0, q == pixels - 1))
    assert all(np.abs(e[0]).max() < 2**31 for e in expected), "test data overflows int32"

    start_clock(dut.clk)
    await reset(dut)
    sink = StreamSink(dut, "o", dut.clk, backpressure=backpressure, seed=seed + 1)
    w_src = StreamSource(dut, "w", dut.clk, bubble=w_bubble, seed=seed + 2)
    i_src = StreamSource(dut, "i", dut.clk, bubble=bubble, seed=seed + 3)
    cocotb.start_soon(w_src.send(w_words))
    cocotb.start_soon(i_src.send(i_words))
    got = await sink.recv(len(expected))

    olay = output_layout(cols, depth)
    n_job = 0
    first_of_job = 0
    for n, (word, (sums, addr, first, last)) in enumerate(zip(got, expected, strict=True)):
        if first and n:
            n_job += 1
            first_of_job = n
        out = unpack(olay, word)
        data = np.array(out["data"], dtype=np.int64)
        pixel = n - first_of_job
        if not np.array_equal(data, sums):
            c = int(np.flatnonzero(data != sums)[0])
            raise AssertionError(
                f"job {n_job} pixel {pixel} (output {n}, addr {addr}) channel {c}: "
                f"got {data[c]}, expected {sums[c]} (whole pixel: got {data.tolist()}, "
                f"expected {sums.tolist()})"
            )
        flags = (out["addr"], out["first"], out["last"])
        assert flags == (addr, int(first), int(last)), (
            f"job {n_job} pixel {pixel} (output {n}): addr/first/last {flags}, "
            f"expected {(addr, int(first), int(last))}"
        )
    for _ in range(5):  # nothing extra may follow
        await RisingEdge(dut.clk)
    assert sink.pending == 0, f"{sink.pending} output beats beyond the {len(expected)} expected"

    span = i_src.cycles[-1] - i_src.cycles[0] + 1
    macs = sum(job["x"].size * cols for job in jobs)
    values = {
        "beats": len(i_words),
        "weight_tiles": sum(job["chunks"] for job in jobs),
        "outputs": len(expected),
        "input_cycles": span,
        "inputs_per_cycle": len(i_words) / span,
        "macs": macs,
        "macs_per_cycle": macs / span,
    }
    if backpressure == 0.0:
        # Sink and sources count cycles from the same edge (all started together).
        lat = {sink.cycles[n] - i_src.cycles[b] for n, b in enumerate(last_beat)}
        assert lat == {p["latency"]}, f"latency {sorted(lat)}, documented {p['latency']}"
        values["latency"] = p["latency"]
    record(**values)
    if throughput:
        assert len(i_words) == span, (
            f"{len(i_words)} beats took {span} cycles: "
            f"{len(i_words) / span:.4f} beats per cycle, documented 1"
        )
