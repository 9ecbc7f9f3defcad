# amaranth: UnusedElaboratable=no
# (The blocks are built here only to read their timing properties, never elaborated.)
"""Analytic cycle model of a compiled plan: the target the scheduler gateware must meet.

Every figure comes from the blocks' timing properties (``Pointwise.latency``,
``weight_load_cycles``, ``Requantizer.latency``/``outputs_per_cycle``, the line buffer's
exact position-by-position timing that ``LineBuffer.frame_cycles`` documents,
``DepthwiseArray.passes``) and the tiling plan. The schedule of a step (one descriptor) is a
three-stage pipeline over its pixel tiles with double-buffered activation and output
buffers (docs/architecture.md)::

    produce(t)  line buffer → dw array → dw requantizer → activation buffer half t%2
                (CONV0: line buffer → vector adapter; PW/POOL/FC: AXI reads)
    compute(t)  pointwise array: for j in J: for k in K: for p in P(t)
                = J·K·max(P(t), weight_load_cycles) cycles, or the output requantizer's
                P(t)·J·pw_cols / rq_lanes if that is longer
    write(t)    output buffer half t%2 → AXI write channel, P(t)·out_stride bytes

    produce(t) starts when produce(t−1) ended and compute(t−2) freed its half;
    compute(t) when produce(t) and compute(t−1) ended and write(t−2) freed its half;
    write(t)   after compute(t) plus the array's and the requantizer's latency.

Steps run one after another. A step also pays its setup: the descriptor fetch and, for a
depthwise step, loading the dw weights (one weight-memory entry per cycle) and parameter
records (one AXI beat each) — all after an external-memory read latency of
``dram_latency`` cycles. The AXI read and write channels each move ``axi_data_width/8``
bytes per cycle; a step whose reads (or writes) need more beats than its pipeline has
cycles is memory-bound and takes that many cycles instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mnaccel.compiler.plan import Plan, Step
from mnaccel.golden.table import table_rows
from mnaccel.hw.depthwise import DepthwiseArray
from mnaccel.hw.descriptor import DESCRIPTOR_BYTES, PARAM_BYTES, Opcode
from mnaccel.hw.line_buffer import LineBuffer, axis_geometry
from mnaccel.hw.pointwise import Pointwise
from mnaccel.hw.requantizer import Requantizer

__all__ = ["DRAM_LATENCY", "StepCycles", "lb_pixel_times", "model", "summary"]

#: Cycles from an AXI read request to its first data beat (a typical DDR3 controller at
#: ~200 MHz fabric clock); a keyword of :func:`model`.
DRAM_LATENCY = 40


@dataclass
class StepCycles:
    """Cycle figures of one step (descriptor); keys match issue 6's report.json."""

    name: str
    op: str
    macs: int
    cycles: int
    ideal_cycles: int
    utilization: float
    dram_read_bytes: int
    dram_write_bytes: int
    bound: str
    #: Where the cycles went: setup, fill (pointwise idle before the first tile), drain
    #: (latency and write-back after the last compute), pw (array busy, beats + exposed
    #: weight loads), stall (pointwise waiting on its producer between tiles).
    breakdown: dict[str, int] = field(default_factory=dict)


def lb_pixel_times(lb: LineBuffer, height, width, channels, kernel, stride, padding, *,
                   cycles_per_window: int = 1) -> list[int]:
    """Cycle in which each output pixel's last window leaves the line buffer (raster order).

    The same position-by-position walk as :meth:`LineBuffer.frame_cycles` (one position per
    cycle; an emitting position waits until the gearbox has sent the previous window), kept
    per output pixel; its last entry equals ``frame_cycles(...)[1]``.
    """
    lb.check_layer(height, width, channels, kernel, stride, padding)
    geo = []
    for size in (height, width):
        out, before, after = axis_geometry(size, kernel, stride, padding)
        geo.append((size + after, before - (kernel - 1), (out - 1) * stride))
    (rows, offy, maxy), (cols, offx, maxx) = geo
    gc = channels // lb.in_lanes
    m = lb.in_lanes // lb.lanes
    emit_x = [0 <= x + offx <= maxx and (x + offx) % stride == 0 for x in range(cols)]
    t, busy = 1, 0
    times = []
    for y in range(rows):
        ey = y + offy
        row = 0 <= ey <= maxy and ey % stride == 0
        for x in range(cols):
            if row and emit_x[x]:
                for _ in range(gc):
                    t = max(t, busy)
                    busy = t + m * cycles_per_window
                    t += 1
                times.append(busy)
            else:
                t += gc
    return times


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _macs(plan: Plan) -> dict[str, int]:
    return {r.name: r.mul for r in table_rows(plan.graph) if r.type in ("conv", "dw", "pw", "fc")}


