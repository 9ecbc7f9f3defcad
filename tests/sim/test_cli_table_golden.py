"""``mnaccel table`` and ``mnaccel golden``: output formats, the dump contract, bad input."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnaccel.golden import interpreter, zoo
from mnaccel.sim.cli import main

MNACCEL = Path(sys.executable).parent / "mnaccel"
SMALL = ["mobilenet_v3_small", "--alpha", "0.5", "--resolution", "64"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- table -------------------------------------------------------------------------------


def test_table_csv(capsys):
    code, out, err = run_cli(capsys, "table", "mobilenet_v1", "--format", "csv")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "type,layer,params,stride,in_ch,in_act_width,mul,add,mul_add"
    rows = list(csv.DictReader(io.StringIO(out)))
    # 28 numbered layers, the pool, the sum
    assert [r["type"] for r in rows].count("dw") == 13 and len(rows) == 30
    assert rows[0] == {
        "type": "conv",
        "layer": "0",
        "params": "864",
        "stride": "2",
        "in_ch": "3",
        "in_act_width": "224",
        "mul": "10838016",
        "add": "10436608",
        "mul_add": "21274624",
    }


def test_table_md_is_the_default(capsys):
    code, out, err = run_cli(
        capsys, "table", "mobilenet_v2", "--alpha", "0.5", "--resolution", "96"
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("| Type | Layer |") and set(lines[1]) <= {"|", "-"}
    assert lines[2].startswith("| conv | 0 | 432 | 2 | 3 | 96 |")  # Conv1: 3*3*3*16
    assert lines[-1].startswith("| sum |")


def test_table_json(capsys):
    code, out, err = run_cli(capsys, "table", *SMALL, "--format", "json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert rows[0]["name"] == "Conv" and rows[0]["in_act_width"] == 64
    assert rows[-1]["type"] == "sum"
    assert rows[-1]["mul"] == sum(r["mul"] for r in rows[:-1])


# --- golden ------------------------------------------------------------------------------


def load_dump(path):
    manifest = json.loads((path / "manifest.json").read_text())
    return manifest, {e["name"]: np.load(path / e["file"]) for e in manifest["layers"]}


def check_dump(path, graph, x, kernels="reference"):
    """The manifest contract, and every file equal to the golden model's output."""
    manifest, arrays = load_dump(path)
    assert set(manifest) == {"model", "kernels", "layers"} and manifest["model"] == graph.name
    assert manifest["kernels"] == kernels
    assert len(manifest["layers"]) == len(graph.layers)
    expected = interpreter.run(graph, x, kernel=kernels)
    files = {"manifest.json"}
    for i, (entry, lay) in enumerate(zip(manifest["layers"], graph.layers, strict=True)):
        assert entry == {
            "index": i,
            "name": lay.name,
            "op": lay.op.value,
            "file": entry["file"],
            "tensor": None,
        }
        files.add(entry["file"])
        got, want = arrays[lay.name], expected[lay.output]
        assert got.dtype == np.int8 and got.shape == graph.tensors[lay.output].shape
        if not np.array_equal(got, want):
            where = tuple(int(i) for i in np.argwhere(got != want)[0])
            pytest.fail(f"layer {lay.name}: element {where} is {got[where]}, not {want[where]}")
    assert {p.name for p in path.iterdir()} == files


def test_golden_dump_with_default_input(capsys, tmp_path):
    dump = tmp_path / "out" / "v3"
    code, out, err = run_cli(capsys, "golden", *SMALL, "--seed", "5", "--dump", dump)
    assert (code, err) == (0, "")
    assert str(dump) in out
    graph = zoo.build("mobilenet_v3_small", alpha=0.5, resolution=64, seed=5)
    check_dump(dump, graph, zoo.random_input(graph, 5))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["v3"]  # no leftovers


