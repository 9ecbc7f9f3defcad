"""``mnaccel synth`` and ``mnaccel verilog`` through the CLI: counts, cache, bad input."""

import json
import os
import re

import pytest

import mnaccel.sim.synth as synth_module
from mnaccel.hw.config import preset
from mnaccel.sim.cli import main
from mnaccel.sim.synth import CATEGORIES, categorize


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MNACCEL_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "build"


def cli(argv) -> int:
    """Exit status of ``mnaccel ARGV``, whether it returns or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_synth_pointwise_counts_and_cache(root, capsys, monkeypatch):
    config = preset("tiny")
    argv = ["synth", "--config", "tiny", "--block", "pointwise", "--json"]
    assert cli(argv) == 0
    result = json.loads(capsys.readouterr().out)
    synth = result["synthesis"]
    assert (result["top"], result["target"], synth["cached"]) == ("mnaccel_pointwise", "ecp5",
                                                                   False)
    # One 18×18 DSP per PE: in the flattened design, in the array and in each PE module.
    assert synth["cells"]["MULT18X18D"] == config.pw_multipliers
    modules = synth["modules"]
    assert modules["array"]["total"]["MULT18X18D"] == config.pw_multipliers
    pes = [path for path in modules if re.fullmatch(r"array\.pe_\d+_\d+", path)]
    assert len(pes) == config.pw_multipliers
    assert all(modules[pe]["total"]["MULT18X18D"] == 1 for pe in pes)
    # A module's total is its own cells plus its children's totals.
    for path, info in modules.items():
        prefix = f"{path}." if path else ""
        children = [p for p in modules if p.startswith(prefix) and p != path
                    and "." not in p[len(prefix):]]
        for cell, n in info["total"].items():
            assert n == info["cells"].get(cell, 0) + sum(
                modules[c]["total"].get(cell, 0) for c in children), (path, cell)
    # Each column output register (int32 sums) is flip-flops; the adders use carry chains.
    assert synth["cells"]["TRELLIS_FF"] >= 32 * config.pw_cols
    assert synth["cells"]["CCU2C"] > 0 and synth["cells"]["LUT4"] > 0
    assert synth["columns"] == categorize(synth["cells"], "ecp5")
    # Without optimization across module boundaries the modules add up to a little more.
    hier = modules[""]["total"]["LUT4"]
    assert synth["cells"]["LUT4"] <= hier < 1.5 * synth["cells"]["LUT4"]
    assert (root / synth["netlist"]).is_file()

    # Cached: no tool runs again, same counts.
    def no_tool(*args, **kwargs):
        raise AssertionError(f"a tool ran for a cached design: {kwargs.get('what')}")

    monkeypatch.setattr(synth_module, "run_tool", no_tool)
    assert cli(argv) == 0
    again = json.loads(capsys.readouterr().out)["synthesis"]
    assert again["cached"] is True
    assert (again["cells"], again["modules"]) == (synth["cells"], synth["modules"])

    assert cli(["synth", "--config", "tiny", "--block", "pointwise", "--depth", "2"]) == 0
    captured = capsys.readouterr()
    assert "flattened design" in captured.out
    rows = {line.split()[0]: line.split()[1:] for line in captured.out.splitlines()
            if line.strip()}
    assert rows["flattened"][1:] == [str(synth["columns"][c]) for c in CATEGORIES["ecp5"]]
    last_pe = f"pe_{config.pw_rows - 1}_{config.pw_cols - 1}"
    assert rows[last_pe][list(CATEGORIES["ecp5"]).index("MULT18")] == "1"
    assert "yosys" not in captured.err  # nothing synthesized: all cached


@pytest.mark.parametrize(
    "argv, names",
    [
        (["synth", "--config", "tiny", "--block", "nonesuch"], ["'nonesuch'", "pointwise"]),
        (["synth", "--config", "huge", "--block", "csr"], ["'huge'", "ecp5-85f"]),
        (["synth", "--config", "tiny", "--block", "csr", "--pnr", "--target", "generic"],
         ["generic"]),
        (["synth", "--config", "tiny", "--block", "csr", "--seed", "-1"], ["-1"]),
        (["synth", "--config", "tiny", "--block", "csr", "--target", "ice40"], ["'ice40'"]),
        (["synth", "--config", "tiny", "--block", "csr", "--router", "router9"],
         ["'router9'", "router2"]),
        (["verilog", "--config", "tiny", "--block", "nonesuch", "-o", "x.v"], ["'nonesuch'"]),
        (["verilog", "--config", "huge", "--block", "csr", "-o", "x.v"], ["'huge'"]),
        (["verilog", "--config", "tiny", "--block", "csr", "-o", "no/such/dir/x.v"],
         ["'no/such/dir'"]),
        (["verilog", "--config", "tiny", "--block", "csr"], ["-o"]),
    ],
)
def test_bad_input_exits_2_with_one_line(root, capsys, argv, names):
    assert cli(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    for name in names:
        assert name in captured.err
    assert not (root.parent / "x.v").exists()
    assert not root.exists()  # nothing was built


def test_verilog_writes_the_block(root, tmp_path, capsys):
    out = tmp_path / "csr.v"
    assert cli(["verilog", "--config", "tiny", "--block", "csr", "-o", str(out)]) == 0
    text = out.read_text()
    assert re.search(r"^module mnaccel_csr\(", text, re.M)
    for port in ("clk", "rst", "s_axil__awaddr", "s_axil__rdata", "irq"):
        assert re.search(rf"\b(input|output)\b[^;]*\b{port}\b", text), port
    assert "wrote" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csr.v"]  # no temporary left

    # A bad argument afterwards leaves the earlier file as it was.
    assert cli(["verilog", "--config", "tiny", "--block", "nonesuch", "-o", str(out)]) == 2
    assert out.read_text() == text


def test_verilog_leaves_an_unchanged_file_alone(root, tmp_path):
    out = tmp_path / "csr.v"
    argv = ["verilog", "--config", "tiny", "--block", "csr", "-o", str(out)]
    assert cli(argv) == 0
    os.utime(out, ns=(0, 0))
    assert cli(argv) == 0
    assert out.stat().st_mtime_ns == 0


def test_verilog_unwritable_output_is_one_line(root, tmp_path, capsys, monkeypatch):
    # Root may write anywhere, so the refusal is simulated where the file is written.
    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("mnaccel.sim.commands.verilog.write_atomic", refuse)
    out = tmp_path / "csr.v"
    assert cli(["verilog", "--config", "tiny", "--block", "csr", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Permission denied" in err and "csr.v" in err
    assert not out.exists()


@pytest.mark.parametrize("block, primitive", [
    ("requantizer", "MULT18X18D"), ("pointwise", "MULT18X18D"), ("pointwise", "DP16KD"),
    ("line_buffer", "DP16KD"), ("depthwise", "DP16KD"), ("depthwise_array", "DP16KD"),
])
def test_verilog_target_decides_ecp5_primitives(root, tmp_path, block, primitive):
    ecp5, generic = tmp_path / "e.v", tmp_path / "g.v"
    base = ["verilog", "--config", "tiny", "--block", block]
    assert cli([*base, "-o", str(ecp5)]) == 0
    assert cli([*base, "--target", "generic", "-o", str(generic)]) == 0
    assert primitive in ecp5.read_text()
    assert primitive not in generic.read_text()


def test_synth_xilinx7_pointwise(root, capsys):
    config = preset("tiny")
    argv = ["synth", "--config", "tiny", "--block", "pointwise", "--target", "xilinx7", "--json"]
    assert cli(argv) == 0
    synth = json.loads(capsys.readouterr().out)["synthesis"]
    # One DSP48E1 per PE; out of context: no I/O or clock buffers.
    assert synth["columns"]["DSP48"] == config.pw_multipliers
    assert synth["modules"]["array"]["total"]["DSP48E1"] == config.pw_multipliers
    assert synth["columns"]["FF"] >= 32 * config.pw_cols and synth["columns"]["LUT"] > 0
    assert not {"IBUF", "OBUF", "BUFG"} & set(synth["cells"])
    assert synth["netlist"] is None  # no place and route for this target
