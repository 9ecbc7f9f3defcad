"""``mnaccel report``: per-step cycles, utilization, buffers, memory traffic, Fmax and resources.

The model is planned for a configuration preset (:func:`mnaccel.compiler.plan.plan`) and its
cycles come from the analytic cycle model (:func:`mnaccel.compiler.cycle_model.model`) or,
with ``--rtl``, from the cycle-accurate simulation of the accelerator — the path of ``mnaccel
simulate`` (:mod:`mnaccel.sim.commands.simulate`): compile, run on the cached Verilator build
of the preset, compare every layer output with the golden model (a mismatch ends with exit
status 1 and writes nothing), take each step's ``LAYER_CYCLES``. Fmax and the resources come
from synthesis and place and route of the whole accelerator (:func:`mnaccel.sim.report
.synthesize_design`, cached with ``mnaccel synth --pnr``), or are unknown with
``--no-synth``.

``DIR`` (``--out``, default ``report``) receives ``report.md``, ``report.csv``,
``report.json``, ``cycles.png`` and ``roofline.png`` (:mod:`mnaccel.sim.report`; what they
hold: docs/report.md), written into a temporary directory beside it and renamed at the end:
bad input, a failed run or an interruption leaves ``DIR`` as it was. An existing ``DIR`` is
replaced only if it is empty or holds an earlier report. Progress goes to stderr, a summary
to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnaccel.golden.errors import UserError

__all__ = ["register", "run"]


def register(subparsers, add_model_args) -> None:
    """Add the ``report`` command to the CLI."""
    from mnaccel.hw.config import DEFAULT_PRESET, PRESETS

    p = subparsers.add_parser(
        "report",
        help="per-step cycles, utilization, buffers, memory traffic, Fmax, resources",
        description="Write a per-step performance report of MODEL on a configuration "
        "(report.md, report.csv, report.json and two PNG plots) to DIR: cycles from the "
        "analytic cycle model (or, with --rtl, the cycle-accurate simulation), ideal cycles, "
        "utilization of each array, on-chip buffer bytes, external-memory bytes and the "
        "bound of every step, with totals, frames/s at the synthesized Fmax, and the "
        "design's resources.",
    )
    add_model_args(p)
    p.add_argument("--config", metavar="PRESET", default=DEFAULT_PRESET,
                   help=f"configuration preset: {', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    p.add_argument("--rtl", action="store_true",
                   help="take the cycles from the cycle-accurate simulation (Verilator; slow "
                   "for large models) instead of the cycle model")
    p.add_argument("--no-synth", action="store_true",
                   help="skip synthesis and place and route: Fmax, frames/s and resources "
                   "unknown")
    p.add_argument("--out", metavar="DIR", default="report",
                   help="output directory (default: report)")
    p.set_defaults(run=run)


def _model_spec(args: argparse.Namespace, graph) -> str:
    from mnaccel.golden.zoo import ZOO

    if args.model in ZOO:
        return f"{args.model}, α {args.alpha}, {args.resolution}×{args.resolution}"
    shape = "×".join(str(d) for d in graph.input_tensor.shape)
    return f"{Path(args.model).name} (input {shape})"


def _say(progress, message: str) -> None:
    progress.done()
    print(f"mnaccel report: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from mnaccel.compiler.cycle_model import DRAM_LATENCY, model
    from mnaccel.compiler.plan import plan
    from mnaccel.hw.config import preset
    from mnaccel.sim import report, synth
    from mnaccel.sim.cli import load_model
    from mnaccel.sim.commands.golden import Progress

    out = Path(args.out)
    report.check_out_dir(out)
    if args.rtl:
        from mnaccel.sim.commands.simulate import _config

        config = _config(args.config)        # the scheduler must be able to run it
    else:
        try:
            config = preset(args.config)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    component = None
    if not args.no_synth:
        try:
            component = synth.build_block("accelerator", config, target="ecp5")
        except ValueError as exc:
            raise UserError(f"configuration {args.config!r} cannot be built for synthesis: "
                            f"{exc} (--no-synth reports without Fmax and resources)") from None

    progress = Progress()
    measured = run_cycles = None
    try:
        progress.show(f"loading {args.model} ...")
        # Cycles depend on the graph's structure only: no calibration run for the model, so
        # that a layer the configuration cannot hold is reported in seconds.
        graph = load_model(args, calibrate=False)
        progress.show(f"planning {graph.name} for {args.config} ...")
        the_plan = plan(graph, config)
        # The simulated memory (cocotbext-axi's AxiRam) answers in 1-2 cycles.
        dram_latency = 2 if args.rtl else DRAM_LATENCY
        progress.show(f"modelling {len(the_plan.steps)} steps ...")
        try:
            modelled = model(the_plan, dram_latency=dram_latency)
        except ValueError as exc:
            # A preset whose blocks reject their own parameters (the cycle model builds them
            # to read their timing).
            raise UserError(f"configuration {args.config!r} cannot be modelled: {exc}") from None
        if args.rtl:
            from mnaccel.golden.zoo import ZOO
            from mnaccel.sim.commands.simulate import _compile

            if args.model in ZOO:
                progress.show(f"calibrating {args.model} ...")
                graph = load_model(args)
            progress.show(f"compiling {graph.name} for {args.config} ...")
            program = _compile(graph, config, "reference")
            the_plan = program.plan
            modelled = model(the_plan, dram_latency=dram_latency)
            measured, run_cycles, failure = _simulate(program, graph, args, modelled, progress)
            if failure is not None:
                progress.done()
                print(failure, file=sys.stderr)
                return 1
    finally:
        progress.done()

    design = None
    if component is not None:
        try:
            design = report.synthesize_design(component,
                                              progress=lambda m: _say(progress, m))
        finally:
            progress.done()

    result = report.build_report(the_plan, modelled, model_spec=_model_spec(args, graph),
                                 config_name=args.config, dram_latency=dram_latency,
                                 measured=measured, run_cycles=run_cycles, design=design)
    progress.show("writing the report ...")
    try:
        report.write_report(out, result)
    finally:
        progress.done()
    t = result["totals"]
    fmax = "Fmax unknown" if result["fmax_mhz"] is None else (
        f"{result['fmax_mhz']:.1f} MHz: {t['fps']:.2f} frames/s")
    print(f"{graph.name} on {args.config} ({result['source']}): {t['cycles']:,} cycles, "
          f"{t['macs']:,} MACs, utilization {t['utilization']:.1%}; {fmax}")
    print(f"report written to {out}: {', '.join(report.FILES)}")
    if result["synthesis_error"] is not None:
        # The report is complete but for what the tools could not give: exit status 1.
        print(f"mnaccel report: synthesis failed: {result['synthesis_error']}",
              file=sys.stderr)
        return 1
    return 0


def _simulate(program, graph, args, modelled, progress):
    """Run ``program`` on the simulated accelerator as ``mnaccel simulate`` does.

    Returns ``(LAYER_CYCLES per step, CYCLES, None)``, or ``(None, None, message)`` if the
    bench failed or the outputs differ from the golden model.
    """
    from mnaccel.golden.zoo import random_input
    from mnaccel.sim import system
    from mnaccel.sim.commands.simulate import _CYCLE_MARGIN, _stdout_to_stderr

    x = random_input(graph, args.seed)
    budget = _CYCLE_MARGIN * sum(s.cycles for s in modelled)
    progress.show(f"building (cached per preset) and simulating {len(program.plan.steps)} "
                  f"steps ...")
    try:
        with _stdout_to_stderr():
            result = system.run_program(program, x, max_cycles=budget + 100_000)
    except (AssertionError, RuntimeError) as exc:
        return None, None, f"mnaccel: simulation failed: {exc}"
    progress.show("comparing with the golden model ...")
    try:
        system.check_outputs(program, x, result)
    except AssertionError as exc:
        return None, None, f"mnaccel: mismatch: {exc}"
    return list(result.layer_cycles), result.cycles, None
