"""Draw the accelerator's block diagram.

Writes docs/img/architecture.png (named by docs/architecture.md). Run:
``python scripts/draw_architecture.py``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from diagram import IMG, arrow, box

OUT = IMG / "architecture.png"


def main() -> None:
    fig, ax = plt.subplots(figsize=(13, 6))
    mem, ctl, dp, buf = "#f5e6cc", "#e0e0e0", "#dde8f5", "#d9f0d9"
    box(ax, 0.2, 4.6, 2.2, 0.9, "external memory\n(AXI4 slave: DDR)", mem)
    box(ax, 3.0, 4.6, 3.2, 0.9,
        "AXI4 master DMA\nread ch. / write ch.\naxi_data_width bits each", ctl)
    box(ax, 7.0, 4.6, 2.6, 0.9, "scheduler\n(descriptor decode,\ntile loops j, k, p)", ctl)
    box(ax, 10.2, 4.6, 2.6, 0.9, "AXI4-Lite regs\nstart / status / cycles\n+ interrupt", ctl)
    box(ax, 0.2, 2.6, 1.8, 1.0, "line buffer\nK×K windows\nlb_in_lanes in", dp)
    box(ax, 2.4, 3.2, 1.8, 0.8, "depthwise array\ndw_lanes × 9", dp)
    box(ax, 2.4, 2.0, 1.8, 0.8, "ConvVector-\nAdapter (CONV0)", dp)
    box(ax, 4.6, 3.2, 1.6, 0.8, "dw requantizer\n(dw_lanes)", dp)
    box(ax, 6.6, 2.3, 2.0, 1.6, "activation buffer\n2 × P × K·rows bytes\n(act_buf_bytes)", buf)
    box(ax, 9.0, 2.3, 1.9, 1.6,
        "pointwise array\nrows × cols,\nweight-stationary\n+ acc buffer\n(pw_acc_depth)", dp)
    box(ax, 11.3, 2.3, 1.6, 1.6, "requantizer\n(rq_lanes)\n+ pool sums\n(V3: h-swish)", dp)
    box(ax, 11.3, 0.3, 1.6, 1.2, "output buffer\n2 × P × J·cols\n(out_buf_bytes)", buf)
    box(ax, 7.0, 0.3, 2.4, 1.0, "weight FIFO (pw tiles)\n+ parameter records", buf)
    box(ax, 0.2, 0.3, 3.0, 1.0,
        "input rows (NHWC) from DMA;\nPW/POOL/FC input bypasses\nthe line buffer",
        mem)
    arrow(ax, 2.4, 5.05, 3.0, 5.05)
    arrow(ax, 6.2, 5.05, 7.0, 5.05, "program", dy=0.08)
    arrow(ax, 10.2, 5.05, 9.6, 5.05)
    arrow(ax, 1.1, 4.6, 1.1, 3.6, "pixels")
    arrow(ax, 2.0, 3.3, 2.4, 3.6)
    arrow(ax, 2.0, 2.9, 2.4, 2.4)
    arrow(ax, 4.2, 3.6, 4.6, 3.6)
    arrow(ax, 6.2, 3.6, 6.6, 3.4, "int8")
    arrow(ax, 4.2, 2.4, 6.6, 2.6, "27-vectors")
    arrow(ax, 8.6, 3.1, 9.0, 3.1, "beats\n(p, k)")
    arrow(ax, 10.9, 3.1, 11.3, 3.1, "int32")
    arrow(ax, 12.1, 2.3, 12.1, 1.5)
    ax.text(10.4, 0.55, "→ DMA write channel\n(one contiguous\nburst per tile)", fontsize=7,
            ha="center")
    arrow(ax, 8.2, 1.3, 9.4, 2.3, "weight tiles\n(k, j)")
    arrow(ax, 1.7, 1.3, 6.6, 2.4)
    ax.set_xlim(0, 13.2)
    ax.set_ylim(0, 5.8)
    ax.axis("off")
    ax.set_title("mnaccel: one step (descriptor) streams line buffer → dw → act. buffer → pw → "
                 "requantizer → output buffer → DMA", fontsize=10)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)


if __name__ == "__main__":
    main()
