"""Bench for :class:`mnaccel.hw.dma.DMA` against cocotbext-axi's ``AxiRam``.

The DMA's AXI4 port ``m_axi`` is bound with ``AxiBus.from_prefix(dut, "m_axi",
bus_separator="__")`` to an ``AxiRam`` filled with random bytes. Read commands go to the
lower half of the RAM, write commands to the upper half, and both run at once.

* Read scoreboard: every beat on ``rd_data`` equals the RAM's bytes at its address (whole
  beats; the bytes past a command's length in its last beat are memory too), ``last``
  exactly on each command's last beat, nothing extra.
* Write scoreboard: after every ``wr_done``, the whole upper half of the RAM equals its
  initial contents with each command's ``[addr, addr + length)`` replaced by the bytes sent
  — so a byte written outside a command (a wrong strobe, a wrong burst address) is caught.
* A protocol checker on the read and write address channels: every burst is INCR, of the
  bus width, at most 256 beats, never crosses a 4 KB page, and the bursts of each command
  tile it exactly. ``AxiRam`` itself asserts ``wlast`` on each burst's last beat.

Parameters (``bench_params()``):

``data_width``, ``addr_width``, ``len_width`` (int)
    Must match the Verilog.
``command_latency``, ``beats_per_cycle`` (int)
    The block's documented figures (asserted in ``"throughput"`` mode).
``mode`` (str)
    ``"random"``: random commands (lengths of 1 byte to several pages, unaligned lengths,
    4 KB-crossing addresses, bursts longer than 256 beats). ``"throughput"``: long reads
    and writes without stalls; asserts one beat per cycle in each direction.
    ``"errors"``: rejected commands, SLVERR and DECERR responses, abort in mid-transfer
    followed by clean transfers.
``commands`` (int)
    Commands per direction (``"random"``).
``pause`` (str)
    ``"none"``, ``"random"`` (each AXI channel of the RAM stalls with its own probability
    each cycle) or ``"bursty"`` (each channel stalls in a fixed on/off rhythm).
``bubble``, ``backpressure`` (float)
    Idle probability of the command and write-data sources; stall probability of the
    ``rd_data`` and ``wr_done`` sinks.
``seed`` (int)

Records ``read_beats``, ``write_beats``, ``read_cycles``, ``write_cycles``,
``read_beats_per_cycle``, ``write_beats_per_cycle``, ``command_latency`` (throughput) and
``bursts`` (read and write bursts seen).
"""

from __future__ import annotations

import itertools
import random

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge
from cocotbext.axi import AxiBus, AxiRam, AxiResp

from mnaccel.hw.axi import BUS_SEPARATOR
from mnaccel.hw.dma import ErrorCode, command_layout, read_data_layout, status_layout
from mnaccel.sim.benches.common import (
    StreamSink,
    StreamSource,
    bench_params,
    pack,
    record,
    reset,
    start_clock,
    unpack,
)

PERIOD_NS = 10
MEM_SIZE = 1 << 20
PAGE = 4096
#: Addresses at and above this make the RAM answer SLVERR (DECERR in the DECERR test).
FAULT_BASE = MEM_SIZE - 4 * PAGE


def _pauses(kind: str, rng: random.Random, channel: int):
    if kind == "random":
        p = (0.2, 0.35, 0.5, 0.25, 0.4)[channel]
        return (rng.random() < p for _ in itertools.count())
    if kind == "bursty":
        on, off = ((3, 5), (1, 1), (7, 2), (2, 9), (5, 3))[channel]
        return itertools.cycle([1] * on + [0] * off)
    raise ValueError(f"pause must be 'none', 'random' or 'bursty', not {kind!r}")


