# amaranth: UnusedElaboratable=no
"""AXI4 DMA: cocotb bench on Verilator against cocotbext-axi's AxiRam (data, bursts,
stalls, errors, abort, throughput), the burst split in simulation, parameter checks, the
docstrings' members."""

import re

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from mnaccel.hw.axi import AXI4LiteSignature, AXI4Signature
from mnaccel.hw.config import preset
from mnaccel.hw.dma import DMA, ReadDMA, WriteDMA
from mnaccel.sim.runner import run_bench
from mnaccel.sim.synth import synth_stats

BENCH = "mnaccel.sim.benches.dma"
#: (data width, address width): the narrowest bus (256-beat bursts of 1 KB) and a wide one
#: (4 KB pages cut 256-beat bursts to 256 beats of 16 B = one page).
CONFIGS = [(32, 32), (128, 40)]


def _bench(data_width, addr_width, mode, **params):
    dut = DMA(data_width=data_width, addr_width=addr_width)
    base = {"data_width": data_width, "addr_width": addr_width, "len_width": dut.len_width,
            "command_latency": dut.command_latency, "beats_per_cycle": dut.beats_per_cycle,
            "mode": mode}
    name = f"dma_d{data_width}a{addr_width}"
    return dut, run_bench(dut, name=name, bench=BENCH, params=base | params)


@pytest.mark.parametrize(("data_width", "addr_width"), CONFIGS)
@pytest.mark.parametrize(
    ("pause", "bubble", "backpressure"),
    [("none", 0.0, 0.0), ("random", 0.3, 0.3), ("bursty", 0.5, 0.6)],
)
def test_random_commands_move_the_right_bytes(data_width, addr_width, pause, bubble,
                                              backpressure):
    seed = len(pause) + int(10 * bubble) + data_width
    _, rec = _bench(data_width, addr_width, "random", commands=12, pause=pause,
                    bubble=bubble, backpressure=backpressure, seed=seed)
    # 12 commands each way, several of them longer than one burst or crossing a page.
    assert rec["bursts"] > 24
    assert rec["read_beats"] > 0 and rec["write_beats"] > 0


@pytest.mark.parametrize(("data_width", "addr_width"), CONFIGS)
def test_sustained_throughput_is_one_beat_per_cycle(data_width, addr_width):
    dut, rec = _bench(data_width, addr_width, "throughput", seed=5)
    print(f"dma d{data_width}: {rec}")
    assert rec["read_beats_per_cycle"] == dut.beats_per_cycle == 1
    assert rec["write_beats_per_cycle"] == dut.beats_per_cycle
    assert rec["command_latency"] == dut.command_latency
    assert rec["read_beats"] > 1000 and rec["write_beats"] > 1000


@pytest.mark.parametrize(("data_width", "addr_width"), CONFIGS)
def test_errors_and_abort(data_width, addr_width):
    _, rec = _bench(data_width, addr_width, "errors", pause="random", seed=7)
    assert rec["abort_cycles"] >= 0


def test_from_config_takes_the_bus():
    cfg = preset("small")
    dut = DMA.from_config(cfg, max_outstanding=2)
    assert (dut.data_width, dut.addr_width) == (cfg.axi_data_width, cfg.axi_addr_width)
    assert dut.max_outstanding == 2
    assert dut.m_axi.signature == AXI4Signature(addr_width=32, data_width=64)
    Fragment.get(dut, None)  # elaborates


@pytest.mark.parametrize(("data_width", "max_burst", "beats"),
                         [(32, 256, 256), (128, 256, 256), (256, 256, 128), (512, 16, 16)])
def test_bursts_are_capped_by_the_page(data_width, max_burst, beats):
    assert ReadDMA(data_width=data_width, max_burst=max_burst).max_burst_beats == beats


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"data_width": 48}, "data_width must be 32, 64, 128, 256 or 512, not 48"),
        ({"addr_width": 8}, "addr_width must be in [12, 64], not 8"),
        ({"max_burst": 100}, "max_burst must be a power of two in [1, 256], not 100"),
        ({"max_burst": 512}, "max_burst must be a power of two in [1, 256], not 512"),
        ({"max_outstanding": 0}, "max_outstanding must be in [1, 64], not 0"),
        ({"fifo_depth": 1}, "fifo_depth must be in [2, 4096], not 1"),
        ({"len_width": 40}, "len_width must be in [1, addr_width=32], not 40"),
    ],
)
@pytest.mark.parametrize("cls", [ReadDMA, WriteDMA, DMA])
def test_rejects_bad_parameters(cls, kwargs, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [ReadDMA, WriteDMA, DMA])
def test_docstring_lists_the_ports(cls):
    dut = cls()
    documented = set(re.findall(r"^    (\w+) : (?:In|Out)\(", cls.__doc__, re.M))
    assert documented == set(dut.signature.members)


