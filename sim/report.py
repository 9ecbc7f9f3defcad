# amaranth: UnusedElaboratable=no
# (The depthwise array is built here only to read its passes and weight memory, never
# elaborated.)
"""Per-layer performance reports: the data behind ``mnaccel report`` and its four formats.

:func:`build_report` joins a tiling plan (:func:`mnaccel.compiler.plan.plan`), the analytic
cycle model (:func:`mnaccel.compiler.cycle_model.model`), optionally the cycles the
hardware's ``LAYER_CYCLES`` counters measured in simulation, and optionally the synthesis
and place-and-route results of the whole design (:func:`synthesize_design`) into one
dictionary, the content of ``report.json``. :func:`to_markdown`, :func:`to_csv`,
:func:`plot_cycles` and :func:`plot_roofline` render it; :func:`write_report` writes all of
them into a directory at once. docs/report.md explains every figure.

One row per *step* (descriptor): a fused ``DW_PW`` step covers a depthwise and a pointwise
layer, which share their cycles. Everything a row holds comes from the plan, the
configuration and the cycle model (or the counters): MACs from
:func:`mnaccel.golden.table.table_rows`, the depthwise array's share from the depthwise
layers and the pointwise array's from the others; on-chip buffer bytes from the step's
tiling (:func:`buffer_bytes`); external-memory bytes and the bound from the cycle model.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from mnaccel.compiler.cycle_model import StepCycles
from mnaccel.compiler.plan import Plan, Step
from mnaccel.golden.errors import UserError
from mnaccel.golden.table import table_rows
from mnaccel.hw.config import AccelConfig
from mnaccel.hw.depthwise import DepthwiseArray
from mnaccel.hw.descriptor import Opcode

__all__ = [
    "BUFFERS",
    "FILES",
    "buffer_bytes",
    "buffer_capacity",
    "build_report",
    "check_out_dir",
    "plot_cycles",
    "plot_roofline",
    "render",
    "synthesize_design",
    "to_csv",
    "to_markdown",
    "write_report",
]

#: The on-chip memories a step occupies, in table order, with what they hold.
BUFFERS = {
    "act_buf": "activation buffer: 2 halves of P pixels × K·pw_rows bytes",
    "out_buf": "output buffer: 2 halves of P pixels × J·pw_cols bytes",
    "acc_buf": "pointwise accumulators: P entries of pw_cols int32",
    "weight_fifo": "pointwise weight tiles in flight: J·K tiles of pw_rows × pw_cols bytes, "
                   "at most the FIFO",
    "line_buffer": "depthwise line buffer: max_kernel−1 rows and columns of the input map",
    "conv_line_buffer": "CONV0's line buffer: 2 rows and columns of the input map",
    "dw_weights": "depthwise weights: channels × passes × dw_kernel² bytes",
}

#: The files of a report directory.
FILES = ("report.md", "report.csv", "report.json", "cycles.png", "roofline.png")

_PW_TYPES = ("conv", "pw", "fc")     # table_rows types that run on the pointwise array
_DW_TYPES = ("dw",)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _lb_bytes(max_kernel: int, width: int, channels: int) -> int:
    # LineBuffer's two memories: the vertical one holds max_kernel−1 rows of width·channels
    # bytes, the horizontal one max_kernel−1 columns of max_kernel pixels of every channel.
    return (max_kernel - 1) * (width * channels + max_kernel * channels)


def _dw_array(cfg: AccelConfig) -> DepthwiseArray:
    return DepthwiseArray(lanes=cfg.dw_lanes, kernel=cfg.dw_kernel, max_kernel=cfg.max_kernel,
                          max_channels=cfg.lb_max_channels, mul_luts=cfg.dw_mul_luts)


def buffer_capacity(cfg: AccelConfig) -> dict[str, int]:
    """Bytes of each memory of :data:`BUFFERS` in the design ``cfg`` describes."""
    dwa = _dw_array(cfg)
    return {
        "act_buf": cfg.act_buf_bytes,
        "out_buf": cfg.out_buf_bytes,
        "acc_buf": cfg.pw_acc_depth * cfg.pw_cols * cfg.acc_width // 8,
        "weight_fifo": cfg.pw_weight_fifo_bytes,
        "line_buffer": (cfg.max_kernel - 1) * (cfg.lb_max_row_bytes
                                               + cfg.max_kernel * cfg.lb_max_channels),
        "conv_line_buffer": _lb_bytes(3, cfg.lb_max_width, cfg.channel_align),
        "dw_weights": dwa.weight_depth * cfg.dw_kernel**2 * cfg.dw_lanes,
    }


def buffer_bytes(plan: Plan, step: Step) -> dict[str, int]:
    """Bytes of each memory of :data:`BUFFERS` that ``step`` of ``plan`` fills at most.

    From the step's tiling: a double-buffered buffer uses both halves when the step has
    more than one pixel tile; a half holds the largest tile. The weight FIFO holds the
    step's weight tiles (``J·K`` tiles of ``pw_rows × pw_cols`` bytes, re-read for every
    pixel tile) up to its size; ``POOL`` and a lone ``DW`` step generate their identity
    tiles on chip (``DW``: the depthwise output passes through the activation buffer, the
    array and the output buffer like a ``DW_PW`` step's with ``K = 1``).
    """
    cfg = plan.config
    op = step.opcode
    use = dict.fromkeys(BUFFERS, 0)
    if op in (Opcode.DW_PW, Opcode.DW):
        use["line_buffer"] = _lb_bytes(cfg.max_kernel, step.in_w, step.in_c)
        use["dw_weights"] = step.in_c * _dw_array(cfg).passes(step.kernel) * cfg.dw_kernel**2
    if op is Opcode.CONV0:
        use["conv_line_buffer"] = _lb_bytes(3, step.in_w, step.in_c)
    pixels = max(n for _, n in step.tiles())
    halves = min(step.n_tiles, 2)
    if op is Opcode.POOL:
        # Every pixel of the map in one half, its stored channels rounded up to buffer words;
        # all of them accumulate on entry 0.
        use["act_buf"] = pixels * _ceil(step.in_c, cfg.pw_rows) * cfg.pw_rows
        use["out_buf"] = step.j_chunks * cfg.pw_cols
        use["acc_buf"] = cfg.pw_cols * cfg.acc_width // 8
        return use
    use["act_buf"] = halves * pixels * step.k_chunks * cfg.pw_rows
    use["out_buf"] = halves * pixels * step.j_chunks * cfg.pw_cols
    use["acc_buf"] = pixels * cfg.pw_cols * cfg.acc_width // 8
    if op is Opcode.DW:
        use["act_buf"] = halves * pixels * step.in_c       # all its channels, not K words
    else:
        use["weight_fifo"] = min(cfg.pw_weight_fifo_bytes,
                                 step.j_chunks * step.k_chunks * cfg.pw_rows * cfg.pw_cols)
    return use


def _bound(op: str, limit: str) -> tuple[str, str]:
    """The cycle model's ``bound`` as (``"compute"`` or ``"memory"``, what limits the step)."""
    if limit.startswith("memory"):
        return "memory", "AXI writes" if "write" in limit else "AXI reads"
    if limit == "input":
        # CONV0's producer is its line buffer; PW, POOL and FC wait on their AXI tile reads.
        return ("compute", "line buffer") if op == "CONV0" else ("memory", "input reads")
    return "compute", {"pw": "pw array", "dw": "dw side", "pw weight load": "pw weight loads"
                       }.get(limit, limit)


def _shape(plan: Plan, name: str) -> list[int]:
    info = plan.tensors[name]
    return [info.h, info.w, info.c]


def _util(macs: int, cycles: int, multipliers: int) -> float:
    return macs / (cycles * multipliers) if cycles and multipliers else 0.0


def build_report(plan: Plan, modelled: list[StepCycles], *, model_spec: str, config_name: str,
                 dram_latency: int, measured: list[int] | None = None,
                 run_cycles: int | None = None, design: dict | None = None) -> dict:
    """The report of ``plan`` as a JSON-serializable dict (the content of ``report.json``).

    Parameters
    ----------
    plan : Plan
    modelled : list of StepCycles
        :func:`~mnaccel.compiler.cycle_model.model` of ``plan`` with ``dram_latency``.
    model_spec : str
        How the model was named (``"mobilenet_v1, α 1.0, 224×224"``), for the title.
    config_name : str
        The preset's name.
    dram_latency : int
        The external-memory latency the model assumed.
    measured : list of int, optional
        Cycles of every step from the hardware's ``LAYER_CYCLES`` counters; they replace the
        model's (``"source": "rtl"``).
    run_cycles : int, optional
        With ``measured``: the ``CYCLES`` counter of the whole run.
    design : dict, optional
        :func:`synthesize_design`'s result; without it Fmax, frames/s and resources are
        ``None``.

    Returns
    -------
    dict
        ``layers`` (one entry per step: ``index``, ``name``, ``op``, ``graph_layers``,
        ``in_shape``, ``out_shape``, ``macs``, ``pw_macs``, ``dw_macs``, ``cycles``,
        ``model_cycles``, ``ideal_cycles``, ``utilization``, ``pw_utilization``,
        ``dw_utilization``, ``onchip_bytes``, ``buffers``, ``dram_read_bytes``,
        ``dram_write_bytes``, ``macs_per_byte``, ``bound``, ``limit``, ``breakdown``: the
        cycle model's setup/fill/drain/pw/stall split of ``model_cycles``), ``totals``
        (``macs``, ``pw_macs``, ``dw_macs``, ``cycles``, ``model_cycles``, ``ideal_cycles``,
        ``utilization``, ``pw_utilization``, ``dw_utilization``, ``dram_read_bytes``,
        ``dram_write_bytes``, ``peak_onchip_bytes``, ``fps``, ``run_cycles``), ``resources``,
        ``fmax_mhz``, ``timing``, and the context: ``model``, ``model_spec``, ``config``,
        ``config_id``, ``source``, ``dram_latency``, ``multipliers``,
        ``axi_bytes_per_cycle``, ``buffer_capacity``, ``notes``.
    """
    cfg = plan.config
    if len(modelled) != len(plan.steps):
        raise ValueError(f"{len(modelled)} modelled steps for a plan of {len(plan.steps)}")
    if measured is not None and (len(measured) != len(plan.steps)
                                 or any(c is None for c in measured)):
        raise ValueError(f"measured cycles must hold one count per step ({len(plan.steps)}), "
                         f"not {measured!r}")
    mults = {"pw": cfg.pw_multipliers, "dw": cfg.dw_multipliers, "total": cfg.multipliers}
    rows = {r.name: r for r in table_rows(plan.graph)}
    layers = []
    for i, (step, m) in enumerate(zip(plan.steps, modelled, strict=True)):
        cycles = m.cycles if measured is None else int(measured[i])
        pw_macs = dw_macs = 0
        for layer in step.layers:
            # The cycle model counts table_rows' multiplies of these same layers.
            row = rows.get(layer.name)
            if row is not None and row.type in _DW_TYPES:
                dw_macs += row.mul
            elif row is not None and row.type in _PW_TYPES:
                pw_macs += row.mul
        if pw_macs + dw_macs != m.macs:
            raise AssertionError(f"{step.name}: {pw_macs} + {dw_macs} MACs by array, "
                                 f"{m.macs} modelled")
        buffers = buffer_bytes(plan, step)
        bound, limit = _bound(m.op, m.bound)
        busier = max(m.dram_read_bytes, m.dram_write_bytes)
        layers.append({
            "index": i,
            "name": m.name,
            "op": m.op,
            "graph_layers": [layer.name for layer in step.layers],
            "in_shape": _shape(plan, step.input),
            "out_shape": _shape(plan, step.output),
            "macs": m.macs,
            "pw_macs": pw_macs,
            "dw_macs": dw_macs,
            "cycles": cycles,
            "model_cycles": m.cycles,
            "ideal_cycles": m.ideal_cycles,
            "utilization": _util(m.macs, cycles, mults["total"]),
            "pw_utilization": _util(pw_macs, cycles, mults["pw"]),
            "dw_utilization": _util(dw_macs, cycles, mults["dw"]),
            "onchip_bytes": sum(buffers.values()),
            "buffers": buffers,
            "dram_read_bytes": m.dram_read_bytes,
            "dram_write_bytes": m.dram_write_bytes,
            "macs_per_byte": m.macs / busier if busier else 0.0,
            "bound": bound,
            "limit": limit,
            "breakdown": dict(m.breakdown),
        })

    def total(key):
        return sum(entry[key] for entry in layers)

    cycles = total("cycles")
    design = design or {"fmax_mhz": None, "timing": None, "resources": None, "error": None}
    fmax = design["fmax_mhz"]
    totals = {
        "macs": total("macs"),
        "pw_macs": total("pw_macs"),
        "dw_macs": total("dw_macs"),
        "cycles": cycles,
        "model_cycles": total("model_cycles"),
        "ideal_cycles": total("ideal_cycles"),
        "utilization": _util(total("macs"), cycles, mults["total"]),
        "pw_utilization": _util(total("pw_macs"), cycles, mults["pw"]),
        "dw_utilization": _util(total("dw_macs"), cycles, mults["dw"]),
        "dram_read_bytes": total("dram_read_bytes"),
        "dram_write_bytes": total("dram_write_bytes"),
        "peak_onchip_bytes": max((entry["onchip_bytes"] for entry in layers), default=0),
        "fps": fmax * 1e6 / cycles if fmax and cycles else None,
        "run_cycles": run_cycles,
    }
    source = "model" if measured is None else "rtl"
    notes = []
    if source == "model":
        notes.append(f"Cycles from the analytic cycle model (compiler/cycle_model.py) with an "
                     f"external-memory latency of {dram_latency} cycles per request; "
                     f"`--rtl` measures them in simulation instead.")
    else:
        notes.append(f"Cycles from the cycle-accurate simulation of the accelerator (each "
                     f"step's LAYER_CYCLES counter); the simulated memory answers in 1–2 "
                     f"cycles. The model's prediction (external-memory latency "
                     f"{dram_latency}) is in `model_cycles`; the CYCLES counter of the "
                     f"whole run is {run_cycles:,}." if run_cycles is not None else
                     "Cycles from the cycle-accurate simulation of the accelerator.")
    notes.append("Bound and external-memory bytes come from the cycle model; steps run one "
                 "after another, so frames/s = Fmax ÷ total cycles.")
    if design["error"] is not None:
        notes.append(f"Synthesis and place and route failed, so Fmax and frames/s are unknown"
                     f"{'' if design['resources'] else ' and so are the resources'}: "
                     f"{design['error']}.")
    elif fmax is None:
        notes.append(f"Fmax, frames/s and resources are unknown: not synthesized (--no-synth)."
                     f" `mnaccel report` without --no-synth, or `mnaccel synth --config "
                     f"{config_name} --pnr` once (cached), gives them.")
    elif not design["timing"]["met"] and design["timing"]["target_mhz"]:
        notes.append(f"Fmax {fmax:.1f} MHz misses the {design['timing']['target_mhz']:.1f} MHz "
                     f"clock constraint; frames/s are at the Fmax achieved.")
    skipped = [layer.name for layer in plan.graph.layers
               if not any(layer is s for step in plan.steps for s in step.layers)]
    if skipped:
        notes.append(f"Not a step (they only rename bytes): {', '.join(skipped)}.")
    return {
        "model": plan.graph.name,
        "model_spec": model_spec,
        "config": config_name,
        "config_id": cfg.config_id,
        "source": source,
        "dram_latency": dram_latency,
        "multipliers": mults,
        "axi_bytes_per_cycle": cfg.axi_data_width // 8,
        "buffer_capacity": buffer_capacity(cfg),
        "layers": layers,
        "totals": totals,
        "fmax_mhz": fmax,
        "timing": design["timing"],
        "resources": design["resources"],
        "synthesis_error": design["error"],
        "notes": notes,
    }


# --- Fmax and resources -------------------------------------------------------------------


def synthesize_design(component, *, seed: int = 1,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Fmax and resources of the whole accelerator ``component`` on the LFE5U-85F.

    The flow and the caches of ``mnaccel synth --pnr`` (:func:`mnaccel.sim.synth.synthesize`
    with its per-module run, :func:`mnaccel.sim.pnr.place_and_route`): a design that command
    has placed and routed (same Verilog, seed and constraint) costs no tool run here, and the
    other way round.

    Parameters
    ----------
    component : Accelerator
        Built for ECP5 (:func:`mnaccel.sim.synth.build_block` ``("accelerator", config)``).
    seed : int
        nextpnr's placer seed.
    progress : callable, optional
        Called with progress messages (tool start, every 30 s, end).

    Returns
    -------
    dict
        ``fmax_mhz`` (the achieved Fmax of ``clk``, or of the slowest clock), ``timing``
        (``clock``, ``target_mhz``, ``met``, ``seed``, ``constraints``), ``resources``
        (``device``; ``utilization`` per nextpnr bel class: ``used``, ``available``,
        ``percent``; ``cells``: the flattened design's ECP5 cell columns; ``modules``: the
        same columns for each module one level below the top) and ``error``: ``None``, or
        the first line of a tool's failure with its log's ``ERROR`` line. A Yosys failure
        leaves everything else ``None``; a place-and-route failure (a design that does not
        fit, say) keeps Yosys' cell counts, which usually tell why.
    """
    from mnaccel.sim import build, pnr, synth

    say = progress or (lambda message: None)
    name = synth.top_name("accelerator")
    unknown = {"fmax_mhz": None, "timing": None, "resources": None, "error": None}
    say("generating the Verilog of the accelerator ...")
    verilog = build.verilog_for(component, name=name)
    try:
        result = synth.synthesize(verilog, name=name, target="ecp5", progress=say)
    except RuntimeError as exc:
        return unknown | {"error": _tool_error(exc)}
    modules = {path: synth.categorize(info["total"], "ecp5")
               for path, info in sorted(result.get("modules", {}).items())
               if path and "." not in path}
    device = pnr.DEVICE
    resources = {"device": f"{device['part']} {device['package']} speed {device['speed']}",
                 "utilization": None, "cells": result["columns"], "modules": modules}
    try:
        routed = pnr.place_and_route(result["netlist"], name=name, seed=seed, progress=say)
    except RuntimeError as exc:
        return unknown | {"resources": resources, "error": _tool_error(exc)}
    if not routed["fmax"]:
        return unknown | {"resources": resources,
                          "error": f"nextpnr-ecp5 of {name} reported no clock (log "
                                   f"{routed['log']})"}
    clock = ("clk" if "clk" in routed["fmax"]
             else min(routed["fmax"], key=lambda c: routed["fmax"][c]["achieved"]))
    fmax = routed["fmax"][clock]
    return {
        "fmax_mhz": fmax["achieved"],
        "timing": {"clock": clock, "target_mhz": fmax["target"], "met": fmax["met"],
                   "seed": routed["seed"], "constraints": routed["constraints"]},
        "resources": resources | {"device": routed["device"],
                                  "utilization": routed["utilization"]},
        "error": None,
    }


def _tool_error(exc: Exception) -> str:
    """The first line of a tool's RuntimeError, and the first ``ERROR`` line of its log."""
    lines = str(exc).splitlines()
    found = next((line.strip() for line in lines[1:] if line.lstrip().startswith("ERROR")),
                 None)
    return lines[0].rstrip(":") + (f" — {found}" if found else "")


# --- formats ------------------------------------------------------------------------------

_DASH = "—"


def _n(x) -> str:
    return _DASH if x is None else f"{x:,}"


def _pct(x) -> str:
    return _DASH if x is None else f"{100 * x:.1f} %"


def _hwc(shape) -> str:
    return "×".join(str(d) for d in shape)


def _mb(x: int) -> str:
    return f"{x:,} B ({x / 1e6:.2f} MB)"


def to_markdown(report: dict) -> str:
    """``report.md``: totals, the per-step table, buffers, resources, plots and notes."""
    t, mults = report["totals"], report["multipliers"]
    source = {"model": "analytic cycle model",
              "rtl": "cycle-accurate simulation (LAYER_CYCLES counters)"}[report["source"]]
    fmax, fps = report["fmax_mhz"], t["fps"]
    lines = [
        f"# {report['model']} on {report['config']}",
        "",
        f"Model {report['model_spec']}; preset `{report['config']}` (config "
        f"{report['config_id']}): {mults['pw']} pointwise + {mults['dw']} depthwise = "
        f"{mults['total']} int8 multipliers, AXI {report['axi_bytes_per_cycle']} bytes per "
        f"cycle each way. Cycles: {source}.",
        "",
        "## Totals",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| MACs | {_n(t['macs'])} (pointwise array {_n(t['pw_macs'])}, depthwise array "
        f"{_n(t['dw_macs'])}) |",
        f"| cycles | {_n(t['cycles'])} |",
        f"| ideal cycles (MACs ÷ {mults['total']}, per step) | {_n(t['ideal_cycles'])} |",
        f"| MAC utilization | {_pct(t['utilization'])} |",
        f"| pointwise array utilization | {_pct(t['pw_utilization'])} |",
        f"| depthwise array utilization | {_pct(t['dw_utilization'])} |",
        f"| Fmax | {_DASH if fmax is None else f'{fmax:.1f} MHz'} |",
        f"| frames/s at Fmax | {_DASH if fps is None else f'{fps:.2f}'} |",
        f"| external memory read | {_mb(t['dram_read_bytes'])} |",
        f"| external memory written | {_mb(t['dram_write_bytes'])} |",
        f"| on-chip buffer bytes, peak step | {_n(t['peak_onchip_bytes'])} |",
    ]
    if report["source"] == "rtl":
        lines += [f"| cycles the model predicts (memory latency {report['dram_latency']}) | "
                  f"{_n(t['model_cycles'])} |",
                  f"| CYCLES counter, whole run | {_n(t['run_cycles'])} |"]
    lines += [
        "",
        "## Steps",
        "",
        "One row per descriptor; a `DW_PW` step is a depthwise layer and the pointwise layer "
        "it feeds. Utilization = MACs ÷ (cycles × multipliers), of both arrays together and "
        "of each alone.",
        "",
        "| # | step | op | shape | MACs | cycles | ideal | util. | pw util. | dw util. | "
        "on-chip B | DRAM read B | DRAM write B | bound |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        "---: | --- |",
    ]
    for e in report["layers"]:
        lines.append(
            f"| {e['index']} | {e['name']} | {e['op']} | {_hwc(e['in_shape'])} → "
            f"{_hwc(e['out_shape'])} | {_n(e['macs'])} | {_n(e['cycles'])} | "
            f"{_n(e['ideal_cycles'])} | {_pct(e['utilization'])} | "
            f"{_pct(e['pw_utilization'])} | {_pct(e['dw_utilization'])} | "
            f"{_n(e['onchip_bytes'])} | {_n(e['dram_read_bytes'])} | "
            f"{_n(e['dram_write_bytes'])} | {e['bound']}: {e['limit']} |")
    lines.append(
        f"| | **total** | | | {_n(t['macs'])} | {_n(t['cycles'])} | {_n(t['ideal_cycles'])} | "
        f"{_pct(t['utilization'])} | {_pct(t['pw_utilization'])} | "
        f"{_pct(t['dw_utilization'])} | {_n(t['peak_onchip_bytes'])} | "
        f"{_n(t['dram_read_bytes'])} | {_n(t['dram_write_bytes'])} | |")

    lines += ["", "## On-chip buffers", "",
              "| buffer | size B | most used B | by step | holds |",
              "| --- | ---: | ---: | --- | --- |"]
    for key, what in BUFFERS.items():
        peak = max(report["layers"], key=lambda e, k=key: e["buffers"][k], default=None)
        used = peak["buffers"][key] if peak else 0
        lines.append(f"| {key} | {_n(report['buffer_capacity'][key])} | {_n(used)} | "
                     f"{peak['name'] if used else _DASH} | {what} |")

    lines += ["", "## Resources", ""]
    res, timing = report["resources"], report["timing"]
    if res is None:
        lines.append(f"Fmax {_DASH}, resources {_DASH}: "
                     + ("synthesis failed" if report.get("synthesis_error") else
                        "not synthesized") + " (see the notes).")
    else:
        if timing is None:
            lines.append(f"{res['device']}: Fmax {_DASH} (place and route failed; see the "
                         f"notes).")
        else:
            verdict = "met" if timing["met"] else "missed"
            lines.append(f"{res['device']}, out of context, placer seed {timing['seed']}: Fmax "
                         f"{fmax:.1f} MHz on `{timing['clock']}` (constraint "
                         f"{timing['target_mhz']} MHz in {timing['constraints']}: {verdict}).")
        if res["utilization"] is not None:
            lines += ["", "| resource | used | available | % |",
                      "| --- | ---: | ---: | ---: |"]
            for column, u in res["utilization"].items():
                lines.append(f"| {column} ({u['bel']}) | {_n(u['used'])} | "
                             f"{_n(u['available'])} | {u['percent']:.1f} |")
        columns = list(res["cells"])
        lines += ["", "Cells per module (Yosys `synth_ecp5`; modules synthesized keeping "
                  "their boundaries, so they add up to more than the flattened design):", "",
                  "| module | " + " | ".join(columns) + " |",
                  "| --- |" + " ---: |" * len(columns),
                  "| flattened design | " + " | ".join(_n(res["cells"][c]) for c in columns)
                  + " |"]
        for path, counts in res["modules"].items():
            lines.append(f"| {path} | " + " | ".join(_n(counts.get(c, 0)) for c in columns)
                         + " |")

    lines += ["", "## Plots", "",
              "![cycles per step against the ideal](cycles.png)", "",
              "![roofline](roofline.png)", "", "## Notes", ""]
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


#: Columns of ``report.csv``.
CSV_COLUMNS = ("index", "name", "op", "in_shape", "out_shape", "macs", "pw_macs", "dw_macs",
               "cycles", "model_cycles", "ideal_cycles", "utilization", "pw_utilization",
               "dw_utilization", "onchip_bytes", *BUFFERS, "dram_read_bytes",
               "dram_write_bytes", "macs_per_byte", "bound", "limit")


def to_csv(report: dict) -> str:
    """``report.csv``: one row per step, then a ``total`` row (sums; on-chip bytes: peaks).

    Numbers as in the JSON (floats in ``repr`` form); shapes as ``HxWxC``.
    """
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for e in report["layers"]:
        row = {k: e[k] for k in CSV_COLUMNS if k in e}
        row |= e["buffers"]
        row["in_shape"] = "x".join(map(str, e["in_shape"]))
        row["out_shape"] = "x".join(map(str, e["out_shape"]))
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    t = report["totals"]
    row = {k: t[k] for k in CSV_COLUMNS if k in t} | {"name": "total",
                                                       "onchip_bytes": t["peak_onchip_bytes"]}
    for key in BUFFERS:
        row[key] = max((e["buffers"][key] for e in report["layers"]), default=0)
    writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return out.getvalue()


# --- plots --------------------------------------------------------------------------------

#: Marker colour per opcode, the same in both plots.
_COLOURS = {"CONV0": "#d62728", "DW_PW": "#1f77b4", "DW": "#17becf", "PW": "#2ca02c",
            "POOL": "#7f7f7f", "FC": "#ff7f0e"}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    # A Figure of its own (no pyplot): the Agg canvas, no global state, no display needed.
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path: Path) -> None:
    # No software/version stamp in the PNG: the bytes depend on the report only.
    fig.savefig(path, format="png", metadata={"Software": None})


def plot_cycles(report: dict, path: Path) -> None:
    """Bar chart: cycles of each step (wide bars) against its ideal cycles (narrow bars)."""
    layers = report["layers"]
    n = len(layers)
    fig = _figure(9.0, 1.6 + 0.32 * n)
    ax = fig.add_subplot()
    y = list(range(n))
    colours = [_COLOURS.get(e["op"], "#9467bd") for e in layers]
    ax.barh(y, [e["cycles"] for e in layers], height=0.8, color=colours, alpha=0.45)
    ax.barh(y, [e["ideal_cycles"] for e in layers], height=0.35, color="black")
    for i, e in enumerate(layers):
        ax.text(e["cycles"], i, f" {_pct(e['utilization'])}", va="center", fontsize=7)
    ax.set_yticks(y, [f"{e['index']} {e['name']} ({e['op']})" for e in layers], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15 * max((e["cycles"] for e in layers), default=1))
    ax.xaxis.set_major_formatter("{x:,.0f}")
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("cycles (label: MAC utilization of the step)")
    source = "model" if report["source"] == "model" else "RTL simulation"
    ax.set_title(f"{report['model_spec']} on {report['config']}: cycles per step ({source})",
                 fontsize=10)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#999999", alpha=0.6, label="cycles (colour: op)"),
                       Patch(color="black",
                             label=f"ideal: MACs ÷ {report['multipliers']['total']}")],
              loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def plot_roofline(report: dict, path: Path) -> None:
    """Roofline: MACs per cycle against MACs per byte of the busier AXI channel, log-log.

    The compute roof is the multiplier count (dashed: the pointwise array's alone), the
    memory roof ``axi_bytes_per_cycle`` bytes per cycle on each of the read and write
    channels. Steps without MACs (the pool) have no point.
    """
    import numpy as np

    mults, bw = report["multipliers"], report["axi_bytes_per_cycle"]
    points = [e for e in report["layers"] if e["macs"] and e["cycles"]]
    fig = _figure(8.0, 5.6)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs = [e["macs_per_byte"] for e in points]
    ridge = mults["total"] / bw
    lo = min([*xs, ridge]) / 4
    hi = max([*xs, ridge]) * 4
    x = np.geomspace(lo, hi, 200)
    ax.plot(x, np.minimum(mults["total"], bw * x), color="black", lw=1.5,
            label=f"roof: min({mults['total']} MACs/cycle, {bw} B/cycle × MACs/B)")
    ax.axhline(mults["pw"], color="black", lw=0.8, ls="--",
               label=f"pointwise array alone: {mults['pw']} MACs/cycle")
    seen = set()
    for e in points:
        colour = _COLOURS.get(e["op"], "#9467bd")
        ax.scatter(e["macs_per_byte"], e["macs"] / e["cycles"], color=colour, s=30,
                   zorder=3, label=e["op"] if e["op"] not in seen else None)
        seen.add(e["op"])
    t = report["totals"]
    star = None
    if t["cycles"]:
        busier = max(t["dram_read_bytes"], t["dram_write_bytes"])
        star = (t["macs"] / busier, t["macs"] / t["cycles"])
        ax.scatter(*star, marker="*", s=160, facecolor="none", edgecolor="black", lw=1.2,
                   zorder=4, label="whole network")
    ymin = min([e["macs"] / e["cycles"] for e in points] + [mults["total"]]) / 3
    ax.set_ylim(ymin, mults["total"] * 1.8)
    ax.set_xlim(lo, hi)
    _label_points(ax, fig, points, star)
    ax.set_xlabel("arithmetic intensity: MACs per byte on the busier AXI channel")
    ax.set_ylabel("MACs per cycle")
    source = "model" if report["source"] == "model" else "RTL simulation"
    ax.set_title(f"{report['model_spec']} on {report['config']}: roofline ({source}); "
                 f"numbers are steps", fontsize=10)
    ax.grid(which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def _label_points(ax, fig, points, star=None) -> None:
    """Number the points; steps with the same figures (repeated blocks) share a label.

    Each label takes the first of a few places around its point that overlaps no label
    placed before it (in display coordinates, from the text's width at 7 pt).
    """
    groups: dict[tuple, list[int]] = {}
    for e in points:
        key = (f"{e['macs_per_byte']:.4g}", f"{e['macs'] / e['cycles']:.4g}")
        groups.setdefault(key, []).append(e["index"])
    fig.draw_without_rendering()                      # settle the layout: final positions
    scale = fig.dpi / 72                              # points to pixels
    # The markers are taken too: the points (s=30) and the whole network's star (s=160).
    taken = []
    marks = [((e["macs_per_byte"], e["macs"] / e["cycles"]), 4.5) for e in points]
    if star is not None:
        marks.append((star, 8.0))
    for xy, radius in marks:
        px, py = ax.transData.transform(xy)
        r = radius * scale
        taken.append((px - r, py - r, 2 * r, 2 * r))
    for (x, y), indices in groups.items():
        text = (f"{indices[0]}–{indices[-1]}" if len(indices) > 2
                else ",".join(map(str, indices)))
        px, py = ax.transData.transform((float(x), float(y)))
        w, h = 4.3 * len(text) * scale, 8 * scale
        left = -5 - 4.3 * len(text)
        # Beside the point first, then above or below it, then further out.
        for dx, dy in ((6, -3), (left - 2, -3), (4, 4), (left, 4), (4, -11), (left, -11),
                       (-2, 10), (-2, -18), (4, 16), (4, -24), (left, 16), (left, -24)):
            box = (px + dx * scale, py + dy * scale, w, h)
            if not any(box[0] < o[0] + o[2] and o[0] < box[0] + w and box[1] < o[1] + o[3]
                       and o[1] < box[1] + h for o in taken):
                break
        taken.append(box)
        ax.annotate(text, (float(x), float(y)), xytext=(dx, dy), textcoords="offset points",
                    fontsize=7)


def render(report: dict, directory: Path) -> None:
    """Write every file of :data:`FILES` for ``report`` into the existing ``directory``."""
    directory = Path(directory)
    (directory / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (directory / "report.csv").write_text(to_csv(report))
    (directory / "report.md").write_text(to_markdown(report))
    plot_cycles(report, directory / "cycles.png")
    plot_roofline(report, directory / "roofline.png")


# --- the report directory -----------------------------------------------------------------


def check_out_dir(out: Path) -> None:
    """UserError unless :func:`write_report` will be able to write ``out``.

    ``out`` must be absent, empty, or an earlier report (with a ``report.json``) that may be
    replaced, and a directory can be made beside it: checked before any work, as
    :func:`mnaccel.sim.commands.golden.check_dump_dir` does for dumps.
    """
    name = str(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {name!r} exists and is not a directory")
    if out.is_dir():
        try:
            foreign = any(out.iterdir()) and not (out / "report.json").is_file()
        except OSError as exc:
            raise UserError(f"--out {name!r} cannot be read: {exc.strerror}") from None
        if foreign:
            raise UserError(f"--out {name!r} is not empty and holds no earlier report; "
                            f"refusing to replace it")
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--out {name!r}: {str(parent)!r} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".probe", dir=parent))
    except OSError as exc:
        raise UserError(f"--out {name!r}: cannot write in {str(parent)!r} ({exc.strerror})") \
            from None


def write_report(out: Path, report: dict) -> None:
    """Render ``report`` into ``out`` atomically.

    As :func:`mnaccel.sim.commands.golden.write_dump`: the files go to a temporary
    directory beside ``out`` that replaces it at the end, so an error or an interruption
    leaves ``out`` as it was (parent directories made for it are removed again).
    """
    out = Path(out)
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    tmp = old = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        render(report, tmp)
        os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp makes it private
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            out.rename(old / "report")
        tmp.rename(out)
    except OSError as exc:
        raise UserError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp)
        if old is not None:
            if not out.exists():  # interrupted between the two renames: put it back
                (old / "report").rename(out)
            shutil.rmtree(old)
        if not out.exists():
            for p in made:  # innermost first; only the empty directories made here
                with contextlib.suppress(OSError):
                    p.rmdir()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
