"""``mnaccel verilog``: the Verilog of the accelerator (or one block) for SoC integration.

The top module is ``mnaccel`` (``mnaccel_<block>`` for a ``--block``); its ports are the
component's signature flattened by Amaranth (a stream port ``i`` becomes ``i__valid``,
``i__ready``, ``i__payload``) plus ``clk`` and ``rst``. The file is written to a temporary
name beside ``FILE.v`` and renamed, so bad input or an interruption leaves no half-written
file; a ``FILE.v`` that already holds the same text is left untouched.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from mnaccel.golden.errors import UserError
from mnaccel.sim.build import write_atomic
from mnaccel.sim.commands.synth import add_design_args, resolve_design
from mnaccel.sim.synth import top_name

__all__ = ["register", "run"]


def register(subparsers, add_model_args) -> None:
    """Add the ``verilog`` command to the CLI."""
    p = subparsers.add_parser(
        "verilog",
        help="write the accelerator's (or a block's) Verilog",
        description="Write the Verilog of the accelerator, or of one --block, sized by a "
        "configuration preset. --target ecp5 (default) instantiates ECP5 DSP primitives "
        "where a block has them (the requantizer); other targets give portable Verilog.",
    )
    add_design_args(p)
    p.add_argument("-o", "--output", metavar="FILE.v", required=True, help="output file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from amaranth.back import verilog

    out = Path(args.output)
    if out.is_dir():
        raise UserError(f"output {str(out)!r} is a directory; give a file name")
    if not out.parent.is_dir():
        why = "is not a directory" if out.parent.exists() else "does not exist"
        raise UserError(f"output directory {str(out.parent)!r} {why}")
    try:  # now rather than after the conversion, which takes a while for the accelerator
        fd, probe = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".probe")
    except OSError as exc:
        raise UserError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)
    _, component = resolve_design(args)
    name = top_name(args.block)
    text = verilog.convert(component, name=name)
    try:
        if not (out.is_file() and out.read_bytes() == text.encode()):
            write_atomic(out, text)
    except OSError as exc:
        raise UserError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
    print(f"mnaccel verilog: wrote {out} (top module {name}, {text.count(chr(10))} lines)",
          file=sys.stderr)
    return 0
