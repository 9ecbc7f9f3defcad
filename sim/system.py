"""Run compiled programs on the simulated accelerator and check them against the golden model.

:func:`run_images` runs raw memory images (a program and its data) through the system bench
(:mod:`mnaccel.sim.benches.system`) on one Verilator build of
:class:`~mnaccel.hw.accelerator.Accelerator` per configuration — programs are data, so any
number of them share the build. :func:`run_program` runs a
:class:`~mnaccel.compiler.image.Program` on an input and returns every layer output read
back from the simulated RAM with the hardware's cycle counters; :func:`check_outputs`
compares them with :func:`mnaccel.golden.interpreter.run` bit-exactly and
:func:`check_writes` checks that nothing outside the program's output tensors changed.

A run can stall the RAM to a pattern (:data:`PAUSE_PATTERNS`, defined in
:mod:`mnaccel.sim.benches.system`) and exercise the control: options per run (the third
element of a job) ``"pause"``, ``"start_twice_at"`` and ``"soft_reset_at"`` (see
:func:`run_images`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnaccel.compiler.image import Program
from mnaccel.golden.interpreter import run as golden_run
from mnaccel.hw.accelerator import Accelerator
from mnaccel.hw.config import AccelConfig
from mnaccel.hw.descriptor import Opcode
from mnaccel.sim.build import build_root
from mnaccel.sim.memory import RAM_MIN_BYTES, RAM_SOURCE, AcceleratorWithRam
from mnaccel.sim.runner import run_bench

__all__ = ["MEMORIES", "PAUSE_PATTERNS", "RUN_OPTIONS", "RunResult", "check_outputs",
           "check_writes", "hardware_outputs", "run_images", "run_program", "run_programs"]

BENCH = "mnaccel.sim.benches.system"

#: Stall patterns of the simulated RAM (``mnaccel.sim.benches.system.PATTERNS``, which
#: tests/hw/test_robustness.py keeps equal to this).
PAUSE_PATTERNS = ("none", "random", "bursty", "slow-read", "slow-write")
#: Options a run may carry (:func:`run_images`).
RUN_OPTIONS = ("pause", "start_twice_at", "soft_reset_at", "max_cycles")
#: External memories of the system bench: cocotbext-axi's AxiRam (Python; stall patterns)
#: or the Verilog model of :mod:`mnaccel.sim.memory` (inside the simulator; fast).
MEMORIES = ("axiram", "verilog")


@dataclass
class RunResult:
    """What one run of the accelerator left behind.

    Attributes
    ----------
    memory : bytes
        The whole simulated RAM after the run.
    status, error_code : int
        ``STATUS`` and its ``ERROR_CODE`` field.
    cycles : int
        ``CYCLES``: the run's cycles as the hardware counted them.
    layer_cycles : list of int or None
        ``LAYER_CYCLES`` of each step (descriptor), as read at its interrupt.
    read_stall, write_stall : int
        The stall counters.
    irqs : int
        Interrupts the host served.
    wall_cycles : int
        Clock cycles from the host's start write to its seeing DONE (host reads included).
    layer_count : int
        ``LAYER_COUNT``: steps finished.
    timeout : bool
        The run did not finish within ``max_cycles``.
    control : dict
        What the host saw when it exercised the control (run options ``start_twice_at``:
        ``busy_at_second_start``, ``status_after_second_start``; ``soft_reset_at``:
        ``layers_before_reset``, ``status_after_reset``).
    image : bytes
        The memory image the run started from (the RAM beyond it was zero).
    outputs : dict of str to numpy.ndarray
        Filled by :func:`run_program`: every layer output kept in external memory.
    """

    memory: bytes
    status: int
    error_code: int
    cycles: int
    layer_cycles: list
    read_stall: int
    write_stall: int
    irqs: int
    wall_cycles: int
    layer_count: int
    timeout: bool = False
    control: dict = field(default_factory=dict)
    image: bytes = b""
    outputs: dict = field(default_factory=dict)


def _name(config: AccelConfig) -> str:
    return f"accelerator_{config.config_id}"


def run_images(config: AccelConfig, images: list[tuple], *, max_cycles: int = 1_000_000,
               pause: str = "none", seed: int = 0, simulator: str = "verilator",
               waves: bool = False, memory: str = "axiram",
               progress: bool = False) -> list[RunResult]:
    """Run each ``(image, program_addr)`` or ``(image, program_addr, options)`` in turn on
    one simulated accelerator, without a reset in between.

    The image is loaded at address 0 of an ``AxiRam`` (sized to the largest image, rounded
    up to a power of two), the rest of the RAM zeroed; a run that does not end
    (``STATUS.DONE``) within ``max_cycles`` comes back with ``timeout`` set (the
    accelerator is then soft-reset for the next one). ``pause`` names the RAM's stall
    pattern (:data:`PAUSE_PATTERNS`, drawn from ``seed`` and the run's index).

    ``options`` (a dict) may hold ``"pause"`` (this run's pattern), ``"max_cycles"``,
    ``"start_twice_at"`` (the host writes ``CTRL.START`` again that many cycles after its
    start, and records ``STATUS`` in ``RunResult.control``) and ``"soft_reset_at"`` (the
    host writes ``CTRL.SOFT_RESET`` that many cycles after its start, then ``CTRL.START``
    at once: the results are those of the second start).

    ``memory="verilog"`` puts the RAM inside the simulator instead
    (:class:`mnaccel.sim.memory.AcceleratorWithRam`: a fixed read latency, no stalls), so
    that Python runs only at register accesses and interrupts — the fast way to simulate
    a whole network; stall patterns other than ``"none"`` need ``memory="axiram"``.
    ``progress`` prints a line to stderr as each step finishes.
    """
    if memory not in MEMORIES:
        raise ValueError(f"memory must be one of {MEMORIES}, not {memory!r}")
    size = max(len(job[0]) for job in images)
    mem = 1 << max(16, (size - 1).bit_length())
    work = build_root() / "runs"
    work.mkdir(parents=True, exist_ok=True)
    for job in images:
        opts = job[2] if len(job) > 2 else {}
        unknown = set(opts) - set(RUN_OPTIONS)
        if unknown:
            raise ValueError(f"unknown run options {sorted(unknown)}; known: {RUN_OPTIONS}")
        if opts.get("pause", pause) not in PAUSE_PATTERNS:
            raise ValueError(f"pause must be one of {PAUSE_PATTERNS}, not "
                             f"{opts.get('pause', pause)!r}")
        if memory == "verilog" and opts.get("pause", pause) != "none":
            raise ValueError("stall patterns need memory='axiram'")
    with tempfile.TemporaryDirectory(dir=work, prefix="system-") as tmp:
        runs = []
        for i, job in enumerate(images):
            img, addr = job[0], job[1]
            opts = dict(job[2]) if len(job) > 2 else {}
            path = Path(tmp) / f"image{i}.bin"
            path.write_bytes(bytes(img))
            runs.append({"image": str(path), "program_addr": int(addr),
                         "readback": str(Path(tmp) / f"readback{i}.bin"),
                         "max_cycles": int(max_cycles), **opts})
        params = {"mem_size": mem, "runs": runs, "pause": pause, "seed": seed,
                  "memory": memory, "word_bytes": config.axi_data_width // 8,
                  "progress": bool(progress)}
        if memory == "verilog":
            # One capacity for every image up to 16 MB (MobileNetV1 1.0/224 is 10 MB), so
            # that the runs of a configuration share one build; the readback is `mem` bytes.
            capacity = max(mem, RAM_MIN_BYTES)
            rec = run_bench(AcceleratorWithRam(config, mem_bytes=capacity),
                            name=f"accelerator_ram_{config.config_id}_{capacity.bit_length() - 1}",
                            bench=BENCH, params=params, simulator=simulator, waves=waves,
                            extra_sources=[RAM_SOURCE])
        else:
            rec = run_bench(Accelerator(config), name=_name(config), bench=BENCH,
                            params=params, simulator=simulator, waves=waves)
        results = []
        for job, run, r in zip(images, runs, rec["runs"], strict=True):
            results.append(RunResult(memory=Path(run["readback"]).read_bytes(),
                                     image=bytes(job[0]), **r))
    return results


def hardware_outputs(program: Program, memory: bytes) -> dict[str, np.ndarray]:
    """The layer outputs that live in external memory, read from ``memory``.

    The depthwise outputs of ``DW_PW`` steps never leave the chip and are not included.
    """
    graph = program.plan.graph
    on_chip = {s.mid for s in program.plan.steps if s.opcode is Opcode.DW_PW}
    return {layer.output: program.read_tensor(memory, layer.output)
            for layer in graph.layers if layer.output not in on_chip}


def run_program(program: Program, x, *, max_cycles: int = 1_000_000, **kwargs) -> RunResult:
    """Run ``program`` on input ``x`` (the graph input's shape, int8)."""
    return run_programs([(program, x)], max_cycles=max_cycles, **kwargs)[0]


def run_programs(jobs: list[tuple], *, max_cycles: int = 1_000_000,
                 **kwargs) -> list[RunResult]:
    """Several ``(program, input)`` or ``(program, input, options)`` for the same
    configuration in one simulation (``options``: :func:`run_images`)."""
    configs = {job[0].plan.config for job in jobs}
    if len(configs) != 1:
        raise ValueError(f"all programs must target one configuration, not {len(configs)}")
    images = []
    for program, x, *opts in jobs:
        image = bytearray(program.image)
        program.write_tensor(image, program.plan.graph.input, x)
        images.append((bytes(image), program.program_addr, *opts))
    results = run_images(configs.pop(), images, max_cycles=max_cycles, **kwargs)
    for job, res in zip(jobs, results, strict=True):
        res.outputs = hardware_outputs(job[0], res.memory)
    return results


def check_outputs(program: Program, x, result: RunResult) -> None:
    """Every layer output in ``result`` equals the golden model's, bit for bit.

    Raises
    ------
    AssertionError
        Naming the layer, the number of differing elements, the first one's index and both
        values; or if the run reported an error.
    """
    if result.timeout:
        raise AssertionError(f"the run did not finish (STATUS {result.status:#x}, "
                             f"{result.layer_count} steps done)")
    if result.error_code:
        raise AssertionError(f"the run ended with error code {result.error_code} "
                             f"(STATUS {result.status:#x})")
    graph = program.plan.graph
    want = golden_run(graph, np.asarray(x, np.int8), kernel=program.kernels)
    for layer in graph.layers:
        name = layer.output
        if name not in result.outputs:
            continue
        got, exp = result.outputs[name], want[name]
        diff = np.argwhere(got != exp)
        if diff.size:
            where = tuple(int(i) for i in diff[0])
            raise AssertionError(
                f"layer {layer.name!r}: {len(diff)} of {exp.size} elements differ, first at "
                f"{where}: accelerator {int(got[where])}, golden {int(exp[where])}")


def check_writes(program: Program, result: RunResult, steps: int | None = None) -> None:
    """Nothing in memory changed but the outputs of the program's first ``steps`` steps
    (default: all), each within its tensor's bytes.

    Compares ``result.memory`` with ``result.image`` (the RAM beyond the image was zero).

    Raises
    ------
    AssertionError
        Naming the first changed range outside those tensors and the region it falls in.
    """
    plan = program.plan
    done = plan.steps if steps is None else plan.steps[:steps]
    allowed = []
    for step in done:
        info = plan.storage(step.output)
        a = program.addr(step.output)
        allowed.append((a, a + info.nbytes))
    before = np.frombuffer(result.image + bytes(len(result.memory) - len(result.image)),
                           np.uint8)
    after = np.frombuffer(result.memory, np.uint8)
    changed = before != after
    for lo, hi in allowed:
        changed[lo:hi] = False
    where = np.flatnonzero(changed)
    if where.size:
        first = int(where[0])
        end = first
        while end + 1 < len(changed) and changed[end + 1]:
            end += 1
        region = next((f"{name} [{a:#x}, {a + n:#x})" for name, a, n in program.regions
                       if a <= first < a + n), "no region (beyond the image or in padding)")
        raise AssertionError(
            f"{where.size} bytes changed outside the output tensors, the first at "
            f"[{first:#x}, {end + 1:#x}) in {region}")
