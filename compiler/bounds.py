# amaranth: UnusedElaboratable=no
# (Pointwise and DepthwiseArray are built only for their timing properties.)
"""Lower bounds on a plan's cycles: what no schedule on this hardware can beat.

The cycle model (:mod:`mnaccel.compiler.cycle_model`) predicts what the scheduler does; this
module answers the question before it — how good *could* a step be on the configuration's
blocks if every overhead (setup, fill, drain, step boundaries, DRAM latency) vanished? Each
step is bounded by the busiest of the resources it must use, each at its full rate:

``pw``
    The pointwise array: one beat per cycle, ``J·K`` beats per output pixel, and a tile of
    ``P`` pixels cannot take fewer cycles than loading its weights
    (:attr:`~mnaccel.hw.pointwise.Pointwise.weight_load_cycles`) — the classifier's one
    pixel makes it weight-load bound.
``dw``
    The depthwise array: ``ceil(C/dw_lanes)`` windows of ``passes`` cycles per output pixel.
``line buffer``
    Its input beats, ``ceil(C/lb_in_lanes)`` per input pixel (four input pixels per output
    pixel at stride 2).
``rq``
    The output requantizer's ``rq_lanes`` channels per cycle.
``read`` / ``write``
    The external-memory bytes of the step (as the cycle model counts them) at
    ``axi_data_width/8`` bytes per cycle on each channel.

The bound of the plan is the sum over its steps (steps run one after the other), and the
*utilization ceiling* ``MACs ÷ (bound × multipliers)`` is the best MAC utilization any
scheduler could reach with these blocks: when it is below a target, the target needs other
blocks, not a better schedule. ``python -m mnaccel.compiler.bounds MODEL [PRESET...]``
prints the per-step table (docs/architecture.md, "Utilization ceiling").
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from mnaccel.compiler.cycle_model import model
from mnaccel.compiler.plan import Plan
from mnaccel.hw.depthwise import DepthwiseArray
from mnaccel.hw.descriptor import Opcode
from mnaccel.hw.pointwise import Pointwise

__all__ = ["StepBound", "bounds", "ceiling"]


@dataclass(frozen=True)
class StepBound:
    """The per-resource cycle bounds of one step and the binding one."""

    name: str
    op: str
    macs: int
    #: Resource name → the cycles that resource needs at its full rate.
    resources: dict

    @property
    def cycles(self) -> int:
        """The step's lower bound: its busiest resource."""
        return max(self.resources.values())

    @property
    def bound(self) -> str:
        """The name of the busiest resource."""
        return max(self.resources, key=self.resources.get)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def bounds(plan: Plan) -> list[StepBound]:
    """The lower bound of every step of ``plan`` (see the module docstring)."""
    cfg = plan.config
    axi = cfg.axi_data_width // 8
    pw = Pointwise(rows=cfg.pw_rows, cols=cfg.pw_cols, acc_depth=cfg.pw_acc_depth,
                   weight_rows=cfg.pw_weight_rows)
    dwa = DepthwiseArray(lanes=cfg.dw_lanes, kernel=cfg.dw_kernel, max_kernel=cfg.max_kernel,
                         max_channels=cfg.lb_max_channels)
    # The cycle model's byte counts are exact (they are what the compiler lays out); its
    # cycle counts are not used here.
    traffic = {s.name: s for s in model(plan)}
    out = []
    for step in plan.steps:
        op = step.opcode
        res: dict[str, int] = {}
        t = traffic[step.name]
        res["read"] = _ceil(t.dram_read_bytes, axi)
        res["write"] = _ceil(t.dram_write_bytes, axi)
        # (DW: K = 1, one identity tile per output chunk.)
        beats = sum(step.j_chunks * step.k_chunks * max(n, pw.weight_load_cycles)
                    for _, n in step.tiles())
        res["pw"] = beats
        res["rq"] = _ceil(step.pixels * step.j_chunks * cfg.pw_cols, cfg.rq_lanes)
        if op in (Opcode.DW_PW, Opcode.DW, Opcode.CONV0):
            in_c = plan.storage(step.input).c_stride if op is Opcode.CONV0 else step.in_c
            res["line buffer"] = step.in_h * step.in_w * _ceil(in_c, cfg.lb_in_lanes)
        if op in (Opcode.DW_PW, Opcode.DW):
            # A DW_PW step's pointwise part keeps the dw output's map: out_h × out_w.
            res["dw"] = (step.out_h * step.out_w * _ceil(step.in_c, cfg.dw_lanes)
                         * dwa.passes(step.kernel))
        out.append(StepBound(step.name, op.name, t.macs, res))
    return out


def ceiling(plan: Plan) -> dict:
    """Totals of :func:`bounds`: MACs, bound cycles, multipliers, utilization ceiling."""
    steps = bounds(plan)
    macs = sum(s.macs for s in steps)
    cycles = sum(s.cycles for s in steps)
    mults = plan.config.multipliers
    return {"macs": macs, "cycles": cycles, "multipliers": mults,
            "utilization": macs / (cycles * mults)}


def _main(argv: list[str]) -> int:
    from mnaccel.compiler.plan import plan as make_plan
    from mnaccel.golden.errors import UserError
    from mnaccel.golden.model import load_model
    from mnaccel.hw.config import DEFAULT_PRESET, preset

    if not argv:
        print("usage: python -m mnaccel.compiler.bounds MODEL [PRESET ...]", file=sys.stderr)
        return 2
    try:
        graph = load_model(argv[0], calibrate=False)
        plans = {name: make_plan(graph, preset(name)) for name in argv[1:] or [DEFAULT_PRESET]}
    except (UserError, ValueError) as exc:
        print(f"mnaccel.compiler.bounds: {exc}", file=sys.stderr)
        return 2
    for name, p in plans.items():
        steps = bounds(p)
        total = ceiling(p)
        kinds = sorted({k for s in steps for k in s.resources})
        print(f"\n{graph.name} on {name} ({total['multipliers']} multipliers)\n")
        print("| step | op | MACs | " + " | ".join(kinds) + " | bound | by |")
        print("|---" * (len(kinds) + 5) + "|")
        for s in steps:
            cells = " | ".join(f"{s.resources[k]:,}" if k in s.resources else "—"
                               for k in kinds)
            print(f"| {s.name} | {s.op} | {s.macs:,} | {cells} | {s.cycles:,} | {s.bound} |")
        print(f"\n**{total['cycles']:,} cycles at best: utilization ceiling "
              f"{total['utilization']:.1%}** ({total['macs']:,} MACs)")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