def _step(plan: Plan, step: Step, macs: dict[str, int], dram_latency: int,
          weight_rows_per_beat: int, fuse_pool: bool) -> StepCycles:
    cfg = plan.config
    axi = cfg.axi_data_width // 8
    pw = Pointwise(rows=cfg.pw_rows, cols=cfg.pw_cols, acc_depth=cfg.pw_acc_depth)
    rq = Requantizer(lanes=cfg.rq_lanes)
    dw_rq = Requantizer(lanes=cfg.dw_lanes)
    lb = LineBuffer(lanes=cfg.dw_lanes, in_lanes=cfg.lb_in_lanes, max_kernel=cfg.max_kernel,
                    max_width=cfg.lb_max_width, max_channels=cfg.lb_max_channels,
                    max_row_bytes=cfg.lb_max_row_bytes)
    dwa = DepthwiseArray(lanes=cfg.dw_lanes, kernel=cfg.dw_kernel, max_kernel=cfg.max_kernel,
                         max_channels=cfg.lb_max_channels)
    info_in, info_out = plan.storage(step.input), plan.storage(step.output)
    op = step.opcode
    step_macs = sum(macs.get(layer.name, 0) for layer in step.layers)

    # --- setup: descriptor, dw weights and parameters ------------------------------------
    setup = dram_latency + _ceil(DESCRIPTOR_BYTES, axi)
    read = DESCRIPTOR_BYTES
    if op in (Opcode.DW_PW, Opcode.DW):
        passes = dwa.passes(step.kernel)
        groups = step.in_c // cfg.dw_lanes
        w_bytes = groups * passes * cfg.dw_kernel**2 * cfg.dw_lanes
        p_bytes = step.in_c * PARAM_BYTES
        read += w_bytes + p_bytes
        # Weight entries enter the array one per cycle; parameters one record per beat.
        setup += dram_latency + max(groups * passes, _ceil(w_bytes, axi)) + _ceil(p_bytes, axi)

    # --- per-tile stage durations ---------------------------------------------------------
    tiles = step.tiles() if op is not Opcode.DW else []
    produce, compute, write = [], [], []
    if op in (Opcode.DW_PW, Opcode.CONV0, Opcode.DW):
        cpw = dwa.passes(step.kernel) if op is not Opcode.CONV0 else 1
        times = lb_pixel_times(lb, step.in_h, step.in_w, step.in_c, step.kernel, step.stride,
                               step.padding, cycles_per_window=cpw)
        extra = dwa.latency + dw_rq.latency if op is not Opcode.CONV0 else 1  # adapter
        read += info_in.nbytes
        # A free-running line buffer; tile t is complete when its last pixel is.
        prev = 0
        for first, n in tiles:
            end = times[first + n - 1] + extra
            produce.append(end - prev)
            prev = end
    elif op in (Opcode.PW, Opcode.POOL, Opcode.FC):
        for _, n in tiles:
            produce.append(dram_latency + _ceil(n * info_in.c_stride, axi))
        read += info_in.nbytes
    if op is Opcode.POOL and fuse_pool:
        # The pool's sums were accumulated from the previous step's output stream; only
        # their requantization and write-back remain.
        body = (_ceil(step.j_chunks * cfg.pw_cols, rq.outputs_per_cycle) + rq.latency
                + _ceil(info_out.nbytes, axi) + dram_latency)
        return StepCycles(step.name, op.name, 0, setup + body, 0, 0.0, DESCRIPTOR_BYTES,
                          info_out.nbytes, "latency",
                          {"setup": setup, "fill": 0, "drain": body, "pw": 0, "stall": 0})
    if op is Opcode.DW:
        # dw windows → dw requantizer → output buffer → AXI writes, all streaming.
        body = times[-1] + dwa.latency + dw_rq.latency
        write_bytes = info_out.nbytes
        cycles = setup + max(body, _ceil(read, axi)) + dram_latency
        ideal = _ceil(step_macs, cfg.multipliers)
        return StepCycles(step.name, op.name, step_macs, cycles, ideal, step_macs /
                          (cycles * cfg.multipliers), read, write_bytes, "dw",
                          {"setup": setup, "fill": 0, "drain": cycles - setup - times[-1],
                           "pw": 0, "stall": times[-1]})
    wl = _ceil(pw.weight_load_cycles, weight_rows_per_beat)
    for _, n in tiles:
        beats = step.j_chunks * step.k_chunks * max(n, wl)
        rq_cycles = _ceil(n * step.j_chunks * cfg.pw_cols, rq.outputs_per_cycle)
        compute.append(max(beats, rq_cycles))
        write.append(_ceil(n * info_out.c_stride, axi))
    pw_weight_bytes = step.j_chunks * step.k_chunks * cfg.pw_rows * cfg.pw_cols
    pw_param_bytes = step.j_chunks * cfg.pw_cols * PARAM_BYTES
    if op is Opcode.POOL:
        pw_weight_bytes = 0  # identity tiles come from a constant generator
        pw_param_bytes = step.j_chunks * cfg.pw_cols * PARAM_BYTES
    read += len(tiles) * (pw_weight_bytes + pw_param_bytes)

    # --- the three-stage pipeline ---------------------------------------------------------
    p_end, c_end, w_end = [], [], []
    for t in range(len(tiles)):
        p_start = max(p_end[t - 1] if t else 0, c_end[t - 2] if t >= 2 else 0)
        p_end.append(p_start + produce[t])
        c_start = max(p_end[t], c_end[t - 1] if t else 0, w_end[t - 2] if t >= 2 else 0)
        c_end.append(c_start + compute[t])
        w_start = max(c_end[t] + pw.latency + rq.latency, w_end[t - 1] if t else 0)
        w_end.append(w_start + write[t])
    body = w_end[-1] + dram_latency          # the last write's response
    busy = sum(compute)
    fill = p_end[0]
    drain = body - c_end[-1]
    stall = body - busy - fill - drain
    write_bytes = info_out.nbytes
    read_beats, write_beats = _ceil(read, axi), _ceil(write_bytes, axi)
    bound = "pw"
    if op is Opcode.FC and busy == step.j_chunks * step.k_chunks * wl:
        bound = "pw weight load"
    if stall > busy // 10:
        bound = "dw" if op is Opcode.DW_PW else "input"
    if read_beats > body:
        body, bound = read_beats + dram_latency, "memory (read)"
    if write_beats > body:
        body, bound = write_beats + dram_latency, "memory (write)"
    cycles = setup + body
    ideal = _ceil(step_macs, cfg.multipliers)
    return StepCycles(step.name, op.name, step_macs, cycles, ideal,
                      step_macs / (cycles * cfg.multipliers), read, write_bytes, bound,
                      {"setup": setup, "fill": fill, "drain": drain, "pw": busy,
                       "stall": max(stall, 0)})


