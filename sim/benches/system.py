"""System bench of :class:`mnaccel.hw.accelerator.Accelerator`: memory, registers, interrupt.

The accelerator's ``m_axi`` port is bound to cocotbext-axi's ``AxiRam`` (external memory) and
its ``s_axil`` port to an ``AxiLiteMaster`` (the host). Python runs only in the AXI models
and at interrupts, never per cycle of the datapath.

For each run in ``params["runs"]`` the host

1. loads the memory image (a binary file) at address 0 of the RAM,
2. writes ``PROGRAM_ADDR``, enables the DONE, ERROR and LAYER interrupts and sets
   ``CTRL.IRQ_EN | CTRL.START``,
3. waits for ``irq`` (a bounded wait: ``max_cycles`` clock cycles in all, after which the
   run is recorded with ``timeout`` and the accelerator soft-reset); on each interrupt it
   clears ``IRQ_STATUS`` first, then reads ``LAYER_COUNT`` and ``LAYER_CYCLES`` (a layer
   finishing meanwhile raises the interrupt again, so none is missed unless two finish
   within the few cycles of the register reads: then the skipped layer's cycles are
   recorded as None),
4. once ``STATUS.DONE``: reads ``STATUS``, ``CYCLES``, ``READ_STALL``, ``WRITE_STALL`` and
   writes the whole RAM to the run's ``readback`` file.

Parameters (``bench_params()``): ``mem_size`` (bytes), ``runs`` (list of ``{"image": path,
"program_addr": int, "readback": path, "max_cycles": int}``), ``pause`` (``"none"``, or
``"random"``: each AXI channel of the RAM stalls in a cycle with its own probability, which
exercises every stream's backpressure and the read credits) and ``seed``.

Records ``runs``: per run ``status``, ``error_code``, ``cycles``, ``layer_count``,
``layer_cycles`` (list, index = layer), ``read_stall``, ``write_stall``, ``irqs``, ``timeout`` and
``wall_cycles`` (clock cycles from the start write to seeing DONE, host included).
"""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, First, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiResp

from mnaccel.hw.axi import BUS_SEPARATOR
from mnaccel.hw.csr import register
from mnaccel.sim.benches.common import bench_params, record, reset, start_clock

PERIOD_NS = 10


def _cycle() -> int:
    """Clock cycles since time 0, from the simulation time (no per-cycle coroutine)."""
    return int(get_sim_time("ns")) // PERIOD_NS


def _high(signal) -> bool:
    """A 1-bit signal is high; an undriven (X/Z) one, as Icarus shows before reset, is not."""
    value = signal.value
    return value.is_resolvable and bool(int(value))


def _bit(reg: str, field: str) -> int:
    return 1 << register(reg).field(field).lsb


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


async def _run(dut, host: Host, ram: AxiRam, run: dict, index: int, cycle) -> dict:
    image = Path(run["image"]).read_bytes()
    ram.write(0, image)
    addr = run["program_addr"]
    await host.wr("PROGRAM_ADDR_LO", addr & 0xFFFFFFFF)
    await host.wr("PROGRAM_ADDR_HI", addr >> 32)
    await host.wr("IRQ_ENABLE", _bit("IRQ_ENABLE", "DONE") | _bit("IRQ_ENABLE", "ERROR")
                  | _bit("IRQ_ENABLE", "LAYER"))
    await host.wr("IRQ_STATUS", 0x7)
    t0 = cycle()
    await host.wr("CTRL", _bit("CTRL", "IRQ_EN") | _bit("CTRL", "START"))
    deadline = t0 + run["max_cycles"]
    layer_cycles: dict[int, int] = {}
    irqs = 0
    while True:
        if not _high(dut.irq):
            left = deadline - cycle()
            if left <= 0:
                break
            await First(RisingEdge(dut.irq), ClockCycles(dut.clk, left))
            if not _high(dut.irq):
                break
        irqs += 1
        pending = await host.rd("IRQ_STATUS")
        await host.wr("IRQ_STATUS", pending)
        count = await host.rd("LAYER_COUNT")
        if pending & _bit("IRQ_STATUS", "LAYER") and count:
            layer_cycles[count - 1] = await host.rd64("LAYER_CYCLES")
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
    }
    if timeout:
        # Unstick the datapath so that the next run starts clean.
        await host.wr("CTRL", _bit("CTRL", "SOFT_RESET"))
    await host.wr("IRQ_STATUS", 0x7)
    Path(run["readback"]).write_bytes(ram.read(0, len(ram.mem)))
    return result


@cocotb.test()
async def run_programs(dut):
    p = bench_params()
    start_clock(dut.clk, PERIOD_NS)
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi", bus_separator=BUS_SEPARATOR), dut.clk,
                 dut.rst, size=p["mem_size"])
    host = Host(dut)
    # The AXI models log every transaction at INFO; a network run would drown the log.
    for port in ("m_axi", "s_axil"):
        logging.getLogger(f"cocotb.{dut._name}.{port}").setLevel(logging.WARNING)
    if p.get("pause", "none") == "random":
        rng = random.Random(p.get("seed", 0))
        channels = (ram.read_if.ar_channel, ram.read_if.r_channel, ram.write_if.aw_channel,
                    ram.write_if.w_channel, ram.write_if.b_channel)
        for k, channel in enumerate(channels):
            prob = (0.2, 0.4, 0.3, 0.35, 0.5)[k]
            channel.set_pause_generator(rng.random() < prob for _ in itertools.count())
    elif p.get("pause", "none") != "none":
        raise ValueError(f"pause must be 'none' or 'random', not {p['pause']!r}")
    await reset(dut)
    results = []
    for i, run in enumerate(p["runs"]):
        results.append(await _run(dut, host, ram, run, i, _cycle))
    record(runs=results)