class _Ram:
    """``AxiRam`` plus fault injection: accesses at ``FAULT_BASE`` and above fail."""

    def __init__(self, dut, seed):
        bus = AxiBus.from_prefix(dut, "m_axi", bus_separator=BUS_SEPARATOR)
        self.ram = AxiRam(bus, dut.clk, dut.rst, size=MEM_SIZE)
        self.decerr = False
        rd, wr = self.ram.read_if, self.ram.write_if
        plain_read, plain_write = rd._read, wr._write

        async def read(address, length):
            if address >= FAULT_BASE:
                raise ValueError(f"fault at {address:#x}")
            return await plain_read(address, length)

        async def write(address, data):
            if address >= FAULT_BASE:
                raise ValueError(f"fault at {address:#x}")
            await plain_write(address, data)

        rd._read, wr._write = read, write
        # The RAM model can only answer SLVERR; turn it into DECERR on request.
        for channel, field in ((rd.r_channel, "rresp"), (wr.b_channel, "bresp")):
            self._wrap_send(channel, field)
        rng = random.Random(seed)
        self.ram.write(0, rng.randbytes(MEM_SIZE))

    def _wrap_send(self, channel, field):
        plain = channel.send

        async def send(obj):
            if self.decerr and int(getattr(obj, field)) == AxiResp.SLVERR:
                setattr(obj, field, AxiResp.DECERR)
            await plain(obj)

        channel.send = send

    def pause(self, kind: str, seed: int):
        if kind == "none":
            return
        rng = random.Random(seed)
        channels = (self.ram.read_if.ar_channel, self.ram.read_if.r_channel,
                    self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                    self.ram.write_if.b_channel)
        for k, channel in enumerate(channels):
            channel.set_pause_generator(_pauses(kind, rng, k))