def model(plan: Plan, *, dram_latency: int = DRAM_LATENCY, weight_rows_per_beat: int = 1,
          fuse_pool: bool = False) -> list[StepCycles]:
    """Cycles of every step of ``plan``, in program order.

    Parameters
    ----------
    plan : Plan
    dram_latency : int
        Cycles from an AXI read request to its data.
    weight_rows_per_beat : int
        Weight-tile rows the pointwise array's ``w`` port takes per cycle; 1 is today's
        :class:`~mnaccel.hw.pointwise.Pointwise` (``weight_load_cycles = pw_rows``). A
        what-if for the FC layer, which is weight-load bound.
    fuse_pool : bool
        What-if: the global pool accumulates the previous step's output stream (a bank of
        int32 sums after the output requantizer), leaving only its requantization.
    """
    if weight_rows_per_beat < 1 or plan.config.pw_rows % weight_rows_per_beat:
        raise ValueError(f"weight_rows_per_beat must divide pw_rows, not "
                         f"{weight_rows_per_beat!r}")
    macs = _macs(plan)
    return [_step(plan, step, macs, dram_latency, weight_rows_per_beat, fuse_pool)
            for step in plan.steps]


def summary(plan: Plan, steps: list[StepCycles]) -> dict:
    """Whole-network totals: MACs, cycles, utilization, external-memory bytes."""
    cfg = plan.config
    macs = sum(s.macs for s in steps)
    cycles = sum(s.cycles for s in steps)
    return {
        "macs": macs,
        "cycles": cycles,
        "ideal_cycles": _ceil(macs, cfg.multipliers),
        "multipliers": cfg.multipliers,
        "utilization": macs / (cycles * cfg.multipliers),
        "dram_read_bytes": sum(s.dram_read_bytes for s in steps),
        "dram_write_bytes": sum(s.dram_write_bytes for s in steps),
    }
