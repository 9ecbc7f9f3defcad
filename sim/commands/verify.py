"""``mnaccel verify MODEL.tflite [--input x.npy]``: the golden model against LiteRT.

Runs the LiteRT interpreter and the golden model on the same int8 input and compares the
output of every layer of the imported graph, element by element. One line per layer goes
to stdout; the exit status is 0 when every element is equal and 1 otherwise, with the first
differing element of each layer named, together with both values.

LiteRT runs with ``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``: TFLite's optimized
builtin kernels and no delegate. The default resolver would hand most of the graph to the
XNNPACK delegate, which has its own int8 arithmetic and keeps no intermediate tensors;
``experimental_preserve_all_tensors=True`` keeps every intermediate tensor readable after
``invoke``. With ``--kernels reference`` LiteRT runs ``OpResolverType.BUILTIN_REF`` (TFLite's
reference kernels) instead, and the golden model follows those (``kernel="reference"``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Graph
from mnaccel.sim.cli import seed
from mnaccel.sim.commands.golden import read_input

__all__ = ["LayerResult", "compare", "load_input", "register", "run_litert"]


@dataclass
class LayerResult:
    """How one layer's golden output compares with LiteRT's.

    Attributes
    ----------
    index : int
        Position of the layer in the graph.
    name, op : str
    shape : tuple of int
    elements : int
        Number of elements compared.
    mismatches : int
        Number of elements that differ (all of them if the shapes differ).
    first : tuple or None
        ``(element index, golden value, LiteRT value)`` of the first difference.
    note : str
        Why the comparison failed outright (shape or dtype), else empty.
    """

    index: int
    name: str
    op: str
    shape: tuple[int, ...]
    elements: int
    mismatches: int
    first: tuple[tuple[int, ...], int, int] | None = None
    note: str = ""

    @property
    def equal(self) -> bool:
        return self.mismatches == 0 and not self.note

    def line(self) -> str:
        shape = "x".join(str(d) for d in self.shape)
        head = f"{self.index:4d}  {self.name:<28} {self.op:<18} {shape:<14}"
        if self.equal:
            return f"{head} equal"
        if self.note:
            return f"{head} MISMATCH: {self.note}"
        where, g, r = self.first
        return (
            f"{head} {self.mismatches} of {self.elements} mismatches, first at {where}: "
            f"golden {g}, LiteRT {r}"
        )


def load_input(path: Path | None, graph: Graph, seed: int = 0) -> np.ndarray:
    """The model input: seeded random int8, or ``path`` read as ``mnaccel golden`` reads it.

    A bad file raises :class:`~mnaccel.golden.errors.UserError`
    (:func:`mnaccel.sim.commands.golden.read_input`).
    """
    if path is None:
        rng = np.random.default_rng(seed)
        return rng.integers(-128, 128, size=graph.input_tensor.shape, dtype=np.int8)
    return read_input(path, graph)


def run_litert(path: Path, x: np.ndarray, *, reference: bool = False):
    """Run LiteRT on ``x`` and return the interpreter, with every tensor preserved.

    Parameters
    ----------
    path : pathlib.Path
        The .tflite file.
    x : numpy.ndarray
        int8 input of the model's input shape.
    reference : bool
        Use TFLite's reference kernels instead of the optimized builtin ones.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (
        OpResolverType.BUILTIN_REF
        if reference
        else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    try:
        interp = Interpreter(
            model_path=str(path),
            experimental_op_resolver_type=resolver,
            experimental_preserve_all_tensors=True,
        )
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"LiteRT cannot run {path.name}: {first}") from None
    return interp


def compare(graph: Graph, golden: dict[str, np.ndarray], interp) -> list[LayerResult]:
    """Compare each layer's golden output with the LiteRT tensor of the same index."""
    results = []
    for i, layer in enumerate(graph.layers):
        t = graph.tensors[layer.output]
        g = np.asarray(golden[layer.output])
        r = interp.get_tensor(t.index)
        res = LayerResult(i, layer.name, layer.op.value, t.shape, int(r.size), 0)
        if g.shape != r.shape or g.dtype != r.dtype:
            res.mismatches = int(r.size)
            res.note = (
                f"golden {g.dtype}{list(g.shape)} vs LiteRT {r.dtype}{list(r.shape)}"
            )
        else:
            diff = np.argwhere(g != r)
            res.mismatches = len(diff)
            if len(diff):
                where = tuple(int(k) for k in diff[0])
                res.first = (where, int(g[where]), int(r[where]))
        results.append(res)
    return results


def register(subparsers, add_model_args) -> None:
    """Add ``verify``; it takes only .tflite files, so the zoo's options do not apply."""
    del add_model_args
    p = subparsers.add_parser(
        "verify",
        help="compare the golden model with LiteRT on every layer of an int8 .tflite",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("model", metavar="MODEL.tflite", type=Path, help="full-integer int8 model")
    p.add_argument("--input", type=Path, help="int8 NHWC .npy input (default: seeded random)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the random input")
    p.add_argument(
        "--kernels",
        choices=("optimized", "reference"),
        default="optimized",
        help="LiteRT's optimized builtin kernels (default) or its reference kernels; the "
        "golden model reproduces the same ones",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mnaccel.golden.interpreter import run as run_golden
    from mnaccel.golden.tflite_import import load_tflite

    path: Path = args.model
    if path.suffix.lower() != ".tflite":
        raise UserError(
            f"verify compares with LiteRT and needs a .tflite file, not {str(path)!r}"
        )
    graph = load_tflite(path)
    x = load_input(args.input, graph, args.seed)
    print(f"verify: {path.name}: LiteRT ({args.kernels} kernels) ...", file=sys.stderr)
    interp = run_litert(path, x, reference=args.kernels == "reference")
    print(f"verify: {path.name}: golden model, {len(graph.layers)} layers ...", file=sys.stderr)
    golden = run_golden(graph, x, kernel=args.kernels)
    results = compare(graph, golden, interp)
    for res in results:
        print(res.line())
    bad = [r for r in results if not r.equal]
    elements = sum(r.elements for r in results)
    if bad:
        worst = bad[0]
        where = f" at {worst.first[0]}" if worst.first else ""
        print(
            f"{path.name}: {len(bad)} of {len(results)} layers differ; first: layer "
            f"{worst.name!r}{where}"
            + (f": golden {worst.first[1]}, LiteRT {worst.first[2]}" if worst.first else "")
            + (f": {worst.note}" if worst.note else "")
        )
        return 1
    print(
        f"{path.name}: all {len(results)} layers equal ({elements} elements, "
        f"LiteRT {args.kernels} kernels)"
    )
    return 0
