"""The one hardware configuration.

:class:`AccelConfig` holds every hardware parameter. It is the single source for the
gateware (blocks take plain keyword arguments unpacked from it), the layer compiler, the
cycle model, the testbenches and the generated docs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from mnaccel.hw._checks import is_pow2

__all__ = ["AccelConfig", "PRESETS", "preset"]


@dataclass(frozen=True)
class AccelConfig:
    """Every hardware parameter of the accelerator.

    Parameters
    ----------
    pw_rows : int
        Rows of the pointwise systolic array: input channels reduced per cycle. Power of two.
    pw_cols : int
        Columns of the pointwise systolic array: output channels computed at once. Power of
        two.
    pw_weight_rows : int
        Rows of a pointwise weight tile loaded per cycle (a power of two dividing
        ``pw_rows``; the scheduler takes them from one AXI beat, so at most
        ``axi_data_width / 8 / pw_cols``). A tile loads in ``pw_rows / pw_weight_rows``
        cycles while the previous one computes; only tiles of fewer pixels than that wait
        for it — the classifier, one pixel per tile, is bound by its weight loads
        (``docs/utilization.md``).
    dw_lanes : int
        Channels the depthwise PE array processes per cycle (one K×K window per lane).
        Sized so that in a fused dw→pw pipeline neither engine waits on the other: the
        pointwise array spends ``ceil(C/pw_rows) * ceil(C_out/pw_cols)`` cycles per pixel
        and the depthwise array ``ceil(C/dw_lanes)``, so ``dw_lanes >= pw_rows * pw_cols /
        min(C_out)``; MobileNetV1's smallest pointwise C_out after a depthwise layer is 64.
    dw_kernel : int
        Side of the depthwise PE array's native window (``dw_kernel**2`` multipliers per
        lane). Larger kernels, up to ``max_kernel``, take several passes.
    dw_mul_luts : bool
        Build the depthwise array's int8 products from LUTs rather than DSP blocks, leaving
        the DSPs to the pointwise array and the requantizers. An int8 × int8 product costs
        about 100 LUT4s and 14 carry cells (CCU2C) as a radix-4 Booth multiplier, a
        32 × 31-bit requantizer product four DSPs: this is where DSPs are cheapest to give
        up (``docs/hw/depthwise.md``).
    lb_in_lanes : int
        Channels per input beat of the line buffer, a multiple of ``dw_lanes``. Wider than
        ``dw_lanes`` so that stride-2 layers, which read four input pixels per output pixel,
        keep pace with the pointwise array (see ``docs/hw/line_buffer.md``).
    max_kernel : int
        Largest depthwise kernel side the line buffer and PE array accept (3 or 5).
    lb_max_width : int
        Widest feature map (pixels) the line buffer holds.
    lb_max_channels : int
        Most channels per pixel the line buffer holds.
    lb_max_row_bytes : int
        Capacity of one line-buffer row in bytes (``width * channels`` of a layer must fit).
    pw_acc_depth : int
        Entries (pixels) of the pointwise array's int32 accumulator buffer, each holding
        ``pw_cols`` partial sums: the largest pixel tile over which partial sums are kept on
        chip while the input channels are reduced ``pw_rows`` at a time. Power of two.
    act_buf_bytes : int
        On-chip activation buffer between the depthwise requantizer (or the line buffer, for
        the first convolution) and the pointwise array, double-buffered: one half holds a
        pixel tile's ``P × K·pw_rows`` bytes. Power of two.
    out_buf_bytes : int
        Output buffer between the output requantizer and the AXI write channel,
        double-buffered: one half holds a pixel tile's ``P × J·pw_cols`` bytes. Power of two.
    pw_weight_fifo_bytes : int
        Prefetch FIFO of pointwise weight tiles streamed from external memory. Power of two.
    rq_lanes : int
        Requantizer lanes: int32 accumulators turned into int8 per cycle. The pointwise
        array emits ``pw_cols`` sums per cycle during the last input-channel chunk of a
        pixel, so fewer lanes than ``pw_cols`` stall it for part of that chunk.
    rq_lut_products : int
        Of the four 16 × 16 partial products of each output-requantizer lane's 32 × 32-bit
        product, how many are built from LUTs and carry chains rather than DSP blocks: 0,
        1 (``xh·mh``) or 2 (``xh·mh`` and ``xh·ml``), leaving ``4 - rq_lut_products``
        ``MULT18X18D`` per lane. Pipelined radix-4 Booth multipliers in the lane's own
        stages (same latency and results); each costs about 245 LUT4s, 100 PFUMXs and 80
        CCU2Cs, plus 250 (``xh·mh``) or 140 (``xh·ml``) flip-flops
        (``docs/hw/requantizer.md``). The depthwise layer's requantizer keeps four DSPs per
        lane.
    acc_width : int
        Accumulator width in bits.
    axi_data_width : int
        Data width of the AXI4 master to external memory, in bits.
    axi_addr_width : int
        Address width of the AXI4 master, in bits.
    axi_max_outstanding : int
        Bursts each DMA engine keeps in flight at most (1…64). Steps whose weight tiles are
        small bursts (the classifier: 8 beats of 128 bits each) keep the read channel busy
        only if ``axi_max_outstanding × burst beats`` covers the memory's latency (about 40
        cycles for DDR behind an interconnect).

    Raises
    ------
    ValueError
        If a parameter is out of range; the message names it and its value.
    """

    pw_rows: int = 16
    pw_cols: int = 8
    pw_weight_rows: int = 2
    dw_lanes: int = 2
    dw_kernel: int = 3
    dw_mul_luts: bool = True
    lb_in_lanes: int = 8
    max_kernel: int = 5
    lb_max_width: int = 224
    lb_max_channels: int = 1024
    lb_max_row_bytes: int = 8192
    pw_acc_depth: int = 512
    act_buf_bytes: int = 131072
    out_buf_bytes: int = 65536
    pw_weight_fifo_bytes: int = 4096
    rq_lanes: int = 8
    rq_lut_products: int = 2
    acc_width: int = 32
    axi_data_width: int = 128
    axi_addr_width: int = 32
    axi_max_outstanding: int = 8

    def __post_init__(self) -> None:
        for name in ("pw_rows", "pw_cols", "pw_weight_rows", "dw_lanes", "rq_lanes",
                     "pw_acc_depth"):
            value = getattr(self, name)
            if not is_pow2(value):
                raise ValueError(f"{name} must be a power of two, not {value!r}")
        if self.pw_weight_rows > self.pw_rows:
            raise ValueError(f"pw_weight_rows must be at most pw_rows = {self.pw_rows}, not "
                             f"{self.pw_weight_rows!r}")
        for name in ("act_buf_bytes", "out_buf_bytes", "pw_weight_fifo_bytes"):
            value = getattr(self, name)
            if not is_pow2(value) or value < 64:
                raise ValueError(f"{name} must be a power of two >= 64, not {value!r}")
        if not is_pow2(self.lb_in_lanes) or self.lb_in_lanes < self.dw_lanes:
            raise ValueError(
                f"lb_in_lanes must be a power of two and a multiple of dw_lanes, "
                f"not {self.lb_in_lanes!r}"
            )
        if not isinstance(self.dw_mul_luts, bool):
            raise ValueError(f"dw_mul_luts must be a bool, not {self.dw_mul_luts!r}")
        if (not isinstance(self.rq_lut_products, int) or isinstance(self.rq_lut_products, bool)
                or not 0 <= self.rq_lut_products <= 2):
            raise ValueError(f"rq_lut_products must be 0, 1 or 2, not {self.rq_lut_products!r}")
        if self.dw_kernel not in (3, 5):
            raise ValueError(f"dw_kernel must be 3 or 5, not {self.dw_kernel!r}")
        if self.max_kernel not in (3, 5) or self.max_kernel < self.dw_kernel:
            raise ValueError(
                f"max_kernel must be 3 or 5 and at least dw_kernel, not {self.max_kernel!r}"
            )
        if not 8 <= self.lb_max_width <= 4096:
            raise ValueError(f"lb_max_width must be in [8, 4096], not {self.lb_max_width!r}")
        if not is_pow2(self.lb_max_channels) or self.lb_max_channels < self.dw_lanes:
            raise ValueError(
                f"lb_max_channels must be a power of two >= dw_lanes, not {self.lb_max_channels!r}"
            )
        if self.lb_max_row_bytes < self.lb_max_width:
            raise ValueError(
                f"lb_max_row_bytes must hold at least one channel of the widest row, "
                f"not {self.lb_max_row_bytes!r}"
            )
        if self.acc_width != 32:
            raise ValueError(f"acc_width must be 32 (TFLite's int32), not {self.acc_width!r}")
        if self.axi_data_width not in (32, 64, 128, 256, 512):
            raise ValueError(
                f"axi_data_width must be 32, 64, 128, 256 or 512, not {self.axi_data_width!r}"
            )
        if not 16 <= self.axi_addr_width <= 64:
            raise ValueError(f"axi_addr_width must be in [16, 64], not {self.axi_addr_width!r}")
        if not 1 <= self.axi_max_outstanding <= 64:
            raise ValueError(f"axi_max_outstanding must be in [1, 64], not "
                             f"{self.axi_max_outstanding!r}")

    @property
    def channel_align(self) -> int:
        """Channels every stored activation tensor is padded to (its ``c_stride`` step).

        A multiple of ``lb_in_lanes`` (line-buffer input beats), ``pw_cols`` (output
        chunks), ``pw_rows`` (a pixel starts on an activation-buffer word) and the AXI beat
        (tile reads and write-backs start on a beat). All are powers of two, so the largest
        is a multiple of the others.
        """
        return max(self.lb_in_lanes, self.pw_cols, self.pw_rows, self.axi_data_width // 8)

    @property
    def pw_multipliers(self) -> int:
        """int8 multipliers in the pointwise systolic array."""
        return self.pw_rows * self.pw_cols

    @property
    def dw_multipliers(self) -> int:
        """int8 multipliers in the depthwise PE array."""
        return self.dw_lanes * self.dw_kernel**2

    @property
    def multipliers(self) -> int:
        """int8 multipliers in the datapath (the denominator of MAC utilization)."""
        return self.pw_multipliers + self.dw_multipliers

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @property
    def config_id(self) -> str:
        """A short stable hash of every parameter, for caches and the ID register."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    def replace(self, **changes) -> AccelConfig:
        return dataclasses.replace(self, **changes)


