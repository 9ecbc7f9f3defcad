"""Bench for :class:`mnaccel.hw.csr.ControlRegisters` with cocotbext-axi's ``AxiLiteMaster``.

The host side is an ``AxiLiteMaster`` bound with ``AxiLiteBus.from_prefix(dut, "s_axil",
bus_separator="__")``; every offset, bit and reset value comes from
:data:`mnaccel.hw.csr.REGISTERS`. The accelerator side is a cycle-by-cycle *core model*:
when it sees a ``start`` pulse it runs a planned sequence of layers (``layer_done`` pulses
after random numbers of cycles, ``done`` with the last), drives random ``read_stall`` /
``write_stall`` and optional ``error`` pulses, and counts for itself what the counters
must read.

Parameters (``bench_params()``): ``addr_width``, ``program_addr_width``, ``config_id``
(must match the Verilog), ``pause`` (``"none"`` or ``"random"``: random stalls on the
master's AW, W, AR channels and on its B, R ready), ``seed``.
"""

from __future__ import annotations

import itertools
import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from mnaccel.hw.axi import BUS_SEPARATOR
from mnaccel.hw.csr import HW_VERSION, REGISTERS, Access, register
from mnaccel.sim.benches.common import bench_params, record, reset, start_clock


def _bit(reg: str, fld: str) -> int:
    f = register(reg).field(fld)
    return 1 << f.lsb


