"""Place and route with nextpnr-ecp5: Fmax, utilization and critical path parsed; cache."""

import json

import pytest

import mnaccel.sim.pnr as pnr_module
from mnaccel.hw.config import preset
from mnaccel.sim.cli import main
from mnaccel.sim.pnr import CONSTRAINTS, clock_targets, module_of, place_and_route


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MNACCEL_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "build"


def test_requantizer_tiny_fmax_and_utilization(root, capsys, monkeypatch):
    argv = ["synth", "--config", "tiny", "--block", "requantizer", "--pnr", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    cells, pnr = result["synthesis"]["cells"], result["pnr"]
    target = clock_targets(CONSTRAINTS.read_text())["clk"]
    clk = pnr["fmax"]["clk"]
    assert clk["target"] == pytest.approx(target)
    assert 20.0 < clk["achieved"] < 1000.0
    assert clk["met"] == (clk["achieved"] >= target)
    # nextpnr places exactly the flip-flops and DSPs that Yosys mapped.
    use = pnr["utilization"]
    assert use["FF"]["used"] == cells["TRELLIS_FF"]
    assert use["DSP"]["used"] == cells["MULT18X18D"] == 4 * preset("tiny").rq_lanes
    assert (use["DSP"]["available"], use["BRAM"]["available"]) == (156, 208)  # LFE5U-85F
    assert use["FF"]["percent"] == pytest.approx(
        100 * use["FF"]["used"] / use["FF"]["available"], abs=0.01)
    # The clock's critical path is what limits it: Fmax = 1 / its delay (no clock skew out
    # of context).
    (path,) = [p for p in pnr["critical_paths"] if p["from"] == p["to"] == "posedge clk"]
    assert path["delay_ns"] == pytest.approx(path["logic_ns"] + path["routing_ns"], abs=0.01)
    assert 1000.0 / path["delay_ns"] == pytest.approx(clk["achieved"], rel=0.02)
    assert path["logic_cells"] >= 1 and path["start"] and path["end"]
    assert (root / pnr["log"]).is_file() and (root / pnr["report"]).is_file()

    def no_tool(*args, **kwargs):
        raise AssertionError(f"a tool ran for a cached design: {kwargs.get('what')}")

    monkeypatch.setattr(pnr_module, "run_tool", no_tool)
    again = place_and_route(result["synthesis"]["netlist"], name=result["top"])
    assert again["cached"] is True
    assert again["fmax"] == pnr["fmax"]

    assert main(["synth", "--config", "tiny", "--block", "requantizer", "--pnr"]) == 0
    text = capsys.readouterr().out
    assert f"{clk['achieved']:.2f}" in text and "critical path" in text


@pytest.mark.parametrize(
    "sdc, expected",
    [
        ("create_clock -period 5.000 -name clk [get_ports clk]\n", {"clk": 200.0}),
        ("# create_clock -period 1 [get_ports x]\ncreate_clock -period 8 [get_ports {sys}]",
         {"sys": 125.0}),
        ("create_clock -name a -period 6.667 [get_ports a]  # 150 MHz", {"a": 149.993}),
        ("", {}),
    ],
)
def test_clock_targets(sdc, expected):
    assert clock_targets(sdc) == expected


def test_bad_arguments(root, tmp_path):
    netlist = root / "n.json"
    netlist.parent.mkdir(parents=True)
    netlist.write_text("{}")
    with pytest.raises(ValueError, match="-3"):
        place_and_route(netlist, name="n", seed=-3)
    with pytest.raises(ValueError, match="router1, router2, not 'router3'"):
        place_and_route(netlist, name="n", router="router3")
    sdc = tmp_path / "none.sdc"
    sdc.write_text("# no clock here\n")
    with pytest.raises(ValueError, match="none.sdc"):
        place_and_route(netlist, name="n", constraints=sdc)
    with pytest.raises(FileNotFoundError, match="missing.sdc"):
        place_and_route(netlist, name="n", constraints=tmp_path / "missing.sdc")


@pytest.mark.parametrize(
    "cell, module",
    [
        ("array.pe_3_0.$2_MULT18X18D_P9", "array.pe_3_0"),
        ("lane_0.s7_TRELLIS_FF_Q_12", "lane_0"),
        ("s_axil__rvalid_TRELLIS_FF_Q", ""),
        ("$abc$1234$auto$blifparse.cc:396:parse_blif$5678.x", ""),
    ],
)
def test_module_of_cell(cell, module):
    assert module_of(cell) == module


def test_module_of_cell_with_module_list():
    modules = ["", "fifo", "lane_0", "lane_0.mul", "lane_1"]
    assert module_of("fifo.storage.0.8$DPRAM_COMB3", modules) == "fifo"
    assert module_of("fifo.storage.0.8$DPRAM_COMB3") == "fifo.storage.0"  # the guess
    assert module_of("lane_0.mul.p_TRELLIS_FF_Q", modules) == "lane_0.mul"
    assert module_of("lane_10.x", modules) == ""
    assert module_of("clamp_TRELLIS_FF_Q", modules) == ""
