# amaranth: UnusedElaboratable=no
"""Control and status registers: cocotb bench on Verilator with cocotbext-axi's
AxiLiteMaster, the register map's consistency, and docs/registers.md against the map."""

import re
from pathlib import Path

import pytest
from amaranth.hdl import Fragment

from mnaccel.hw.config import preset
from mnaccel.hw.csr import REGISTERS, Access, ControlRegisters, register, registers_markdown
from mnaccel.sim.runner import run_bench
from mnaccel.sim.synth import synth_stats

BENCH = "mnaccel.sim.benches.csr"
ROOT = Path(__file__).resolve().parents[2]
#: (preset, AXI4-Lite address width, program address width): the smallest window with a
#: 32-bit program address, and a 4 KB window with a 40-bit one (PROGRAM_ADDR_HI truncated).
CONFIGS = [("tiny", 8, 32), ("ecp5-85f", 12, 40)]


@pytest.mark.parametrize(("config", "addr_width", "program_addr_width"), CONFIGS)
@pytest.mark.parametrize("pause", ["none", "random"])
def test_register_semantics_counters_and_irq(config, addr_width, program_addr_width, pause):
    cfg = preset(config).replace(axi_addr_width=program_addr_width)
    dut = ControlRegisters.from_config(cfg, addr_width=addr_width)
    params = {"addr_width": addr_width, "program_addr_width": program_addr_width,
              "config_id": int(cfg.config_id, 16), "pause": pause, "seed": addr_width}
    rec = run_bench(dut, name=f"csr_a{addr_width}p{program_addr_width}", bench=BENCH,
                    params=params)
    # Five layers of 80-160 cycles each, counted by the hardware and summed.
    assert 5 * 80 <= rec["cycles"] == sum(rec["layer_cycles"]) <= 5 * 160
    assert rec["holes"] >= 3


def test_docs_match_the_register_map():
    doc = (ROOT / "docs" / "registers.md").read_text()
    assert doc == registers_markdown(), (
        "docs/registers.md is stale: run `python -m mnaccel.hw.csr > docs/registers.md`")


def test_map_is_consistent():
    offsets = [r.offset for r in REGISTERS]
    assert offsets == sorted(set(offsets)) and all(o % 4 == 0 for o in offsets)
    assert max(offsets) < 1 << 7  # fits the smallest allowed window
    for r in REGISTERS:
        masks = [f.mask for f in r.fields]
        assert sum(masks) == sum(set(masks)) and all(m >> 32 == 0 for m in masks), r.name
        assert all(b & a == 0 for i, a in enumerate(masks) for b in masks[i + 1:]), r.name
    # Every 64-bit counter is a LO/HI pair of read-only registers.
    for name in ("CYCLES", "LAYER_CYCLES", "READ_STALL", "WRITE_STALL"):
        lo, hi = register(f"{name}_LO"), register(f"{name}_HI")
        assert hi.offset == lo.offset + 4
        assert all(f.access == Access.RO for f in lo.fields + hi.fields)


def test_register_lookup_names_the_missing():
    with pytest.raises(KeyError, match="no register 'NOPE'"):
        register("NOPE")
    with pytest.raises(KeyError, match="register CTRL has no field 'NOPE'"):
        register("CTRL").field("NOPE")


def test_config_id_comes_from_the_config():
    cfg = preset("small")
    dut = ControlRegisters.from_config(cfg)
    assert dut.config_id == int(cfg.config_id, 16)
    assert dut.program_addr_width == cfg.axi_addr_width
    assert register("CONFIG_ID").reset_value(config_id=dut.config_id) == dut.config_id
    Fragment.get(dut, None)  # elaborates


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"addr_width": 6}, "addr_width must be in [7, 32], not 6"),
        ({"program_addr_width": 65}, "program_addr_width must be in [12, 64], not 65"),
        ({"config_id": 1 << 32}, "config_id must be a 32-bit unsigned int, not 4294967296"),
    ],
)
def test_rejects_bad_parameters(kwargs, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        ControlRegisters(**kwargs)


def test_docstring_lists_the_ports():
    dut = ControlRegisters()
    doc = ControlRegisters.__doc__.split("Members")[1].split("Attributes")[0]
    named = {n.strip() for line in re.findall(r"^    ([\w, ]+) : (?:In|Out)\(", doc, re.M)
             for n in line.split(",")}
    assert named == set(dut.signature.members)


def test_ecp5_resources():
    stats = synth_stats(ControlRegisters.from_config(preset("small")), name="csr_small")
    print(f"csr small: {stats}")
    # Four 64-bit counters and the 32-bit registers: ~500 flip-flops, no RAM or DSP.
    assert stats["MULT18X18D"] == 0 and stats["DP16KD"] == 0
    assert 4 * 64 + 3 * 32 < stats["TRELLIS_FF"] < 800
    assert stats["LUT4"] < 1500
