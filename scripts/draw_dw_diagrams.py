"""Draw the block diagrams of the line buffer and the depthwise layer.

Writes docs/img/line_buffer.png and docs/img/depthwise.png (named by docs/hw/line_buffer.md
and docs/hw/depthwise.md). Run: ``python scripts/draw_dw_diagrams.py``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from diagram import IMG, arrow, box
from matplotlib.patches import FancyBboxPatch

OUT = IMG


def line_buffer() -> None:
    fig, ax = plt.subplots(figsize=(10, 4.2))
    box(ax, 0.0, 2.0, 1.4, 0.8, "cfg stream\n(H, W, C, K, s,\npad, zp)", "#f5ecd7")
    box(ax, 0.0, 0.6, 1.4, 0.8, "i stream\nin_lanes int8\nper beat (NHWC)", "#f5ecd7")
    box(ax, 2.0, 2.0, 1.8, 0.8, "position counters\n(ry, rx, gc), emit,\nrow/col masks")
    box(ax, 2.0, 0.2, 1.8, 1.3, "vertical memory\n[x·Gc + gc]\nK_max−1 rows above\n(read, write)")
    box(ax, 4.4, 0.2, 1.8, 1.3, "horizontal memory\n[gc]\nK_max−1 cols left\n(read, write back)")
    box(ax, 4.4, 2.0, 1.8, 0.8, "window K_max×K_max\n× in_lanes\npad taps := zp")
    box(ax, 6.8, 2.0, 1.4, 0.8, "output register\n(one window)")
    box(ax, 6.8, 0.6, 1.4, 0.8, "gearbox\nin_lanes → lanes\n(m windows)")
    box(ax, 8.7, 0.6, 1.2, 0.8, "o stream\nK×K×lanes\n+ group, flags", "#f5ecd7")
    arrow(ax, 1.4, 2.4, 2.0, 2.4)
    arrow(ax, 1.4, 1.0, 2.0, 1.0, "pixel")
    arrow(ax, 3.8, 0.85, 4.4, 0.85, "column")
    arrow(ax, 3.8, 1.3, 4.4, 2.2, "new column")
    arrow(ax, 5.3, 1.5, 5.3, 2.0, "history")
    arrow(ax, 3.8, 2.6, 4.4, 2.6, "masks")
    arrow(ax, 6.2, 2.4, 6.8, 2.4, "emit")
    arrow(ax, 7.5, 2.0, 7.5, 1.4)
    arrow(ax, 8.2, 1.0, 8.7, 1.0)
    ax.set_xlim(-0.1, 10)
    ax.set_ylim(0, 3)
    ax.axis("off")
    ax.set_title("LineBuffer: one position (pixel, channel group) per cycle")
    fig.tight_layout()
    fig.savefig(OUT / "line_buffer.png", dpi=120)
    plt.close(fig)


def depthwise() -> None:
    fig, ax = plt.subplots(figsize=(12, 4.6))
    # DepthwiseEngine: line buffer and PE array (int32 accumulators).
    ax.add_patch(FancyBboxPatch((-0.05, 1.05), 9.45, 2.1, boxstyle="round,pad=0.05",
                                fc="none", ec="grey", ls="--"))
    ax.text(0.0, 3.05, "DepthwiseEngine (int32)", fontsize=8, color="grey")
    box(ax, 0.0, 2.1, 1.3, 0.8, "cfg, i\n(pixels)", "#f5ecd7")
    box(ax, 0.0, 1.2, 1.3, 0.7, "w stream\n(group, part)", "#f5ecd7")
    box(ax, 1.6, 2.1, 1.4, 0.8, "LineBuffer\nK×K windows\n(+ pass counter)")
    box(ax, 3.3, 2.1, 1.4, 0.8, "tap select\n9 slots per lane\n(pass p of 5×5)")
    box(ax, 3.3, 1.2, 1.4, 0.7, "weight memory\n[group·P + part]")
    box(ax, 5.0, 1.6, 1.3, 1.0, "lanes × 9\nint8 × int8\n(MULT18X18D)")
    box(ax, 6.55, 1.6, 1.2, 1.0, "3 sums of 3\nper lane")
    box(ax, 8.0, 1.6, 1.3, 1.0, "Σ, accumulate\nover passes\nint32")
    arrow(ax, 1.3, 2.5, 1.6, 2.5)
    arrow(ax, 3.0, 2.5, 3.3, 2.5)
    arrow(ax, 1.3, 1.55, 3.3, 1.55)
    arrow(ax, 4.7, 2.5, 5.0, 2.3, "1")
    arrow(ax, 4.7, 1.55, 5.0, 1.9, "read")
    arrow(ax, 6.3, 2.1, 6.55, 2.1, "2")
    arrow(ax, 7.75, 2.1, 8.0, 2.1, "3")
    # Join and requantizer.
    box(ax, 0.0, 0.0, 1.3, 0.7, "p stream\n(group, lanes ×\nbias′, M0, shift,\nround_up)",
        "#f5ecd7")
    box(ax, 1.6, 0.0, 1.7, 0.7, "parameter memory\n[group]")
    box(ax, 3.6, 0.0, 1.6, 0.7, "join register\nacc[lanes] ‖ params")
    box(ax, 5.5, 0.0, 2.6, 0.7, "Requantizer (a lane per channel, 17\nstages + output FIFO): "
        "bias, ×M0, >>shift\n(ties up / away), + zp_out, clamp")
    box(ax, 8.4, 0.0, 1.3, 0.7, "o\nlanes × int8", "#f5ecd7")
    box(ax, 8.1, 0.85, 1.6, 0.45, "cfg: zp_out, act_min,\nact_max (per layer)", "#eeeeee")
    arrow(ax, 1.3, 0.35, 1.6, 0.35)
    arrow(ax, 3.3, 0.35, 3.6, 0.35, "read")
    arrow(ax, 8.3, 1.6, 4.4, 0.7)
    ax.text(5.6, 1.2, "4: acc[lanes], group", fontsize=7)
    arrow(ax, 5.2, 0.35, 5.5, 0.35, "5")
    arrow(ax, 8.1, 1.0, 7.6, 0.7)
    arrow(ax, 8.1, 0.35, 8.4, 0.35)
    ax.set_xlim(-0.2, 9.9)
    ax.set_ylim(-0.2, 3.3)
    ax.axis("off")
    ax.set_title("DepthwiseLayer: one 3×3 window per lane per cycle (5×5 in 3 passes), "
                 "int8 out")
    fig.tight_layout()
    fig.savefig(OUT / "depthwise.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    line_buffer()
    depthwise()