@pytest.mark.parametrize("sig", [
    AXI4Signature(addr_width=32, data_width=64),
    AXI4Signature(addr_width=32, data_width=64, read=False),
    AXI4Signature(addr_width=32, data_width=64, write=False),
    AXI4LiteSignature(addr_width=12),
])
def test_axi_docstrings_list_the_members(sig):
    # Docstring lines name members "a, b, c : Out" / "x : In(1)"; every member is named.
    doc = type(sig).__doc__.split("Members")[1]
    named = {n.strip() for line in re.findall(r"^    ([\w, ]+) : (?:In|Out)", doc, re.M)
             for n in line.split(",")}
    assert set(sig.members) <= named
    prefixes = {"aw", "w", "b", "ar", "r"}
    assert {n for n in named if not any(n.startswith(x) for x in prefixes)} == set()


def test_axi_signatures_compare_by_parameters():
    a = AXI4Signature(addr_width=32, data_width=64)
    assert a == AXI4Signature(addr_width=32, data_width=64)
    assert a != AXI4Signature(addr_width=32, data_width=128)
    assert a != AXI4Signature(addr_width=32, data_width=64, write=False)
    assert "araddr" not in AXI4Signature(addr_width=32, data_width=64, read=False).members
    with pytest.raises(ValueError, match=re.escape("id_width must be one of")):
        AXI4Signature(addr_width=32, data_width=64, id_width=0)
    with pytest.raises(ValueError, match="needs read=True, write=True or both"):
        AXI4Signature(addr_width=32, data_width=64, read=False, write=False)


def test_ecp5_resources():
    stats = synth_stats(DMA(data_width=64), name="dma_d64a32")
    print(f"dma 64-bit: {stats}")
    # Two burst splitters, FIFOs in distributed RAM, no multipliers or block RAM.
    assert stats["MULT18X18D"] == 0 and stats["DP16KD"] == 0
    assert 0 < stats["TRELLIS_DPR16X4"] < 64
    assert 200 < stats["TRELLIS_FF"] < 1000
    assert stats["LUT4"] < 1200


@pytest.mark.parametrize(("addr", "length", "max_burst"), [
    (0x0FF0, 40, 4),  # first burst to the next 4-beat boundary, crosses the page there
    (0x1004, 100, 8),
    (0x0000, 4, 256),  # one beat
    (0x0F00, 0x400, 256),  # from mid-page: cut at the page, then one page-sized burst
])
def test_bursts_end_at_max_burst_boundaries(addr, length, max_burst):
    # The documented split: bursts end at multiples of max_burst_beats; every burst but
    # the first starts on one, none crosses a page, together they tile the command.
    # No R responses here: max_outstanding covers all the bursts of these commands.
    dut = ReadDMA(data_width=32, max_burst=max_burst, max_outstanding=8)
    nbytes, m = dut.bytes_per_beat, dut.max_burst_beats
    seen = []

    async def bench(ctx):
        ctx.set(dut.axi.arready, 1)
        ctx.set(dut.cmd.payload.addr, addr)
        ctx.set(dut.cmd.payload.length, length)
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)
        for _ in range(4 * length // nbytes + 10):
            if ctx.get(dut.axi.arvalid):
                seen.append((ctx.get(dut.axi.araddr), ctx.get(dut.axi.arlen) + 1))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    beats = -(-length // nbytes)
    want, cur, left = [], addr, beats
    while left:  # the documented rule, written out
        n = min(left, m - (cur // nbytes) % m)
        want.append((cur, n))
        cur, left = cur + n * nbytes, left - n
    assert seen == want, f"bursts {seen}, expected {want}"
    for a, n in seen:
        assert a // 4096 == (a + n * nbytes - 1) // 4096, f"burst at {a:#x} crosses a page"
