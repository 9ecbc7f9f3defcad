"""``mnaccel simulate``: MobileNetV1 α 0.25/32 on the ``small`` preset, the dump contract, errors.

The simulations use the ``small`` build that tests/hw/test_accelerator.py makes (same
component, same Verilog), so the Verilator build cache hits.
"""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest

from mnaccel.golden import interpreter, zoo
from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Op
from mnaccel.golden.model import load_model
from mnaccel.golden.table import table_rows
from mnaccel.hw import config as hw_config
from mnaccel.sim import system
from mnaccel.sim.cli import main
from mnaccel.sim.commands.simulate import select

pytestmark = pytest.mark.xdist_group("accelerator")

# --config small everywhere: the build tests/hw/test_accelerator.py makes.
NET = ["mobilenet_v1", "--alpha", "0.25", "--resolution", "32", "--config", "small"]
SMALL = hw_config.preset("small")


def _main(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """One run with --dump; the RunResult that run_program returned is kept beside it."""
    dump = tmp_path_factory.mktemp("simulate") / "dump"
    seen = []
    real = system.run_program

    def spy(program, x, **kwargs):
        seen.append((program, x, real(program, x, **kwargs)))
        return seen[-1][2]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(system, "run_program", spy)
        code, out, err = _main("simulate", *NET, "--dump", dump)
    (program, x, result), = seen
    return {"code": code, "out": out, "err": err, "dump": dump, "program": program, "x": x,
            "result": result}


def _macs(graph):
    return {r.name: r.mul for r in table_rows(graph) if r.type in ("conv", "dw", "pw", "fc")}


def test_exit_status_and_table(simulated):
    assert simulated["code"] == 0, simulated["err"]
    program, result = simulated["program"], simulated["result"]
    steps = program.plan.steps
    lines = simulated["out"].splitlines()
    rows = [line.split() for line in lines if line.split() and line.split()[0] in
            {s.name for s in steps}]
    assert len(rows) == len(steps)
    macs = _macs(program.plan.graph)
    for step, row, cycles in zip(steps, rows, result.layer_cycles, strict=True):
        m = sum(macs.get(layer.name, 0) for layer in step.layers)
        util = m / (cycles * SMALL.multipliers)
        assert row == [step.name, step.opcode.name, f"{cycles:,}", f"{m:,}", f"{util:.1%}"]
    total = next(line.split() for line in lines if line.startswith("total"))
    assert total[1:3] == [f"{result.cycles:,}", f"{sum(macs.values()):,}"]


def test_manifest_contract(simulated):
    manifest = json.loads((simulated["dump"] / "manifest.json").read_text())
    program, result = simulated["program"], simulated["result"]
    graph = load_model("mobilenet_v1", alpha=0.25, resolution=32)
    macs = _macs(graph)
    assert manifest["model"] == graph.name and manifest["kernels"] == "reference"
    assert manifest["total_cycles"] == result.cycles
    assert manifest["multipliers"] == SMALL.multipliers
    assert manifest["utilization"] == pytest.approx(
        sum(macs.values()) / (result.cycles * SMALL.multipliers), rel=1e-12)
    entries = manifest["layers"]
    assert [e["name"] for e in entries] == [layer.name for layer in graph.layers]
    assert [e["index"] for e in entries] == list(range(len(graph.layers)))
    assert [e["macs"] for e in entries] == [macs.get(layer.name, 0) for layer in graph.layers]
    # Each step's hardware cycles sit on the entry of the step's last layer.
    by_name = {e["name"]: e for e in entries}
    for step, cycles in zip(program.plan.steps, result.layer_cycles, strict=True):
        assert by_name[step.layers[-1].name]["cycles"] == cycles
        assert all(by_name[layer.name]["cycles"] is None for layer in step.layers[:-1])
    # Only the depthwise outputs, fused on chip, have no file.
    no_file = [e["name"] for e in entries if e["file"] is None]
    assert no_file == [layer.name for layer in graph.layers
                       if layer.op is Op.DEPTHWISE_CONV_2D]
    files = {e["file"] for e in entries if e["file"]} | {"manifest.json"}
    assert {p.name for p in simulated["dump"].iterdir()} == files


def test_dumped_arrays_equal_the_golden_model(simulated):
    graph = load_model("mobilenet_v1", alpha=0.25, resolution=32)
    x = zoo.random_input(graph, 0)
    assert np.array_equal(simulated["x"], x)
    want = interpreter.run(graph, x)
    manifest = json.loads((simulated["dump"] / "manifest.json").read_text())
    checked = 0
    for entry, layer in zip(manifest["layers"], graph.layers, strict=True):
        if entry["file"] is None:
            continue
        got, exp = np.load(simulated["dump"] / entry["file"]), want[layer.output]
        assert got.dtype == np.int8 and got.shape == exp.shape, entry["name"]
        diff = np.argwhere(got != exp)
        assert not diff.size, (f"{entry['name']}: {len(diff)} elements differ, first at "
                               f"{tuple(diff[0])}: dump {got[tuple(diff[0])]}, golden "
                               f"{exp[tuple(diff[0])]}")
        checked += 1
    assert checked == len(graph.layers) - 13   # all but the 13 on-chip depthwise outputs


def test_a_mismatch_exits_1_naming_layer_element_and_values(simulated, tmp_path, monkeypatch):
    program, result = simulated["program"], simulated["result"]
    name = program.plan.steps[2].output
    bad = dict(result.outputs)
    bad[name] = result.outputs[name].copy()
    bad[name].flat[5] ^= 1
    where = tuple(int(i) for i in np.unravel_index(5, bad[name].shape))
    monkeypatch.setattr(system, "run_program",
                        lambda *a, **k: system.RunResult(**{**vars(result), "outputs": bad}))
    code, _, err = _main("simulate", *NET, "--dump", tmp_path / "d")
    layer = next(layer.name for layer in program.plan.graph.layers if layer.output == name)
    assert code == 1
    assert err.count("\n") == 1
    assert (f"layer {layer!r}" in err and f"1 of {bad[name].size} elements differ" in err
            and f"first at {where}: accelerator {int(bad[name][where])}, golden "
                f"{int(result.outputs[name][where])}" in err), err


def test_a_prefix_of_layers(tmp_path):
    dump = tmp_path / "d"
    code, out, err = _main("simulate", *NET, "--layers", "0-2", "--dump", dump)
    assert code == 0, err
    manifest = json.loads((dump / "manifest.json").read_text())
    assert [e["name"] for e in manifest["layers"]] == ["conv1", "conv_dw_1", "conv_pw_1"]
    graph = load_model("mobilenet_v1", alpha=0.25, resolution=32)
    want = interpreter.run(graph, zoo.random_input(graph, 0))
    for entry, layer in zip(manifest["layers"], graph.layers, strict=False):
        if entry["file"]:
            assert np.array_equal(np.load(dump / entry["file"]), want[layer.output]), layer.name
    # conv1 and conv_pw_1 reach memory; conv_dw_1's output stays on chip.
    assert [e["file"] is not None for e in manifest["layers"]] == [True, False, True]
    assert "bit-exact: 2 layer outputs" in out


def _golden_outputs():
    graph = load_model("mobilenet_v1", alpha=0.25, resolution=32)
    return graph, interpreter.run(graph, zoo.random_input(graph, 0))


def test_a_range_from_the_middle_by_names(tmp_path):
    # conv_pw_1 (layer 2) runs fused with conv_dw_1 in the whole network; alone it is a PW
    # step whose input, conv_dw_1's output, comes from the golden model.
    dump = tmp_path / "d"
    code, out, err = _main("simulate", *NET, "--layers", "conv_pw_1-4", "--dump", dump)
    assert code == 0, err
    manifest = json.loads((dump / "manifest.json").read_text())
    entries = manifest["layers"]
    assert [(e["index"], e["name"]) for e in entries] == [
        (2, "conv_pw_1"), (3, "conv_dw_2"), (4, "conv_pw_2")]
    assert [e["file"] for e in entries] == ["002_conv_pw_1.npy", None, "004_conv_pw_2.npy"]
    rows = [line.split()[:2] for line in out.splitlines()[2:4]]
    assert rows == [["conv_pw_1", "PW"], ["conv_dw_2+conv_pw_2", "DW_PW"]]
    assert entries[0]["cycles"] > 0 and entries[2]["cycles"] > 0
    assert manifest["total_cycles"] >= entries[0]["cycles"] + entries[2]["cycles"]
    graph, want = _golden_outputs()
    for entry in entries[::2]:
        layer = graph.layers[entry["index"]]
        assert np.array_equal(np.load(dump / entry["file"]), want[layer.output]), layer.name
    assert "bit-exact: 2 layer outputs" in out


def test_a_range_that_ends_on_a_fused_depthwise_layer(tmp_path):
    # conv_dw_2 (layer 3) runs fused with conv_pw_2 in the whole network; without it, it is a
    # lone DW step whose output goes to memory and is compared.
    dump = tmp_path / "d"
    code, out, err = _main("simulate", *NET, "--layers", "conv_pw_1-3", "--dump", dump)
    assert code == 0, err
    entries = json.loads((dump / "manifest.json").read_text())["layers"]
    assert [(e["index"], e["file"]) for e in entries] == [
        (2, "002_conv_pw_1.npy"), (3, "003_conv_dw_2.npy")]
    rows = [line.split()[:2] for line in out.splitlines()[2:4]]
    assert rows == [["conv_pw_1", "PW"], ["conv_dw_2", "DW"]]
    assert entries[1]["cycles"] > 0
    graph, want = _golden_outputs()
    assert np.array_equal(np.load(dump / entries[1]["file"]), want[graph.layers[3].output])
    assert "bit-exact: 2 layer outputs" in out


def test_a_single_layer():
    # The classifier alone, from the pooled features the golden model computes.
    code, out, err = _main("simulate", *NET, "--layers", "28")
    assert code == 0, err
    assert [line.split()[:2] for line in out.splitlines()[2:3]] == [["conv_preds", "FC"]]
    assert "bit-exact: 1 layer outputs" in out


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")
def test_icarus_agrees_with_verilator():
    # One step (conv1): Icarus runs the accelerator ~30x slower than Verilator.
    runs = {sim: _main("simulate", *NET, "--layers", "0", "--simulator", sim)
            for sim in ("icarus", "verilator")}
    for sim, (code, out, err) in runs.items():
        assert code == 0, (sim, err)
        assert "bit-exact: 1 layer outputs" in out, (sim, out)
    # Same table: the cycle counts agree to the cycle.
    assert runs["icarus"][1] == runs["verilator"][1]


def test_select_keeps_quantization_and_refuses_a_second_input():
    graph = load_model("mobilenet_v2", alpha=0.35, resolution=32, calibrate=False)
    sub = select(graph, 6, 8)
    assert sub.input == "block_1_project" and sub.outputs == ("block_2_project",)
    assert [layer.name for layer in sub.layers] == [layer.name for layer in graph.layers[6:9]]
    assert all(sub.tensors[k] is graph.tensors[k] for k in sub.tensors)
    # block_2_add's skip input, block_1_project, is computed before layer 7.
    with pytest.raises(UserError, match=r"layer 'block_2_add' also reads 'block_1_project', "
                                        r"computed before layer 7 \('block_2_depthwise'\)"):
        select(graph, 7, 9)


@pytest.mark.parametrize("argv, message", [
    (["--config", "nope"], "unknown configuration preset 'nope'"),
    (["--config", "wide"], "configuration 'wide' cannot run on the accelerator's scheduler"),
    (["--config", "tiny"], "layer 'conv_dw_7' cannot be mapped"),
    (["--layers", "5-3"], "the range is empty (layer 5 comes after layer 3)"),
    (["--layers", "0-30"], "the model has layers 0 to 29"),
    (["--layers", "30"], "the model has layers 0 to 29"),
    (["--layers", "conv_pw_1-nope"], "give N, A-B (layer indices, execution order) or layer "
                                     "names"),
    (["--layers", "-3"], "give N, A-B"),
    (["--input", "WRONG"], "has shape (1, 8, 8, 3); the model needs (1, 32, 32, 3)"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, argv,
                                                            message):
    # A preset the scheduler rejects: a bus wider than one activation-buffer word.
    monkeypatch.setitem(hw_config.PRESETS, "wide", SMALL.replace(axi_data_width=256))
    wrong = tmp_path / "x.npy"
    np.save(wrong, np.zeros((1, 8, 8, 3), np.int8))
    argv = [str(wrong) if a == "WRONG" else a for a in argv]
    dump = tmp_path / "d"
    code, out, err = _main("simulate", *NET, *argv, "--dump", dump)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("mnaccel: error: ") and message in err, err
    assert not dump.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_a_non_empty_directory_is_not_replaced(tmp_path):
    dump = tmp_path / "d"
    dump.mkdir()
    (dump / "keep.txt").write_text("mine")
    code, out, err = _main("simulate", *NET, "--dump", dump)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "is not empty and holds no earlier dump" in err
    assert [p.name for p in dump.iterdir()] == ["keep.txt"]


def test_a_failing_bench_exits_1_and_writes_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("bench mnaccel.sim.benches.system: 1 of 1 tests failed")

    monkeypatch.setattr(system, "run_program", fail)
    code, out, err = _main("simulate", *NET, "--dump", tmp_path / "d")
    assert (code, out) == (1, "")
    assert err == "mnaccel: simulation failed: bench mnaccel.sim.benches.system: 1 of 1 " \
                  "tests failed\n"
    assert not (tmp_path / "d").exists()
