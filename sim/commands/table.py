"""``mnaccel table``: the per-layer table of a model (see :mod:`mnaccel.golden.table`)."""

from __future__ import annotations

import argparse
import sys

from mnaccel.golden.table import FORMATS, format_table, table_rows

__all__ = ["register", "run"]


def register(subparsers, add_model_args) -> None:
    """Add the ``table`` command to the CLI."""
    p = subparsers.add_parser(
        "table",
        help="per-layer params, strides, shapes, multiplies and adds",
        description="Print one row per layer (params, stride, input channels and width, "
        "multiplies, adds) and a sum row. See docs/model-zoo.md for what is counted.",
    )
    add_model_args(p)
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mnaccel.sim.cli import load_model

    # Counting needs the structure only: skip the zoo's calibration run.
    graph = load_model(args, calibrate=False)
    sys.stdout.write(format_table(table_rows(graph), args.format))
    return 0
