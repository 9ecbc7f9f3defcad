# amaranth: UnusedElaboratable=no
"""The cycle model's engines on hand-worked cases (tests/hw/test_accelerator.py compares it
with the RTL's cycle counters)."""

import numpy as np
import pytest

from mnaccel.compiler.cycle_model import (
    AXIRAM,
    DRAM,
    Memory,
    _Array,
    _blocks,
    lb_pixel_times,
    lb_walk,
    model,
    summary,
)
from mnaccel.compiler.plan import plan
from mnaccel.golden.graph import Graph, Layer, Op, Tensor
from mnaccel.golden.model import load_model
from mnaccel.hw.config import preset
from mnaccel.hw.line_buffer import LineBuffer


def _pw_graph(h, w, c_in, c_out, fc=False):
    shape_in, shape_out = ((1, c_in), (1, c_out)) if fc else ((1, h, w, c_in), (1, h, w, c_out))
    tensors = {"x": Tensor("x", shape_in, 0.05, 0), "y": Tensor("y", shape_out, 0.1, -3)}
    layer = Layer("fc" if fc else "pw", Op.FULLY_CONNECTED if fc else Op.CONV_2D, ("x",), "y",
                  weights=np.ones((c_out, c_in) if fc else (c_out, 1, 1, c_in), np.int8),
                  weight_scales=np.full(1 if fc else c_out, 0.01, np.float32),
                  bias=np.zeros(c_out, np.int32))
    return Graph("pw", tensors, [layer], "x", ("y",))


def _lb(in_lanes=8):
    return LineBuffer(lanes=2, in_lanes=in_lanes, max_kernel=5, max_width=16,
                      max_channels=64, max_row_bytes=1024)


@pytest.mark.parametrize("h, w, c, k, s, pad, in_lanes", [
    (9, 11, 16, 3, 1, "SAME", 8),
    (10, 12, 32, 3, 2, "SAME", 8),
    (7, 9, 8, 3, 2, "VALID", 2),
    (6, 8, 16, 5, 1, "SAME", 8),
])
def test_line_buffer_pixel_times_end_with_frame_cycles(h, w, c, k, s, pad, in_lanes):
    lb = _lb(in_lanes)
    for cpw in (1, 3):
        times = lb_pixel_times(lb, h, w, c, k, s, pad, cycles_per_window=cpw)
        assert times[-1] == lb.frame_cycles(h, w, c, k, s, pad, cycles_per_window=cpw)[1]
        assert times == sorted(times)


def test_walk_waits_for_its_input_and_its_consumer():
    lb = _lb()
    free, pops = lb_walk(lb, 6, 6, 16, 3, 1, "SAME")
    assert len(pops) == 6 * 6 * 2                       # one beat per position
    # Beat 20 arrives 100 cycles late: every pixel after it is 100 cycles later or more,
    # none before it moves.
    late = lb_walk(lb, 6, 6, 16, 3, 1, "SAME",
                   beat_ready=lambda b, _: 1000 if b == 20 else 0)[0]
    k = next(i for i, t in enumerate(free) if t > pops[20])
    assert late[:k] == free[:k]
    assert all(x >= 1000 for x in late[k:])
    # Two input positions per beat: half the waits.
    seen = []
    lb_walk(lb, 6, 6, 16, 3, 1, "SAME", beat_positions=2,
            beat_ready=lambda b, pops: seen.append((b, len(pops))) or 0)
    assert [b for b, _ in seen] == list(range(36)) and all(b == n for b, n in seen)
    # A consumer that takes pixel 3's last window only at cycle 500 holds up the gearbox.
    held = lb_walk(lb, 6, 6, 16, 3, 1, "SAME",
                   pixel_ready=lambda p, done: 500 if p == 3 else 0)[0]
    assert held[:3] == free[:3] and held[3] == 500 and held[4] > 500


def test_array_stalls_map_enabled_cycles_to_clock_cycles():
    arr = _Array(extra=1)
    arr.add_outputs(10, 4)                 # sums at enabled cycles 10 … 13
    assert [arr.wall(e) for e in (0, 9, 10, 13, 14)] == [0, 9, 11, 17, 18]
    assert arr.enabled(11) == 10 and arr.enabled(12) == 11 and arr.enabled(18) == 14
    assert arr.enabled(5, lo=7) == 7
    with pytest.raises(AssertionError):
        arr.add_outputs(12, 1)


def test_memory_settings():
    assert (AXIRAM.read_latency, AXIRAM.write_latency, AXIRAM.read_queue) == (2, 2, 2)
    assert DRAM.read_latency == 40 and DRAM.read_queue is None
    with pytest.raises(ValueError, match="read_latency must be a non-negative int"):
        Memory(read_latency=-1, write_latency=0)
    with pytest.raises(ValueError, match="read_queue must be a positive int or None"):
        Memory(read_latency=1, write_latency=1, read_queue=0)
    p = plan(_pw_graph(4, 4, 32, 16), preset("small"))
    assert model(p, dram_latency=7) == model(p, memory=Memory(read_latency=7, write_latency=7))
    with pytest.raises(ValueError, match="not both"):
        model(p, memory=AXIRAM, dram_latency=2)
    with pytest.raises(TypeError, match="memory must be a Memory"):
        model(p, memory=2)


