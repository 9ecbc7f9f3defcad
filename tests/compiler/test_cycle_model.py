# amaranth: UnusedElaboratable=no
"""The cycle model's arithmetic on hand-worked layers."""

import pytest

from mnaccel.compiler.cycle_model import lb_pixel_times, model, summary
from mnaccel.compiler.plan import plan
from mnaccel.golden.graph import Graph, Layer, Op, Tensor
from mnaccel.hw.config import preset
from mnaccel.hw.line_buffer import LineBuffer


def _pw_graph(h, w, c_in, c_out):
    import numpy as np

    tensors = {"x": Tensor("x", (1, h, w, c_in), 0.05, 0),
               "y": Tensor("y", (1, h, w, c_out), 0.1, -3)}
    layer = Layer("pw", Op.CONV_2D, ("x",), "y",
                  weights=np.ones((c_out, 1, 1, c_in), np.int8),
                  weight_scales=np.full(c_out, 0.01, np.float32),
                  bias=np.zeros(c_out, np.int32))
    return Graph("pw", tensors, [layer], "x", ("y",))


@pytest.mark.parametrize("h, w, c, k, s, pad, in_lanes", [
    (9, 11, 16, 3, 1, "SAME", 8),
    (10, 12, 32, 3, 2, "SAME", 8),
    (7, 9, 8, 3, 2, "VALID", 2),
    (6, 8, 16, 5, 1, "SAME", 8),
])
def test_line_buffer_pixel_times_end_with_frame_cycles(h, w, c, k, s, pad, in_lanes):
    lb = LineBuffer(lanes=2, in_lanes=in_lanes, max_kernel=5, max_width=16, max_channels=64,
                    max_row_bytes=1024)
    for cpw in (1, 3):
        times = lb_pixel_times(lb, h, w, c, k, s, pad, cycles_per_window=cpw)
        assert times[-1] == lb.frame_cycles(h, w, c, k, s, pad, cycles_per_window=cpw)[1]
        assert times == sorted(times)


def test_pointwise_layer_by_hand():
    # small preset: 8×4 array, rq_lanes 2, 64-bit AXI (8 bytes/cycle). A 4×4×32 → 16 1×1
    # conv: K = 32/8 = 4, J = 16/4 = 4, 16 pixels in tiles of 8 (first tile pw_rows = 8).
    cfg = preset("small")
    p = plan(_pw_graph(4, 4, 32, 16), cfg)
    (step,) = p.steps
    assert (step.k_chunks, step.j_chunks, step.tiles()) == (4, 4, [(0, 8), (8, 8)])
    (c,) = model(p, dram_latency=40)
    # Tile: compute J·K·max(P, rows) = 4·4·8 = 128 (requantizer: 8·16/2 = 64 fewer);
    # read 40 + 8·32/8 = 72; write 8·16/8 = 16; pw latency 8+4+1 = 13, requantizer 19.
    # read0 0→72, compute0 72→200, write0 200+32=232→248;
    # read1 72→144, compute1 200→328, write1 360→376; + 40 write response = 416.
    # Setup: 40 + 64/8 = 48 (descriptor fetch).
    assert c.cycles == 48 + 416
    assert c.breakdown == {"setup": 48, "fill": 72, "drain": 416 - 328, "pw": 256,
                           "stall": 0}
    assert c.macs == 16 * 32 * 16
    assert c.dram_read_bytes == 64 + 16 * 32 + 2 * (4 * 4 * 8 * 4 + 16 * 16)
    assert c.dram_write_bytes == 16 * 16
    total = summary(p, [c])
    assert total["utilization"] == c.macs / (464 * (8 * 4 + 2 * 9))


def test_one_pixel_layer_is_weight_load_bound():
    # A 1×1 map: each of the K·J weight tiles occupies the array for pw_rows cycles.
    cfg = preset("ecp5-85f")
    p = plan(_pw_graph(1, 1, 64, 32), cfg)
    (c,) = model(p, dram_latency=0)
    assert c.op == "FC" and c.bound == "pw weight load"
    assert c.breakdown["pw"] == (64 // 16) * (32 // 8) * 16
    (c2,) = model(p, dram_latency=0, weight_rows_per_beat=2)
    assert c2.breakdown["pw"] == (64 // 16) * (32 // 8) * 8


def test_memory_bound_layer():
    # 32-bit AXI and a big input per MAC: the read channel sets the time.
    cfg = preset("tiny")
    p = plan(_pw_graph(16, 16, 64, 4), cfg)
    (c,) = model(p, dram_latency=0)
    read_beats = -(-c.dram_read_bytes // 4)
    assert c.bound == "memory (read)"
    assert c.cycles == c.breakdown["setup"] + read_beats
