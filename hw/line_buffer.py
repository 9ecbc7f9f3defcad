"""Line buffer: K×K windows, for every output position and channel group, from a raster stream.

The input is a raster (NHWC) stream of one layer's pixels, ``in_lanes`` channels per beat; a
pixel of ``C`` channels takes ``C / in_lanes`` beats. For every output position of a K×K
window (K = 3 or 5, stride 1 or 2, SAME or VALID) and every group of ``lanes`` channels the
block emits one window of K×K×``lanes`` int8 taps, in NHWC order (channel groups fastest).
Taps that fall in the padding carry the input zero point, which the compiler folds into the
bias (``Σ(x − zp)·w = Σx·w − zp·Σw``).

How it works (see docs/hw/line_buffer.md for the diagram)::

    position (row ry, column rx, core group gc) -- one per cycle, raster order
      vertical memory  [rx, gc] : the K_max−1 rows above, at this column   (read-modify-write)
      horizontal memory [gc]    : the K_max−1 columns to the left, as K_max-pixel columns
      window = horizontal history ‖ (vertical history ‖ new pixel),
               taps outside the image replaced by the zero point (masks from ry, rx)
      emit it if the window's top-left sits on the stride grid of an output position

The block visits every input pixel position plus the *after* padding (bottom rows and right
columns) of SAME layers; the *before* padding costs nothing because taps outside the image
are masked instead of shifted in. Both memories hold only real pixels, so they are sized by
``max_row_bytes`` and ``max_channels``, not by the padded width.

Wider input beats (``in_lanes = m · lanes``): the core then handles ``in_lanes`` channels
per position and a gearbox emits the resulting window as ``m`` windows of ``lanes``
channels, one per cycle. At stride 1 the output (one window per cycle) stays the bound; at
stride 2, where only one position in four emits, the input rate is multiplied by ``m``:
this is what lets a stride-2 depthwise layer keep up with the pointwise array that
follows it (docs/hw/line_buffer.md works the numbers).

:class:`ConvVectorAdapter` turns the windows of a standard convolution (the first layer of
MobileNet: 3×3×3, stride 2) into ``K·K·C``-long vectors for the pointwise array.
"""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Signal, signed, unsigned
from amaranth.hdl import Module as _Module
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mnaccel.hw._checks import is_pow2

__all__ = [
    "ConvVectorAdapter",
    "LineBuffer",
    "Padding",
    "axis_geometry",
    "layer_config_layout",
    "window_layout",
]

#: Bits of the height field of the layer configuration (heights up to 65535).
HEIGHT_BITS = 16


class Padding(enum.Enum, shape=1):
    """Padding of a window operator, as TFLite's ``Padding``."""

    VALID = 0
    SAME = 1


def _log2(n: int) -> int:
    return n.bit_length() - 1


def axis_geometry(size: int, kernel: int, stride: int, padding) -> tuple[int, int, int]:
    """Output size and padding of one axis, as TFLite's ``ComputePaddingHeightWidth``.

    The hardware computes the same quantities from the layer configuration; this is their
    definition, for the compiler, the cycle model and the benches.

    Parameters
    ----------
    size, kernel, stride : int
    padding : Padding or str ("SAME"/"VALID")

    Returns
    -------
    out_size, pad_before, pad_after : int

    Raises
    ------
    ValueError
        If the window does not fit (VALID with ``size < kernel``).
    """
    same = _padding(padding) is Padding.SAME
    out = (size + stride - 1) // stride if same else (size - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"a {kernel}-tap VALID window does not fit an input of size {size}")
    total = max(0, (out - 1) * stride + kernel - size) if same else 0
    return out, total // 2, total - total // 2


def _padding(padding) -> Padding:
    if isinstance(padding, Padding):
        return padding
    name = getattr(padding, "value", padding)
    try:
        return Padding[str(name).upper()]
    except KeyError:
        raise ValueError(f"padding must be SAME or VALID, not {padding!r}") from None


