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

Pipelined for a fast clock (docs/hw/line_buffer.md, "Pipeline"): the position counters run
two positions ahead of the position being processed, and the memories are read there, so
that every block-RAM address, enable and output meets a flip-flop (or one LUT) on the
other side; the counters' compares become registered per-position flags (emit, needs
input, tap masks). A position's write lands the cycle after it is processed; the one to
three later positions that read the same entry before it has landed take it from the
write-data registers instead (a layer-constant choice: the entry's writer is ``Gc``
positions back in the horizontal memory, ``Gc`` × columns in the vertical one). The
sequence of processed positions, and so the window timing, is exactly that of processing
one position per cycle from the configuration on, only :attr:`LineBuffer.start_latency`
cycles later.

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

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Mux, Signal, Value, signed, unsigned
from amaranth.hdl import Module as _Module
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mnaccel.hw._checks import is_pow2

__all__ = [
    "ConvVectorAdapter",
    "LineBuffer",
    "Padding",
    "RegisteredMemory",
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


class RegisteredMemory:
    """A simple dual-port memory whose read word comes from a register: ``r_data`` holds
    the word at the ``r_addr`` of two cycles before.

    Built into a module by :meth:`build`. Two implementations, the same timing:

    * generic (``ecp5_bram=False``): an :class:`~amaranth.lib.memory.Memory` with a
      synchronous read port, then a fabric register (Yosys maps the memory to block RAM);
    * ECP5 (``ecp5_bram=True``): ``DP16KD`` primitives with their read port's output
      register on (``REGMODE_B = "OUTREG"``). Yosys does not infer that register, and an
      ECP5 block RAM's output without it takes 5.8 ns from the clock (speed grade 6, as
      nextpnr models it), against 1.0 ns with it: the difference between a block RAM read
      fitting in a 5 ns cycle or not. Simulation needs a model of the primitive
      (``tests/hw/dp16kd_model.v``). Depth ≤ 512 uses the 36-bit pseudo-dual-port mode,
      deeper memories 18 (≤ 1024), 9 (≤ 2048) or 4 bits (≤ 4096) per primitive.

    A read in the cycle the same entry is written returns an undefined word (the ECP5
    primitive makes no promise across ports): the users never use such a word, and the
    generic memory says so to Yosys (``no_rw_check``) so that it builds no logic for it.

    Parameters
    ----------
    width, depth : int
        Bits per word and words.
    ecp5_bram : bool
        Instantiate ECP5 primitives.
    name : str
        Prefix of the submodules' names.

    Attributes
    ----------
    w_addr, w_data, w_en : Signal
        Write port (the word is written at the clock edge where ``w_en`` is high).
    r_addr : Signal
        Read address.
    r_en : Signal
        Read enable (default high): while low, the read and the output register hold, so
        the two read stages advance only with it (a pipeline with a common enable).
    r_data : Signal
        The word read two cycles before (two enabled cycles before when ``r_en`` is
        used): a register output.
    """

    LATENCY = 2

    def __init__(self, *, width: int, depth: int, ecp5_bram: bool, name: str):
        if not 1 <= depth <= 4096:
            raise ValueError(f"depth must be in [1, 4096], not {depth!r}")
        self.width, self.depth, self.ecp5_bram, self.name = width, depth, ecp5_bram, name
        abits = max(1, (depth - 1).bit_length())
        self.w_addr = Signal(abits, name=f"{name}_w_addr")
        self.w_data = Signal(width, name=f"{name}_w_data")
        self.w_en = Signal(name=f"{name}_w_en")
        self.r_addr = Signal(abits, name=f"{name}_r_addr")
        self.r_en = Signal(name=f"{name}_r_en", init=1)
        self.r_data = Signal(width, name=f"{name}_r_data")

    @staticmethod
    def port_width(depth: int) -> int:
        """Bits per ECP5 primitive for ``depth`` words (36, 18, 9 or 4)."""
        for width, words in ((36, 512), (18, 1024), (9, 2048), (4, 4096)):
            if depth <= words:
                return width
        raise ValueError(f"depth must be at most 4096, not {depth!r}")

    def primitives(self) -> int:
        """``DP16KD`` primitives of the ECP5 implementation."""
        return -(-self.width // self.port_width(self.depth))

    def build(self, m) -> None:
        if not self.ecp5_bram:
            mem = Memory(shape=self.width, depth=self.depth, init=[],
                         attrs={"no_rw_check": 1})
            m.submodules[self.name] = mem
            wp, rp = mem.write_port(), mem.read_port()
            word = Signal(self.width, name=f"{self.name}_word", reset_less=True)
            m.d.comb += [wp.addr.eq(self.w_addr), wp.data.eq(self.w_data),
                         wp.en.eq(self.w_en), rp.addr.eq(self.r_addr), rp.en.eq(self.r_en)]
            with m.If(self.r_en):
                m.d.sync += word.eq(rp.data)
            m.d.comb += self.r_data.eq(word)
            return
        pw = self.port_width(self.depth)
        shift = {36: 5, 18: 4, 9: 3, 4: 2}[pw]
        waddr = Cat(Const(0, shift), self.w_addr)
        raddr = Cat(Const(0, shift), self.r_addr)
        for t in range(self.primitives()):
            lo, hi = t * pw, min(self.width, (t + 1) * pw)
            di = Signal(pw, name=f"{self.name}_di_{t}")
            do = Signal(pw, name=f"{self.name}_do_{t}")
            m.d.comb += [di.eq(self.w_data[lo:hi]), self.r_data[lo:hi].eq(do[:hi - lo])]
            ports = {}
            for k in range(14):
                ports[f"i_ADA{k}"] = waddr[k] if k < len(waddr) else 0
                ports[f"i_ADB{k}"] = raddr[k] if k < len(raddr) else 0
            if pw == 36:
                # As Yosys maps PDPW16KD: port A's address and byte enables write all 36
                # bits (DIA low half, DIB high half), port B reads them (DOA, DOB).
                for k in range(4):
                    ports[f"i_ADA{k}"] = self.w_en
                for k in range(18):
                    ports[f"i_DIA{k}"] = di[k]
                    ports[f"i_DIB{k}"] = di[18 + k]
                    ports[f"o_DOA{k}"] = do[k]
                    ports[f"o_DOB{k}"] = do[18 + k]
                ports |= {"i_WEA": 1, "i_CEA": self.w_en}
            else:
                if pw == 18:                       # byte enables
                    ports |= {"i_ADA0": 1, "i_ADA1": 1}
                for k in range(18):
                    ports[f"i_DIA{k}"] = di[k] if k < pw else 0
                    ports[f"i_DIB{k}"] = 0
                    if k < pw:
                        ports[f"o_DOB{k}"] = do[k]
                ports |= {"i_WEA": self.w_en, "i_CEA": 1}
            m.submodules[f"{self.name}_{t}"] = Instance(
                "DP16KD",
                p_DATA_WIDTH_A=pw, p_DATA_WIDTH_B=pw,
                p_REGMODE_A="OUTREG" if pw == 36 else "NOREG", p_REGMODE_B="OUTREG",
                p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
                p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="AUTO",
                i_CLKA=ClockSignal(), i_CLKB=ClockSignal(),
                i_OCEA=self.r_en, i_OCEB=self.r_en, i_CEB=self.r_en, i_WEB=0, i_RSTA=0,
                i_RSTB=0,
                i_CSA0=0, i_CSA1=0, i_CSA2=0, i_CSB0=0, i_CSB1=0, i_CSB2=0,
                **ports,
            )


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
    ecp5_bram : bool
        Build the row memories from ECP5 ``DP16KD`` primitives with their output registers
        (:class:`RegisteredMemory`; same timing, faster clock on an ECP5; simulation needs
        ``tests/hw/dp16kd_model.v``) rather than inferred block RAM.

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
    taps_late : Signal(window_layout(...)["taps"].shape)
        The taps of the window transferred on ``o`` one cycle before (undefined if none
        was): the same values as ``o.payload.taps`` then, for a consumer that registers
        them a cycle after the handshake (the depthwise engine's PE array), from the
        window slot, which holds them for that cycle, through a multiplexer whose selects
        are registers.
    kernel5_next : Signal(1)
        ``o.payload.kernel5`` of the next cycle, for a consumer whose ``ready`` depends on
        it and is a flip-flop (:class:`~mnaccel.hw.depthwise.DepthwiseArray`).
    latency : int
        Cycles from the input beat that completes a window to that window on ``o`` (1).
    start_latency : int
        Cycles from the ``cfg`` transfer (cycle 0) to the first cycle in which the layer's
        first position can be processed (6: the threshold derivation and the position
        pipeline).
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
                 max_width: int, max_channels: int, max_row_bytes: int,
                 ecp5_bram: bool = False):
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
        self._ecp5_bram = bool(ecp5_bram)
        super().__init__({
            "cfg": In(stream.Signature(layer_config_layout(max_width, max_channels))),
            "i": In(stream.Signature(data.ArrayLayout(signed(8), in_lanes))),
            "o": Out(stream.Signature(window_layout(lanes, max_kernel, max_channels))),
        })
        #: The taps of the window transferred on ``o`` in the previous cycle (see the class
        #: docstring); not a stream member, read by :class:`~mnaccel.hw.depthwise.DepthwiseEngine`.
        self.taps_late = Signal(
            window_layout(lanes, max_kernel, max_channels)["taps"].shape, name="taps_late")
        #: ``o.payload.kernel5`` of the next cycle (likewise).
        self.kernel5_next = Signal(name="kernel5_next")

    # --- parameters ------------------------------------------------------------------------

    lanes = property(lambda self: self._lanes, doc="Channels per output window.")
    in_lanes = property(lambda self: self._in_lanes, doc="Channels per input beat.")
    max_kernel = property(lambda self: self._max_kernel, doc="Largest window side.")
    max_width = property(lambda self: self._max_width, doc="Widest layer.")
    max_channels = property(lambda self: self._max_channels, doc="Most channels per pixel.")
    max_row_bytes = property(lambda self: self._max_row_bytes, doc="Bytes of one row.")
    ecp5_bram = property(lambda self: self._ecp5_bram, doc="Block RAMs as ECP5 primitives.")

    @property
    def latency(self) -> int:
        """Cycles from the beat completing a window to the window on ``o``."""
        return 1

    #: Cycles from the ``cfg`` transfer to the first position: two to derive the layer's
    #: thresholds, one for the counters' first position and three for it to reach the
    #: stage that processes it (its memory words are read on the way).
    START_LATENCY = 6

    @property
    def start_latency(self) -> int:
        """Cycles from the ``cfg`` transfer (cycle 0) to the first position's processing."""
        return self.START_LATENCY

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
        t = self.start_latency      # the first position's earliest cycle
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
        H = KM - 1                                               # history rows / columns
        pix = data.ArrayLayout(signed(8), P)
        column = data.ArrayLayout(pix, KM)                       # rows, top first
        win_layout = data.ArrayLayout(column, KM)                # columns, left first
        hist = data.StructLayout({                               # one position's history
            "h": data.ArrayLayout(column, H),                    # the H columns to the left
            "v": data.ArrayLayout(pix, H),                       # the H pixels above
        })

        def reg(shape, name, **kwargs):
            return Signal(shape, name=name, **kwargs)

        def data_reg(shape, name):
            # Datapath registers need no reset: valid bits and flags qualify them.
            return Signal(shape, name=name, reset_less=True)

        def copies(value, n, name, init=0):
            # `n` registers of `value`, one per slice of a wide datapath, so that no select
            # fans out to more than ~200 bits. Written as r ^ (r ^ value): each copy's next
            # value is then its own function, so Yosys's opt_merge keeps the copies apart
            # (abc later reduces each to `value`; nothing merges flip-flops after it).
            out = []
            for k in range(n):
                r = Signal(Value.cast(value).shape(), name=f"{name}_{k}", init=init)
                m.d.sync += r.eq(r ^ (r ^ value))
                out.append(r)
            return out

        # --- layer configuration: latched, then derived over two cycles ------------------
        hb, wb = HEIGHT_BITS + 1, self._max_width.bit_length() + 1
        gb = max(1, (self._max_channels // P).bit_length())
        c = self.cfg.payload
        busy = reg(1, "busy")                # from cfg accepted to the last position's fire
        st = reg(3, "setup")                 # one-hot: setup stage 1, 2, 3
        cfg_take = self.cfg.valid & self.cfg.ready
        m.d.comb += self.cfg.ready.eq(~busy)
        m.d.sync += st.eq(Cat(cfg_take, st[:2]))
        with m.If(cfg_take):
            m.d.sync += busy.eq(1)

        raw = {name: reg(shape, f"cfg_{name}") for name, shape in (
            ("height", HEIGHT_BITS), ("width", wb - 1), ("groups", gb), ("k5", 1),
            ("s2", 1), ("same", 1), ("zp", signed(8)))}
        with m.If(cfg_take):
            m.d.sync += [
                raw["height"].eq(c.height), raw["width"].eq(c.width),
                raw["groups"].eq(c.channels >> _log2(P)),
                raw["k5"].eq((c.kernel == 5) if KM == 5 else 0), raw["s2"].eq(c.stride == 2),
                raw["same"].eq(c.padding == Padding.SAME), raw["zp"].eq(c.zero_point),
            ]
        k5, s2, same, zp = raw["k5"], raw["s2"], raw["same"], raw["zp"]
        # Copies of `k5` for the window's tap selects and for the output, a cycle behind the
        # latched one (the first window is cycles later), so that the latched flag drives
        # only the setup logic beside it, not three groups of logic across the die.
        k5_win, k5_out = copies(k5, 2, "k5")

        def axis(size, bits, name):
            """Per axis: thresholds of the position counter (registered in stages 1 and 2)."""
            n = size.as_unsigned()
            # Stage 1: the pads and the thresholds' offsets from the size, which depend only
            # on k, s and the size's parity (axis_geometry), so that each threshold of stage
            # 2 is one adder from registers (the flags fan out across the die: a long route
            # followed by a chain of two adders took 8.5 ns).
            odd = n[0]
            before_n = Mux(~same, 0, Mux(~s2, Mux(k5, 2, 1), Mux(k5, Mux(odd, 2, 1), odd)))
            after_n = Mux(~same, 0, Mux(k5, 2, 1))
            first_n = Mux(k5, 4, 2) - before_n           # first emitting position, K − 1 − before
            # The last emitting one, hi = (out − 1)·stride + first; (out − 1)·stride is
            # `n − (1 if SAME else K)`, rounded down to even at stride 2 (n odd − odd).
            hi_n = first_n - Mux(same, 1, Mux(k5, 5, 3)) - (s2 & ~odd)
            before = reg(2, f"{name}_before")
            after = reg(2, f"{name}_after")
            lo_m1 = reg(3, f"{name}_lo_m1")
            d_hi = reg(signed(4), f"{name}_d_hi")        # hi − size
            d_hi_m1 = reg(signed(4), f"{name}_d_hi_m1")
            d_last_m1 = reg(signed(3), f"{name}_d_last_m1")   # after − 2
            plus = [reg(bits, f"{name}_plus{j}") for j in range(KM)]   # size + j − 1
            with m.If(st[0]):
                m.d.sync += [before.eq(before_n), after.eq(after_n), lo_m1.eq(first_n - 1),
                             d_hi.eq(hi_n), d_hi_m1.eq(hi_n - 1), d_last_m1.eq(after_n - 2)]
                m.d.sync += [plus[j].eq(n + j - 1) for j in range(KM)]
            # Stage 2. `hi`: the last emitting position; `last`: the last position (size +
            # after − 1). Kept as "one less" where the counters test the step onto them.
            hi = reg(bits, f"{name}_hi")
            hi_m1 = reg(bits, f"{name}_hi_m1")
            last_m1 = reg(bits, f"{name}_last_m1")
            count = reg(bits, f"{name}_count")           # positions: size + after
            with m.If(st[1]):
                m.d.sync += [hi.eq(n + d_hi), hi_m1.eq(n + d_hi_m1),
                             last_m1.eq(n + d_last_m1), count.eq(n + after)]
            return dict(before=before, after=after, plus_m1=plus, lo_m1=lo_m1, hi=hi,
                        hi_m1=hi_m1, last_m1=last_m1, count=count)

        ya = axis(raw["height"], hb, "y")
        xa = axis(raw["width"], wb, "x")
        groups_m2 = reg(gb, "groups_m2")
        # Bypass selects (see "Memories" below): how far back, in positions, the write of
        # the entry a position reads lies — Gc for the horizontal memory, Gc·columns for the
        # vertical one — when that is close enough for the write to be still in flight.
        # Registered as early as their inputs allow (stage 1 for the groups, stage 2 for
        # the columns, `width + after`): they reach the multiplexers' selects through two
        # registers (see "Memories").
        near = {name: reg(1, f"near_{name}") for name in ("h1", "h2", "h3", "h4",
                                                          "v2", "v3", "v4")}
        with m.If(st[0]):
            g = raw["groups"]
            m.d.sync += [near[f"h{d}"].eq(g == d) for d in (1, 2, 3, 4)]
        with m.If(st[1]):
            g = raw["groups"]
            cols = {n: raw["width"] + xa["after"] == n for n in (2, 3, 4)}
            m.d.sync += [
                groups_m2.eq(g - 2),
                near["v2"].eq((g == 1) & cols[2]),
                near["v3"].eq((g == 1) & cols[3]),
                near["v4"].eq(((g == 1) & cols[4]) | ((g == 2) & cols[2])),
            ]

        # --- position counters: the position three ahead of the one being processed -----
        # Stage C walks positions (row ry, column rx, channel group gc) and reads the two
        # memories at its address; the per-position flags travel through R (read in
        # flight), E1 (next position) to E0, the position processed, whose "fire" moves
        # everything one position on. The flags are kept as registers per axis and updated
        # as the counter steps, by equality tests of the counter against thresholds one
        # less (no carry chain): tap-mask j (the pixel j behind is in the image), in the
        # emitting range, parity (stride 2), on the last emitting position, on the last
        # position. The row counter changes at most every other cycle (a row has at least
        # two positions), so its tests are registered too.
        # `shift` (E0 fired or is empty: C → R → E1 → E0) and `fire` are needed by some 400
        # flip-flops spread over the die (counters beside the block RAMs, the memories'
        # selects, the window's masks, the slots' enables). Each group of them gets its own
        # copy, computed in one LUT level from registers of its own (see "fire" below), so
        # that no copy fans out far and none is two LUT levels from a flip-flop.
        islands = ["main", "win", *[f"{p}{j}" for p in "hv" for j in range(H)],
                   *[f"slot{cc}" for cc in range(KM)]]
        shifts = {k: Signal(name=f"shift_{k}") for k in islands}
        fires = {k: Signal(name=f"fire_{k}") for k in islands}
        shift, fire = shifts["main"], fires["main"]
        c_valid = reg(1, "c_valid")
        ry, rx, gc = reg(hb, "ry"), reg(wb, "rx"), reg(gb, "gc")
        vaddr = reg(range(self.vertical_depth + 1), "vaddr")
        first_pending = reg(1, "first_pending")
        last_group = reg(1, "last_group")

        flag_layout = data.StructLayout({"mask": KM, "inr": 1, "par": 1, "wl": 1, "last": 1})

        def axis_flags(name, v, a, tests):
            """This axis's flags, their values at position 0 and after a step."""
            f = reg(flag_layout, f"{name}_flags")
            init = Signal(flag_layout, name=f"{name}_flags_init")
            nxt = Signal(flag_layout, name=f"{name}_flags_next")
            m.d.comb += [
                # Parity of position 0 against `lo` = K − 1 − before (K − 1 even).
                init.mask.eq(1), init.inr.eq(0), init.par.eq(~a["before"][0]),
                init.wl.eq(0), init.last.eq(0),
                nxt.mask[0].eq(f.mask[0] & ~tests["leave0"]),
                nxt.inr.eq((f.inr | tests["enter"]) & ~tests["hi"]),
                nxt.par.eq(~f.par), nxt.wl.eq(tests["hi_m1"]), nxt.last.eq(tests["last_m1"]),
            ]
            for j in range(1, KM):
                m.d.comb += nxt.mask[j].eq((f.mask[j] | tests[f"at{j - 1}"])
                                           & ~tests[f"leave{j}"])
            return f, init, nxt

        def tests_of(v, a, registered, name):
            t = {f"at{j}": v == j for j in range(KM - 1)}
            t |= {f"leave{j}": v == a["plus_m1"][j] for j in range(KM)}
            t |= {"enter": v == a["lo_m1"], "hi": v == a["hi"], "hi_m1": v == a["hi_m1"],
                  "last_m1": v == a["last_m1"]}
            if not registered:
                return t
            out = {}
            for k, value in t.items():
                out[k] = reg(1, f"{name}_{k}")
                m.d.sync += out[k].eq(value)
            return out

        yf, y_init, y_next = axis_flags("y", ry, ya, tests_of(ry, ya, True, "ry_is"))
        xf, x_init, x_next = axis_flags("x", rx, xa, tests_of(rx, xa, False, "rx_is"))
        emit_y = yf.inr & (~s2 | yf.par)
        emit_x = xf.inr & (~s2 | xf.par)
        real_x = xf.mask[0]
        row_end = last_group & xf.last
        last_pos = row_end & yf.last
        pos = data.StructLayout({
            "valid": 1, "needs_in": 1, "emit": 1, "real_x": 1, "first": 1, "last_win": 1,
            "last_pos": 1, "gc": gb, "vaddr": len(vaddr), "rows": KM, "cols": KM})
        er, e1, e0 = reg(pos, "er"), reg(pos, "e1"), reg(pos, "e0")
        with m.If(shift):
            m.d.sync += [
                e0.eq(e1), e1.eq(er),
                er.valid.eq(c_valid), er.needs_in.eq(yf.mask[0] & real_x),
                er.emit.eq(emit_y & emit_x), er.real_x.eq(real_x),
                er.first.eq(first_pending), er.last_win.eq(yf.wl & xf.wl & last_group),
                er.last_pos.eq(last_pos), er.gc.eq(gc), er.vaddr.eq(vaddr),
                # Tap row r (of K_max) is pixel H − r rows back: the mask of that distance.
                er.rows.eq(Cat(*[yf.mask[H - r] for r in range(KM)])),
                er.cols.eq(Cat(*[xf.mask[H - cc] for cc in range(KM)])),
            ]

        # The memories' read addresses are these counters. Each memory gets its own copy:
        # a counter of its own (its next value depends on itself, so Yosys keeps the
        # copies apart) that the placer can put beside that memory's block RAMs, instead of
        # one register fanning out to all of them.
        gc_copies = [reg(gb, f"gc_{j}") for j in range(H)]
        vaddr_copies = [reg(len(vaddr), f"vaddr_{j}") for j in range(H)]
        advance = shift & c_valid
        with m.If(advance):
            m.d.sync += [
                first_pending.eq(first_pending & ~(emit_y & emit_x)),
                last_group.eq(Mux(last_group, raw["groups"] == 1, gc == groups_m2)),
            ]
            with m.If(last_pos):
                m.d.sync += c_valid.eq(0)
        for cnt, sh in [(gc, shift), *[(c_, shifts[f"h{j}"]) for j, c_ in enumerate(gc_copies)]]:
            with m.If(sh & c_valid):
                m.d.sync += cnt.eq(Mux(last_group, 0, cnt + 1))
        for cnt, sh in [(vaddr, shift),
                        *[(c_, shifts[f"v{j}"]) for j, c_ in enumerate(vaddr_copies)]]:
            with m.If(sh & c_valid & (real_x | row_end)):
                m.d.sync += cnt.eq(Mux(row_end, 0, cnt + 1))
        with m.If(advance & last_group):
            m.d.sync += [rx.eq(Mux(xf.last, 0, rx + 1)),
                         xf.eq(Mux(xf.last, x_init, x_next))]
        with m.If(advance & row_end):
            m.d.sync += [ry.eq(ry + 1), yf.eq(y_next)]
        with m.If(st[1]):
            m.d.sync += [c_valid.eq(1), first_pending.eq(1), ry.eq(0), rx.eq(0),
                         last_group.eq(raw["groups"] == 1), xf.eq(x_init), yf.eq(y_init),
                         *[cnt.eq(0) for cnt in [gc, *gc_copies, vaddr, *vaddr_copies]]]

        # --- memories -------------------------------------------------------------------
        # One memory per history column (horizontal: the H columns to the left of a
        # channel group) and per history row (vertical: the H pixels above a column's
        # channel group), each with a registered read (RegisteredMemory): read at stage C's
        # address every cycle, the word arrives two cycles later, when its position is in
        # R or E1, and is held in registers from then on. The write of a position happens
        # the cycle after it fires, from registers. So a position's read can miss the
        # writes of the last three or four positions before it: when the entry's writer is
        # that close — Gc (1 to 4) groups back in the horizontal memory, Gc·columns (2 to
        # 4, layers of width ≤ 3) in the vertical one — its word is taken from the
        # write-data registers instead, on the first cycle the position is in the stage
        # where that write is one to three cycles old ("near" selects, fixed per layer).
        parts = {"h": (column.size, gc_copies, self.horizontal_depth),
                 "v": (pix.size, vaddr_copies, self.vertical_depth)}
        mems = {p: [RegisteredMemory(width=width, depth=depth, ecp5_bram=self._ecp5_bram,
                                     name=f"{p}mem_{j}")
                    for j in range(H)]
                for p, (width, _, depth) in parts.items()}
        ro = Signal(hist)                    # the words read two cycles ago
        for p, (_, addrs, _) in parts.items():
            for j, mem in enumerate(mems[p]):
                mem.build(m)
                m.d.comb += [mem.r_addr.eq(addrs[j]), ro[p][j].eq(mem.r_data)]

        f1 = reg(1, "fire_d1")
        m.d.sync += f1.eq(fire)
        wr = data_reg(hist, "wr")            # write data of the position fired last cycle
        wr2 = data_reg(hist, "wr2")          # … two cycles ago
        wr3 = data_reg(hist, "wr3")          # … three cycles ago
        hr = data_reg(hist, "hr")            # R's history, when it arrived while in R
        hd1 = data_reg(hist, "hd1")          # E1's history
        hd0 = data_reg(hist, "hd0")          # E0's history
        m.d.sync += [wr2.eq(wr), wr3.eq(wr2)]

        # Selects for this cycle, registered the cycle before from: shift now (→ one
        # cycle ago), shift one cycle ago (→ two ago), fire two cycles ago (→ three ago).
        # A word read at C arrives two cycles later; it is R's if C shifted then but R did
        # not since (`cap`), E1's if both shifted. It lacks the write of the position 3
        # back (fired as it was read: in `wr2` on arrival) and of the one 4 back if that
        # fired the cycle before (in `wr3`). E1's misses the position 2 back (fired when E1
        # took it: in `wr`), E0's the one just before (in `wr`).
        # The registers' enables (`cap`, `ld1`, `ld0`) depend on this cycle's shift and
        # are copied per `chunk` bits. The selects among the sources depend only on the
        # shift and fire of earlier cycles and the layer's `near` flags, so they are
        # computed a cycle earlier still, into one register per memory, whose copies then
        # serve `fine` bits each: about two block RAMs' worth, so that a copy's
        # multiplexers sit together (one copy per 192 bits reached 3.5 ns from the copy to
        # the farthest of its multiplexers, two LUT levels before `hd1`: 6.68 ns).
        chunk = 192                          # bits per copy of an enable
        d1, d0 = Signal(hist), Signal(hist)
        for p in "hv":
            n1, n2, n3, n4 = (near.get(f"{p}{d}", Const(0)) for d in (1, 2, 3, 4))
            width = len(ro[p][0].as_value())
            fine = 2 * RegisteredMemory.port_width(mems[p][0].depth)
            for j in range(H):
                isl = f"{p}{j}"
                sh = shifts[isl]                 # this memory's own copy of `shift`
                sh1 = reg(1, f"shift_d1_{isl}")
                f1_ = reg(1, f"fire_d1_{isl}")
                m.d.sync += [sh1.eq(sh), f1_.eq(fires[isl])]
                # Each register loads (`cap`: hr, `ld1`: hd1, `ld0`: hd0) or holds as a
                # whole, with a registered select of its own as the flip-flops' enable; the
                # other selects choose among the sources given that it loads (they are
                # mutually exclusive). A hold written among the sources made Yosys derive
                # the enable from several selects through a shared LUT, whose output then
                # took 5.5 ns to reach the 192 enables of a copy.
                cond = {"cap": ~sh & sh1, "ld1": sh, "ld0": sh}
                # The others' values for the next cycle (shift one cycle ago is `sh` now,
                # fire two cycles ago is `f1_` now): position 4 back fired 3 cycles ago.
                late4 = n4 & f1_
                ahead = {
                    "cap_ro": ~n3 & ~late4, "cap_w2": n3,
                    "d1_ro": sh & ~n2 & ~n3 & ~late4, "d1_w1": n2, "d1_w2": sh & n3,
                    "d1_w3": sh & late4, "d0_w1": n1,
                }
                sel = {k: copies(v, -(-width // chunk), f"sel_{isl}_{k}")
                       for k, v in cond.items()}
                sel |= {k: copies(copies(v, 1, f"pre_{isl}_{k}")[0], -(-width // fine),
                                  f"sel_{isl}_{k}")
                        for k, v in ahead.items()}
                parts_d1, parts_d0, parts_hr = [], [], []
                for c in range(-(-width // fine)):
                    lo, hi = c * fine, min(width, (c + 1) * fine)
                    s_ = {k: v[c] for k, v in sel.items() if k in ahead}
                    s_ |= {k: sel[k][lo // chunk] for k in cond}

                    def bits(x, p=p, j=j, lo=lo, hi=hi):
                        return x[p][j].as_value()[lo:hi]

                    # The block RAM's word enters each register through one 2-input
                    # multiplexer; the other input is selected from registers only, on a
                    # wire Yosys keeps: otherwise abc may take the word into its first LUT
                    # level, which the placer then puts beside the block RAM, so that the
                    # selects went there and back (2 × 3 ns routes, 7.7 ns at 129.8 MHz).
                    other_r = Signal(hi - lo, name=f"other_hr_{isl}_{c}", attrs={"keep": 1})
                    other_1 = Signal(hi - lo, name=f"other_hd1_{isl}_{c}", attrs={"keep": 1})
                    m.d.comb += [
                        other_r.eq(Mux(s_["cap_w2"], bits(wr2), bits(wr3))),
                        other_1.eq(Mux(s_["d1_w1"], bits(wr), Mux(s_["d1_w2"], bits(wr2), Mux(
                            s_["d1_w3"], bits(wr3), bits(hr))))),
                    ]
                    parts_hr.append(Mux(s_["cap"], Mux(s_["cap_ro"], bits(ro), other_r),
                                        bits(hr)))
                    parts_d1.append(Mux(s_["ld1"], Mux(s_["d1_ro"], bits(ro), other_1),
                                        bits(hd1)))
                    parts_d0.append(Mux(s_["ld0"], Mux(s_["d0_w1"], bits(wr), bits(hd1)),
                                        bits(hd0)))
                m.d.sync += hr[p][j].eq(Cat(*parts_hr))
                m.d.comb += [d1[p][j].eq(Cat(*parts_d1)), d0[p][j].eq(Cat(*parts_d0))]
        m.d.sync += [hd1.eq(d1), hd0.eq(d0)]

        # --- E0: the window and the write-back --------------------------------------------
        new_col = Signal(column)
        for r in range(H):
            m.d.comb += new_col[r].eq(d0.v[r])
        m.d.comb += new_col[H].eq(self.i.payload)
        full = Signal(win_layout)
        for cc in range(H):
            m.d.comb += full[cc].eq(d0.h[cc])
        m.d.comb += full[H].eq(new_col)
        for cc in range(H - 1):
            m.d.sync += wr.h[cc].eq(d0.h[cc + 1])
        m.d.sync += wr.h[H - 1].eq(new_col)
        for r in range(H):
            m.d.sync += wr.v[r].eq(new_col[r + 1])
        w_gc = reg(gb, "w_gc")
        w_vaddr = reg(len(vaddr), "w_vaddr")
        w_v = reg(1, "w_v")
        m.d.sync += [w_gc.eq(e0.gc), w_vaddr.eq(e0.vaddr), w_v.eq(fire & e0.real_x)]
        for j in range(H):
            hm, vm = mems["h"][j], mems["v"][j]
            m.d.comb += [
                hm.w_addr.eq(w_gc), hm.w_data.eq(wr.h[j]), hm.w_en.eq(f1),
                vm.w_addr.eq(w_vaddr), vm.w_data.eq(wr.v[j]), vm.w_en.eq(w_v),
            ]

        # Per tap of the window: the tap itself (a), the tap two down and right (b: a 3×3
        # window of a 5×5 buffer is its bottom-right corner), or the zero point. The
        # selects are registered as E0 takes its position (so that `k5` drives 34 LUTs, not
        # every tap), and the zero point is copied per window column.
        off = KM - 3
        sel_a = reg(KM * KM, "e0_sel_a")
        sel_b = reg(KM * KM, "e0_sel_b")
        for cc in range(KM):
            for r in range(KM):
                n = cc * KM + r
                keep = e1.rows[r] & e1.cols[cc]
                with m.If(shifts["win"]):
                    if off and r < 3 and cc < 3:
                        m.d.sync += [
                            sel_a[n].eq(k5_win & keep),
                            sel_b[n].eq(~k5_win & e1.rows[r + off] & e1.cols[cc + off]),
                        ]
                    else:
                        m.d.sync += sel_a[n].eq(keep)
        zp_c = copies(zp, KM, "zp")
        placed = Signal(win_layout)
        for cc in range(KM):
            for r in range(KM):
                n = cc * KM + r
                alt = full[cc + off][r + off] if off and r < 3 and cc < 3 else None
                for lane in range(P):
                    tap = Mux(sel_a[n], full[cc][r][lane],
                              zp_c[cc] if alt is None else Mux(sel_b[n], alt[lane], zp_c[cc]))
                    m.d.comb += placed[cc][r][lane].eq(tap)

        # --- output: two window slots, the gearbox sends one as M windows of L lanes ------
        # The window of a firing position is taken by the free slot; a slot takes its input
        # whenever free, so its enable is a flip-flop (one copy per window column), not the
        # handshake. The position fires only if the previous window's last sub-window leaves
        # by this cycle, exactly as with a single window register, so the timing is that of
        # one register. The handshake state (valid, last sub-window, kernel5 of the window
        # on `o`) is kept in registers of its own; the output multiplexer's selects are
        # copied per window column.
        slot_layout = data.StructLayout({
            "taps": win_layout, "gc": gb, "kernel5": 1, "first": 1, "last": 1})
        slots = [data_reg(slot_layout, f"slot_{j}") for j in range(2)]
        full_slot = [reg(1, f"slot_{j}_busy") for j in range(2)]
        wptr, rptr = reg(1, "wptr"), reg(1, "rptr")
        sub = reg(range(max(2, M)), "sub")
        o_valid = reg(1, "o_valid")
        sub_last = reg(1, "sub_last", init=int(M == 1))
        o_k5 = reg(1, "o_kernel5")
        send = o_valid & self.o.ready
        done = send & sub_last               # the window on `o` leaves this cycle
        out_free = ~o_valid | (self.o.ready & sub_last)
        load = fire & e0.emit
        m.d.comb += self.i.ready.eq(e0.valid & e0.needs_in & (~e0.emit | out_free))
        busy_next = [(full_slot[j] & ~(done & (rptr == j))) | (load & (wptr == j))
                     for j in range(2)]
        rptr_next = rptr ^ done
        o_valid_next = Mux(rptr_next, busy_next[1], busy_next[0])
        sub_next = Mux(done, 0, Mux(send, sub + 1, sub))
        k5_next = [Mux(full_slot[j], slots[j].kernel5, k5_out) for j in range(2)]
        m.d.sync += [
            full_slot[0].eq(busy_next[0]), full_slot[1].eq(busy_next[1]),
            rptr.eq(rptr_next), wptr.eq(wptr ^ load), sub.eq(sub_next),
            o_valid.eq(o_valid_next),
            sub_last.eq(sub_next == M - 1),
            o_k5.eq(self.kernel5_next),
        ]
        m.d.comb += self.kernel5_next.eq(Mux(rptr_next, k5_next[1], k5_next[0]))
        with m.If(fire & e0.last_pos):
            m.d.sync += busy.eq(0)
        # fire = e0.valid & (~e0.needs_in | i.valid) & (~e0.emit | out_free) and shift =
        # fire | ~e0.valid, per island from four registers of its own holding the terms
        # that do not depend on the ports: shift = (no_input | i.valid) & (no_wait |
        # (sub_last & o.ready)), fire = valid & shift.
        valid_next = Mux(shift, e1.valid, e0.valid)
        no_input_next = Mux(shift, ~e1.valid | ~e1.needs_in, ~e0.valid | ~e0.needs_in)
        no_wait_next = ~valid_next | ~Mux(shift, e1.emit, e0.emit) | ~o_valid_next
        n_isl = len(islands)
        t_valid = copies(valid_next, n_isl, "fire_valid")
        t_no_input = copies(no_input_next, n_isl, "fire_no_input", init=1)
        t_no_wait = copies(no_wait_next, n_isl, "fire_no_wait", init=1)
        t_sub_last = copies(sub_next == M - 1, n_isl, "fire_sub_last", init=int(M == 1))
        for k, name in enumerate(islands):
            m.d.comb += [
                shifts[name].eq((t_no_input[k] | self.i.valid)
                                & (t_no_wait[k] | (t_sub_last[k] & self.o.ready))),
                fires[name].eq(t_valid[k] & shifts[name]),
            ]
        # The slots' enables, per window column from that column's copy of `fire`.
        free_c = [[Signal(name=f"slot_{j}_free_{cc}", init=1) for cc in range(KM)]
                  for j in range(2)]
        for cc in range(KM):
            load_c = fires[f"slot{cc}"] & e0.emit
            for j in range(2):
                m.d.sync += free_c[j][cc].eq(
                    ~((full_slot[j] & ~(done & (rptr == j))) | (load_c & (wptr == j))))
        for j in range(2):
            with m.If(~full_slot[j]):
                m.d.sync += [slots[j].gc.eq(e0.gc), slots[j].kernel5.eq(k5_out),
                             slots[j].first.eq(e0.first), slots[j].last.eq(e0.last_win)]
            for cc in range(KM):
                with m.If(free_c[j][cc]):
                    m.d.sync += slots[j].taps[cc].eq(placed[cc])
        rptr_c = copies(rptr_next, KM, "rptr")
        sub_c = [Signal.like(sub, name=f"sub_{cc}") for cc in range(KM)]
        for cc in range(KM):
            m.d.sync += sub_c[cc].eq(sub_c[cc] ^ (sub_c[cc] ^ sub_next))

        cur = Signal(slot_layout)
        m.d.comb += cur.eq(Mux(rptr, slots[1], slots[0]))
        o = self.o.payload
        m.d.comb += [
            self.o.valid.eq(o_valid),
            o.kernel5.eq(o_k5),
            o.first.eq(cur.first & (sub == 0)),
            o.last.eq(cur.last & sub_last),
            o.group.eq(Cat(sub[:_log2(M)], cur.gc) if M > 1 else cur.gc),
        ]
        for cc in range(KM):
            col = Mux(rptr_c[cc], slots[1].taps[cc].as_value(), slots[0].taps[cc].as_value())
            col = column(col)
            for r in range(KM):
                for lane in range(L):
                    if M == 1:
                        src = col[r][lane]
                    else:
                        choices = [col[r][j * L + lane] for j in range(M)]
                        src = choices[0]
                        for j in range(1, M):
                            src = Mux(sub_c[cc] == j, choices[j], src)
                    m.d.comb += o.taps[r][cc][lane].eq(src)

        # `taps_late`: the taps of the window on `o` one cycle later, from registered
        # one-hot selects (slot × sub-window) of the cycle before, copied per tap. The slot
        # on `o` is busy, so it does not load before the end of the next cycle: its taps
        # are still there, and a consumer that registers them then has a whole cycle for
        # the multiplexer and its route (in the depthwise engine this path, the selects'
        # copies → the multiplexer → the PE array's window register, took 9.8 ns).
        for cc in range(KM):
            for r in range(KM):
                pick = copies(Cat(*[(rptr == s_) & (sub == j) for s_ in range(2)
                                    for j in range(M)]), 1, f"pick_{cc}_{r}")[0]
                for lane in range(L):
                    terms = [Mux(pick[s_ * M + j], slots[s_].taps[cc][r][j * L + lane], 0)
                             for s_ in range(2) for j in range(M)]
                    acc = terms[0]
                    for t in terms[1:]:
                        acc = acc | t
                    m.d.comb += self.taps_late[r][cc][lane].eq(acc)
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