class _Core:
    """The accelerator side: reacts to ``start``/``soft_reset``, pulses layer ends."""

    def __init__(self, dut, rng: random.Random):
        self.dut, self.rng = dut, rng
        self.cycle = 0
        self.starts: list[int] = []
        self.soft_resets: list[int] = []
        self.irq: list[int] = []  # irq sampled each cycle
        self.layers = 0  # layers per run
        self.errors: dict[int, int] = {}  # layer index -> error code pulsed at its end
        self.run = None
        self.finished: list[dict] = []
        for name in ("done", "error", "error_code", "layer_done", "read_stall",
                     "write_stall"):
            getattr(dut, name).value = 0
        cocotb.start_soon(self._loop())

    def _plan(self, start):
        lengths = [self.rng.randint(80, 160) for _ in range(self.layers)]
        return {"start": start, "lengths": lengths, "ends": list(itertools.accumulate(
            lengths, initial=start - 1))[1:], "read_stall": 0, "write_stall": 0}

    async def _loop(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            self.cycle += 1
            c = self.cycle
            run = self.run
            rs = int(run is not None and self.rng.random() < 0.3)
            ws = int(run is not None and self.rng.random() < 0.2)
            dut.read_stall.value, dut.write_stall.value = rs, ws
            layer_done = done = error = 0
            code = 0
            if run is not None:
                run["read_stall"] += rs
                run["write_stall"] += ws
                if c in run["ends"]:
                    k = run["ends"].index(c)
                    layer_done = 1
                    if k in self.errors:
                        error, code = 1, self.errors[k]
                    if k == len(run["ends"]) - 1:
                        done = 1
                        run["cycles"] = c - run["start"] + 1
                        self.finished.append(run)
                        self.run = None
            dut.layer_done.value, dut.done.value = layer_done, done
            dut.error.value, dut.error_code.value = error, code
            await ReadOnly()
            self.irq.append(int(dut.irq.value))
            if dut.start.value == 1:
                self.starts.append(c)
                assert self.run is None, f"start pulse in cycle {c} during a run"
                self.run = self._plan(c) if self.layers else None
            if dut.soft_reset.value == 1:
                self.soft_resets.append(c)
                self.run = None


class _Host:
    def __init__(self, dut, pause: str, seed: int):
        bus = AxiLiteBus.from_prefix(dut, "s_axil", bus_separator=BUS_SEPARATOR)
        self.master = AxiLiteMaster(bus, dut.clk, dut.rst)
        self.dut = dut
        if pause == "random":
            rng = random.Random(seed)
            m = self.master
            for ch in (m.write_if.aw_channel, m.write_if.w_channel, m.write_if.b_channel,
                       m.read_if.ar_channel, m.read_if.r_channel):
                ch.set_pause_generator(rng.random() < 0.4 for _ in itertools.count())
        elif pause != "none":
            raise ValueError(f"pause must be 'none' or 'random', not {pause!r}")

    async def rd(self, name: str) -> int:
        offset = register(name).offset
        resp = await self.master.read(offset, 4)
        assert resp.resp == AxiResp.OKAY, f"read of {name} ({offset:#x}): resp {resp.resp!r}"
        return int.from_bytes(resp.data, "little")

    async def wr(self, name: str, value: int) -> None:
        offset = register(name).offset
        resp = await self.master.write(offset, value.to_bytes(4, "little"))
        assert resp.resp == AxiResp.OKAY, f"write of {name} ({offset:#x}): resp {resp.resp!r}"

    async def rd64(self, name: str) -> int:
        lo = await self.rd(f"{name}_LO")
        return lo | await self.rd(f"{name}_HI") << 32


async def _setup(dut, layers=0):
    p = bench_params()
    seed = p.get("seed", 0)
    start_clock(dut.clk)
    core = _Core(dut, random.Random(seed))
    core.layers = layers
    host = _Host(dut, p.get("pause", "none"), seed + 1)
    await reset(dut)
    return p, core, host


async def _cycles(dut, n):
    for _ in range(n):
        await RisingEdge(dut.clk)


def _expected_reset(p, r):
    return r.reset_value(config_id=p["config_id"])


@cocotb.test()
async def reset_values_and_access_types(dut):
    p, core, host = await _setup(dut)
    for r in REGISTERS:
        got = await host.rd(r.name)
        want = _expected_reset(p, r)
        assert got == want, f"{r.name} after reset: {got:#010x}, expected {want:#010x}"
    version = await host.rd("VERSION")
    assert version == HW_VERSION[0] << 16 | HW_VERSION[1] << 8 | HW_VERSION[2]

    rng = random.Random(p.get("seed", 0) + 2)
    for r in REGISTERS:
        if r.name == "CTRL":  # its W1P bits would start a run; tested below
            continue
        rw = sum(f.mask for f in r.fields if f.access == Access.RW)
        w1c = sum(f.mask for f in r.fields if f.access == Access.W1C)
        before = await host.rd(r.name)
        value = rng.getrandbits(32)
        await host.wr(r.name, value)
        want = (before & ~rw) | (value & rw)
        want &= ~(value & w1c)
        got = await host.rd(r.name)
        assert got == want, (f"{r.name}: wrote {value:#010x} over {before:#010x}, read "
                             f"{got:#010x}, expected {want:#010x}")
    # The program address port follows its registers (truncated to its width).
    lo, hi = await host.rd("PROGRAM_ADDR_LO"), await host.rd("PROGRAM_ADDR_HI")
    await ReadOnly()
    width = p["program_addr_width"]
    want = (hi << 32 | lo) & ((1 << width) - 1)
    assert int(dut.program_addr.value) == want, (
        f"program_addr {int(dut.program_addr.value):#x}, expected {want:#x}")
    await RisingEdge(dut.clk)

    # Byte strobes: a one-byte write changes that byte only.
    await host.wr("PROGRAM_ADDR_LO", 0x11223344)
    resp = await host.master.write(register("PROGRAM_ADDR_LO").offset + 2, b"\xab")
    assert resp.resp == AxiResp.OKAY
    got = await host.rd("PROGRAM_ADDR_LO")
    assert got == 0x11AB3344, f"byte write to PROGRAM_ADDR_LO[23:16]: read {got:#010x}"

    # CTRL: IRQ_EN is storage, START/SOFT_RESET read as 0 (and did not pulse here).
    await host.wr("CTRL", _bit("CTRL", "IRQ_EN"))
    assert await host.rd("CTRL") == _bit("CTRL", "IRQ_EN")
    assert core.starts == [] and core.soft_resets == []

    # Unmapped offsets: SLVERR, reads 0, writes change nothing.
    mapped = {r.offset for r in REGISTERS}
    top = (1 << p["addr_width"]) - 4
    holes = [o for o in range(0, 0x50, 4) if o not in mapped] + [top]
    snapshot = [await host.rd(r.name) for r in REGISTERS if r.name != "IRQ_STATUS"]
    for offset in holes:
        resp = await host.master.read(offset, 4)
        assert resp.resp == AxiResp.SLVERR and resp.data == bytes(4), (
            f"read of unmapped {offset:#x}: resp {resp.resp!r}, data {resp.data.hex()}")
        resp = await host.master.write(offset, b"\xff" * 4)
        assert resp.resp == AxiResp.SLVERR, f"write to unmapped {offset:#x}: {resp.resp!r}"
    after = [await host.rd(r.name) for r in REGISTERS if r.name != "IRQ_STATUS"]
    assert after == snapshot, "a write to an unmapped offset changed a register"
    record(holes=len(holes))


async def _wait_irq(dut, core, level, limit=2000):
    for _ in range(limit):
        await RisingEdge(dut.clk)
        await ReadOnly()
        if int(dut.irq.value) == level:
            await RisingEdge(dut.clk)
            return
    raise AssertionError(f"irq did not become {level} within {limit} cycles")


@cocotb.test()
async def run_counters_and_interrupts(dut):
    layers = 5
    p, core, host = await _setup(dut, layers=layers)
    core.errors = {1: 0x2A, 3: 0x11}  # two errors: the first one's code is kept
    enable = (_bit("IRQ_ENABLE", "DONE") | _bit("IRQ_ENABLE", "ERROR")
              | _bit("IRQ_ENABLE", "LAYER"))
    await host.wr("IRQ_ENABLE", enable)
    await host.wr("PROGRAM_ADDR_LO", 0x1000)
    await host.wr("CTRL", _bit("CTRL", "START") | _bit("CTRL", "IRQ_EN"))
    status = await host.rd("STATUS")
    assert status & _bit("STATUS", "BUSY"), f"STATUS {status:#x} after start: not busy"
    assert len(core.starts) == 1, f"{len(core.starts)} start pulses for one START"

    layer_cycles = []
    for k in range(layers):
        await _wait_irq(dut, core, 1)
        pending = await host.rd("IRQ_STATUS")
        assert pending & _bit("IRQ_STATUS", "LAYER"), f"layer {k}: IRQ_STATUS {pending:#x}"
        layer_cycles.append(await host.rd64("LAYER_CYCLES"))
        count = await host.rd("LAYER_COUNT")
        assert count == k + 1, f"layer {k}: LAYER_COUNT {count}"
        await host.wr("IRQ_STATUS", pending)  # W1C everything pending
        if k < layers - 1:
            await _cycles(dut, 3)
            assert core.irq[-1] == 0, f"layer {k}: irq still high after clearing"
    run = core.finished[0]
    assert layer_cycles == run["lengths"], (
        f"LAYER_CYCLES per layer {layer_cycles}, core model {run['lengths']}")
    status = await host.rd("STATUS")
    code = register("STATUS").field("ERROR_CODE")
    want = _bit("STATUS", "DONE") | _bit("STATUS", "ERROR") | 0x2A << code.lsb
    assert status == want, f"STATUS after the run {status:#x}, expected {want:#x}"
    cycles = await host.rd64("CYCLES")
    assert cycles == run["cycles"] == sum(layer_cycles), (
        f"CYCLES {cycles}, core model {run['cycles']}, layers sum {sum(layer_cycles)}")
    for name in ("READ_STALL", "WRITE_STALL"):
        got = await host.rd64(name)
        want = run[name.lower()]
        assert got == want, f"{name} {got}, core model {want}"
    # Counters hold after the run.
    await _cycles(dut, 20)
    assert await host.rd64("CYCLES") == cycles

    # Interrupt masking: a pending ERROR without its enable, then without IRQ_EN.
    await host.wr("IRQ_STATUS", 0b111)
    core.layers, core.errors = 1, {0: 0x05}
    await host.wr("IRQ_ENABLE", _bit("IRQ_ENABLE", "ERROR"))
    await host.wr("CTRL", _bit("CTRL", "START") | _bit("CTRL", "IRQ_EN"))
    await _wait_irq(dut, core, 1)
    assert await host.rd("IRQ_STATUS") == 0b111  # all three happened
    await host.wr("IRQ_ENABLE", _bit("IRQ_ENABLE", "DONE") | _bit("IRQ_ENABLE", "LAYER"))
    await host.wr("IRQ_STATUS", _bit("IRQ_STATUS", "DONE") | _bit("IRQ_STATUS", "LAYER"))
    await _cycles(dut, 3)
    assert core.irq[-1] == 0, "irq high with only a masked source pending"
    assert await host.rd("IRQ_STATUS") == _bit("IRQ_STATUS", "ERROR")
    await host.wr("IRQ_ENABLE", 0b111)
    await _cycles(dut, 3)
    assert core.irq[-1] == 1, "irq low with an enabled source pending"
    await host.wr("CTRL", 0)
    await _cycles(dut, 3)
    assert core.irq[-1] == 0, "irq high with CTRL.IRQ_EN clear"
    status = await host.rd("STATUS")
    assert (status >> code.lsb) & 0xFF == 0x05, f"second run's ERROR_CODE: STATUS {status:#x}"
    record(cycles=cycles, layer_cycles=layer_cycles)


@cocotb.test()
async def start_while_busy_and_soft_reset(dut):
    p, core, host = await _setup(dut, layers=3)
    start = _bit("CTRL", "START")
    await host.wr("CTRL", start)
    await host.wr("CTRL", start)  # while busy: ignored and flagged
    status = await host.rd("STATUS")
    assert status == _bit("STATUS", "BUSY") | _bit("STATUS", "START_IGNORED"), (
        f"STATUS {status:#x} after a start while busy")
    assert len(core.starts) == 1, f"{len(core.starts)} start pulses"
    await host.wr("CTRL", _bit("CTRL", "SOFT_RESET"))
    assert len(core.soft_resets) == 1
    assert await host.rd("STATUS") == 0, "STATUS not cleared by SOFT_RESET"
    await host.wr("PROGRAM_ADDR_LO", 0x4000)
    await host.wr("CTRL", start)
    while not core.finished:
        await RisingEdge(dut.clk)
    assert len(core.starts) == 2
    run = core.finished[0]
    assert await host.rd("STATUS") == _bit("STATUS", "DONE")
    assert await host.rd64("CYCLES") == run["cycles"]
    assert await host.rd("LAYER_COUNT") == 3
    assert await host.rd("PROGRAM_ADDR_LO") == 0x4000, "SOFT_RESET changed a register"
    # Back to back: a new start right after done is accepted and clears DONE.
    await host.wr("CTRL", start)
    assert len(core.starts) == 3
    status = await host.rd("STATUS")
    assert status == _bit("STATUS", "BUSY"), f"STATUS {status:#x} in a second run"
