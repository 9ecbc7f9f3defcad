"""The ``mnaccel`` command line.

Every command that takes ``MODEL`` accepts a zoo name (``mobilenet_v1``, ``mobilenet_v2``,
``mobilenet_v3_small``, ``mobilenet_v3_large``) or the path of an int8 ``.tflite`` file.
Bad input (:class:`~mnaccel.golden.errors.UserError`) ends with one line on stderr and exit
status 2, and leaves no half-written output behind. docs/bad-input.md lists the cases
tried.
"""

from __future__ import annotations

import argparse
import os
import sys

from mnaccel.golden.errors import UserError

__all__ = ["main"]

class _Given(argparse.Action):
    """Store the value and remember that the user gave the option (see :func:`load_model`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", ()), option_string}


def seed(text: str) -> int:
    """argparse type of ``--seed``: NumPy's generators take non-negative seeds only."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="zoo model name or path to an int8 .tflite")
    # A .tflite file fixes its own width and resolution: load_model refuses these for one.
    p.add_argument("--alpha", type=float, default=1.0, action=_Given,
                   help="width multiplier (zoo models; default 1.0)")
    p.add_argument("--resolution", type=int, default=224, action=_Given,
                   help="input size (zoo models; default 224)")
    p.add_argument("--seed", type=seed, default=0,
                   help="seed of the zoo's synthetic weights and of the random input")


def load_model(args: argparse.Namespace, *, calibrate: bool = True):
    """Resolve ``MODEL`` (zoo name or .tflite path) to a :class:`~mnaccel.golden.graph.Graph`.

    ``--alpha`` and ``--resolution`` given with a .tflite file are an error rather than
    silently ignored: the file's width and input size are fixed.
    """
    from mnaccel.golden.model import load_model as _load
    from mnaccel.golden.zoo import ZOO

    given = sorted(getattr(args, "given", ()))
    if given and args.model not in ZOO:
        verb = "applies" if len(given) == 1 else "apply"
        raise UserError(
            f"{' and '.join(given)} {verb} to zoo models only; {args.model!r} fixes its own "
            f"width and input size"
        )
    return _load(args.model, alpha=args.alpha, resolution=args.resolution, seed=args.seed,
                 calibrate=calibrate)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"mnaccel: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mnaccel",
        description="int8 MobileNet accelerator: golden model, simulation and reports",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    from mnaccel.sim import commands

    for register in commands.REGISTRY:
        register(sub, _add_model_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's shutdown
        return status
    except UserError as exc:
        # One line even if a message quotes something multi-line (a file name, an error).
        print(f"mnaccel: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mnaccel: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (``mnaccel table ... | head``): stop quietly, with
        # the status of a process ended by SIGPIPE, and send what Python still wants to
        # flush at exit nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
