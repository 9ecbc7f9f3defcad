"""CLI commands, one module each.

Each module defines ``register(subparsers, add_model_args)``, which adds its subparser and
sets ``run`` (a function of the parsed namespace returning the exit status) as a default.
"""

from mnaccel.sim.commands import golden, report, simulate, synth, table, verify, verilog

__all__ = ["REGISTRY"]

REGISTRY = [table.register, golden.register, verify.register, simulate.register, synth.register,
            verilog.register, report.register]
