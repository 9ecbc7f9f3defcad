"""System bench of :class:`mnaccel.hw.accelerator.Accelerator`: memory, registers, interrupt.

The accelerator's ``m_axi`` port is bound to an external memory (below) and its ``s_axil``
port to an ``AxiLiteMaster`` (the host). Python runs only in the memory model (AxiRam) and
at interrupts, never per cycle of the datapath.

For each run in ``params["runs"]`` the host

1. loads the memory image (a binary file) at address 0 of the RAM and zeroes the rest, so
   that a write outside the image shows in the readback; sets the run's stall pattern,
2. writes ``PROGRAM_ADDR``, enables the DONE, ERROR and LAYER interrupts and sets
   ``CTRL.IRQ_EN | CTRL.START``,
3. optionally, at a given cycle after the start, writes ``CTRL.START`` again (it must be
   ignored and flagged) or ``CTRL.SOFT_RESET`` followed at once by a new start (the run
   begins again from the first descriptor),
4. waits for ``irq`` (a bounded wait: ``max_cycles`` clock cycles in all, after which the
   run is recorded with ``timeout`` and the accelerator soft-reset); on each interrupt it
   clears ``IRQ_STATUS`` first, then reads ``LAYER_COUNT`` and ``LAYER_CYCLES`` (a layer
   finishing meanwhile raises the interrupt again, so none is missed unless two finish
   within the few cycles of the register reads: then the skipped layer's cycles are
   recorded as None),
5. once ``STATUS.DONE``: reads ``STATUS``, ``CYCLES``, ``READ_STALL``, ``WRITE_STALL`` and
   writes the whole RAM to the run's ``readback`` file.

External memory (``params["memory"]``): ``"axiram"`` (default), cocotbext-axi's ``AxiRam``
in Python, with the stall patterns below; or ``"verilog"``, the RAM model inside the
simulator (:mod:`mnaccel.sim.memory`; the design is then
:class:`~mnaccel.sim.memory.AcceleratorWithRam`), loaded and read back through files, with
a fixed read latency and no Python per beat — whole networks in minutes.

Parameters (``bench_params()``): ``memory``, ``word_bytes`` (bus width in bytes, for the
Verilog memory), ``progress`` (print a line per finished step to stderr), ``mem_size``
(bytes), ``runs`` (list of ``{"image": path, "program_addr": int, "readback": path,
"max_cycles": int}``, optionally with ``"pause"`` (a pattern for this run),
``"start_twice_at"`` or ``"soft_reset_at"`` (cycles after the start write)), ``pause``
(the pattern of runs that name none) and ``seed``.

Stall patterns (:data:`PATTERNS`; every channel of the RAM: AR, R, AW, W, B):

``none``
    The RAM answers as fast as cocotbext-axi's ``AxiRam`` does (a cycle or two).
``random``
    Each channel stalls in a cycle with its own probability (0.2–0.5): backpressure
    everywhere, out of step.
``bursty``
    Each channel alternates stalled and free runs of random lengths (up to 24–48 and
    40–64 cycles): long outages, as a DRAM refresh or a busy interconnect gives.
``slow-read``
    Every read burst waits 4–40 cycles (random per burst) after the RAM has taken its
    address before its data starts (a read latency that varies per request; ``AxiRam`` has
    no latency of its own, so the address is held back from its read process), AR stalls
    half the cycles and R 30 %; writes are free.
``slow-write``
    AW stalls half the cycles, W 80 % (a fifth of a beat per cycle, slower than the
    requantizer's output on every preset), B in bursts (up to 16 cycles stalled, up to 8
    free); reads are free.

Records ``runs``: per run ``status``, ``error_code``, ``cycles``, ``layer_count``,
``layer_cycles`` (list, index = layer), ``read_stall``, ``write_stall``, ``irqs``, ``timeout``,
``wall_cycles`` (clock cycles from the start write to seeing DONE, host included) and
``control`` (what step 3 saw: ``busy_at_second_start`` and ``status_after_second_start``;
``layers_before_reset`` and ``status_after_reset``).
"""

