# amaranth: UnusedElaboratable=no
# (Scheduler is built only to check that it accepts the configuration, never elaborated.)
"""``mnaccel simulate``: run a model cycle-accurately on the accelerator, check it bit-exactly.

The model is compiled for a configuration preset
(:func:`mnaccel.compiler.image.compile_model`), run on the simulated
:class:`~mnaccel.hw.accelerator.Accelerator` through the system bench
(:func:`mnaccel.sim.system.run_program`; one Verilator build per preset, cached), and every
layer output that the hardware writes to external memory is compared with the golden model
(:func:`mnaccel.sim.system.check_outputs`). A mismatch, a run that does not finish or a
hardware error ends with exit status 1 and one line naming the layer, the first differing
element and both values; a failure of the bench or of the simulator build with exit status 1
and its message.

stdout gets one row per step (descriptor; a fused ``DW_PW`` step covers a depthwise and a
pointwise layer): cycles from the hardware's ``LAYER_CYCLES`` counter, MACs and utilization
= MACs ÷ (cycles × ``config.multipliers``), then the totals (``CYCLES``).

External memory is the Verilog RAM model inside the simulator by default (``--memory
verilog``: no Python per bus beat, a whole MobileNetV1 in minutes) or cocotbext-axi's
``AxiRam`` (``--memory axiram``); their timings differ by a few cycles per burst
(docs/hw/simulation.md). A line per finished step and the simulator's warnings go to
stderr (cocotb's INFO log is off unless ``COCOTB_LOG_LEVEL`` says otherwise).

``--layers A-B`` (or ``N``; indices in execution order or layer names) runs the subgraph
of layers A to B (:func:`select`): its input is layer A's input tensor as the golden model
computes it from the model input, and each selected layer's output is compared. A range
may start and end anywhere: a pointwise layer that the whole network runs fused with its
depthwise layer runs as a lone ``PW`` step, and a depthwise layer whose pointwise layer is
left out as a lone ``DW`` step.

``--dump DIR`` writes the ``mnaccel golden`` dump format
(:mod:`mnaccel.sim.commands.golden`) from the hardware's outputs (also after a mismatch, to
look at), with in addition ``"config"``, ``"total_cycles"``, ``"multipliers"`` and
``"utilization"`` at the top of ``manifest.json`` and ``"cycles"`` and ``"macs"`` on each layer
entry: ``macs`` the layer's own, ``cycles`` those of the step the layer ends (``null`` for a
depthwise layer fused into the following pointwise layer, whose entry carries the step's
cycles; 0 for a ``RESHAPE``, which only renames bytes). A depthwise output fused on chip never
reaches memory: its entry has ``"file": null``. With ``--layers`` the manifest lists the
selected layers, with their indices in the whole model.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
from pathlib import Path

from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Graph
from mnaccel.sim.commands.golden import (
    Progress,
    check_dump_dir,
    layer_file_name,
    read_input,
    write_dump,
)

__all__ = ["parse_layers", "register", "run", "select"]

#: Simulated cycles allowed per cycle that the cycle model predicts, before a run is
#: declared hung (the measured/model ratio is 1.0–1.25, docs/hw/accelerator.md).
_CYCLE_MARGIN = 4


def register(subparsers, add_model_args) -> None:
    """Add the ``simulate`` command to the CLI."""
    from mnaccel.hw.config import DEFAULT_PRESET, PRESETS

    p = subparsers.add_parser(
        "simulate",
        help="run a model cycle-accurately on the accelerator, compare with the golden model",
        description="Compile MODEL for a configuration, run it on the simulated accelerator "
        "(cocotb system bench), compare every layer output the hardware writes with the "
        "golden model bit-exactly and print cycles, MACs and utilization per step.",
    )
    add_model_args(p)
    p.add_argument("--config", metavar="PRESET", default=DEFAULT_PRESET,
                   help=f"configuration preset: {', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    p.add_argument("--input", metavar="X.npy",
                   help="int8 NHWC input of the model's input shape (default: seeded random, "
                   "--seed)")
    p.add_argument("--kernels", choices=("reference", "optimized"), default="reference",
                   help="TFLite flavour the requantization follows (docs/numerics.md)")
    p.add_argument("--layers", metavar="A-B",
                   help="run only layers A to B (inclusive, execution order; N for one layer; "
                   "indices or layer names) from layer A's input as the golden model "
                   "computes it")
    p.add_argument("--dump", metavar="DIR", help="write every layer output and manifest.json")
    p.add_argument("--waves", action="store_true",
                   help="dump a waveform (Verilator --trace-fst; its path is logged)")
    p.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator",
                   help="HDL simulator (default verilator; icarus needs iverilog on PATH)")
    p.add_argument("--memory", choices=("verilog", "axiram"), default="verilog",
                   help="external memory model: verilog (default; inside the simulator, "
                   "fast) or axiram (cocotbext-axi in Python); docs/hw/simulation.md")
    p.set_defaults(run=run)


def parse_layers(spec: str, graph: Graph) -> tuple[int, int]:
    """The first and last layer (indices in execution order) that ``spec`` selects.

    ``spec`` is ``N`` (one layer) or ``A-B`` (layers A to B inclusive), each end a layer
    index or a layer name (``conv_dw_2-conv_pw_3``).

    Raises
    ------
    UserError
        If ``spec`` names no layer or the range is empty.
    """
    names = {layer.name: i for i, layer in enumerate(graph.layers)}
    n = len(graph.layers)

    def index(text: str) -> int | None:
        text = text.strip()
        if text in names:
            return names[text]
        return int(text) if re.fullmatch(r"\d+", text) else None

    # A name may itself hold a '-': try every split, the whole spec first.
    ends = [(i, i) for i in [index(spec)] if i is not None]
    for m in re.finditer("-", spec):
        a, b = index(spec[:m.start()]), index(spec[m.end():])
        if a is not None and b is not None:
            ends.append((a, b))
    if not ends:
        raise UserError(f"--layers {spec!r}: give N, A-B (layer indices, execution order) "
                        f"or layer names, e.g. 0-{n - 1} or {graph.layers[0].name}")
    first, last = ends[0]
    if max(first, last) >= n:
        raise UserError(f"--layers {spec!r}: the model has layers 0 to {n - 1}")
    if first > last:
        raise UserError(f"--layers {spec!r}: the range is empty (layer {first} comes after "
                        f"layer {last})")
    return first, last


def select(graph: Graph, first: int, last: int) -> Graph:
    """The graph of layers ``first`` to ``last`` of ``graph``, from the first one's input
    to the last one's output.

    The tensors keep their quantization, so a run of the subgraph computes bit for bit what
    the whole graph computes for those layers from the same input tensor.

    Raises
    ------
    UserError
        If a selected layer reads an activation computed before ``first`` other than the
        first layer's input (e.g. the skip input of a residual ``ADD``).
    """
    layers = graph.layers[first:last + 1]
    start = layers[0].inputs[0]
    produced = {start} | {layer.output for layer in layers}
    for layer in layers:
        for name in layer.inputs:
            if name not in produced and graph.tensors[name].data is None:
                raise UserError(f"layer {layer.name!r} also reads {name!r}, computed before "
                                f"layer {first} ({layers[0].name!r}): start the range "
                                f"earlier; a run has one input tensor")
    used = produced | {name for layer in layers for name in layer.inputs}
    return Graph(f"{graph.name}_layers{first}-{last}",
                 {k: v for k, v in graph.tensors.items() if k in used}, layers, start,
                 (layers[-1].output,))


def _config(name: str):
    """The preset ``name``, if the scheduler can run it; UserError otherwise."""
    from mnaccel.hw.config import preset
    from mnaccel.hw.scheduler import Scheduler

    try:
        config = preset(name)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        Scheduler(config)
    except ValueError as exc:
        raise UserError(f"configuration {name!r} cannot run on the accelerator's scheduler: "
                        f"{exc}") from None
    return config


def _compile(graph: Graph, config, kernels: str):
    """compile_model, and a UserError for a step the scheduler does not execute."""
    from mnaccel.compiler.image import compile_model

    _check_plan(graph, config)
    return compile_model(graph, config, kernels=kernels)


def _check_plan(graph: Graph, config) -> None:
    """UserError for a layer ``config`` cannot hold or a step the scheduler does not execute.

    Needs the graph's structure only, not its calibration.
    """
    from mnaccel.compiler.plan import plan
    from mnaccel.hw.scheduler import SUPPORTED_OPCODES

    for step in plan(graph, config).steps:
        if step.opcode not in SUPPORTED_OPCODES:
            raise UserError(f"layer {step.name!r}: the scheduler does not execute "
                            f"{step.opcode.name} steps yet (supported: "
                            f"{', '.join(op.name for op in SUPPORTED_OPCODES)})")


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send what the simulator process prints to stderr, so that stdout holds the table."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def _quiet_simulator():
    """cocotb's INFO log (a banner, every test's start and end) only hides the progress."""
    saved = os.environ.get("COCOTB_LOG_LEVEL")
    os.environ["COCOTB_LOG_LEVEL"] = saved or "WARNING"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COCOTB_LOG_LEVEL"]


def _fmt(x) -> str:
    return "?" if x is None else f"{x:,}"


def _util(macs: int, cycles, multipliers: int):
    return None if not cycles else macs / (cycles * multipliers)


def run(args: argparse.Namespace) -> int:
    from mnaccel.compiler.cycle_model import model
    from mnaccel.compiler.image import compile_model
    from mnaccel.golden.interpreter import run as golden_run
    from mnaccel.golden.table import table_rows
    from mnaccel.golden.zoo import ZOO, random_input
    from mnaccel.sim.cli import load_model
    from mnaccel.sim.system import check_outputs, run_program

    dump = Path(args.dump) if args.dump is not None else None
    if dump is not None:
        check_dump_dir(dump)
    if args.simulator == "icarus" and shutil.which("iverilog") is None:
        raise UserError("--simulator icarus needs iverilog on PATH (apt-get install iverilog)")
    config = _config(args.config)
    progress = Progress()
    try:
        progress.show(f"loading {args.model} ...")
        # The structure first, without the zoo's calibration run: a bad --layers or --input
        # or a layer the configuration cannot hold is reported in seconds, even for a
        # model whose calibration takes minutes.
        graph = load_model(args, calibrate=False)
        first, last = ((0, len(graph.layers) - 1) if args.layers is None
                       else parse_layers(args.layers, graph))
        x = (read_input(args.input, graph) if args.input is not None
             else random_input(graph, args.seed))
        _check_plan(graph if args.layers is None else select(graph, first, last), config)
        if args.model in ZOO:
            progress.show(f"calibrating {args.model} ...")
            graph = load_model(args)
        start = graph.layers[first].inputs[0]
        if start != graph.input:
            # The accelerator starts from layer `first`'s input as the golden model
            # computes it from the model input.
            progress.show(f"computing the input of layer {first} with the golden model ...")
            x = golden_run(select(graph, 0, first - 1), x, kernel=args.kernels)[start]
        graph = graph if args.layers is None else select(graph, first, last)
        progress.show(f"compiling {graph.name} for {args.config} ...")
        program = compile_model(graph, config, kernels=args.kernels)
        steps = program.plan.steps
        budget = _CYCLE_MARGIN * sum(s.cycles for s in model(program.plan, dram_latency=2))
        progress.show(f"building (cached per preset) and simulating {len(steps)} steps on "
                      f"{args.simulator} ...")
        try:
            with _stdout_to_stderr(), _quiet_simulator():
                result = run_program(program, x, max_cycles=budget + 100_000,
                                     simulator=args.simulator, waves=args.waves,
                                     memory=args.memory, progress=True)
        except (AssertionError, RuntimeError) as exc:
            # The bench itself failed (or the build did): no result to compare or dump.
            progress.done()
            print(f"mnaccel: simulation failed: {exc}", file=sys.stderr)
            return 1
        progress.show("comparing with the golden model ...")
        try:
            check_outputs(program, x, result)
            failure = None
        except AssertionError as exc:
            failure = str(exc)
    finally:
        progress.done()

    mults = config.multipliers
    macs = {r.name: r.mul for r in table_rows(graph) if r.type in ("conv", "dw", "pw", "fc")}
    cycles = list(result.layer_cycles) + [None] * (len(steps) - len(result.layer_cycles))
    width = max(len("total"), *(len(s.name) for s in steps))
    lines = [f"{'step':{width}s}  {'op':6s} {'cycles':>12s} {'MACs':>14s} {'util':>6s}"]
    for step, c in zip(steps, cycles, strict=True):
        m = sum(macs.get(layer.name, 0) for layer in step.layers)
        u = _util(m, c, mults)
        lines.append(f"{step.name:{width}s}  {step.opcode.name:6s} {_fmt(c):>12s} {m:>14,} "
                     f"{'?' if u is None else f'{u:6.1%}':>6s}")
    total_macs = sum(macs.values())
    total_u = _util(total_macs, result.cycles, mults)
    lines.append(f"{'total':{width}s}  {'':6s} {result.cycles:>12,} {total_macs:>14,} "
                 f"{'?' if total_u is None else f'{total_u:6.1%}':>6s}")
    print(f"{graph.name} on {args.config} ({mults} multipliers, {args.kernels} kernels)")
    print("\n".join(lines))

    if dump is not None:
        step_of = {}
        for step, c in zip(steps, cycles, strict=True):
            for layer in step.layers[:-1]:
                step_of[layer.name] = None
            step_of[step.layers[-1].name] = c
        arrays, entries = {}, []
        for i, layer in enumerate(graph.layers, start=first):
            file = None
            if layer.output in result.outputs:
                file = layer_file_name(i, layer.name)
                arrays[file] = result.outputs[layer.output]
            entries.append({"index": i, "name": layer.name, "op": layer.op.value,
                            "file": file, "tensor": graph.tensors[layer.output].index,
                            "cycles": step_of.get(layer.name, 0),
                            "macs": macs.get(layer.name, 0)})
        manifest = {"model": graph.name, "kernels": args.kernels, "config": args.config,
                    "total_cycles": result.cycles, "multipliers": mults,
                    "utilization": total_u, "layers": entries}
        write_dump(dump, manifest, arrays)
        print(f"{len(arrays)} layer outputs written to {dump}")

    if failure is not None:
        print(f"mnaccel: mismatch: {failure}", file=sys.stderr)
        return 1
    print(f"bit-exact: {len(result.outputs)} layer outputs equal the golden model's")
    return 0
