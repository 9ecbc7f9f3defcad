"""Bad input to every ``mnaccel`` command: exit status 2, one line, no traceback, nothing written.

The matrix is command × bad input; docs/bad-input.md lists every case with the message it
gives. Each case runs the CLI in process (``mnaccel.sim.cli.main``) and checks that

- the exit status is 2 and stdout is empty;
- stderr is exactly one line, ``mnaccel: error: ...``, naming the problem;
- nothing under the test's directory changed: the ``--dump`` or ``-o`` target is still
  absent or byte-for-byte as before, and no temporary file or directory is left beside it;
- no simulator build, synthesis or Verilog conversion started (each is replaced by a
  function that fails the test), so that bad input is refused before any long work.

A few cases run the installed console script, to show that no traceback reaches a
terminal. Bad .tflite files are made at test time from the committed fixtures in
tests/data/tflite, without TensorFlow: cut, replaced by noise, or rewritten through the
TFLite schema's flatbuffer object API (``ai_edge_litert.schema_py_generated``) with another
tensor type, operator code, shape or scale.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from mnaccel.sim.cli import main

DATA = Path(__file__).resolve().parent.parent / "data" / "tflite"
V1 = DATA / "mobilenet_v1_a025_64.tflite"
PROBE = DATA / "probe_odd_channels.tflite"  # 12×12×5 input, 10 layers, 9 KB
MNACCEL = Path(sys.executable).parent / "mnaccel"

#: A zoo model that the ``small`` preset runs (simulate) and its input shape.
ZOO_V1 = ["mobilenet_v1", "--alpha", "0.25", "--resolution", "32"]
ZOO_V1_SHAPE = (1, 32, 32, 3)


# --- the harness ---------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and directory (None) below ``root``."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def no_long_work(monkeypatch):
    """Fail the test if a simulator build, a synthesis or a Verilog conversion starts."""
    from amaranth.back import verilog

    from mnaccel.sim import build, system
    from mnaccel.sim.commands import synth

    started = []

    def refuse(what):
        def fail(*args, **kwargs):
            started.append(what)
            raise AssertionError(f"{what} started on bad input")

        return fail

    monkeypatch.setattr(system, "run_program", refuse("simulation"))
    monkeypatch.setattr(synth, "synthesize", refuse("synthesis"))
    monkeypatch.setattr(build, "verilog_for", refuse("Verilog generation"))
    monkeypatch.setattr(verilog, "convert", refuse("Verilog conversion"))
    return started


def check_refused(root: Path, argv: list, needle: str, started: list) -> str:
    """Run ``mnaccel argv`` in process; assert the bad-input contract; return stderr."""
    before = snapshot(root)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
    err = err.getvalue()
    assert (code, out.getvalue()) == (2, ""), err
    assert err.startswith("mnaccel: error: ") and err.count("\n") == 1, err
    assert needle in err, err
    assert "Traceback" not in err
    assert not started
    assert snapshot(root) == before, "files changed below the test directory"
    return err


# --- bad .tflite files ---------------------------------------------------------------------


def rewrite(source: Path, edit) -> bytes:
    """``source`` through the schema's object API, changed by ``edit(model)``."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(source.read_bytes()), 0)
    edit(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def dynamic_range(model) -> None:
    """Weights to int8 with one symmetric scale, activations left float32: what the
    converter makes with ``optimizations=[DEFAULT]`` and no representative data."""
    for t in model.subgraphs[0].tensors:
        buffer = model.buffers[t.buffer]
        if t.type == schema.TensorType.FLOAT32 and buffer.data is not None and len(t.shape) > 1:
            w = np.frombuffer(bytes(bytearray(buffer.data)), np.float32)
            scale = float(np.abs(w).max()) / 127
            buffer.data = np.round(w / scale).astype(np.int8).view(np.uint8)
            t.type = schema.TensorType.INT8
            t.quantization = schema.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [scale], [0]


def operator_code(builtin: int, custom: bytes | None = None):
    def edit(model):
        op = model.subgraphs[0].operators[1]
        code = model.operatorCodes[op.opcodeIndex]
        code.builtinCode, code.deprecatedBuiltinCode = builtin, min(builtin, 127)
        code.customCode = custom

    return edit


def first_output(change):
    def edit(model):
        graph = model.subgraphs[0]
        change(graph.tensors[graph.operators[0].outputs[0]])

    return edit


def set_attr(name, value):
    return lambda obj: setattr(obj, name, value)


def input_type(value):
    def edit(model):
        graph = model.subgraphs[0]
        graph.tensors[graph.inputs[0]].type = value

    return edit


def corrupt_input_index(model) -> None:
    model.subgraphs[0].operators[0].inputs[0] = 999


def cut(fraction: float):
    def make(tmp: Path) -> Path:
        data = V1.read_bytes()
        return write(tmp / "cut.tflite", data[: int(len(data) * fraction)])

    return make


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def mkdir(path: Path) -> Path:
    path.mkdir()
    return path


# name -> (maker of the MODEL argument in the test directory, text the message must hold)
MODELS = {
    "missing file": (lambda tmp: tmp / "missing.tflite", "No such file or directory"),
    "directory named .tflite": (lambda tmp: mkdir(tmp / "dir.tflite"), "Is a directory"),
    "directory": (lambda tmp: mkdir(tmp / "models"), "is a directory"),
    "not .tflite": (lambda tmp: write(tmp / "model.onnx", b"\x08\x07"), "not a .tflite file"),
    "empty file": (lambda tmp: write(tmp / "empty.tflite", b""), "not a TFLite file"),
    "cut at 10 %": (cut(0.10), "truncated or corrupt"),
    "cut at 50 %": (cut(0.50), "truncated or corrupt"),
    "cut at 99 %": (cut(0.99), "truncated or corrupt"),
    "random bytes": (
        lambda tmp: write(tmp / "noise.tflite", np.random.default_rng(1).bytes(4096)),
        "not a TFLite file",
    ),
    "TFL3 header, random body": (
        lambda tmp: write(tmp / "noise.tflite",
                          b"\x1c\0\0\0TFL3" + np.random.default_rng(2).bytes(4096)),
        "truncated or corrupt",
    ),
    "float32 model": (lambda tmp: DATA / "error_float.tflite", "float32 model"),
    "uint8 model": (lambda tmp: DATA / "error_uint8.tflite", "uint8 model"),
    "int16 activations": (lambda tmp: DATA / "error_int16x8.tflite", "int16x8 model"),
    "dynamic-range model": (
        lambda tmp: write(tmp / "dynamic.tflite",
                          rewrite(DATA / "error_float.tflite", dynamic_range)),
        "dynamic-range quantized model (int8 weights, float activations)",
    ),
    "unknown tensor type": (
        lambda tmp: write(tmp / "type99.tflite", rewrite(PROBE, input_type(99))),
        "is type 99",
    ),
    "unsupported operator": (
        lambda tmp: DATA / "error_maxpool.tflite",
        "operator 1 (MAX_POOL_2D): mnaccel does not support this operator",
    ),
    "unknown builtin operator": (
        lambda tmp: write(tmp / "op250.tflite", rewrite(PROBE, operator_code(250))),
        "operator 1 (builtin operator 250)",
    ),
    "custom operator": (
        lambda tmp: write(tmp / "custom.tflite", rewrite(PROBE, operator_code(32, b"MyOp"))),
        "operator 1 (CUSTOM MyOp)",
    ),
    "depth multiplier 2": (lambda tmp: DATA / "error_depth_multiplier.tflite",
                           "depth multiplier 2"),
    "dilation 2": (lambda tmp: DATA / "error_dilation.tflite", "dilation 2x2"),
    "tensor index out of range": (
        lambda tmp: write(tmp / "index.tflite", rewrite(PROBE, corrupt_input_index)),
        "refers to tensor 999 of 26",
    ),
    "output shape that the operator does not compute": (
        lambda tmp: write(tmp / "shape.tflite", rewrite(PROBE, first_output(
            set_attr("shape", np.array([1, 11, 12, 13], np.int32))))),
        "has shape (1, 11, 12, 13); the operator computes (1, 12, 12, 13)",
    ),
    "scale out of range": (
        lambda tmp: write(tmp / "scale.tflite", rewrite(PROBE, first_output(
            lambda t: setattr(t.quantization, "scale", [1e-30])))),
        "outside what TFLite's int8 kernels represent",
    ),
}

# What each MODEL-taking command adds to its arguments.
MODEL_COMMANDS = {
    "table": lambda tmp: ["table"],
    "golden": lambda tmp: ["golden", "--dump", tmp / "dump"],
    "verify": lambda tmp: ["verify"],
    "simulate": lambda tmp: ["simulate", "--config", "small", "--dump", tmp / "dump"],
}
# verify takes .tflite files only and says so for anything else.
VERIFY_NEEDLES = {"directory": "needs a .tflite file", "not .tflite": "needs a .tflite file"}


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize("case", MODELS)
def test_bad_model(tmp_path, no_long_work, command, case):
    make, needle = MODELS[case]
    model = make(tmp_path)
    head, *rest = MODEL_COMMANDS[command](tmp_path)
    if command == "verify":
        needle = VERIFY_NEEDLES.get(case, needle)
    check_refused(tmp_path, [head, model, *rest], needle, no_long_work)


# --- zoo options --------------------------------------------------------------------------

ZOO_OPTIONS = {
    "alpha 0": (["mobilenet_v1", "--alpha", "0"], "alpha must be in (0, 2], not 0.0"),
    "alpha 3": (["mobilenet_v2", "--alpha", "3"], "alpha must be in (0, 2], not 3.0"),
    "alpha -1": (["mobilenet_v1", "--alpha", "-1"], "not -1.0"),
    "alpha nan": (["mobilenet_v3_small", "--alpha", "nan"], "not nan"),
    "alpha inf": (["mobilenet_v3_large", "--alpha", "inf"], "not inf"),
    "alpha text": (["mobilenet_v1", "--alpha", "wide"], "invalid float value: 'wide'"),
    "resolution 100": (["mobilenet_v1", "--resolution", "100"], "multiple of 32 in [32, 1024]"),
    "resolution 0": (["mobilenet_v1", "--resolution", "0"], "not 0"),
    "resolution -32": (["mobilenet_v1", "--resolution", "-32"], "not -32"),
    "resolution 2048": (["mobilenet_v1", "--resolution", "2048"], "not 2048"),
    "resolution 1.5": (["mobilenet_v1", "--resolution", "1.5"], "invalid int value: '1.5'"),
    "seed -1": (["mobilenet_v1", "--seed", "-1"], "argument --seed: must be >= 0, not -1"),
    "unknown zoo name": (["mobilenet_v5"], "unknown model 'mobilenet_v5'"),
    "alpha with a .tflite": ([V1, "--alpha", "0.5"], "--alpha applies to zoo models only"),
    "resolution with a .tflite": (
        [V1, "--alpha", "0.25", "--resolution", "64"],
        "--alpha and --resolution apply to zoo models only",
    ),
}


@pytest.mark.parametrize("command", ["table", "golden", "simulate"])
@pytest.mark.parametrize("case", ZOO_OPTIONS)
def test_bad_zoo_option(tmp_path, no_long_work, command, case):
    args, needle = ZOO_OPTIONS[case]
    head, *rest = MODEL_COMMANDS[command](tmp_path)
    check_refused(tmp_path, [head, *args, *rest], needle, no_long_work)


# --- input arrays ---------------------------------------------------------------------------


def save_npy(array):
    def make(path: Path, shape) -> Path:
        np.save(path, array(shape), allow_pickle=True)
        return path

    return make


def save_bytes(data: bytes):
    def make(path: Path, shape) -> Path:
        return write(path, data)

    return make


def save_npz(path: Path, shape) -> Path:
    with open(path, "wb") as f:  # an .npz archive under an .npy name
        np.savez(f, x=np.zeros(shape, np.int8))
    return path


def save_cut_npy(path: Path, shape) -> Path:
    np.save(path, np.zeros(shape, np.int8))
    return write(path, path.read_bytes()[:-7])


def object_array(shape):
    x = np.empty(shape, dtype=object)
    x[...] = 0
    return x


# name -> (maker of the --input file from its path and the model's input shape, needle)
INPUTS = {
    "missing": (lambda path, shape: path, "does not exist"),
    "directory": (lambda path, shape: mkdir(path), "is a directory"),
    "wrong shape": (save_npy(lambda s: np.zeros((1, 7, 7, 3), np.int8)),
                    "has shape (1, 7, 7, 3); the model needs"),
    "no batch axis": (save_npy(lambda s: np.zeros(s[1:], np.int8)), "has shape"),
    "scalar": (save_npy(lambda s: np.int8(3)), "has shape ()"),
    "float32": (save_npy(lambda s: np.zeros(s, np.float32)), "holds float32 values"),
    "int16": (save_npy(lambda s: np.zeros(s, np.int16)), "holds int16 values"),
    "uint8": (save_npy(lambda s: np.zeros(s, np.uint8)), "holds uint8 values"),
    "npz archive": (save_npz, "is an .npz archive of several arrays"),
    "object array": (save_npy(object_array), "array of Python objects"),
    "pickle": (lambda path, shape: write(path, pickle.dumps(np.zeros(shape, np.int8))),
               "is a Python pickle"),
    "text": (save_bytes(b"1 2 3\n"), "not a readable .npy file (no NumPy header)"),
    "cut .npy": (save_cut_npy, "not a readable .npy file"),
}
# The model each command reads the input for, and its input shape.
INPUT_MODELS = {
    "golden": ([PROBE], (1, 12, 12, 5)),
    "verify": ([PROBE], (1, 12, 12, 5)),
    "simulate": (ZOO_V1, ZOO_V1_SHAPE),
}


@pytest.mark.parametrize("command", INPUT_MODELS)
@pytest.mark.parametrize("case", INPUTS)
def test_bad_input_array(tmp_path, no_long_work, command, case):
    make, needle = INPUTS[case]
    model, shape = INPUT_MODELS[command]
    path = make(tmp_path / "x.npy", shape)
    head, *rest = MODEL_COMMANDS[command](tmp_path)
    check_refused(tmp_path, [head, *model, "--input", path, *rest], needle, no_long_work)


class Payload:
    """Unpickling this creates the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("form", ["pickle", "object array"])
def test_a_pickle_is_never_unpickled(tmp_path, no_long_work, form):
    """Reading ``--input`` runs no pickle's code (``allow_pickle=False``)."""
    marker = tmp_path / "unpickled"
    path = tmp_path / "x.npy"
    if form == "pickle":
        path.write_bytes(pickle.dumps(Payload(marker)))
    else:
        x = np.empty((1, 12, 12, 5), dtype=object)
        x[...] = Payload(marker)
        np.save(path, x, allow_pickle=True)
    assert not marker.exists()
    check_refused(tmp_path, ["golden", PROBE, "--input", path, "--dump", tmp_path / "d"],
                  "Python", no_long_work)
    assert not marker.exists()


# --- --dump and -o targets ------------------------------------------------------------------


def unwritable_dir(tmp: Path) -> Path:
    """A directory in which nothing can be created, even by root (sysfs), or skip."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        d = mkdir(tmp / "locked")
        d.chmod(0o500)
        return d
    probe = Path("/sys/mnaccel-bad-input-probe")
    try:
        probe.mkdir()
    except OSError:
        return Path("/sys")
    probe.rmdir()
    pytest.skip("no directory here refuses writes to root")


def dump_file(tmp: Path) -> Path:
    return write(tmp / "dump", b"not a directory")


def dump_foreign(tmp: Path) -> Path:
    d = mkdir(tmp / "dump")
    (d / "notes.txt").write_text("mine")
    return d


DUMPS = {
    "an existing file": (dump_file, "exists and is not a directory"),
    "a non-empty directory": (dump_foreign, "is not empty and holds no earlier dump"),
    "below a file": (lambda tmp: write(tmp / "file", b"") / "dump", "is not a directory"),
    "in an unwritable directory": (lambda tmp: unwritable_dir(tmp) / "mnaccel-dump",
                                   "cannot write in"),
}


@pytest.mark.parametrize("command", ["golden", "simulate"])
@pytest.mark.parametrize("case", DUMPS)
def test_bad_dump_target(tmp_path, no_long_work, command, case):
    make, needle = DUMPS[case]
    dump = make(tmp_path)
    model = [PROBE] if command == "golden" else [*ZOO_V1, "--config", "small"]
    check_refused(tmp_path, [command, *model, "--dump", dump], needle, no_long_work)
    assert not Path("/sys/mnaccel-dump").exists()


@pytest.mark.parametrize("earlier", [False, True], ids=["new dump", "replacing a dump"])
def test_a_failed_write_leaves_nothing(tmp_path, no_long_work, monkeypatch, earlier):
    """The disk fills up in the middle of writing the dump: the files written so far, the
    temporary directory and the parent directories made for it all go, and an earlier dump
    stays as it was."""
    dump = tmp_path / "runs" / "today" / "dump"
    if earlier:
        assert main(["golden", str(PROBE), "--dump", str(dump)]) == 0
    real, saved = np.save, []

    def save(path, x, *args, **kwargs):
        saved.append(path)
        if len(saved) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, x, *args, **kwargs)

    monkeypatch.setattr(np, "save", save)
    check_refused(tmp_path, ["golden", PROBE, "--dump", dump], "No space left on device",
                  no_long_work)
    assert len(saved) == 3


VERILOG_OUTPUTS = {
    "a directory": (lambda tmp: mkdir(tmp / "out.v"), "is a directory; give a file name"),
    "in a missing directory": (lambda tmp: tmp / "missing" / "out.v", "does not exist"),
    "below a file": (lambda tmp: write(tmp / "file", b"") / "out.v", "is not a directory"),
    "in an unwritable directory": (lambda tmp: unwritable_dir(tmp) / "mnaccel.v",
                                   "cannot write"),
}


@pytest.mark.parametrize("case", VERILOG_OUTPUTS)
def test_bad_verilog_output(tmp_path, no_long_work, case):
    make, needle = VERILOG_OUTPUTS[case]
    check_refused(tmp_path, ["verilog", "--block", "requantizer", "-o", make(tmp_path)], needle,
                  no_long_work)


# --- configurations and other options --------------------------------------------------------

OPTIONS = {
    "simulate, unknown preset": (
        ["simulate", *ZOO_V1, "--config", "nope"], "unknown configuration preset 'nope'"),
    "simulate, tiny preset at 224": (
        ["simulate", "mobilenet_v1", "--alpha", "0.25", "--resolution", "224", "--config",
         "tiny"], "layer 'conv1' cannot be mapped: width 224 > lb_max_width=32"),
    "simulate, 1024 x 1024 at alpha 2 on the default preset": (
        ["simulate", "mobilenet_v1", "--alpha", "2", "--resolution", "1024"],
        "cannot be mapped"),
    "simulate, an operator the accelerator does not run": (
        ["simulate", DATA / "mobilenet_v2_a035_64.tflite", "--config", "small"],
        "operator ADD is not mapped onto the accelerator yet"),
    "simulate, empty layer range": (
        ["simulate", *ZOO_V1, "--config", "small", "--layers", "5-3"],
        "the range is empty"),
    "simulate, layers past the end": (
        ["simulate", *ZOO_V1, "--config", "small", "--layers", "0-99"],
        "the model has layers 0 to 29"),
    "synth, unknown preset": (["synth", "--config", "nope"], "unknown configuration preset"),
    "synth, unknown block": (["synth", "--block", "nope"], "unknown block 'nope'"),
    "synth, unknown target": (["synth", "--target", "asic"], "invalid choice: 'asic'"),
    "synth, pnr for another target": (["synth", "--pnr", "--target", "generic"],
                                      "for ECP5 only"),
    "synth, missing constraints": (["synth", "--pnr", "--constraints", "CWD/none.sdc"],
                                   "does not exist"),
    "synth, negative depth": (["synth", "--depth", "-1"], "--depth must be >= 0"),
    "verilog, unknown preset": (["verilog", "--config", "nope", "-o", "CWD/x.v"],
                                "unknown configuration preset 'nope'"),
    "verilog, unknown block": (["verilog", "--block", "nope", "-o", "CWD/x.v"],
                               "unknown block 'nope'"),
    "verify, negative seed": (["verify", PROBE, "--seed", "-3"], "must be >= 0, not -3"),
    "verify, a zoo name": (["verify", "mobilenet_v1"], "needs a .tflite file"),
    "golden, unknown kernels": (["golden", PROBE, "--kernels", "fast", "--dump", "CWD/d"],
                                "invalid choice: 'fast'"),
    "golden, no --dump": (["golden", PROBE], "the following arguments are required: --dump"),
    "table, unknown format": (["table", PROBE, "--format", "xml"], "invalid choice: 'xml'"),
    "no command": ([], "the following arguments are required: COMMAND"),
    "unknown command": (["simulat"], "invalid choice: 'simulat'"),
}


@pytest.mark.parametrize("case", OPTIONS)
def test_bad_option(tmp_path, no_long_work, case):
    argv, needle = OPTIONS[case]
    argv = [str(a).replace("CWD", str(tmp_path)) for a in argv]
    check_refused(tmp_path, argv, needle, no_long_work)


# --- through the console script: what a terminal sees ------------------------------------


@pytest.mark.parametrize("argv, needle", [
    (["golden", "CUT", "--dump", "DUMP"], "truncated or corrupt TFLite file"),
    (["simulate", *ZOO_V1, "--config", "small", "--input", "PICKLE", "--dump", "DUMP"],
     "is a Python pickle"),
    (["verify", DATA / "error_maxpool.tflite"], "MAX_POOL_2D"),
])
def test_console_script_prints_no_traceback(tmp_path, argv, needle):
    (tmp_path / "cut.tflite").write_bytes(V1.read_bytes()[:40000])
    (tmp_path / "x.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    names = {"CUT": tmp_path / "cut.tflite", "PICKLE": tmp_path / "x.pkl",
             "DUMP": tmp_path / "dump"}
    before = snapshot(tmp_path)
    run = subprocess.run([MNACCEL, *(str(names.get(a, a)) for a in argv)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("mnaccel: error: ") and run.stderr.count("\n") == 1, run.stderr
    assert needle in run.stderr and "Traceback" not in run.stderr
    assert snapshot(tmp_path) == before


def test_a_closed_pipe_is_not_a_traceback():
    """``mnaccel table ... | head -1``: the reader leaves early; stderr stays empty."""
    read, write_end = os.pipe()
    os.close(read)  # no reader at all: every write fails with EPIPE
    try:
        proc = subprocess.run([MNACCEL, "table", "mobilenet_v1", "--format", "csv"],
                              stdout=write_end, stderr=subprocess.PIPE, timeout=300)
    finally:
        os.close(write_end)
    assert proc.stderr.decode() == "" and proc.returncode == 141
