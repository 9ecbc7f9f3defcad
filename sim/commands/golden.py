"""``mnaccel golden``: run the golden model and dump every layer's output.

``DIR`` receives one ``.npy`` per layer output (int8, NHWC, named
``<index>_<layer name>.npy``) and ``manifest.json``::

    {"model": "mobilenet_v1",
     "layers": [{"index": 0, "name": "conv1", "op": "CONV_2D",
                 "file": "000_conv1.npy", "tensor": null}, ...]}

in execution order, where ``tensor`` is the TFLite tensor index of the output for imported
models. The dump is written into a temporary directory beside ``DIR`` and renamed at the
end, so bad input or an interruption leaves ``DIR`` as it was. An existing ``DIR`` is
replaced only if it is empty or holds an earlier dump (a ``manifest.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Graph

__all__ = [
    "Progress",
    "check_dump_dir",
    "layer_file_name",
    "read_input",
    "register",
    "run",
    "write_dump",
]


def register(subparsers, add_model_args) -> None:
    """Add the ``golden`` command to the CLI."""
    p = subparsers.add_parser(
        "golden",
        help="run the golden model, dump every layer output as .npy",
        description="Run the bit-exact int8 golden model and write one .npy per layer "
        "output plus manifest.json to DIR.",
    )
    add_model_args(p)
    p.add_argument(
        "--input",
        metavar="X.npy",
        help="int8 NHWC input of the model's input shape (default: seeded random, --seed)",
    )
    p.add_argument("--dump", metavar="DIR", required=True, help="output directory")
    p.add_argument(
        "--kernels",
        choices=("reference", "optimized"),
        default="reference",
        help="TFLite's reference kernels (default) or the optimized CPU kernels, which "
        "round some ties differently (docs/numerics.md)",
    )
    p.set_defaults(run=run)


def layer_file_name(index: int, name: str) -> str:
    """The dump's file name for layer ``index``: its name made safe for file systems."""
    return f"{index:03d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.npy"


def read_input(path: str | Path, graph: Graph) -> np.ndarray:
    """Load ``path``, an int8 ``.npy`` of ``graph``'s input shape; UserError otherwise.

    Nothing is unpickled (``allow_pickle=False``): an object array or a pickle is refused.
    """
    expected = graph.input_tensor.shape
    name = str(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        raise UserError(f"input file {name!r} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"input file {name!r} is a directory") from None
    except OSError as exc:
        raise UserError(f"input file {name!r} cannot be read: {exc.strerror or exc}") from None
    if magic[:1] == b"\x80":
        raise UserError(f"input file {name!r} is a Python pickle, which mnaccel does not load; "
                        f"save a plain int8 array with numpy.save")
    if magic[:4] == b"PK\x03\x04":
        raise UserError(f"input file {name!r} is an .npz archive of several arrays; give one "
                        f".npy file")
    if magic != b"\x93NUMPY":
        raise UserError(f"input file {name!r} is not a readable .npy file (no NumPy header)")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        if "pickle" in str(exc):
            raise UserError(f"input file {name!r} holds an array of Python objects, which "
                            f"mnaccel does not unpickle; save a plain int8 array") from None
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"input file {name!r} is not a readable .npy file ({why})") from None
    if x.dtype != np.int8:
        raise UserError(f"input file {name!r} holds {x.dtype} values; the model needs int8")
    if x.shape != expected:
        raise UserError(
            f"input file {name!r} has shape {x.shape}; the model needs {expected} (NHWC)"
        )
    return x


def check_dump_dir(dump: Path) -> None:
    """UserError unless :func:`write_dump` will be able to write ``dump``.

    ``dump`` must be absent, empty, or an earlier dump (with a ``manifest.json``) that may
    be replaced, and a directory can be made beside it. Commands call this before any work,
    so that a long run never ends in an error that could have been foreseen.
    """
    name = str(dump)
    if dump.exists() and not dump.is_dir():
        raise UserError(f"--dump {name!r} exists and is not a directory")
    if dump.is_dir():
        try:
            foreign = any(dump.iterdir()) and not (dump / "manifest.json").is_file()
        except OSError as exc:
            raise UserError(f"--dump {name!r} cannot be read: {exc.strerror}") from None
        if foreign:
            raise UserError(
                f"--dump {name!r} is not empty and holds no earlier dump; refusing to replace it"
            )
    # The temporary directory goes into the nearest existing ancestor (missing parents are
    # made at the end): try to make one there now.
    parent = dump.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--dump {name!r}: {str(parent)!r} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{dump.name}.", suffix=".probe", dir=parent))
    except OSError as exc:
        raise UserError(f"--dump {name!r}: cannot write in {str(parent)!r} ({exc.strerror})") \
            from None


class Progress:
    """Status on one rewritten stderr line, shown only on a terminal (logs stay clean)."""

    def __init__(self):
        self.enabled = sys.stderr.isatty()
        self.width = 0

    def show(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write("\r" + text.ljust(self.width))
            sys.stderr.flush()
            self.width = len(text)

    def layer(self, done: int, total: int, layer) -> None:
        self.show(f"[{done}/{total}] {layer.name}")

    def done(self) -> None:
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def write_dump(dump: Path, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (file name → array) and ``manifest.json`` into ``dump`` atomically.

    The files go to a temporary directory beside ``dump`` that replaces it at the end, so an
    error or an interruption leaves ``dump`` as it was; parent directories made for it are
    removed again if the write fails.
    """
    made = [p for p in (dump.parent, *dump.parent.parents) if not p.exists()]
    tmp = old = None
    try:
        dump.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dump.name}.", suffix=".tmp", dir=dump.parent))
        for file, x in arrays.items():
            np.save(tmp / file, x)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if dump.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dump.name}.", suffix=".old", dir=dump.parent))
            dump.rename(old / "dump")
        tmp.rename(dump)
    except OSError as exc:
        raise UserError(f"cannot write {str(dump)!r}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp)
        if old is not None:
            if not dump.exists():  # interrupted between the two renames: put it back
                (old / "dump").rename(dump)
            shutil.rmtree(old)
        if not dump.exists():
            for p in made:  # innermost first; only the empty directories made here
                with contextlib.suppress(OSError):
                    p.rmdir()


def run(args: argparse.Namespace) -> int:
    from mnaccel.golden import interpreter
    from mnaccel.golden.zoo import random_input
    from mnaccel.sim.cli import load_model

    dump = Path(args.dump)
    check_dump_dir(dump)
    progress = Progress()
    progress.show(f"loading {args.model} ...")
    try:
        graph = load_model(args)
    finally:
        progress.done()
    if args.input is not None:
        x = read_input(args.input, graph)
    else:
        x = random_input(graph, args.seed)

    try:
        outputs = interpreter.run(graph, x, kernel=args.kernels, progress=progress.layer)
    finally:
        progress.done()
    entries, arrays = [], {}
    for i, layer in enumerate(graph.layers):
        file = layer_file_name(i, layer.name)
        arrays[file] = outputs[layer.output]
        entries.append(
            {
                "index": i,
                "name": layer.name,
                "op": layer.op.value,
                "file": file,
                "tensor": graph.tensors[layer.output].index,
            }
        )
    manifest = {"model": graph.name, "kernels": args.kernels, "layers": entries}
    write_dump(dump, manifest, arrays)
    print(f"{graph.name}: {len(entries)} layer outputs written to {dump}")
    return 0
