"""Run compiled programs on the simulated accelerator and check them against the golden model.

:func:`run_images` runs raw memory images (a program and its data) through the system bench
(:mod:`mnaccel.sim.benches.system`) on one Verilator build of
:class:`~mnaccel.hw.accelerator.Accelerator` per configuration — programs are data, so any
number of them share the build. :func:`run_program` runs a
:class:`~mnaccel.compiler.image.Program` on an input and returns every layer output read
back from the simulated RAM with the hardware's cycle counters; :func:`check_outputs`
compares them with :func:`mnaccel.golden.interpreter.run` bit-exactly.
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
from mnaccel.sim.runner import run_bench

__all__ = ["RunResult", "check_outputs", "hardware_outputs", "run_images", "run_program",
           "run_programs"]

BENCH = "mnaccel.sim.benches.system"


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
    outputs: dict = field(default_factory=dict)


def _name(config: AccelConfig) -> str:
    return f"accelerator_{config.config_id}"


def run_images(config: AccelConfig, images: list[tuple[bytes, int]], *,
               max_cycles: int = 1_000_000, pause: str = "none", seed: int = 0,
               simulator: str = "verilator", waves: bool = False) -> list[RunResult]:
    """Run each ``(image, program_addr)`` in turn on one simulated accelerator.

    The image is loaded at address 0 of an ``AxiRam`` (sized to the largest image, rounded
    up to a power of two); a run that does not end (``STATUS.DONE``) within ``max_cycles``
    comes back with ``timeout`` set (the accelerator is then soft-reset for the next one).
    ``pause="random"`` makes the RAM stall each AXI channel at random (``seed``).
    """
    size = max(len(img) for img, _ in images)
    mem = 1 << max(16, (size - 1).bit_length())
    work = build_root() / "runs"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="system-") as tmp:
        runs = []
        for i, (img, addr) in enumerate(images):
            path = Path(tmp) / f"image{i}.bin"
            path.write_bytes(bytes(img))
            runs.append({"image": str(path), "program_addr": int(addr),
                         "readback": str(Path(tmp) / f"readback{i}.bin"),
                         "max_cycles": int(max_cycles)})
        rec = run_bench(Accelerator(config), name=_name(config), bench=BENCH,
                        params={"mem_size": mem, "runs": runs, "pause": pause,
                                "seed": seed}, simulator=simulator,
                        waves=waves)
        results = []
        for run, r in zip(runs, rec["runs"], strict=True):
            results.append(RunResult(memory=Path(run["readback"]).read_bytes(), **r))
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


def run_programs(jobs: list[tuple[Program, np.ndarray]], *, max_cycles: int = 1_000_000,
                 **kwargs) -> list[RunResult]:
    """Several ``(program, input)`` pairs for the same configuration in one simulation."""
    configs = {p.plan.config for p, _ in jobs}
    if len(configs) != 1:
        raise ValueError(f"all programs must target one configuration, not {len(configs)}")
    images = []
    for program, x in jobs:
        image = bytearray(program.image)
        program.write_tensor(image, program.plan.graph.input, x)
        images.append((bytes(image), program.program_addr))
    results = run_images(configs.pop(), images, max_cycles=max_cycles, **kwargs)
    for (program, _), res in zip(jobs, results, strict=True):
        res.outputs = hardware_outputs(program, res.memory)
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
