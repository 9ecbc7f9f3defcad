"""Draw the block diagram of the pointwise systolic array.

Writes docs/img/pointwise.png (named by docs/hw/pointwise.md). Run:
``python scripts/draw_pointwise_diagram.py``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from diagram import IMG, arrow, box
from matplotlib.patches import Polygon

OUT = IMG / "pointwise.png"
ROWS, COLS = 4, 4  # drawn size; the real one comes from AccelConfig


def triangle(ax, points, text, color):
    ax.add_patch(Polygon(points, closed=True, fc=color, ec="black"))
    cx = sum(p[0] for p in points) / 3
    cy = sum(p[1] for p in points) / 3
    ax.text(cx, cy, text, ha="center", va="center", fontsize=7)


def main() -> None:
    fig, ax = plt.subplots(figsize=(11, 7.2))
    pe, gap = 0.62, 0.3
    x0, y_top = 3.6, 6.0  # grid origin: top-left PE

    def pe_xy(r, c):
        return x0 + c * (pe + gap), y_top - r * (pe + gap)

    # Streams in.
    box(ax, 0.0, 6.75, 2.2, 0.7,
        "w stream: one weight row\n(cols int8) per beat,\nrows beats per tile", "#f5ecd7", 7)
    box(ax, 0.0, 2.6, 2.2, 1.1,
        "i stream: one pixel chunk\n(rows int8) + addr,\nfirst / last (reduction),\n"
        "swap (next weight tile),\nout_first / out_last", "#f5ecd7", 7)
    box(ax, 0.0, 5.0, 2.2, 1.0, "bank control\nfront bank, rows loaded\nw.ready = ¬full ∨ swap\n"
        "swap waits for full", "#e8f5dd", 7)
    arrow(ax, 1.1, 6.75, 1.1, 6.0)
    arrow(ax, 1.1, 3.7, 1.1, 5.0)

    # Input skew (row r delayed r + 1) and weight-write skew (column c delayed c + 1).
    grid_bottom = pe_xy(ROWS - 1, 0)[1]
    triangle(ax, [(3.35, y_top + pe), (3.35, grid_bottom), (2.45, grid_bottom)], "", "#f0e0f5")
    ax.text(2.95, 2.65, "input skew\n(row r: r+1 regs)\nx, bank", fontsize=7, ha="center")
    grid_right = pe_xy(0, COLS - 1)[0] + pe
    triangle(ax, [(x0, 7.0), (grid_right, 7.0), (grid_right, 7.45)], "", "#f0e0f5")
    ax.text(grid_right + 0.1, 7.1, "weight-write skew\n(column c: c+1 regs)", fontsize=7)
    arrow(ax, 2.2, 7.1, x0 - 0.05, 7.05, "row, bank, data")
    arrow(ax, 2.2, 3.2, 2.45, 3.2)

    for r in range(ROWS):
        for c in range(COLS):
            x, y = pe_xy(r, c)
            box(ax, x, y, pe, pe, f"PE {r},{c}\nw0 w1\n+= x·w[b]", "#dde8f5", 6)
            if c + 1 < COLS:
                arrow(ax, x + pe, y + pe * 0.7, x + pe + gap, y + pe * 0.7, color="#1f5fbf")
            if r + 1 < ROWS:
                arrow(ax, x + pe * 0.5, y, x + pe * 0.5, y - gap, color="#bf3f1f")
            if r == 0:
                arrow(ax, x + pe * 0.25, 7.0, x + pe * 0.25, y + pe, color="#2f8f2f")
        x, y = pe_xy(r, 0)
        arrow(ax, 3.35, y + pe * 0.7, x, y + pe * 0.7, color="#1f5fbf")
    ax.text(grid_right + 0.1, y_top + 0.3, "x, bank →\n(1 reg per PE)", color="#1f5fbf", fontsize=7)
    ax.text(grid_right + 0.1, grid_bottom + 0.2, "sums ↓\n(1 reg per PE,\nwidth grows\nper row)",
            color="#bf3f1f", fontsize=7)
    ax.text(x0, 7.62, "weights ↓ to the PE rows named by the write's row field",
            color="#2f8f2f", fontsize=7)

    # Output deskew (column c delayed cols - 1 - c), accumulator, output register.
    y_ds = grid_bottom - 0.25
    triangle(ax, [(x0, y_ds), (grid_right - pe, y_ds), (x0, y_ds - 0.8)], "", "#f0e0f5")
    ax.text(grid_right - 0.6, y_ds - 0.55, "output deskew\n(col c: cols−1−c regs)", fontsize=7)
    for c in range(COLS):
        x, y = pe_xy(ROWS - 1, c)
        arrow(ax, x + pe * 0.5, y, x + pe * 0.5, y_ds, color="#bf3f1f")
    box(ax, x0, 0.55, grid_right - x0, 0.7,
        "accumulate (int32, wrapping):\nfirst ? sum : acc[addr] + sum", "#e8f5dd", 8)
    arrow(ax, (x0 + grid_right) / 2, y_ds - 0.8, (x0 + grid_right) / 2, 1.25)
    box(ax, grid_right + 0.9, 0.45, 2.0, 0.9, "acc buffer\nlib.memory\nacc_depth × cols int32\n"
        "(read 1 stage ahead,\ntransparent)", "#fff4c2", 7)
    arrow(ax, grid_right, 1.0, grid_right + 0.9, 1.0, "write (¬last)", dy=0.08)
    arrow(ax, grid_right + 0.9, 0.65, grid_right, 0.65, "read", dy=-0.2)
    box(ax, 0.0, 0.45, 2.2, 0.9, "o stream (registered):\ncols int32 per pixel\n"
        "on last, + addr,\nfirst / last", "#f5ecd7", 7)
    arrow(ax, x0, 0.9, 2.2, 0.9)

    box(ax, 0.0, 1.55, 2.2, 0.8, "metadata delay line\n(valid, addr, flags):\nrows + cols regs",
        "#e8f5dd", 7)
    arrow(ax, 0.6, 2.6, 0.6, 2.35)
    arrow(ax, 2.2, 1.95, x0 + 0.3, 1.25)

    ax.text(8.0, 0.05, "global stall: ce = ¬o.valid ∨ o.ready enables every register above",
            fontsize=8, ha="center")
    ax.set_xlim(-0.1, 11.0)
    ax.set_ylim(-0.1, 7.9)
    ax.set_axis_off()
    ax.set_title("Pointwise: weight-stationary rows × cols int8 systolic array (drawn 4 × 4)",
                 fontsize=10)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=130, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
