"""The ``mnaccel`` command line.

Every command that takes ``MODEL`` accepts a zoo name (``mobilenet_v1``, ``mobilenet_v2``,
``mobilenet_v3_small``, ``mobilenet_v3_large``) or the path of an int8 ``.tflite`` file.
Bad input (:class:`~mnaccel.golden.errors.UserError`) ends with one line on stderr and exit
status 2, and leaves no half-written output behind.
"""

from __future__ import annotations

import argparse
import sys

from mnaccel.golden.errors import UserError

__all__ = ["main"]


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="zoo model name or path to an int8 .tflite")
    p.add_argument("--alpha", type=float, default=1.0, help="width multiplier (zoo models)")
    p.add_argument("--resolution", type=int, default=224, help="input size (zoo models)")
    p.add_argument("--seed", type=int, default=0, help="seed of the zoo's synthetic weights")


def load_model(args: argparse.Namespace):
    """Resolve ``MODEL`` (zoo name or .tflite path) to a :class:`~mnaccel.golden.graph.Graph`."""
    from mnaccel.golden.model import load_model as _load

    return _load(args.model, alpha=args.alpha, resolution=args.resolution, seed=args.seed)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}\n")


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
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"mnaccel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mnaccel: interrupted", file=sys.stderr)
        return 130