#: Named configurations. ``ecp5-85f`` is the default: of the LFE5U-85F's 156 18×18 DSPs,
#: 128 for the pointwise array, 4 per depthwise requantizer lane (2 lanes: 8) and 2 per
#: output requantizer lane (8 lanes, so that the array's 8 sums a cycle never wait: 16),
#: 152 in all. For that its 18 depthwise multipliers are built from LUTs (``dw_mul_luts``)
#: and so are two of each output requantizer lane's four partial products
#: (``rq_lut_products``; with only one, 8 lanes would need 160). ``large`` is for bigger
#: FPGAs, whose DSPs are plentiful next to its 1024-PE array, so it keeps its depthwise and
#: requantizer products on DSPs; ``tiny`` (DSP products) and ``small`` (LUT products) keep
#: simulation benches quick and between them simulate both depthwise variants (the
#: requantizer's LUT products are simulated block by block, tests/hw/test_requantizer.py,
#: and in the ``ecp5-85f`` top). ``ecp5-85f`` and ``small`` load two pointwise weight rows
#: per cycle (one AXI beat holds them), ``tiny`` and ``large`` one (their beat holds one).
PRESETS: dict[str, AccelConfig] = {
    "ecp5-85f": AccelConfig(),
    "large": AccelConfig(
        pw_rows=32,
        pw_cols=32,
        pw_weight_rows=1,
        dw_lanes=16,
        lb_in_lanes=64,
        rq_lanes=16,
        rq_lut_products=0,
        axi_data_width=256,
        dw_mul_luts=False,
    ),
    "small": AccelConfig(
        pw_rows=8,
        pw_cols=4,
        dw_lanes=2,
        lb_in_lanes=8,
        rq_lanes=2,
        rq_lut_products=0,
        pw_acc_depth=64,
        lb_max_width=64,
        lb_max_channels=256,
        lb_max_row_bytes=2048,
        axi_data_width=64,
        dw_mul_luts=True,
    ),
    "tiny": AccelConfig(
        pw_rows=4,
        pw_cols=4,
        pw_weight_rows=1,
        dw_lanes=1,
        lb_in_lanes=1,
        rq_lanes=1,
        rq_lut_products=0,
        pw_acc_depth=16,
        lb_max_width=32,
        lb_max_channels=64,
        lb_max_row_bytes=512,
        axi_data_width=32,
        dw_mul_luts=False,
    ),
}

DEFAULT_PRESET = "ecp5-85f"


def preset(name: str) -> AccelConfig:
    """The named preset; ValueError listing the names if there is none."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown configuration preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None