class _AddressChecker:
    """Checks every burst on one address channel and tiles the commands it expects."""

    def __init__(self, dut, prefix: str, nbytes: int):
        self.dut, self.x, self.nbytes = dut, prefix, nbytes
        self.bursts: list[tuple[int, int]] = []  # (address, beats)
        self.cycles: list[int] = []
        self.valid_times: list[float] = []  # when valid first rose
        self._task = cocotb.start_soon(self._run())

    def _sig(self, name):
        return getattr(self.dut, f"m_axi{BUS_SEPARATOR}{self.x}{name}")

    async def _run(self):
        valid, ready = self._sig("valid"), self._sig("ready")
        cycle = 0
        while True:
            await ReadOnly()
            if valid.value == 1 and ready.value == 1:
                addr = int(self._sig("addr").value)
                beats = int(self._sig("len").value) + 1
                size = int(self._sig("size").value)
                burst = int(self._sig("burst").value)
                assert burst == 1, f"{self.x} burst at {addr:#x}: AxBURST {burst}, not INCR"
                assert 1 << size == self.nbytes, f"{self.x} burst at {addr:#x}: AxSIZE {size}"
                assert addr % self.nbytes == 0, f"{self.x} burst at {addr:#x} is unaligned"
                end = addr + beats * self.nbytes
                assert (end - 1) // PAGE == addr // PAGE, (
                    f"{self.x} burst at {addr:#x} of {beats} beats crosses a 4 KB page")
                self.bursts.append((addr, beats))
                self.cycles.append(cycle)
            if valid.value == 1 and not self.valid_times:
                self.valid_times.append(get_sim_time("ns"))
            await RisingEdge(self.dut.clk)
            cycle += 1

    def check_tiling(self, commands, first: int = 0) -> int:
        """The bursts from index ``first`` cover ``commands`` exactly, in order."""
        k = first
        for n, (addr, length) in enumerate(commands):
            cur, end = addr, addr + -(-length // self.nbytes) * self.nbytes
            while cur < end:
                assert k < len(self.bursts), (
                    f"{self.x}: command {n} ({addr:#x}, {length} B): no burst for {cur:#x}")
                baddr, beats = self.bursts[k]
                assert baddr == cur, (
                    f"{self.x}: command {n} ({addr:#x}, {length} B): burst {k} at "
                    f"{baddr:#x}, expected {cur:#x}")
                cur += beats * self.nbytes
                k += 1
            assert cur == end, f"{self.x}: command {n}: bursts overshoot to {cur:#x}"
        return k


async def _wait(dut, cond, limit: int, what: str) -> int:
    """Wait (sampling in ReadOnly) until ``cond()``; AssertionError after ``limit`` cycles."""
    for cycle in range(limit):
        await ReadOnly()
        if cond():
            await RisingEdge(dut.clk)
            return cycle
        await RisingEdge(dut.clk)
    raise AssertionError(f"{what} did not happen within {limit} cycles")


def _status(sig) -> dict:
    return unpack(status_layout(), int(sig.value))


class _Bench:
    def __init__(self, dut, p):
        self.dut, self.p = dut, p
        self.nbytes = p["data_width"] // 8
        self.cmd_layout = command_layout(p["addr_width"], p["len_width"])
        self.seed = p.get("seed", 0)
        self.rng = random.Random(self.seed)

    async def start(self):
        dut, p = self.dut, self.p
        start_clock(dut.clk, PERIOD_NS)
        dut.abort.value = 0
        dut.clear.value = 0
        self.mem = _Ram(dut, self.seed + 10)
        await reset(dut)
        self.mem.pause(p.get("pause", "none"), self.seed + 11)
        bubble = p.get("bubble", 0.0)
        backpressure = p.get("backpressure", 0.0)
        self.rd_cmd = StreamSource(dut, "rd_cmd", dut.clk, bubble=bubble, seed=self.seed + 1)
        self.wr_cmd = StreamSource(dut, "wr_cmd", dut.clk, bubble=bubble, seed=self.seed + 2)
        self.wr_data = StreamSource(dut, "wr_data", dut.clk, bubble=bubble,
                                    seed=self.seed + 3)
        self.rd_data = StreamSink(dut, "rd_data", dut.clk, backpressure=backpressure,
                                  seed=self.seed + 4)
        self.wr_done = StreamSink(dut, "wr_done", dut.clk, backpressure=backpressure,
                                  seed=self.seed + 5)
        self.ar = _AddressChecker(dut, "ar", self.nbytes)
        self.aw = _AddressChecker(dut, "aw", self.nbytes)

    def cmd(self, addr, length):
        return pack(self.cmd_layout, {"addr": addr, "length": length})

    def beats(self, length):
        return -(-length // self.nbytes)

    # Read side -------------------------------------------------------------------------
    async def read(self, commands, *, check_data=True):
        """Run read ``commands``; check every beat against the RAM; return the beats."""
        cocotb.start_soon(self.rd_cmd.send([self.cmd(a, n) for a, n in commands]))
        total = sum(self.beats(n) for _, n in commands)
        got = await self.rd_data.recv(total, timeout_cycles=20_000 + 50 * total)
        layout = read_data_layout(self.p["data_width"])
        k = 0
        for c, (addr, length) in enumerate(commands):
            nb = self.beats(length)
            for b in range(nb):
                beat = unpack(layout, got[k])
                where = addr + b * self.nbytes
                want = int.from_bytes(self.mem.ram.read(where, self.nbytes), "little")
                assert beat["last"] == (b == nb - 1), (
                    f"read command {c} ({addr:#x}, {length} B) beat {b}: last={beat['last']}")
                if check_data and beat["data"] != want:
                    raise AssertionError(
                        f"read command {c} ({addr:#x}, {length} B) beat {b} at {where:#x}: "
                        f"got {beat['data']:#0{2 * self.nbytes + 2}x}, "
                        f"expected {want:#0{2 * self.nbytes + 2}x}")
                k += 1
        return got

    # Write side ------------------------------------------------------------------------
    async def write(self, commands, region=None):
        """Run write ``commands`` with random data; check the RAM region afterwards."""
        payloads, words = [], []
        for _addr, length in commands:
            blob = self.rng.randbytes(self.beats(length) * self.nbytes)
            payloads.append(blob[:length])
            for b in range(self.beats(length)):
                words.append(int.from_bytes(blob[b * self.nbytes:(b + 1) * self.nbytes],
                                            "little"))
        lo, hi = region or (min(a for a, _ in commands),
                            max(a + self.beats(n) * self.nbytes for a, n in commands))
        expected = bytearray(self.mem.ram.read(lo, hi - lo))
        for (addr, length), blob in zip(commands, payloads, strict=True):
            expected[addr - lo:addr - lo + length] = blob
        cocotb.start_soon(self.wr_cmd.send([self.cmd(a, n) for a, n in commands]))
        cocotb.start_soon(self.wr_data.send(words))
        total = len(words)
        done = await self.wr_done.recv(len(commands), timeout_cycles=20_000 + 50 * total)
        for c, word in enumerate(done):
            assert word == AxiResp.OKAY, f"write command {c}: done with resp {word}"
        got = self.mem.ram.read(lo, hi - lo)
        if got != bytes(expected):
            i = next(i for i in range(len(got)) if got[i] != expected[i])
            owner = [c for c, (a, n) in enumerate(commands) if a <= lo + i < a + n]
            raise AssertionError(
                f"memory byte {lo + i:#x} (write command {owner or 'none: outside all'}): "
                f"got {got[i]:#04x}, expected {expected[i]:#04x}")
        return total

    async def idle(self, limit=2000):
        dut = self.dut
        await _wait(dut, lambda: not _status(dut.rd_status)["busy"]
                    and not _status(dut.wr_status)["busy"], limit, "both engines idle")


def _random_commands(rng, nbytes, count, base, span):
    """Non-overlapping commands in ``[base, base + span)``, shapes chosen to hit the corners."""
    commands, cur = [], base
    for k in range(count):
        kind = k % 6
        if kind == 0:  # a few bytes, possibly less than a beat
            length = rng.randint(1, 3 * nbytes)
        elif kind == 1:  # crosses a 4 KB page
            cur = (cur // PAGE + 1) * PAGE - nbytes * rng.randint(1, 8)
            length = rng.randint(9 * nbytes, 40 * nbytes) + rng.randint(0, nbytes - 1)
        elif kind == 2:  # longer than one 256-beat burst (or page)
            length = min(256 * nbytes, PAGE) + rng.randint(1, 8 * nbytes)
        elif kind == 3:  # exactly one page from a page start
            cur = (cur // PAGE + 1) * PAGE
            length = PAGE
        else:
            length = rng.randint(1, 24 * nbytes)
        commands.append((cur, length))
        cur += -(-length // nbytes) * nbytes + nbytes * rng.randint(0, 3)
    assert cur <= base + span, "random commands overflow their region"
    return commands


async def _random(b: _Bench):
    p = b.p
    n = p.get("commands", 12)
    half = FAULT_BASE // 2
    reads = _random_commands(b.rng, b.nbytes, n, 0, half)
    writes = _random_commands(b.rng, b.nbytes, n, half, half)
    read_task = cocotb.start_soon(b.read(reads))
    write_beats = await b.write(writes, region=(half, FAULT_BASE))
    got = await read_task
    await b.idle()
    assert b.rd_data.pending == 0, f"{b.rd_data.pending} read beats beyond those expected"
    for name in ("rd_status", "wr_status"):
        st = _status(getattr(b.dut, name))
        assert not st["error"], f"{name} reports error {ErrorCode(st['code']).name}"
    b.ar.check_tiling(reads)
    b.aw.check_tiling(writes)
    record(read_beats=len(got), write_beats=write_beats,
           bursts=len(b.ar.bursts) + len(b.aw.bursts))


async def _throughput(b: _Bench):
    p = b.p
    nb = b.nbytes
    # One long read spanning many bursts and pages, then a train of short commands
    # (down to one beat): the data stream must not pause between bursts or commands.
    long_len = 1024 * nb
    reads = [(0, long_len)] + [(long_len + k * 8 * nb, (k % 8 + 1) * nb) for k in range(32)]
    got = await b.read(reads)
    rd_cycles = b.rd_data.cycles[-1] - b.rd_data.cycles[0] + 1
    latency = round((b.ar.valid_times[0] - b.rd_cmd.times[0]) / PERIOD_NS)
    # Writes: the input valid every cycle; count W handshakes on the bus.
    w = _Handshakes(b.dut, "w")
    half = FAULT_BASE // 2
    writes = [(half, long_len)] + [(half + long_len + k * 8 * nb, (k % 8 + 1) * nb)
                                   for k in range(32)]
    beats = await b.write(writes)
    w_cycles = w.cycles[-1] - w.cycles[0] + 1
    assert len(w.cycles) == beats, f"{len(w.cycles)} W beats for {beats} sent"
    record(read_beats=len(got), read_cycles=rd_cycles, read_beats_per_cycle=len(got) / rd_cycles,
           write_beats=beats, write_cycles=w_cycles, write_beats_per_cycle=beats / w_cycles,
           command_latency=latency, bursts=len(b.ar.bursts) + len(b.aw.bursts))
    assert latency == p["command_latency"], (
        f"command to arvalid took {latency} cycles, documented {p['command_latency']}")
    for what, n, cycles in (("read", len(got), rd_cycles), ("write", beats, w_cycles)):
        assert n == cycles * p["beats_per_cycle"], (
            f"{what}: {n} beats took {cycles} cycles ({n / cycles:.4f} beats per cycle), "
            f"documented {p['beats_per_cycle']}")


class _Handshakes:
    """Cycles of every ``valid & ready`` on an AXI channel of ``m_axi``."""

    def __init__(self, dut, x):
        self.cycles: list[int] = []
        valid = getattr(dut, f"m_axi{BUS_SEPARATOR}{x}valid")
        ready = getattr(dut, f"m_axi{BUS_SEPARATOR}{x}ready")

        async def run():
            cycle = 0
            while True:
                await ReadOnly()
                if valid.value == 1 and ready.value == 1:
                    self.cycles.append(cycle)
                await RisingEdge(dut.clk)
                cycle += 1

        cocotb.start_soon(run())


async def _expect_error(b: _Bench, name: str, code: ErrorCode):
    dut = b.dut
    sig = getattr(dut, name)
    await _wait(dut, lambda: _status(sig)["error"], 2000, f"{name}.error for {code.name}")
    st = _status(sig)
    assert st["code"] == code.value, (
        f"{name}.code is {ErrorCode(st['code']).name}, expected {code.name}")
    await b.idle()
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    await ReadOnly()
    st = _status(sig)
    assert not st["error"] and st["code"] == 0, f"{name} not cleared: {st}"
    await RisingEdge(dut.clk)


async def _errors(b: _Bench):
    dut, nb = b.dut, b.nbytes
    half = FAULT_BASE // 2

    # Rejected commands: no data, no done, error reported; the next command runs normally.
    for addr, length, code in ((nb // 2, 4 * nb, ErrorCode.UNALIGNED),
                               (0, 0, ErrorCode.ZERO_LENGTH)):
        await b.rd_cmd.send([b.cmd(addr, length)])
        await _expect_error(b, "rd_status", code)
        assert b.rd_data.pending == 0, f"a rejected read ({code.name}) produced data"
        await b.wr_cmd.send([b.cmd(half + addr, length)])
        await _expect_error(b, "wr_status", code)
        assert b.wr_done.pending == 0, f"a rejected write ({code.name}) produced a done"
        await b.read([(4 * nb, 5 * nb + 1)])
        await b.write([(half + 64 * nb, 3 * nb - 1)])

    # SLVERR and DECERR: reads deliver their beats anyway; writes report the worst BRESP.
    for decerr, code, resp in ((False, ErrorCode.SLVERR, AxiResp.SLVERR),
                               (True, ErrorCode.DECERR, AxiResp.DECERR)):
        b.mem.decerr = decerr
        # Bursts before the faulty page are fine, the later ones fail: the code is the
        # first error's.
        await b.read([(FAULT_BASE - 2 * nb, 6 * nb)], check_data=False)
        await _expect_error(b, "rd_status", code)
        cocotb.start_soon(b.wr_cmd.send([b.cmd(FAULT_BASE - 2 * nb, 6 * nb)]))
        cocotb.start_soon(b.wr_data.send([0] * 6))
        (word,) = await b.wr_done.recv(1, timeout_cycles=5000)
        assert word == resp, f"write into the faulty page: done resp {word}, expected {resp}"
        await _expect_error(b, "wr_status", code)
        b.mem.decerr = False

    # Abort in mid-transfer: a long read whose data nobody takes and a long write whose
    # data stops coming. Both engines must drain the bus and fall idle, then work again.
    b.rd_data._backpressure = 0.95
    long_len = 600 * nb
    cocotb.start_soon(b.rd_cmd.send([b.cmd(0, long_len), b.cmd(long_len, 4 * nb)]))
    cocotb.start_soon(b.wr_cmd.send([b.cmd(half, long_len), b.cmd(half + long_len, nb)]))
    await b.wr_data.send([0x5A] * 40)
    for _ in range(50):
        await RisingEdge(dut.clk)
    assert _status(dut.rd_status)["busy"] and _status(dut.wr_status)["busy"]
    dut.abort.value = 1
    waited = await _wait(dut, lambda: not _status(dut.rd_status)["busy"]
                         and not _status(dut.wr_status)["busy"], 5000, "idle after abort")
    dut.abort.value = 0
    b.rd_data._backpressure = b.p.get("backpressure", 0.0)
    for _ in range(20):  # nothing may move on the bus after the engines report idle
        await ReadOnly()
        for x in ("arvalid", "rvalid", "awvalid", "wvalid", "bvalid"):
            assert getattr(dut, f"m_axi{BUS_SEPARATOR}{x}").value == 0, f"{x} after abort"
        await RisingEdge(dut.clk)
    b.rd_data._queue.clear()  # beats delivered before the abort
    assert b.wr_done.pending == 0, "a done for an aborted write command"
    for name in ("rd_status", "wr_status"):
        assert not _status(getattr(dut, name))["error"], f"{name} error after abort"
    await b.read([(8 * nb, 300 * nb + 3)])
    await b.write([(half + PAGE - 2 * nb, 300 * nb + 5)])
    await b.idle()
    record(abort_cycles=waited, bursts=len(b.ar.bursts) + len(b.aw.bursts))


@cocotb.test()
async def dma(dut):
    p = bench_params()
    b = _Bench(dut, p)
    await b.start()
    mode = p["mode"]
    if mode == "random":
        await _random(b)
    elif mode == "throughput":
        await _throughput(b)
    elif mode == "errors":
        await _errors(b)
    else:
        raise ValueError(f"mode must be 'random', 'throughput' or 'errors', not {mode!r}")