from __future__ import annotations

import itertools
import logging
import random
import sys
import warnings
from pathlib import Path

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiResp

from mnaccel.hw.axi import BUS_SEPARATOR
from mnaccel.hw.csr import register
from mnaccel.sim.benches.common import bench_params, record, reset, start_clock
from mnaccel.sim.memory import read_dump_hex, write_image_hex

PERIOD_NS = 10

# cocotbext-axi still calls cocotb 1.x APIs that cocotb 2 deprecates; the warnings say
# nothing about the design and would bury the user's output.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")

#: The stall patterns (module docstring).
PATTERNS = ("none", "random", "bursty", "slow-read", "slow-write")


def _cycle() -> int:
    """Clock cycles since time 0, from the simulation time (no per-cycle coroutine)."""
    return int(get_sim_time("ns")) // PERIOD_NS


def _high(signal) -> bool:
    """A 1-bit signal is high; an undriven (X/Z) one, as Icarus shows before reset, is not."""
    value = signal.value
    return value.is_resolvable and bool(int(value))


def _bit(reg: str, field: str) -> int:
    return 1 << register(reg).field(field).lsb


def _coin(rng: random.Random, p: float):
    return (rng.random() < p for _ in itertools.count())


def _bursts(rng: random.Random, max_on: int, max_off: int):
    while True:
        yield from itertools.repeat(True, rng.randint(1, max_on))
        yield from itertools.repeat(False, rng.randint(1, max_off))


def _pattern(kind: str, rng: random.Random):
    """Pause generators for (AR, R, AW, W, B) (None: never stalls) and the read latency
    range (None: none added)."""
    if kind == "none":
        return (None,) * 5, None
    if kind == "random":
        return tuple(_coin(rng, p) for p in (0.2, 0.4, 0.3, 0.35, 0.5)), None
    if kind == "bursty":
        return tuple(_bursts(rng, on, off)
                     for on, off in ((24, 40), (48, 64), (24, 40), (48, 64), (32, 48))), None
    if kind == "slow-read":
        return (_coin(rng, 0.5), _coin(rng, 0.3), None, None, None), (4, 40)
    if kind == "slow-write":
        return (None, None, _coin(rng, 0.5), _coin(rng, 0.8), _bursts(rng, 16, 8)), None
    raise ValueError(f"pause must be one of {', '.join(PATTERNS)}, not {kind!r}")


class Memory:
    """The external memory: an ``AxiRam`` whose channels stall to a pattern."""

    def __init__(self, dut, size: int):
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi", bus_separator=BUS_SEPARATOR),
                          dut.clk, dut.rst, size=size)
        self.size = size
        self._clk = dut.clk
        self._latency = None
        self._rng = random.Random(0)
        read_if = self.ram.read_if
        recv = read_if.ar_channel.recv

        async def recv_late():
            # The read process takes the next address; holding it back delays that burst's
            # data (and, in order, everything behind it).
            ar = await recv()
            if self._latency is not None:
                await ClockCycles(self._clk, self._rng.randint(*self._latency))
            return ar

        # Replaced before the read process first runs (it is scheduled, not yet started).
        read_if.ar_channel.recv = recv_late

    async def load(self, image: bytes) -> None:
        self.ram.write(0, image)
        self.ram.write(len(image), bytes(self.size - len(image)))

    async def read_all(self) -> bytes:
        return self.ram.read(0, self.size)

    def stall(self, kind: str, rng: random.Random) -> None:
        gens, self._latency = _pattern(kind, rng)
        self._rng = rng
        channels = (self.ram.read_if.ar_channel, self.ram.read_if.r_channel,
                    self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                    self.ram.write_if.b_channel)
        for channel, gen in zip(channels, gens, strict=True):
            if gen is None:
                channel.clear_pause_generator()
                channel.pause = False
            else:
                channel.set_pause_generator(gen)


