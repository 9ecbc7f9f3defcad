"""mnaccel: an int8 MobileNet inference accelerator in Amaranth HDL.

The source tree keeps the architecture visible at its top level; installed, the parts live
under this package:

- :mod:`mnaccel.golden` (``golden/``): the bit-exact NumPy reference with TFLite int8 semantics,
  the model zoo and the .tflite importer.
- :mod:`mnaccel.hw` (``hw/``): the gateware.
- :mod:`mnaccel.sim` (``sim/``): simulator runners, cocotb benches, the CLI and reports.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"
__all__ = ["__version__"]

# Imported from a source checkout (the repository root on sys.path, as when running from
# it), the subpackages sit beside this directory rather than inside it.
_root = _Path(__file__).resolve().parent.parent
if (_root / "golden" / "graph.py").is_file() and (_root / "hw" / "config.py").is_file():
    __path__.append(str(_root))