def test_pointwise_step_counts():
    # small preset with one weight row per cycle: 8×4 array, rq_lanes 2, 64-bit AXI. A
    # 4×4×32 → 16 1×1 conv: K = 4, J = 4, 16 pixels in tiles of 8 (the first tile has
    # pw_rows = 8 pixels, the weight load's cycles).
    cfg = preset("small").replace(pw_weight_rows=1)
    b = _blocks(cfg)
    p = plan(_pw_graph(4, 4, 32, 16), cfg)
    (step,) = p.steps
    assert (step.k_chunks, step.j_chunks, step.tiles()) == (4, 4, [(0, 8), (8, 8)])
    (c,) = model(p, memory=AXIRAM)
    # The array: J·K·max(P, pw_rows) beats per tile, and one stall per output pixel per
    # chunk (pw_cols / rq_lanes = 2 requantizer beats per pixel) — but for the last
    # chunk's 8 pixels, whose sums leave the array after its last beat (the drain).
    assert b.pw.weight_load_cycles == 8 and cfg.pw_cols // cfg.rq_lanes == 2
    assert c.breakdown["pw"] == 2 * (4 * 4 * 8) + (2 * 4 - 1) * 8
    assert c.breakdown["stall"] == 0
    assert sum(c.breakdown.values()) == c.cycles
    # Bytes: the descriptor; per tile the input, the records and the weight tiles.
    assert c.dram_read_bytes == 64 + 16 * 32 + 2 * (4 * 4 * 8 * 4 + 16 * 16)
    assert c.dram_write_bytes == 16 * 16
    assert c.macs == 16 * 32 * 16
    total = summary(p, [c])
    assert total["utilization"] == c.macs / (c.cycles * cfg.multipliers)


def test_memory_latency_is_paid_on_the_critical_path():
    # A one-tile step waits for its descriptor, its input and its weights in turn, and for
    # the response to its write-back: a slower memory costs it at least that many times.
    p = plan(_pw_graph(2, 2, 32, 16), preset("small"))
    fast = model(p, memory=Memory(read_latency=0, write_latency=0))[0].cycles
    slow = model(p, memory=Memory(read_latency=30, write_latency=10))[0].cycles
    assert slow - fast >= 2 * 30 + 10


def test_one_pixel_layer_is_weight_load_bound():
    # A 1×1 map: from its first beat to its last, each of the K·J weight tiles but the
    # first (loaded before) holds the array for its load, pw_rows cycles with one weight
    # row per cycle; each chunk's one output pixel stalls it pw_cols / rq_lanes − 1 cycles
    # more (the last one's in the drain).
    one = preset("ecp5-85f").replace(pw_weight_rows=1, rq_lanes=4)
    ideal = Memory(read_latency=0, write_latency=0)      # the weights are always there
    (c,) = model(plan(_pw_graph(1, 1, 64, 32, fc=True), one), memory=ideal)
    K, J = 64 // 16, 32 // 8
    stalls = (J - 1) * (one.pw_cols // one.rq_lanes - 1)
    assert c.op == "FC" and c.bound == "pw weight load"
    assert c.breakdown["pw"] == (K * J - 1) * 16 + 1 + stalls
    # Two rows per cycle (the default preset) halve the loads; then the reads (a weight
    # tile is 8 beats, and the records) set the pace.
    (c2,) = model(plan(_pw_graph(1, 1, 64, 32, fc=True), one.replace(pw_weight_rows=2)),
                  memory=ideal)
    assert (K * J - 1) * 8 + 1 + stalls <= c2.breakdown["pw"] < c.breakdown["pw"]


def test_memory_bound_layer():
    # 32-bit AXI and a big input per MAC: the read channel sets the time.
    p = plan(_pw_graph(16, 16, 64, 4), preset("tiny"))
    (c,) = model(p, dram_latency=0)
    assert c.bound == "memory (read)"
    assert c.cycles >= -(-c.dram_read_bytes // 4)


@pytest.mark.parametrize("name", ["small", "ecp5-85f"])
def test_network_steps(name):
    # MobileNetV1 0.25/32: every step costs at least its array's beats and its setup; a
    # slower memory never makes a step faster.
    g = load_model("mobilenet_v1", alpha=0.25, resolution=32, calibrate=False)
    p = plan(g, preset(name))
    fast, slow = model(p, memory=AXIRAM), model(p)
    assert [s.name for s in fast] == [s.name for s in p.steps]
    for f, s, step in zip(fast, slow, p.steps, strict=True):
        assert s.cycles >= f.cycles, step.name
        assert sum(f.breakdown.values()) == f.cycles
        assert min(f.breakdown.values()) >= 0, (step.name, f.breakdown)
        if step.opcode.name in ("PW", "DW_PW", "CONV0", "FC"):
            beats = sum(step.j_chunks * step.k_chunks * n for _, n in step.tiles())
            assert f.breakdown["pw"] >= beats