class VerilogMemory:
    """The external memory inside the simulator (:class:`mnaccel.sim.memory.AcceleratorWithRam`).

    Loaded and read back through files in the simulator's working directory; it has no
    stall patterns (only ``"none"``).
    """

    def __init__(self, dut, size: int, word_bytes: int):
        self.dut, self.size, self.word = dut, size, word_bytes
        dut.mem_load.value = 0
        dut.mem_dump.value = 0
        dut.mem_dump_words.value = 0

    async def _pulse(self, signal) -> None:
        signal.value = 1
        await RisingEdge(self.dut.clk)
        signal.value = 0
        await RisingEdge(self.dut.clk)

    async def load(self, image: bytes) -> None:
        write_image_hex(Path("mem_image.hex"), image, self.word)
        await self._pulse(self.dut.mem_load)     # zeroes the RAM, then reads the file

    async def read_all(self) -> bytes:
        self.dut.mem_dump_words.value = self.size // self.word
        await self._pulse(self.dut.mem_dump)
        return read_dump_hex(Path("mem_dump.hex"), self.word)

    def stall(self, kind: str, rng: random.Random) -> None:
        if kind != "none":
            raise ValueError(f"the Verilog memory has no stall pattern {kind!r}")


class Host:
    """Register access by name through an ``AxiLiteMaster``."""

    def __init__(self, dut):
        bus = AxiLiteBus.from_prefix(dut, "s_axil", bus_separator=BUS_SEPARATOR)
        self.master = AxiLiteMaster(bus, dut.clk, dut.rst)

    async def rd(self, name: str) -> int:
        offset = register(name).offset
        resp = await self.master.read(offset, 4)
        assert resp.resp == AxiResp.OKAY, f"read of {name} ({offset:#x}): {resp.resp!r}"
        return int.from_bytes(resp.data, "little")

    async def wr(self, name: str, value: int) -> None:
        offset = register(name).offset
        resp = await self.master.write(offset, value.to_bytes(4, "little"))
        assert resp.resp == AxiResp.OKAY, f"write of {name} ({offset:#x}): {resp.resp!r}"

    async def rd64(self, name: str) -> int:
        lo = await self.rd(f"{name}_LO")
        return lo | await self.rd(f"{name}_HI") << 32


async def _wait_until(dut, cycle, when: int) -> None:
    if when > cycle():
        await ClockCycles(dut.clk, when - cycle())


