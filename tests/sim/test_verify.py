"""``mnaccel verify``: golden model against LiteRT, from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnaccel.golden.tflite_import import load_tflite
from mnaccel.sim.cli import main

DATA = Path(__file__).resolve().parent.parent / "data" / "tflite"
V2 = DATA / "mobilenet_v2_a035_64.tflite"
PROBE = DATA / "probe_odd_channels.tflite"


def run(capsys, *argv):
    status = main(["verify", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def test_all_layers_equal(capsys):
    status, out, err = run(capsys, V2)
    graph = load_tflite(V2)
    lines = out.strip().splitlines()
    assert status == 0, out
    assert len(lines) == len(graph.layers) + 1
    for layer, line in zip(graph.layers, lines, strict=False):
        assert layer.name in line and layer.op.value in line and line.endswith(" equal")
    assert f"all {len(graph.layers)} layers equal" in lines[-1]
    assert "LiteRT" in err  # progress goes to stderr


def test_input_file(tmp_path, capsys):
    graph = load_tflite(PROBE)
    x = np.random.default_rng(3).integers(-128, 128, graph.input_tensor.shape, dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    status, out, _ = run(capsys, PROBE, "--input", tmp_path / "x.npy")
    assert status == 0, out


@pytest.mark.parametrize(
    "array, needle",
    [
        (np.zeros((1, 12, 12, 5), dtype=np.uint8), "uint8"),
        (np.zeros((1, 12, 12, 4), dtype=np.int8), "(1, 12, 12, 4)"),
        (np.zeros((12, 12, 5), dtype=np.int8), "(12, 12, 5)"),
    ],
)
def test_bad_input_file(tmp_path, capsys, array, needle):
    np.save(tmp_path / "x.npy", array)
    status, out, err = run(capsys, PROBE, "--input", tmp_path / "x.npy")
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and needle in err and err.startswith("mnaccel: error:")


def test_npz_input_file(tmp_path, capsys):
    with open(tmp_path / "x.npy", "wb") as f:  # an .npz archive under an .npy name
        np.savez(f, x=np.zeros((1, 12, 12, 5), dtype=np.int8))
    status, out, err = run(capsys, PROBE, "--input", tmp_path / "x.npy")
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "several arrays" in err


def test_unreadable_input_file(tmp_path, capsys):
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    status, _, err = run(capsys, PROBE, "--input", tmp_path / "x.npy")
    assert status == 2 and err.count("\n") == 1 and "x.npy" in err


def test_difference_names_layer_element_and_values(capsys, monkeypatch):
    """Corrupt one golden element and check that verify reports exactly that one."""
    import mnaccel.golden.interpreter as interpreter

    graph = load_tflite(V2)
    victim = graph.layers[3]
    real_run = interpreter.run
    where = (0, 1, 2, 4)

    def corrupted(g, x, **kwargs):
        out = dict(real_run(g, x, **kwargs))
        y = out[victim.output].copy()
        y[where] = y[where] ^ 1  # flip the lowest bit
        out[victim.output] = y
        return out

    monkeypatch.setattr(interpreter, "run", corrupted)
    status, out, _ = run(capsys, V2)
    assert status == 1
    bad = [line for line in out.splitlines() if "mismatch" in line]
    assert bad[0].split()[1] == victim.name
    assert f"1 of {int(np.prod(graph.tensors[victim.output].shape))} mismatches" in bad[0]
    assert str(where) in bad[0]
    golden = corrupted(graph, _input(graph), kernel="optimized")[victim.output][where]
    assert f"golden {int(golden)}, LiteRT {int(golden) ^ 1}" in bad[0]
    assert victim.name in out.splitlines()[-1] and str(where) in out.splitlines()[-1]


def _input(graph):
    from mnaccel.sim.commands.verify import load_input

    return load_input(None, graph, seed=0)


@pytest.mark.parametrize(
    "name, needle",
    [
        ("error_float.tflite", "float32 model"),
        ("error_uint8.tflite", "uint8 model"),
        ("error_int16x8.tflite", "int16x8 model"),
        ("error_maxpool.tflite", "MAX_POOL_2D"),
        ("error_depth_multiplier.tflite", "depth multiplier 2"),
        ("error_dilation.tflite", "dilation 2x2"),
    ],
)
def test_unsupported_model_exits_2(capsys, name, needle):
    status, out, err = run(capsys, DATA / name)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_truncated_model_exits_2(tmp_path, capsys):
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(V2.read_bytes()[:5000])
    status, _, err = run(capsys, cut)
    assert status == 2 and err.count("\n") == 1 and "truncated" in err


def test_zoo_name_is_refused(capsys):
    status, _, err = run(capsys, "mobilenet_v1")
    assert status == 2 and ".tflite" in err


def test_kernel_choice(capsys):
    """``--kernels reference`` really switches LiteRT to other kernels.

    The two MEAN kernels of LiteRT (optimized for keep_dims over H and W, reference
    otherwise) scale differently, so at least one MEAN output of the probe differs.
    """
    from mnaccel.sim.commands.verify import run_litert

    graph = load_tflite(PROBE)
    x = _input(graph)
    fast, ref = run_litert(PROBE, x), run_litert(PROBE, x, reference=True)
    means = [graph.tensors[x.output].index for x in graph.layers if x.op.value == "MEAN"]
    assert any(np.any(fast.get_tensor(i) != ref.get_tensor(i)) for i in means)
    status, out, err = run(capsys, PROBE, "--kernels", "reference")
    assert "reference kernels" in err and status in (0, 1) and out