def test_golden_dump_with_input_file_replaces_an_earlier_dump(capsys, tmp_path):
    graph = zoo.build("mobilenet_v1", alpha=0.25, resolution=64)
    x = np.random.default_rng(7).integers(-128, 128, size=(1, 64, 64, 3), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    dump = tmp_path / "d"
    argv = ["golden", "mobilenet_v1", "--alpha", "0.25", "--resolution", "64", "--dump", dump]
    assert run_cli(capsys, *argv)[0] == 0
    (dump / "000_conv1.npy").write_bytes(b"stale")
    code, _, err = run_cli(capsys, *argv, "--input", tmp_path / "x.npy")
    assert (code, err) == (0, "")
    check_dump(dump, graph, x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "x.npy"]


def test_golden_dump_of_a_tflite_file_with_optimized_kernels(capsys, tmp_path):
    from pathlib import Path

    from mnaccel.golden.tflite_import import load_tflite

    model = Path(__file__).resolve().parent.parent / "data/tflite/mobilenet_v1_a025_33.tflite"
    graph = load_tflite(model)
    x = np.random.default_rng(3).integers(-128, 128, size=(1, 33, 33, 3), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    dump = tmp_path / "d"
    argv = ["golden", model, "--input", tmp_path / "x.npy", "--kernels", "optimized"]
    code, _, err = run_cli(capsys, *argv, "--dump", dump)
    assert (code, err) == (0, "")
    manifest, arrays = load_dump(dump)
    assert manifest["kernels"] == "optimized"
    expected = interpreter.run(graph, x, kernel="optimized")
    for entry, lay in zip(manifest["layers"], graph.layers, strict=True):
        assert entry["tensor"] == graph.tensors[lay.output].index is not None
        np.testing.assert_array_equal(arrays[lay.name], expected[lay.output], err_msg=lay.name)


def write(path, content):
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, dict):
        np.savez(path, **content)
    else:
        path.write_text(content)
    return path


INPUT_SHAPE = (1, 64, 64, 3)


@pytest.mark.parametrize(
    ("args", "input_file", "message"),
    [
        (["nosuch_model"], None, "unknown model 'nosuch_model'"),
        (["mobilenet_v3_small", "--alpha", "3"], None, "alpha must be in (0, 2], not 3.0"),
        (["mobilenet_v3_small", "--alpha", "0"], None, "not 0.0"),
        (["mobilenet_v3_small", "--resolution", "100"], None, "not 100"),
        (["mobilenet_v3_small", "--resolution", "2048"], None, "not 2048"),
        (SMALL, ("x.npy", np.zeros(INPUT_SHAPE, np.float32)), "holds float32 values"),
        (SMALL, ("x.npy", np.zeros(INPUT_SHAPE, np.uint8)), "holds uint8 values"),
        (SMALL, ("x.npy", np.zeros((64, 64, 3), np.int8)), "has shape (64, 64, 3)"),
        (SMALL, ("x.npy", np.zeros((1, 32, 32, 3), np.int8)), "needs (1, 64, 64, 3)"),
        (SMALL, ("x.npy", "1 2 3\n"), "not a readable .npy file"),
        (SMALL, ("x.npz", {"a": np.zeros(INPUT_SHAPE, np.int8)}), "several arrays"),
        (SMALL, ("missing.npy", None), "does not exist"),
    ],
)
def test_golden_bad_input(capsys, tmp_path, args, input_file, message):
    argv = ["golden", *args, "--dump", tmp_path / "dump"]
    if input_file is not None:
        name, content = input_file
        path = tmp_path / name if content is None else write(tmp_path / name, content)
        argv += ["--input", path]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("mnaccel: error: ") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_golden_refuses_to_replace_a_foreign_directory(capsys, tmp_path):
    (tmp_path / "dump").mkdir()
    (tmp_path / "dump" / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "golden", *SMALL, "--dump", tmp_path / "dump")
    assert code == 2 and "refusing to replace" in err and err.count("\n") == 1
    assert [p.name for p in (tmp_path / "dump").iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("")
    code, _, err = run_cli(capsys, "golden", *SMALL, "--dump", tmp_path / "file")
    assert code == 2 and "is not a directory" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["golden", "mobilenet_v1"],
        ["table", "mobilenet_v1", "--format", "xml"],
        ["table", "mobilenet_v1", "--resolution", "big"],
    ],
)
def test_usage_errors_are_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    _, err = capsys.readouterr()
    assert exc.value.code == 2 and err.count("\n") == 1 and "error:" in err


# --- the installed console script ----------------------------------------------------------


def test_console_script(tmp_path):
    ok = subprocess.run(
        [MNACCEL, "table", "mobilenet_v1", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and ok.stderr == ""
    assert ok.stdout.splitlines()[-2] == "fc,27,1024000,,1024,,1024000,1023000,2047000"
    bad = subprocess.run(
        [MNACCEL, "golden", "mobilenet_v5", "--dump", tmp_path / "d"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("mnaccel: error: unknown model") and bad.stderr.count("\n") == 1
    assert not any(tmp_path.iterdir())