async def _run(dut, host: Host, mem, run: dict, cycle, progress: bool = False) -> dict:
    await mem.load(Path(run["image"]).read_bytes())
    addr = run["program_addr"]
    await host.wr("PROGRAM_ADDR_LO", addr & 0xFFFFFFFF)
    await host.wr("PROGRAM_ADDR_HI", addr >> 32)
    await host.wr("IRQ_ENABLE", _bit("IRQ_ENABLE", "DONE") | _bit("IRQ_ENABLE", "ERROR")
                  | _bit("IRQ_ENABLE", "LAYER"))
    await host.wr("IRQ_STATUS", 0x7)
    irq_en = _bit("CTRL", "IRQ_EN")
    t0 = cycle()
    await host.wr("CTRL", irq_en | _bit("CTRL", "START"))
    control = {}
    if "start_twice_at" in run:
        await _wait_until(dut, cycle, t0 + run["start_twice_at"])
        control["busy_at_second_start"] = bool(await host.rd("STATUS")
                                               & _bit("STATUS", "BUSY"))
        await host.wr("CTRL", irq_en | _bit("CTRL", "START"))
        control["status_after_second_start"] = await host.rd("STATUS")
    if "soft_reset_at" in run:
        await _wait_until(dut, cycle, t0 + run["soft_reset_at"])
        control["layers_before_reset"] = await host.rd("LAYER_COUNT")
        await host.wr("CTRL", irq_en | _bit("CTRL", "SOFT_RESET"))
        control["status_after_reset"] = await host.rd("STATUS")
        await host.wr("IRQ_STATUS", 0x7)
        # At once: the start waits for the accelerator to drain the bus.
        t0 = cycle()
        await host.wr("CTRL", irq_en | _bit("CTRL", "START"))
    deadline = t0 + run["max_cycles"]
    layer_cycles: dict[int, int] = {}
    irqs = 0
    while True:
        if not _high(dut.irq):
            left = deadline - cycle()
            if left <= 0:
                break
            # One timer for the whole bound, not ClockCycles: that counts the cycles in
            # Python, a wake-up per cycle.
            await First(RisingEdge(dut.irq), Timer(left * PERIOD_NS, "ns"))
            if not _high(dut.irq):
                break
        irqs += 1
        pending = await host.rd("IRQ_STATUS")
        await host.wr("IRQ_STATUS", pending)
        count = await host.rd("LAYER_COUNT")
        if pending & _bit("IRQ_STATUS", "LAYER") and count:
            layer_cycles[count - 1] = await host.rd64("LAYER_CYCLES")
            if progress:
                # Straight to the terminal: the simulator's log level hides INFO.
                print(f"  step {count} done at cycle {cycle() - t0:,}", file=sys.__stderr__,
                      flush=True)
        status = await host.rd("STATUS")
        if status & _bit("STATUS", "DONE"):
            break
    status = await host.rd("STATUS")
    timeout = not status & _bit("STATUS", "DONE")
    wall = cycle() - t0
    count = await host.rd("LAYER_COUNT")
    result = {
        "status": status,
        "error_code": (status >> register("STATUS").field("ERROR_CODE").lsb) & 0xFF,
        "cycles": await host.rd64("CYCLES"),
        "layer_count": count,
        "layer_cycles": [layer_cycles.get(i) for i in range(count)],
        "read_stall": await host.rd64("READ_STALL"),
        "write_stall": await host.rd64("WRITE_STALL"),
        "irqs": irqs,
        "wall_cycles": wall,
        "timeout": timeout,
        "control": control,
    }
    if timeout:
        # Unstick the datapath so that the next run starts clean.
        await host.wr("CTRL", _bit("CTRL", "SOFT_RESET"))
    await host.wr("IRQ_STATUS", 0x7)
    Path(run["readback"]).write_bytes(await mem.read_all())
    return result


@cocotb.test()
async def run_programs(dut):
    p = bench_params()
    # Inputs defined and the reset held before the first clock edge. cocotbext-axi's
    # channel processes start when they are created, not at the end of the reset, and
    # sample the ready and valid signals at every rising edge: under a four-state
    # simulator (Icarus) an undriven (Z) AXI-Lite valid made AWREADY and the CSR's
    # registered read handshake X at the first edge, and the master failed on it.
    dut.rst.value = 1
    for port in ("awvalid", "wvalid", "bready", "arvalid", "rready"):
        getattr(dut, f"s_axil{BUS_SEPARATOR}{port}").value = 0
    await Timer(1, "ns")    # cocotb applies writes at the end of the time step
    # Toggled in the simulator interface: a Python clock costs two wake-ups per cycle.
    start_clock(dut.clk, PERIOD_NS, impl="gpi")
    if p.get("memory", "axiram") == "verilog":
        mem = VerilogMemory(dut, p["mem_size"], p["word_bytes"])
    else:
        mem = Memory(dut, p["mem_size"])
    host = Host(dut)
    # The AXI models log every transaction at INFO; a network run would drown the log.
    for port in ("m_axi", "s_axil"):
        logging.getLogger(f"cocotb.{dut._name}.{port}").setLevel(logging.WARNING)
    default = p.get("pause", "none")
    for run in p["runs"]:
        _pattern(run.get("pause", default), random.Random(0))   # a bad name fails first
    await reset(dut)
    results = []
    for i, run in enumerate(p["runs"]):
        mem.stall(run.get("pause", default), random.Random(p.get("seed", 0) * 7919 + i))
        results.append(await _run(dut, host, mem, run, _cycle, p.get("progress", False)))
    record(runs=results)
