"""Drawing helpers shared by the block-diagram scripts (``scripts/draw_*.py``).

The scripts are run as ``python scripts/draw_<x>.py``, which puts this folder on
``sys.path``, so they import this module as ``diagram``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.patches import FancyBboxPatch  # noqa: E402

__all__ = ["IMG", "arrow", "box"]

#: Where the pictures go; the docs name them from there.
IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


def box(ax, x, y, w, h, text, color="#dde8f5", size=8):
    """A rounded box with centred text, lower-left corner at ``(x, y)``."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=color, ec="black"))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)


def arrow(ax, x0, y0, x1, y1, text="", *, color="black", size=7, dy=0.08, lw=1.2):
    """An arrow from ``(x0, y0)`` to ``(x1, y1)``, labelled ``dy`` above its middle."""
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", lw=lw, color=color))
    if text:
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + dy, text, ha="center", fontsize=size)
