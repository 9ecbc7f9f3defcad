"""``mnaccel report``: the JSON contract, the formats agree, the plots, --rtl, synthesis, errors.

The model-only reports take a second or two each. The ``--rtl`` test runs MobileNetV1
α 0.25/32 on the ``small`` build that tests/hw/test_accelerator.py and test_simulate.py
make (same component, same Verilog), so the Verilator build cache hits. Synthesis is
replaced by fakes: a place and route of the whole accelerator takes many minutes.
"""

import contextlib
import csv
import gc
import io
import json
import re
import struct
import warnings
import zlib
from pathlib import Path

import pytest
from amaranth.hdl import UnusedElaboratable

from mnaccel.compiler.cycle_model import DRAM_LATENCY, model
from mnaccel.compiler.plan import plan
from mnaccel.golden.model import load_model
from mnaccel.golden.table import table_rows
from mnaccel.hw import config as hw_config
from mnaccel.hw.config import preset
from mnaccel.sim import build, pnr, report, synth, system
from mnaccel.sim.cli import main

ROOT = Path(__file__).resolve().parents[2]
NET = ["mobilenet_v1", "--alpha", "0.25", "--resolution", "32"]
ECP5 = preset("ecp5-85f")
LAYER_KEYS = {"name", "op", "macs", "cycles", "ideal_cycles", "utilization",
              "dram_read_bytes", "dram_write_bytes"}
TOTAL_KEYS = {"macs", "cycles", "utilization", "fps"}