def layer_config_layout(max_width: int, max_channels: int) -> data.StructLayout:
    """Payload of :class:`LineBuffer`'s ``cfg`` stream: one layer's shape.

    Fields: ``height`` (16 bits), ``width``, ``channels`` (a multiple of ``in_lanes``),
    ``kernel`` (3 or 5), ``stride`` (1 or 2), ``padding`` (:class:`Padding`),
    ``zero_point`` (int8, the pad value).
    """
    return data.StructLayout({
        "height": unsigned(HEIGHT_BITS),
        "width": unsigned(max_width.bit_length()),
        "channels": unsigned(max_channels.bit_length()),
        "kernel": unsigned(3),
        "stride": unsigned(2),
        "padding": Padding,
        "zero_point": signed(8),
    })


def window_layout(lanes: int, max_kernel: int, max_channels: int) -> data.StructLayout:
    """Payload of :class:`LineBuffer`'s ``o`` stream: one window of one channel group.

    Fields: ``taps[row][col][lane]`` (int8, ``max_kernel`` × ``max_kernel`` × ``lanes``; for
    a 3×3 window of a ``max_kernel = 5`` buffer only ``taps[0:3][0:3]`` are defined),
    ``group`` (channel group: channels ``group*lanes … group*lanes+lanes-1``), ``kernel5``
    (1 if the window is 5×5), ``first`` / ``last`` (first and last window of the layer).
    """
    groups = max(2, max_channels // lanes)
    return data.StructLayout({
        "taps": data.ArrayLayout(
            data.ArrayLayout(data.ArrayLayout(signed(8), lanes), max_kernel), max_kernel),
        "group": unsigned((groups - 1).bit_length()),
        "kernel5": 1,
        "first": 1,
        "last": 1,
    })


class LineBuffer(wiring.Component):
    """K×K window generator over a raster NHWC pixel stream, rows held in block RAM.

    A layer starts when a configuration is accepted on ``cfg`` (only between layers: the
    block is idle and ``cfg.ready`` is high once the previous layer's last input position
    has been processed). Then exactly ``height·width·channels/in_lanes`` beats are taken on
    ``i`` and ``Ho·Wo·channels/lanes`` windows given on ``o``, in NHWC order.

    Parameters
    ----------
    lanes : int
        Channels per output window (the depthwise array's lanes). Power of two.
    in_lanes : int
        Channels per input beat: ``lanes`` times a power of two (default ``lanes``).
        ``channels`` of every layer must be a multiple of it.
    max_kernel : int
        Largest window side, 3 or 5; the buffer holds ``max_kernel - 1`` rows.
    max_width : int
        Widest layer (pixels).
    max_channels : int
        Most channels per pixel. Power of two, at least ``in_lanes``.
    max_row_bytes : int
        Capacity of one buffered row in bytes: ``width * channels`` of a layer must fit.

    Members
    -------
    cfg : In(stream.Signature(layer_config_layout(max_width, max_channels)))
        The next layer's shape.
    i : In(stream.Signature(data.ArrayLayout(signed(8), in_lanes)))
        Input pixels: ``in_lanes`` consecutive channels of one pixel per beat, raster order.
    o : Out(stream.Signature(window_layout(lanes, max_kernel, max_channels)))
        Windows.

    Attributes
    ----------
    latency : int
        Cycles from the input beat that completes a window to that window on ``o`` (1).
    vertical_depth, horizontal_depth : int
        Entries of the two memories (``max_row_bytes / in_lanes``, ``max_channels /
        in_lanes``).

    Notes
    -----
    Throughput (no bubbles, no backpressure), with ``m = in_lanes / lanes`` and ``Gc =
    channels / in_lanes``: one position per cycle, where positions are the
    ``(height + pad_after_y) · (width + pad_after_x) · Gc`` input pixels and after-padding of
    the layer, except that a position emitting a window waits until the gearbox has sent the
    previous one (``m`` cycles per window). Hence one window per cycle inside rows at
    stride 1, ``1/4`` window per cycle at stride 2 with ``m = 1``; :meth:`frame_cycles` is
    the exact count and :meth:`cycles_per_output_pixel` the steady state.
    """

    def __init__(self, *, lanes: int, in_lanes: int | None = None, max_kernel: int = 5,
                 max_width: int, max_channels: int, max_row_bytes: int):
        in_lanes = lanes if in_lanes is None else in_lanes
        if not is_pow2(lanes):
            raise ValueError(f"lanes must be a power of two, not {lanes!r}")
        if not is_pow2(in_lanes) or in_lanes < lanes:
            raise ValueError(
                f"in_lanes must be a power of two and at least lanes={lanes}, not {in_lanes!r}")
        if max_kernel not in (3, 5):
            raise ValueError(f"max_kernel must be 3 or 5, not {max_kernel!r}")
        if not isinstance(max_width, int) or max_width < max_kernel:
            raise ValueError(f"max_width must be an int >= max_kernel, not {max_width!r}")
        if not is_pow2(max_channels) or max_channels < in_lanes:
            raise ValueError(
                f"max_channels must be a power of two >= in_lanes, not {max_channels!r}")
        if (not isinstance(max_row_bytes, int) or max_row_bytes < max_width * in_lanes
                or max_row_bytes % in_lanes):
            raise ValueError(
                f"max_row_bytes must be a multiple of in_lanes holding max_width pixels of "
                f"in_lanes channels, not {max_row_bytes!r}")
        self._lanes = lanes
        self._in_lanes = in_lanes
        self._max_kernel = max_kernel
        self._max_width = max_width
        self._max_channels = max_channels
        self._max_row_bytes = max_row_bytes
        super().__init__({
            "cfg": In(stream.Signature(layer_config_layout(max_width, max_channels))),
            "i": In(stream.Signature(data.ArrayLayout(signed(8), in_lanes))),
            "o": Out(stream.Signature(window_layout(lanes, max_kernel, max_channels))),
        })

    # --- parameters ------------------------------------------------------------------------

    lanes = property(lambda self: self._lanes, doc="Channels per output window.")
    in_lanes = property(lambda self: self._in_lanes, doc="Channels per input beat.")
    max_kernel = property(lambda self: self._max_kernel, doc="Largest window side.")
    max_width = property(lambda self: self._max_width, doc="Widest layer.")
    max_channels = property(lambda self: self._max_channels, doc="Most channels per pixel.")
    max_row_bytes = property(lambda self: self._max_row_bytes, doc="Bytes of one row.")

    @property
    def latency(self) -> int:
        """Cycles from the beat completing a window to the window on ``o``."""
        return 1

    @property
    def vertical_depth(self) -> int:
        return self._max_row_bytes // self._in_lanes

    @property
    def horizontal_depth(self) -> int:
        return self._max_channels // self._in_lanes

    def check_layer(self, height, width, channels, kernel, stride, padding) -> None:
        """Raise ValueError naming the value if this buffer cannot run the layer."""
        if kernel not in (3, 5) or kernel > self._max_kernel:
            raise ValueError(f"kernel must be 3 or 5 and at most {self._max_kernel}, "
                             f"not {kernel!r}")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, not {stride!r}")
        if not 1 <= width <= self._max_width:
            raise ValueError(f"width must be in [1, {self._max_width}], not {width!r}")
        if not 1 <= height < 2**HEIGHT_BITS:
            raise ValueError(f"height must be in [1, {2**HEIGHT_BITS - 1}], not {height!r}")
        if not (1 <= channels <= self._max_channels and channels % self._in_lanes == 0):
            raise ValueError(f"channels must be a multiple of in_lanes={self._in_lanes} up to "
                             f"{self._max_channels}, not {channels!r}")
        if width * channels > self._max_row_bytes:
            raise ValueError(f"a row of {width}×{channels} bytes exceeds max_row_bytes="
                             f"{self._max_row_bytes}")
        axis_geometry(height, kernel, stride, padding)
        axis_geometry(width, kernel, stride, padding)

    # --- timing model ----------------------------------------------------------------------

    def _positions(self, height, width, channels, kernel, stride, padding):
        """Yield, per position in processing order, whether it emits (a window)."""
        geo = []
        for size in (height, width):
            out, before, after = axis_geometry(size, kernel, stride, padding)
            geo.append((size + after, before - (kernel - 1), (out - 1) * stride))
        (rows, offy, maxy), (cols, offx, maxx) = geo
        gc = channels // self._in_lanes
        emit_x = [0 <= x + offx <= maxx and (x + offx) % stride == 0 for x in range(cols)]
        for y in range(rows):
            ey = y + offy
            row = 0 <= ey <= maxy and ey % stride == 0
            for x in range(cols):
                e = row and emit_x[x]
                for _ in range(gc):
                    yield e

    def frame_cycles(self, height, width, channels, kernel, stride, padding, *,
                     cycles_per_window: int = 1) -> tuple[int, int]:
        """Exact cycles of one layer with no input bubbles and no output backpressure.

        ``cycles_per_window``: the consumer takes one window every that many cycles (e.g. 3
        for 5×5 windows into the depthwise array); 1 is an always-ready consumer.

        Returns
        -------
        first, last : int
            The cycles, counted from the one in which ``cfg`` is accepted (cycle 0), in
            which the first and the last window are transferred on ``o``.
        """
        self.check_layer(height, width, channels, kernel, stride, padding)
        m = self._in_lanes // self._lanes
        t = 1                       # the first position is processed the cycle after cfg
        busy_until = 0              # the gearbox sends its last sub-window in this cycle
        first = None
        for emits in self._positions(height, width, channels, kernel, stride, padding):
            if emits:
                # The register takes a window when its last sub-window leaves this cycle.
                t = max(t, busy_until)
                if first is None:
                    first = t + cycles_per_window
                busy_until = t + m * cycles_per_window
            t += 1
        return first, busy_until

    def cycles_per_output_pixel(self, stride: int, channels: int) -> int:
        """Steady-state cycles per output pixel (all its channels) inside a large layer.

        Stride 1: ``channels / lanes`` (one window per cycle). Stride 2 with ``m = 1``:
        ``4 · channels / lanes`` (input bound). Stride 2 with ``m > 1``: per pair of input
        columns of an emitting row the ``Gc`` emitting positions wait on the gearbox,
        ``(Gc − 1)·m + max(Gc + 1, m)`` cycles, plus ``2·Gc`` for the row without outputs.
        """
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, not {stride!r}")
        m = self._in_lanes // self._lanes
        if channels % self._in_lanes or channels < 1:
            raise ValueError(f"channels must be a multiple of {self._in_lanes}, not {channels!r}")
        gc = channels // self._in_lanes
        if stride == 1:
            return gc * m
        if m == 1:
            return 4 * gc
        return (gc - 1) * m + max(gc + 1, m) + 2 * gc

    def windows_per_cycle(self, stride: int, channels: int) -> float:
        """Steady-state windows per cycle (see :meth:`cycles_per_output_pixel`)."""
        return channels // self._lanes / self.cycles_per_output_pixel(stride, channels)

    # --- gateware --------------------------------------------------------------------------

    def elaborate(self, platform):
        m = _Module()
        P, L, KM = self._in_lanes, self._lanes, self._max_kernel
        M = P // L
        pix = data.ArrayLayout(signed(8), P)
        column = data.ArrayLayout(pix, KM)                       # rows, top first
        win_layout = data.ArrayLayout(column, KM)               # columns, left first

        m.submodules.vmem = vmem = Memory(
            shape=data.ArrayLayout(pix, KM - 1), depth=self.vertical_depth, init=[])
        m.submodules.hmem = hmem = Memory(
            shape=data.ArrayLayout(column, KM - 1), depth=self.horizontal_depth, init=[])
        vw = vmem.write_port()
        vr = vmem.read_port(transparent_for=(vw,))
        hw_ = hmem.write_port()
        hr = hmem.read_port(transparent_for=(hw_,))

        # Layer configuration, derived once when it is accepted.
        hb, wb = HEIGHT_BITS + 1, self._max_width.bit_length() + 1
        gb = max(1, (self._max_channels // P).bit_length())
        height, width = Signal(HEIGHT_BITS), Signal(wb - 1)
        rows, cols = Signal(hb), Signal(wb)                      # positions per column/row
        offy, offx = Signal(signed(4)), Signal(signed(4))        # pad_before − (K − 1)
        maxy, maxx = Signal(hb), Signal(wb)                      # (out − 1) · stride
        groups = Signal(gb)                                      # channels / in_lanes
        k5, s2, zp = Signal(), Signal(), Signal(signed(8))

        def geometry(size, width_bits, kk5, ss2, same):
            size = size.as_unsigned()
            k = Mux(kk5, 5, 3)
            out = Mux(same, Mux(ss2, (size + 1) >> 1, size),
                      Mux(ss2, ((size - k) >> 1) + 1, size - k + 1))
            span = Mux(ss2, (out - 1) << 1, out - 1)
            total = Mux(same, span + k - size, 0)
            before = total[1:]
            after = total - before
            return ((size + after)[:width_bits], (before - (k - 1)).as_signed()[:4].as_signed(),
                    span[:width_bits])

        c = self.cfg.payload
        ck5 = (c.kernel == 5) if KM == 5 else Const(0)
        cs2 = c.stride == 2
        csame = c.padding == Padding.SAME
        gy = geometry(c.height, hb, ck5, cs2, csame)
        gx = geometry(c.width, wb, ck5, cs2, csame)

        # Position counters.
        running = Signal()
        ry, rx, gc = Signal(hb), Signal(wb), Signal(gb)
        vaddr = Signal(range(self.vertical_depth + 1))
        first_pending = Signal()

        ey = (ry.as_signed() + offy)
        ex = (rx.as_signed() + offx)
        emit_y = (ey >= 0) & (ey <= maxy.as_signed()) & ~(s2 & ey[0])
        emit_x = (ex >= 0) & (ex <= maxx.as_signed()) & ~(s2 & ex[0])
        emit = emit_y & emit_x
        real_x = rx < width
        needs_in = (ry < height) & real_x
        last_col = rx == cols - 1
        last_group = gc == groups - 1
        last_pos = last_group & last_col & (ry == rows - 1)
        last_win = (ey == maxy.as_signed()) & (ex == maxx.as_signed()) & last_group

        # Gearbox: one in_lanes-wide window, sent as M windows of L lanes.
        reg = Signal(data.StructLayout({
            "taps": win_layout, "gc": gb, "kernel5": 1, "first": 1, "last": 1}))
        reg_valid = Signal()
        sub = Signal(range(max(2, M)))
        sub_last = (sub == M - 1) if M > 1 else Const(1)
        out_free = ~reg_valid | (self.o.ready & sub_last)

        fire = Signal()
        m.d.comb += [
            fire.eq(running & (~needs_in | self.i.valid) & (~emit | out_free)),
            self.i.ready.eq(running & needs_in & (~emit | out_free)),
            self.cfg.ready.eq(~running),
        ]

        # Window assembly: history columns, then the new column from the vertical history
        # and the incoming pixel; taps outside the image become the zero point.
        new_col = Signal(column)
        for r in range(KM - 1):
            m.d.comb += new_col[r].eq(vr.data[r])
        m.d.comb += new_col[KM - 1].eq(self.i.payload)
        full = Signal(win_layout)
        for cc in range(KM - 1):
            m.d.comb += full[cc].eq(hr.data[cc])
        m.d.comb += full[KM - 1].eq(new_col)
        rowmask = [(ry >= KM - 1 - r) & (ry < height + (KM - 1 - r)) for r in range(KM)]
        colmask = [(rx >= KM - 1 - cc) & (rx < width + (KM - 1 - cc)) for cc in range(KM)]
        masked = Signal(win_layout)
        zp_pix = [zp] * P
        for cc in range(KM):
            for r in range(KM):
                keep = rowmask[r] & colmask[cc]
                for lane in range(P):
                    m.d.comb += masked[cc][r][lane].eq(Mux(keep, full[cc][r][lane], zp_pix[lane]))
        # A 3×3 window of a 5×5 buffer is its bottom-right corner; present it at [0:3][0:3].
        placed = Signal(win_layout)
        off = KM - 3
        for cc in range(KM):
            for r in range(KM):
                if off and r < 3 and cc < 3:
                    m.d.comb += placed[cc][r].eq(
                        Mux(k5, masked[cc][r], masked[cc + off][r + off]))
                else:
                    m.d.comb += placed[cc][r].eq(masked[cc][r])

        # Memories: write back this position's history, read the next position's.
        vaddr_next = Signal.like(vaddr)
        gc_next = Signal.like(gc)
        m.d.comb += [
            vaddr_next.eq(vaddr),
            gc_next.eq(gc),
            vw.addr.eq(vaddr),
            vw.en.eq(fire & real_x),
            hw_.addr.eq(gc),
            hw_.en.eq(fire),
            vr.addr.eq(vaddr_next),
            hr.addr.eq(gc_next),
        ]
        for r in range(KM - 1):
            m.d.comb += vw.data[r].eq(new_col[r + 1])
        for cc in range(KM - 1):
            m.d.comb += hw_.data[cc].eq(full[cc + 1])

        with m.If(fire):
            m.d.comb += gc_next.eq(Mux(last_group, 0, gc + 1))
            m.d.comb += vaddr_next.eq(Mux(last_group & last_col, 0, vaddr + real_x))
            m.d.sync += [gc.eq(gc_next), vaddr.eq(vaddr_next)]
            with m.If(last_group):
                m.d.sync += rx.eq(Mux(last_col, 0, rx + 1))
                with m.If(last_col):
                    m.d.sync += ry.eq(ry + 1)
            with m.If(last_pos):
                m.d.sync += running.eq(0)
        with m.If(~running):
            m.d.comb += [gc_next.eq(0), vaddr_next.eq(0)]
        with m.If(self.cfg.valid & self.cfg.ready):
            m.d.sync += [
                running.eq(1), ry.eq(0), rx.eq(0), gc.eq(0), vaddr.eq(0), first_pending.eq(1),
                height.eq(c.height), width.eq(c.width),
                groups.eq(c.channels >> _log2(P)),
                k5.eq(ck5), s2.eq(cs2), zp.eq(c.zero_point),
                rows.eq(gy[0]), offy.eq(gy[1]), maxy.eq(gy[2]),
                cols.eq(gx[0]), offx.eq(gx[1]), maxx.eq(gx[2]),
            ]

        # Output register and gearbox.
        with m.If(self.o.valid & self.o.ready):
            if M > 1:
                m.d.sync += sub.eq(Mux(sub_last, 0, sub + 1))
            with m.If(sub_last):
                m.d.sync += reg_valid.eq(0)
        with m.If(fire & emit):
            m.d.sync += [
                reg_valid.eq(1), reg.taps.eq(placed), reg.gc.eq(gc), reg.kernel5.eq(k5),
                reg.first.eq(first_pending), reg.last.eq(last_win), first_pending.eq(0),
            ]
        o = self.o.payload
        m.d.comb += [
            self.o.valid.eq(reg_valid),
            o.kernel5.eq(reg.kernel5),
            o.first.eq(reg.first & (sub == 0)),
            o.last.eq(reg.last & sub_last),
            o.group.eq(reg.gc * M + sub if M > 1 else reg.gc),
        ]
        for r in range(KM):
            for cc in range(KM):
                for lane in range(L):
                    if M == 1:
                        src = reg.taps[cc][r][lane]
                    else:
                        choices = [reg.taps[cc][r][j * L + lane] for j in range(M)]
                        src = choices[0]
                        for j in range(1, M):
                            src = Mux(sub == j, choices[j], src)
                    m.d.comb += o.taps[r][cc][lane].eq(src)
        return m


class ConvVectorAdapter(wiring.Component):
    """Turns line-buffer windows into ``K·K·C``-long vectors for the pointwise array.

    A standard K×K convolution over ``channels`` input channels (MobileNet's first layer:
    3×3 over RGB, stride 2) is a 1×1 convolution over the vector of the window's taps. The
    line buffer sends each output pixel's window as ``ceil(channels / lanes)`` windows (the
    input is stored with its channels padded to a multiple of the line buffer's
    ``in_lanes``, e.g. RGB as 4 channels); this block collects them and emits one vector
    ``v[(ky·K + kx)·C + c]`` per output pixel — the order of a TFLite OHWI filter row.

    Parameters
    ----------
    lanes, max_kernel, max_channels : int
        Those of the :class:`LineBuffer` feeding it.
    kernel : int
        Window side of the convolution (3 or 5, at most ``max_kernel``).
    channels : int
        Input channels used (the rest of the padded pixel is dropped).
    padded_channels : int
        Channels of the stored pixel (the layer's ``channels`` in the line buffer); default
        ``channels`` rounded up to ``lanes``.

    Members
    -------
    i : In(stream.Signature(window_layout(lanes, max_kernel, max_channels)))
    o : Out(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), K·K·C),
        "first": 1, "last": 1})))

    Attributes
    ----------
    latency : int
        1 cycle from the pixel's last window to its vector.
    windows_per_vector : int
        ``padded_channels / lanes``: the adapter takes one window per cycle, so it emits one
        vector per ``windows_per_vector`` cycles at most.
    """

    def __init__(self, *, lanes: int, max_kernel: int, max_channels: int, kernel: int = 3,
                 channels: int = 3, padded_channels: int | None = None):
        if not is_pow2(lanes):
            raise ValueError(f"lanes must be a power of two, not {lanes!r}")
        if kernel not in (3, 5) or kernel > max_kernel:
            raise ValueError(f"kernel must be 3 or 5 and at most {max_kernel}, not {kernel!r}")
        if not isinstance(channels, int) or not 1 <= channels <= max_channels:
            raise ValueError(f"channels must be in [1, {max_channels}], not {channels!r}")
        if padded_channels is None:
            padded_channels = -(-channels // lanes) * lanes
        if (not isinstance(padded_channels, int) or padded_channels < channels
                or padded_channels % lanes or padded_channels > max_channels):
            raise ValueError(f"padded_channels must be a multiple of lanes={lanes} in "
                             f"[{channels}, {max_channels}], not {padded_channels!r}")
        self._lanes, self._kernel, self._channels = lanes, kernel, channels
        self._groups = -(-channels // lanes)
        self._pixel_groups = padded_channels // lanes
        super().__init__({
            "i": In(stream.Signature(window_layout(lanes, max_kernel, max_channels))),
            "o": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(8), kernel * kernel * channels),
                "first": 1, "last": 1}))),
        })

    kernel = property(lambda self: self._kernel)
    channels = property(lambda self: self._channels)

    @property
    def latency(self) -> int:
        return 1

    @property
    def windows_per_vector(self) -> int:
        return self._pixel_groups

    @property
    def vector_length(self) -> int:
        """``kernel² · channels``."""
        return self._kernel**2 * self._channels

    def elaborate(self, platform):
        m = _Module()
        K, C, L = self._kernel, self._channels, self._lanes
        G, GP = self._groups, self._pixel_groups
        tap_layout = data.ArrayLayout(data.ArrayLayout(data.ArrayLayout(signed(8), L), K), K)
        held = [Signal(tap_layout, name=f"held_{g}") for g in range(min(G, GP - 1))]
        first = Signal()
        w = self.i.payload
        is_last_group = w.group == GP - 1
        out_free = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(~is_last_group | out_free)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            for g in range(len(held)):
                with m.If(w.group == g):
                    for ky in range(K):
                        for kx in range(K):
                            m.d.sync += held[g][ky][kx].eq(w.taps[ky][kx])
            if GP > 1:
                with m.If(w.group == 0):
                    m.d.sync += first.eq(w.first)
            with m.If(is_last_group):
                m.d.sync += [
                    self.o.valid.eq(1),
                    self.o.payload.last.eq(w.last),
                    self.o.payload.first.eq(w.first if GP == 1 else first),
                ]
                for ky in range(K):
                    for kx in range(K):
                        for ch in range(C):
                            g, lane = divmod(ch, L)
                            src = w.taps[ky][kx][lane] if g == GP - 1 else held[g][ky][kx][lane]
                            m.d.sync += self.o.payload.data[(ky * K + kx) * C + ch].eq(src)
        return m