def _main(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def modelled(tmp_path_factory):
    """MobileNetV1 α 0.25/32 on the default preset, cycles from the model, no synthesis."""
    out = tmp_path_factory.mktemp("report") / "r"
    code, stdout, err = _main("report", *NET, "--no-synth", "--out", out)
    assert code == 0, err
    return {"out": out, "stdout": stdout, "json": json.loads((out / "report.json").read_text())}


def _plan(alpha=0.25, resolution=32, config=ECP5):
    return plan(load_model("mobilenet_v1", alpha=alpha, resolution=resolution,
                           calibrate=False), config)


# --- report.json ----------------------------------------------------------------------------


def test_json_contract(modelled):
    r = modelled["json"]
    assert {"layers", "totals", "resources", "fmax_mhz"} <= set(r)
    p = _plan()
    assert [e["name"] for e in r["layers"]] == [s.name for s in p.steps]
    assert [e["op"] for e in r["layers"]] == [s.opcode.name for s in p.steps]
    for e in r["layers"]:
        assert LAYER_KEYS <= set(e), e["name"]
        for key in LAYER_KEYS - {"name", "op", "utilization"}:
            assert isinstance(e[key], int) and e[key] >= 0, (e["name"], key, e[key])
        assert isinstance(e["utilization"], float) and 0 <= e["utilization"] <= 1
        assert e["bound"] in ("compute", "memory")
    assert TOTAL_KEYS <= set(r["totals"])
    # --no-synth: unknown, not invented.
    assert r["fmax_mhz"] is None and r["totals"]["fps"] is None and r["resources"] is None
    assert r["source"] == "model" and r["config"] == "ecp5-85f"
    assert any("--no-synth" in note for note in r["notes"])


def test_figures_are_the_cycle_models(modelled):
    r = modelled["json"]
    p = _plan()
    steps = model(p)
    assert r["dram_latency"] == DRAM_LATENCY
    for e, s in zip(r["layers"], steps, strict=True):
        assert (e["macs"], e["cycles"], e["ideal_cycles"], e["dram_read_bytes"],
                e["dram_write_bytes"]) == (s.macs, s.cycles, s.ideal_cycles,
                                           s.dram_read_bytes, s.dram_write_bytes), e["name"]
        assert e["model_cycles"] == s.cycles
    counted = {row.name: row.mul for row in table_rows(p.graph)
               if row.type in ("conv", "dw", "pw", "fc")}
    assert r["totals"]["macs"] == sum(counted.values())


def test_totals_are_sums_and_utilizations_their_ratios(modelled):
    r = modelled["json"]
    layers, t, m = r["layers"], r["totals"], r["multipliers"]
    assert m == {"pw": ECP5.pw_multipliers, "dw": ECP5.dw_multipliers,
                 "total": ECP5.multipliers}
    for key in ("macs", "pw_macs", "dw_macs", "cycles", "ideal_cycles", "dram_read_bytes",
                "dram_write_bytes"):
        assert t[key] == sum(e[key] for e in layers), key
    assert t["peak_onchip_bytes"] == max(e["onchip_bytes"] for e in layers)
    for e in [*layers, t]:
        assert e["pw_macs"] + e["dw_macs"] == e["macs"]
        assert e["utilization"] == pytest.approx(e["macs"] / (e["cycles"] * m["total"]))
        assert e["pw_utilization"] == pytest.approx(e["pw_macs"] / (e["cycles"] * m["pw"]))
        assert e["dw_utilization"] == pytest.approx(e["dw_macs"] / (e["cycles"] * m["dw"]))
    # The depthwise array does the depthwise layers' MACs, and only those.
    by_type = {row.name: row for row in table_rows(_plan().graph)}
    for e in layers:
        dw = sum(by_type[n].mul for n in e["graph_layers"] if by_type[n].type == "dw")
        assert e["dw_macs"] == dw, e["name"]


def test_buffers_follow_the_tiling_and_fit(modelled):
    r = modelled["json"]
    cap = r["buffer_capacity"]
    assert cap["act_buf"] == ECP5.act_buf_bytes and cap["out_buf"] == ECP5.out_buf_bytes
    assert cap["weight_fifo"] == ECP5.pw_weight_fifo_bytes
    p = _plan()
    for e, step in zip(r["layers"], p.steps, strict=True):
        assert set(e["buffers"]) == set(report.BUFFERS)
        assert e["onchip_bytes"] == sum(e["buffers"].values())
        for key, used in e["buffers"].items():
            assert 0 <= used <= cap[key], (e["name"], key, used, cap[key])
        if step.opcode.name in ("DW_PW", "CONV0", "PW", "FC"):
            pixels = max(n for _, n in step.tiles())
            halves = min(step.n_tiles, 2)
            assert e["buffers"]["act_buf"] == halves * pixels * step.k_chunks * ECP5.pw_rows
            assert e["buffers"]["out_buf"] == halves * pixels * step.j_chunks * ECP5.pw_cols
        if step.opcode.name == "DW_PW":
            # max_kernel − 1 = 4 rows of the input map and 4 columns of 5 pixels.
            assert e["buffers"]["line_buffer"] == 4 * (step.in_w + 5) * step.in_c
    # At 224×224 the output buffer limits P in some steps (28×28×256: P ≤ 32 KiB / 256);
    # their tiles, evened out after the first, nearly fill both halves.
    big = report.build_report(p224 := _plan(1.0, 224), model(p224), model_spec="",
                              config_name="ecp5-85f", dram_latency=DRAM_LATENCY)
    half = ECP5.out_buf_bytes // 2
    assert any(s.max_tile_pixels == half // (s.j_chunks * ECP5.pw_cols) < s.pixels
               for s in p224.steps if s.opcode.name == "DW_PW")
    most = max(e["buffers"]["out_buf"] for e in big["layers"])
    assert 0.95 * ECP5.out_buf_bytes < most <= ECP5.out_buf_bytes, most


# --- report.csv and report.md agree with report.json -----------------------------------------


def test_csv_agrees_with_json(modelled):
    r = modelled["json"]
    rows = list(csv.DictReader(io.StringIO((modelled["out"] / "report.csv").read_text())))
    assert list(rows[0]) == list(report.CSV_COLUMNS)
    *steps, total = rows
    assert len(steps) == len(r["layers"])
    for row, e in zip(steps, r["layers"], strict=True):
        for key in report.CSV_COLUMNS:
            want = e["buffers"][key] if key in report.BUFFERS else e[key]
            if key.endswith("_shape"):
                want = "x".join(map(str, want))
            got = row[key]
            assert (float(got) if isinstance(want, float) else
                    int(got) if isinstance(want, int) else got) == want, (e["name"], key)
    t = r["totals"]
    assert total["name"] == "total"
    for key in ("macs", "cycles", "ideal_cycles", "dram_read_bytes", "dram_write_bytes"):
        assert int(total[key]) == t[key] == sum(int(row[key]) for row in steps), key
    assert float(total["utilization"]) == t["utilization"]
    assert int(total["onchip_bytes"]) == t["peak_onchip_bytes"]


def _md_table(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _num(cell: str) -> int:
    return int(cell.replace(",", ""))


def _pct(cell: str) -> float:
    return float(cell.removesuffix(" %")) / 100


def test_md_agrees_with_json(modelled):
    r = modelled["json"]
    md = (modelled["out"] / "report.md").read_text()
    *rows, total = _md_table(md, "| # | step |")
    assert len(rows) == len(r["layers"])
    for row, e in zip(rows, r["layers"], strict=True):
        shape = f"{'×'.join(map(str, e['in_shape']))} → {'×'.join(map(str, e['out_shape']))}"
        assert row[:4] == [str(e["index"]), e["name"], e["op"], shape]
        assert [_num(c) for c in row[4:7]] == [e["macs"], e["cycles"], e["ideal_cycles"]]
        for cell, key in zip(row[7:10], ("utilization", "pw_utilization", "dw_utilization"),
                             strict=True):
            assert _pct(cell) == pytest.approx(e[key], abs=0.0005), (e["name"], key)
        assert [_num(c) for c in row[10:13]] == [e["onchip_bytes"], e["dram_read_bytes"],
                                                 e["dram_write_bytes"]]
        assert row[13] == f"{e['bound']}: {e['limit']}"
    t = r["totals"]
    assert total[1] == "**total**"
    assert [_num(c) for c in total[4:7]] == [t["macs"], t["cycles"], t["ideal_cycles"]]
    assert _pct(total[7]) == pytest.approx(t["utilization"], abs=0.0005)
    figures = dict(row[:2] for row in _md_table(md, "| figure | value |"))
    assert figures["Fmax"] == figures["frames/s at Fmax"] == "—"
    assert _num(figures["cycles"]) == t["cycles"]
    assert "![roofline](roofline.png)" in md


# --- plots ---------------------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG after checking its signature and every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind!r}"
        chunks.append(kind)
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
    ihdr = data[16:24]
    return struct.unpack(">II", ihdr)


def test_plots_are_valid_pngs(modelled):
    from matplotlib.image import imread

    for name in ("cycles.png", "roofline.png"):
        path = modelled["out"] / name
        width, height = _png_size(path.read_bytes())
        assert width >= 600 and height >= 300, (name, width, height)
        pixels = imread(path)
        assert pixels.shape[:2] == (height, width)
        assert pixels.std() > 0.05, f"{name} is blank"


# --- synthesis --------------------------------------------------------------------------------

_COLUMNS = {"LUT4": 30000, "FF": 25000, "CCU2C": 4000, "MULT18": 152, "DP16KD": 140,
            "DPR16X4": 90}


@pytest.fixture(autouse=True)
def _unelaborated():
    """Collect, after each test, the blocks that were built and never elaborated.

    The real :func:`~mnaccel.sim.build.verilog_for` elaborates the accelerator; the fake does
    not, and a configuration the blocks reject leaves the ones built before the error. Amaranth
    warns about each when the garbage collector gets to it, which may be in a later test, so
    they are collected here with that warning (and only it) ignored.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        gc.collect()


def _fake_flow(monkeypatch, *, fail=None):
    """Replace Verilog generation, Yosys and nextpnr; return the calls they received."""
    calls = []

    def verilog_for(component, *, name):
        calls.append(("verilog", type(component).__name__, name))
        return Path("mnaccel-fake.v")

    def synthesize(verilog, *, name, target, progress=None, hierarchy=True):
        calls.append(("synth", str(verilog), name, target, hierarchy))
        progress("yosys synth_ecp5 mnaccel (flattened)...")
        if fail == "yosys":
            raise RuntimeError("yosys synth_ecp5 of mnaccel failed (exit 1), log y.log:\n"
                               "ERROR: Module `nope' referenced but not found")
        cells = {"LUT4": 30000, "TRELLIS_FF": 25000}
        return {"netlist": "synth/netlist/fake.json", "cells": cells, "columns": _COLUMNS,
                "modules": {"": {"total": cells}, "scheduler": {"total": {"LUT4": 9000}},
                            "pointwise": {"total": {"MULT18X18D": 128}},
                            "pointwise.array": {"total": {"MULT18X18D": 128}}}}

    def place_and_route(netlist, *, name, seed=1, constraints=None, progress=None):
        calls.append(("pnr", netlist, name, seed))
        if fail == "pnr":
            raise RuntimeError("nextpnr-ecp5 of mnaccel failed (exit 1), log x.log:\n"
                               "Info: MULT18X18D: 160/156 102%\n"
                               "ERROR: Unable to place cell 'pe', no BELs remaining to "
                               "implement cell type 'MULT18X18D'\n0 warnings, 1 error")
        return {"fmax": {"clk": {"achieved": 101.25, "target": 200.0, "met": False}},
                "utilization": {"LUT": {"bel": "TRELLIS_COMB", "used": 41820,
                                        "available": 83640, "percent": 50.0}},
                "device": "LFE5U-85F CABGA381 speed 6", "seed": seed,
                "constraints": "constraints/ecp5.sdc", "log": "pnr/x/nextpnr.log"}

    monkeypatch.setattr(build, "verilog_for", verilog_for)
    monkeypatch.setattr(synth, "synthesize", synthesize)
    monkeypatch.setattr(pnr, "place_and_route", place_and_route)
    return calls


def test_fmax_and_resources_from_place_and_route(tmp_path, monkeypatch):
    calls = _fake_flow(monkeypatch)
    code, out, err = _main("report", *NET, "--out", tmp_path / "r")
    assert code == 0, err
    # The whole accelerator, the flow and caches of `mnaccel synth --pnr` (per-module run).
    assert calls == [("verilog", "Accelerator", "mnaccel"),
                     ("synth", "mnaccel-fake.v", "mnaccel", "ecp5", True),
                     ("pnr", "synth/netlist/fake.json", "mnaccel", 1)]
    assert "yosys synth_ecp5 mnaccel (flattened)..." in err
    r = json.loads((tmp_path / "r" / "report.json").read_text())
    assert r["fmax_mhz"] == 101.25
    assert r["totals"]["fps"] == pytest.approx(101.25e6 / r["totals"]["cycles"])
    res = r["resources"]
    assert res["cells"] == _COLUMNS and res["utilization"]["LUT"]["used"] == 41820
    assert list(res["modules"]) == ["pointwise", "scheduler"]     # one level below the top
    assert res["modules"]["pointwise"]["MULT18"] == 128
    assert r["timing"] == {"clock": "clk", "target_mhz": 200.0, "met": False, "seed": 1,
                           "constraints": "constraints/ecp5.sdc"}
    md = (tmp_path / "r" / "report.md").read_text()
    figures = dict(row[:2] for row in _md_table(md, "| figure | value |"))
    assert figures["Fmax"] == "101.2 MHz"
    assert figures["frames/s at Fmax"] == f"{r['totals']['fps']:.2f}"
    assert "| LUT (TRELLIS_COMB) | 41,820 | 83,640 | 50.0 |" in md
    assert "misses the 200.0 MHz clock constraint" in md
    assert f"{r['totals']['fps']:.2f} frames/s" in out


def test_a_failed_place_and_route_still_reports_with_exit_1(tmp_path, monkeypatch):
    _fake_flow(monkeypatch, fail="pnr")
    code, out, err = _main("report", *NET, "--out", tmp_path / "r")
    assert code == 1 and "report written to" in out
    error = ("nextpnr-ecp5 of mnaccel failed (exit 1), log x.log — ERROR: Unable to place "
             "cell 'pe', no BELs remaining to implement cell type 'MULT18X18D'")
    assert err.splitlines()[-1] == f"mnaccel report: synthesis failed: {error}"
    r = json.loads((tmp_path / "r" / "report.json").read_text())
    assert r["fmax_mhz"] is None and r["totals"]["fps"] is None and r["timing"] is None
    assert r["synthesis_error"] == error
    # Yosys' counts stay: they show why the design does not fit.
    assert r["resources"]["cells"]["MULT18"] == 152 and r["resources"]["utilization"] is None
    md = (tmp_path / "r" / "report.md").read_text()
    assert error in md and "| flattened design | 30,000 |" in md


def test_a_failed_synthesis_reports_without_resources(tmp_path, monkeypatch):
    _fake_flow(monkeypatch, fail="yosys")
    code, out, err = _main("report", *NET, "--out", tmp_path / "r")
    assert code == 1
    assert err.splitlines()[-1] == (
        "mnaccel report: synthesis failed: yosys synth_ecp5 of mnaccel failed (exit 1), log "
        "y.log — ERROR: Module `nope' referenced but not found")
    r = json.loads((tmp_path / "r" / "report.json").read_text())
    assert r["resources"] is None and r["fmax_mhz"] is None
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(report.FILES)


# --- --rtl ------------------------------------------------------------------------------------


@pytest.mark.xdist_group("accelerator")
def test_rtl_cycles_are_the_hardware_counters(tmp_path, monkeypatch):
    seen = []
    real = system.run_program

    def spy(program, x, **kwargs):
        seen.append((program, real(program, x, **kwargs)))
        return seen[-1][1]

    monkeypatch.setattr(system, "run_program", spy)
    out = tmp_path / "r"
    code, stdout, err = _main("report", *NET, "--config", "small", "--rtl", "--no-synth",
                              "--out", out)
    assert code == 0, err
    (program, result), = seen
    r = json.loads((out / "report.json").read_text())
    assert r["source"] == "rtl"
    assert [e["cycles"] for e in r["layers"]] == result.layer_cycles
    assert r["totals"]["cycles"] == sum(result.layer_cycles)
    assert r["totals"]["run_cycles"] == result.cycles
    # Beside them, the model of the same memory latency as the simulated RAM.
    predicted = model(program.plan, dram_latency=2)
    assert r["dram_latency"] == 2
    assert [e["model_cycles"] for e in r["layers"]] == [s.cycles for s in predicted]
    small = preset("small")
    for e in r["layers"]:
        assert e["utilization"] == pytest.approx(e["macs"] / (e["cycles"] * small.multipliers))
    rows = list(csv.DictReader(io.StringIO((out / "report.csv").read_text())))
    assert [int(row["cycles"]) for row in rows[:-1]] == result.layer_cycles
    assert f"{sum(result.layer_cycles):,} cycles" in stdout


def test_rtl_mismatch_exits_1_and_writes_nothing(tmp_path, monkeypatch):
    def run_program(program, x, **kwargs):
        return system.RunResult(memory=b"", status=0, error_code=0, cycles=10,
                                layer_cycles=[1] * len(program.plan.steps), read_stall=0,
                                write_stall=0, irqs=1, wall_cycles=10, layer_count=1,
                                timeout=True)

    monkeypatch.setattr(system, "run_program", run_program)
    code, out, err = _main("report", *NET, "--config", "small", "--rtl", "--no-synth",
                           "--out", tmp_path / "r")
    assert (code, out) == (1, "")
    assert err == "mnaccel: mismatch: the run did not finish (STATUS 0x0, 1 steps done)\n"
    assert list(tmp_path.iterdir()) == []


# --- bad input ------------------------------------------------------------------------------


V2 = ["mobilenet_v2", "--alpha", "0.35", "--resolution", "32"]


@pytest.mark.parametrize("argv, message", [
    ([*NET, "--config", "nope", "--no-synth"], "unknown configuration preset 'nope'"),
    (["mobilenet_v1", "--alpha", "3", "--no-synth"], "alpha"),
    (["mobilenet_v1", "--resolution", "33", "--no-synth"], "resolution"),
    (["resnet", "--no-synth"], "unknown model 'resnet'"),
    ([*V2, "--no-synth"], "operator ADD is not mapped"),
    ([*NET, "--config", "tiny", "--no-synth"], "cannot be mapped"),
    # The scheduler rejects `large` (256-bit bus): no RTL, no synthesis of it.
    ([*NET, "--config", "large", "--rtl", "--no-synth"],
     "configuration 'large' cannot run on the accelerator's scheduler"),
    ([*NET, "--config", "large"], "configuration 'large' cannot be built for synthesis"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, argv, message):
    code, out, err = _main("report", *argv, "--out", tmp_path / "r")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("mnaccel: error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_preset_whose_blocks_reject_it_exits_2(tmp_path, monkeypatch):
    # A row of 1024 bytes cannot hold 224 pixels of 8-channel line-buffer beats.
    monkeypatch.setitem(hw_config.PRESETS, "odd", ECP5.replace(lb_max_row_bytes=1024))
    code, out, err = _main("report", *NET, "--config", "odd", "--no-synth", "--out",
                           tmp_path / "r")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "configuration 'odd' cannot be modelled: max_row_bytes" in err
    assert list(tmp_path.iterdir()) == []


def test_out_must_be_new_empty_or_an_earlier_report(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    code, out, err = _main("report", *NET, "--no-synth", "--out", mine)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "is not empty and holds no earlier report" in err
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]
    afile = tmp_path / "file"
    afile.write_text("x")
    code, out, err = _main("report", *NET, "--no-synth", "--out", afile)
    assert code == 2 and "exists and is not a directory" in err and afile.read_text() == "x"
    code, out, err = _main("report", *NET, "--no-synth", "--out", afile / "r")
    assert code == 2 and f"{str(afile)!r} is not a directory" in err
    # Missing parents are made.
    code, out, err = _main("report", *NET, "--no-synth", "--out", tmp_path / "a" / "b" / "r")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "a" / "b" / "r").iterdir()) == sorted(report.FILES)
    # An earlier report is replaced as a whole.
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "report.json").write_text("{}")
    (earlier / "old.png").write_bytes(b"")
    code, out, err = _main("report", *NET, "--no-synth", "--out", earlier)
    assert code == 0, err
    assert sorted(p.name for p in earlier.iterdir()) == sorted(report.FILES)
    assert json.loads((earlier / "report.json").read_text())["layers"][0]["in_shape"] == \
        [32, 32, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "earlier", "file", "mine"]


# --- docs/report.md ---------------------------------------------------------------------------


def _between(text: str, marker: str) -> str:
    m = re.search(rf"<!-- {marker} -->\n(.*?)<!-- /{marker} -->", text, re.S)
    assert m, f"no <!-- {marker} --> section"
    return m.group(1)


def example_sections(md: str) -> str:
    """report.md's Totals, Steps and On-chip buffers sections, quoted as in docs/report.md."""
    body = md[md.index("## Totals"):md.index("## Resources")].rstrip("\n")
    return "\n".join(f"> {line}".rstrip() for line in body.splitlines()) + "\n"


_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _agree(doc: str, now: str, what: str) -> None:
    """``doc`` reads like ``now``: the same text, and every number within 2 % (or 1 unit).

    The cycle model follows the blocks' latencies, which are still being tuned: a change
    of a few cycles per step should not make the example wrong, a real change should.
    """
    hint = (f"docs/report.md's {what} is stale: regenerate it from `mnaccel report "
            f"mobilenet_v1 --no-synth` (example_sections, beside_notes) and check its prose")
    doc_lines, now_lines = doc.splitlines(), now.splitlines()
    assert len(doc_lines) == len(now_lines), hint
    for d, n in zip(doc_lines, now_lines, strict=True):
        assert _NUMBER.sub("#", d) == _NUMBER.sub("#", n), f"{hint}\n{d}\n{n}"
        for x, y in zip(_NUMBER.findall(d), _NUMBER.findall(n), strict=True):
            x, y = float(x.replace(",", "")), float(y.replace(",", ""))
            assert abs(x - y) <= max(1.0, 0.02 * abs(y)), f"{hint}\n{d}\n{n}"


def test_docs_worked_example_is_the_commands_output():
    """docs/report.md quotes report.md of MobileNetV1 1.0/224 on ecp5-85f (--no-synth)."""
    p = _plan(1.0, 224)
    r = report.build_report(p, model(p), model_spec="mobilenet_v1, α 1.0, 224×224",
                            config_name="ecp5-85f", dram_latency=DRAM_LATENCY)
    doc = (ROOT / "docs" / "report.md").read_text()
    _agree(_between(doc, "report-example"), example_sections(report.to_markdown(r)),
           "worked example")
    _agree(_between(doc, "report-beside-notes"), beside_notes(r, p.graph),
           "table beside the notes")
    # The example's plots are there too.
    for name in ("report-cycles.png", "report-roofline.png"):
        _png_size((ROOT / "docs" / "img" / name).read_bytes())


def beside_notes(r: dict, graph) -> str:
    """The table of docs/report.md that sets the report's steps beside the notes' rows."""
    step_of = {name: e for e in r["layers"] for name in e["graph_layers"]}
    lines = ["| notes row | layer | # mul (notes table) | step | step MACs | cycles | util. |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    rows = table_rows(graph)
    for row in rows[:-1]:
        e = step_of.get(row.name)
        label = f"{row.type} {row.layer if row.layer is not None else '-'}"
        if e is None:
            lines.append(f"| {label} | {row.name} | {row.mul:,} | (no step) | | | |")
        elif row.name != e["graph_layers"][-1]:
            # The step's figures sit on the row of its last layer.
            lines.append(f"| {label} | {row.name} | {row.mul:,} | {e['index']} {e['op']} "
                         f"(↓) | | | |")
        else:
            lines.append(f"| {label} | {row.name} | {row.mul:,} | {e['index']} {e['op']} | "
                         f"{e['macs']:,} | {e['cycles']:,} | "
                         f"{100 * e['utilization']:.1f} % |")
    t = r["totals"]
    assert rows[-1].type == "sum"
    lines.append(f"| sum | | {rows[-1].mul:,} | | {t['macs']:,} "
                 f"| {t['cycles']:,} | {100 * t['utilization']:.1f} % |")
    return "\n".join(lines) + "\n"


def _write_docs_example() -> None:
    """Regenerate docs/report.md's generated sections and its two plots from the model."""
    p = _plan(1.0, 224)
    r = report.build_report(p, model(p), model_spec="mobilenet_v1, α 1.0, 224×224",
                            config_name="ecp5-85f", dram_latency=DRAM_LATENCY)
    path = ROOT / "docs" / "report.md"
    doc = path.read_text()
    for marker, text in (("report-example", example_sections(report.to_markdown(r))),
                         ("report-beside-notes", beside_notes(r, p.graph))):
        start = doc.index(f"<!-- {marker} -->\n") + len(f"<!-- {marker} -->\n")
        doc = doc[:start] + text + doc[doc.index(f"<!-- /{marker} -->"):]
    path.write_text(doc)
    report.plot_cycles(r, ROOT / "docs" / "img" / "report-cycles.png")
    report.plot_roofline(r, ROOT / "docs" / "img" / "report-roofline.png")
    print(f"{path.relative_to(ROOT)}: regenerated; check its prose against the new figures")


if __name__ == "__main__":
    # `python tests/sim/test_report.py` after a change to the cycle model or the plan.
    _write_docs_example()
