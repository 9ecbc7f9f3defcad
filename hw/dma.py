"""AXI4 DMA engines: memory to stream (:class:`ReadDMA`), stream to memory
(:class:`WriteDMA`), and both on one AXI4 manager port (:class:`DMA`).

A command is a byte address and a byte length. The address must be aligned to the bus
width (``data_width // 8`` bytes): the compiler's memory map aligns every tensor, and an
aligned start keeps the datapath free of byte-rotation networks. The length may be any
positive number of bytes; reads round it up to whole beats (the bytes after the end in the
last beat are whatever memory holds there), writes mask them with ``wstrb``. A command that
breaks either rule is dropped and reported on ``status`` (no data, no ``done``).

Each command is cut into INCR bursts of at most ``max_burst`` beats that never cross a
4 KB boundary (AXI4 forbids it): bursts end at multiples of ``max_burst_beats`` beats
(which divides the page), so only a command's first and last bursts can be shorter. They
are issued back to back with up to ``max_outstanding`` bursts in flight, so the memory
sees a new request while it still serves the previous ones.
See ``docs/hw/dma.md`` for the diagram and the measured throughput.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from mnaccel.hw._checks import is_pow2
from mnaccel.hw.axi import AXI4Signature, Burst, Resp

__all__ = [
    "DMA",
    "ErrorCode",
    "ReadDMA",
    "WriteDMA",
    "command_layout",
    "done_layout",
    "read_data_layout",
    "status_layout",
    "write_data_layout",
]

#: AXI4's largest INCR burst and the page no burst may cross.
MAX_BURST = 256
PAGE_BYTES = 4096
#: ``AxCACHE`` of every request: normal non-cacheable bufferable memory (ARM's recommended
#: value for a DMA's data; lets the interconnect merge and buffer).
CACHE_NORMAL_BUFFERABLE = 0b0011


class ErrorCode(enum.Enum, shape=3):
    """The first error an engine saw since reset or ``clear``."""

    NONE = 0
    SLVERR = 1  #: a response was SLVERR (subordinate error)
    DECERR = 2  #: a response was DECERR (no subordinate at the address)
    UNALIGNED = 3  #: a command's address was not a multiple of the bus width in bytes
    ZERO_LENGTH = 4  #: a command had length 0


def command_layout(addr_width: int, len_width: int) -> data.StructLayout:
    """Command payload: ``addr`` (bytes, bus-width aligned) and ``length`` (bytes, > 0)."""
    return data.StructLayout({"addr": addr_width, "length": len_width})


def read_data_layout(data_width: int) -> data.StructLayout:
    """Read data payload: one beat, little-endian bytes, ``last`` on a command's last beat."""
    return data.StructLayout({"data": data_width, "last": 1})


def write_data_layout(data_width: int) -> data.StructLayout:
    """Write data payload: one beat, little-endian bytes; ``ceil(length / bytes)`` per command."""
    return data.StructLayout({"data": data_width})


def done_layout() -> data.StructLayout:
    """Write completion: the worst ``BRESP`` of the command's bursts."""
    return data.StructLayout({"resp": Resp})


def status_layout() -> data.StructLayout:
    """Engine status: ``busy`` (a command, a burst or data still pending), sticky ``error``
    and the first error's ``code``."""
    return data.StructLayout({"busy": 1, "error": 1, "code": ErrorCode})


def _check(name, value, ok, what):
    if not isinstance(value, int) or isinstance(value, bool) or not ok(value):
        raise ValueError(f"{name} must be {what}, not {value!r}")
    return value


class _Params:
    """Constructor checks shared by the engines."""

    def _init_params(self, data_width, addr_width, len_width, max_burst, max_outstanding,
                     fifo_depth, id_width):
        self._data_width = _check("data_width", data_width, lambda v: v in (32, 64, 128, 256,
                                  512), "32, 64, 128, 256 or 512")
        self._addr_width = _check("addr_width", addr_width, lambda v: 12 <= v <= 64,
                                  "in [12, 64]")
        self._len_width = _check("len_width", len_width, lambda v: 1 <= v <= addr_width,
                                 f"in [1, addr_width={addr_width}]")
        self._max_burst = _check("max_burst", max_burst,
                                 lambda v: is_pow2(v) and v <= MAX_BURST,
                                 "a power of two in [1, 256]")
        self._max_outstanding = _check("max_outstanding", max_outstanding,
                                       lambda v: 1 <= v <= 64, "in [1, 64]")
        self._fifo_depth = _check("fifo_depth", fifo_depth, lambda v: 2 <= v <= 4096,
                                  "in [2, 4096]")
        self._id_width = _check("id_width", id_width, lambda v: 1 <= v <= 16, "in [1, 16]")

    @property
    def data_width(self) -> int:
        return self._data_width

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def len_width(self) -> int:
        return self._len_width

    @property
    def max_burst(self) -> int:
        return self._max_burst

    @property
    def max_outstanding(self) -> int:
        return self._max_outstanding

    @property
    def fifo_depth(self) -> int:
        return self._fifo_depth

    @property
    def bytes_per_beat(self) -> int:
        return self._data_width // 8

    @property
    def beats_per_cycle(self) -> int:
        """Sustained data beats per cycle with a zero-wait memory and no backpressure: 1."""
        return 1

    @property
    def command_latency(self) -> int:
        """Cycles from a command's handshake to its first address-channel ``valid``: 3
        (a command register, the splitter's next-burst registers, the burst register)."""
        return 3

    @property
    def max_burst_beats(self) -> int:
        """Longest burst issued: ``max_burst``, or fewer if a 4 KB page holds fewer beats."""
        return min(self._max_burst, PAGE_BYTES // self.bytes_per_beat)

    @classmethod
    def _config_kwargs(cls, config, kwargs):
        return {"data_width": config.axi_data_width, "addr_width": config.axi_addr_width,
                "max_outstanding": config.axi_max_outstanding, **kwargs}


class _BurstSplitter(Elaboratable):
    """Cuts commands into bursts; the burst register is an address channel's source.

    ``out_valid``/``out_*`` is a register that holds a burst until ``out_ready`` (so it can
    drive ``AxVALID`` directly: once raised it stays up until the handshake). A new burst
    is loaded only while ``issue_en``. A command may be taken in the cycle that issues the
    previous command's last burst, so single-burst commands issue one per cycle.

    Bursts end at multiples of ``max_burst`` beats (``max_burst`` is a power of two that
    divides the 4 KB page, so no burst crosses a page): the first burst of a command runs
    to the next such boundary, the following ones are ``max_burst`` beats long, the last
    one takes the rest. Because every burst after the first starts on a boundary, the
    address after it is an increment of the address bits above the boundary and its length
    bound is the constant ``max_burst``, so the next burst's length and ``last`` flag are
    computed a cycle ahead, from registers, beside the address increment (one carry chain
    each, in parallel) instead of a compare, a mux and a 32-bit add in series. Commands
    pass through a one-entry command register first (beats and first-burst room computed
    from the port), which the splitter empties in the cycle it issues the previous
    command's last burst.
    """

    def __init__(self, *, addr_width, len_width, bytes_per_beat, max_burst):
        self.addr_width = addr_width
        self.shift = (bytes_per_beat - 1).bit_length()
        self.bytes_per_beat = bytes_per_beat
        self.max_burst = min(max_burst, PAGE_BYTES // bytes_per_beat)
        beats_width = max(len_width - self.shift, 0) + 1
        self.cmd = stream.Signature(command_layout(addr_width, len_width)).flip().create()
        self.abort = Signal()
        self.issue_en = Signal(init=1)  # registered by the engine
        self.out_valid = Signal()
        self.out_ready = Signal()
        self.out_addr = Signal(addr_width)
        self.out_len = Signal(8)  # AxLEN: beats - 1
        self.out_last = Signal()  # last burst of its command
        self.out_tail = Signal(max(self.shift, 1))  # bytes used in the command's last beat
        self.load = Signal()  # a burst enters the register this cycle
        self.active = Signal()
        self.reject = Signal()
        self.reject_code = Signal(ErrorCode)
        self._beats_width = beats_width

    def elaborate(self, platform):
        m = Module()
        s = self.shift
        k = (self.max_burst - 1).bit_length()  # log2(max_burst)
        top = s + k  # address bits above the burst boundary
        M = self.max_burst

        # Stage 1, a command register: the command's beats and the beats to its first
        # boundary, computed from the port so the splitter starts from registers only.
        p_valid = Signal()
        p_addr = Signal(self.addr_width)
        p_beats = Signal(self._beats_width)
        p_room = Signal(range(M + 1))
        p_tail = Signal.like(self.out_tail)
        p_single = Signal()  # the command is one burst
        p_len_m1 = Signal(8)  # its first burst's AxLEN

        # Stage 2, the splitter: the burst it will issue next, with its length and whether
        # it is its command's last computed a cycle ahead (the compare that decides `last`
        # feeds the handshake logic and every state register's enable).
        active = Signal()
        addr = Signal(self.addr_width)
        # Beats left after the next burst; only meaningful while that burst is not the
        # last (then it is positive), so it wraps harmlessly after the last.
        rest = Signal(self._beats_width)
        last = Signal()  # the next burst is the command's last
        len_m1 = Signal(8)  # its AxLEN
        tail = Signal.like(self.out_tail)
        m.d.comb += self.active.eq(active | p_valid)

        # `rest <= M` without a carry chain: M is a power of two.
        rest_le_M = Signal()
        m.d.comb += rest_le_M.eq(~rest[k + 1:].any() & (~rest[k] | ~rest[:k].any()))

        free = ~self.out_valid | self.out_ready
        m.d.comb += self.load.eq(active & ~self.abort & self.issue_en & free)
        with m.If(self.out_valid & self.out_ready):
            m.d.sync += self.out_valid.eq(0)
        with m.If(self.load):
            m.d.sync += [
                self.out_valid.eq(1),
                self.out_addr.eq(addr),
                self.out_len.eq(len_m1),
                self.out_last.eq(last),
                self.out_tail.eq(tail),
                # The following burst starts on a boundary and is at most M beats.
                addr.eq(Cat(Const(0, top), addr[top:] + 1)),
                rest.eq(rest - M),
                last.eq(rest_le_M),
                len_m1.eq(Mux(rest_le_M, rest[:8] - 1, M - 1)),
            ]
            with m.If(last):
                m.d.sync += active.eq(0)

        # The splitter takes the next command when idle or as it issues the last burst.
        take = Signal()
        m.d.comb += take.eq(p_valid & ~self.abort & (~active | (self.load & last)))
        with m.If(take):
            m.d.sync += [
                active.eq(1),
                addr.eq(p_addr),
                rest.eq(p_beats - p_room),
                last.eq(p_single),
                len_m1.eq(p_len_m1),
                tail.eq(p_tail),
            ]
        with m.If(self.abort):
            m.d.sync += active.eq(0)

        # Take a command into stage 1 when it is empty or being emptied, or to drop it.
        m.d.comb += self.cmd.ready.eq(~p_valid | take | self.abort)
        with m.If(take | self.abort):
            m.d.sync += p_valid.eq(0)
        length = self.cmd.payload.length
        cmd_addr = self.cmd.payload.addr
        misaligned = cmd_addr[:s].any() if s else Const(0)
        end = Signal(max(len(length), top) + 1)  # bytes from the boundary below addr
        m.d.comb += end.eq(cmd_addr[:top] + length)  # to the command's end
        # One burst if the bytes fit before the boundary, end <= 2**top, tested on the
        # bits (2**top is a power of two).
        fits = Signal()
        m.d.comb += fits.eq(~end[top + 1:].any() & (~end[top] | ~end[:top].any()))
        with m.If(self.cmd.valid & self.cmd.ready & ~self.abort):
            with m.If(misaligned):
                m.d.comb += [self.reject.eq(1), self.reject_code.eq(ErrorCode.UNALIGNED)]
            with m.Elif(length == 0):
                m.d.comb += [self.reject.eq(1), self.reject_code.eq(ErrorCode.ZERO_LENGTH)]
            with m.Else():
                m.d.sync += p_valid.eq(1)
        # The command's fields load whenever stage 1 can take one (they matter only with
        # `p_valid`), which keeps the checks and `valid` off their enables.
        with m.If(self.cmd.ready):
            m.d.sync += [
                p_addr.eq(cmd_addr),
                p_beats.eq((length + (self.bytes_per_beat - 1)) >> s),
                p_tail.eq(length[:s] if s else 0),
                p_room.eq(M - cmd_addr[s:top] if k else 1),
                p_single.eq(fits),
                # beats - 1 = (length - 1) >> s if so, else room - 1 = ~addr[s:top].
                p_len_m1.eq(Mux(fits, (length[:8 + s] - 1) >> s,
                                ~cmd_addr[s:top] if k else 0)),
            ]
        return m


def _error_register(m, status, clear, events):
    """Sticky ``status.error`` with the first event's code; ``events`` is a list of
    ``(condition, code)`` in priority order."""
    hit = Signal()
    code = Signal(ErrorCode)
    for cond, value in reversed(events):
        with m.If(cond):
            m.d.comb += [hit.eq(1), code.eq(value)]
    with m.If(clear):
        m.d.sync += [status.error.eq(0), status.code.eq(ErrorCode.NONE)]
    with m.Elif(hit & ~status.error):
        m.d.sync += [status.error.eq(1), status.code.eq(code)]


def _resp_error(resp):
    """The :class:`ErrorCode` of a response value and whether it is an error."""
    return resp == Resp.SLVERR, resp == Resp.DECERR


class ReadDMA(wiring.Component, _Params):
    """AXI4 read DMA: commands in, the bytes they name out as a stream of bus-wide beats.

    Parameters
    ----------
    data_width : int
        AXI data width and beat width in bits: 32, 64, 128, 256 or 512.
    addr_width : int
        AXI address width in bits, 12…64.
    len_width : int
        Width of a command's byte length (commands up to ``2**len_width - 1`` bytes).
    max_burst : int
        Longest burst in beats, a power of two ≤ 256 (bursts are also cut at 4 KB pages).
    max_outstanding : int
        Bursts issued and not yet fully received, at most. With a memory that answers
        ``L`` cycles after a request, ``max_outstanding * burst beats >= L`` keeps the read
        channel busy.
    fifo_depth : int
        Beats of the output FIFO between R and ``o`` (registers ``rready`` and ``o``).
    id_width : int
        ``ARID`` width; every request uses ID 0, so responses come back in order.

    Members
    -------
    cmd : In(stream.Signature(command_layout(addr_width, len_width)))
        Commands: byte ``addr`` (aligned to ``data_width // 8``) and byte ``length`` (> 0).
    o : Out(stream.Signature(read_data_layout(data_width)))
        ``ceil(length / (data_width // 8))`` beats per command, in order, ``last`` on the
        command's last beat. Bytes are little-endian: byte ``k`` of a beat is bits
        ``8k…8k+7``.
    status : Out(status_layout())
        ``busy``: a command, a burst in flight or undelivered data; ``error``/``code``:
        the first SLVERR/DECERR response (its data is delivered anyway) or rejected
        command (dropped: no data) since reset or ``clear``.
    clear : In(1)
        Clears ``status.error`` and ``status.code``.
    abort : In(1)
        While high: no new burst is issued, pending and new commands are dropped, beats
        of bursts in flight and beats in the output FIFO are discarded. ``status.busy``
        falls once every issued burst has completed; then the engine is idle and clean.
    axi : Out(AXI4Signature(addr_width, data_width, id_width, write=False))
        The AXI4 read channels (AR, R).

    Attributes
    ----------
    beats_per_cycle : int
        Sustained ``o`` beats per cycle from a zero-wait memory without backpressure: 1,
        also across commands and bursts (measured: ``tests/hw/test_dma.py``).
    command_latency : int
        Cycles from a command's handshake to its ``arvalid``: 3.
    max_burst_beats : int
        Longest burst actually issued (``max_burst`` capped at one 4 KB page).
    """

    def __init__(self, *, data_width: int = 128, addr_width: int = 32, len_width: int = 24,
                 max_burst: int = MAX_BURST, max_outstanding: int = 4, fifo_depth: int = 4,
                 id_width: int = 1):
        self._init_params(data_width, addr_width, len_width, max_burst, max_outstanding,
                          fifo_depth, id_width)
        super().__init__({
            "cmd": In(stream.Signature(command_layout(addr_width, len_width))),
            "o": Out(stream.Signature(read_data_layout(data_width))),
            "status": Out(status_layout()),
            "clear": In(1),
            "abort": In(1),
            "axi": Out(AXI4Signature(addr_width=addr_width, data_width=data_width,
                                     id_width=id_width, write=False)),
        })

    @classmethod
    def from_config(cls, config, **kwargs) -> ReadDMA:
        """A read DMA on ``config.axi_data_width`` / ``axi_addr_width``."""
        return cls(**cls._config_kwargs(config, kwargs))

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        m.submodules.split = split = _BurstSplitter(
            addr_width=self.addr_width, len_width=self.len_width,
            bytes_per_beat=self.bytes_per_beat, max_burst=self.max_burst)
        # One entry per burst on AR (ID 0: in-order): is it its command's last?
        m.submodules.bursts = bursts = SyncFIFO(width=1, depth=self.max_outstanding)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.data_width + 1,
                                                    depth=self.fifo_depth)

        wiring.connect(m, wiring.flipped(self.cmd), split.cmd)
        m.d.comb += split.abort.eq(self.abort)

        # Bursts from their issue until their last beat arrives. Counting from the load
        # into the AR register keeps the burst FIFO from ever filling.
        outstanding = Signal(range(self.max_outstanding + 1))
        r_done = Signal()
        # `issue_en` is registered: `outstanding < max_outstanding` of the next cycle.
        next_outstanding = outstanding + split.load - r_done
        m.d.sync += [outstanding.eq(next_outstanding),
                     split.issue_en.eq(next_outstanding < self.max_outstanding)]

        m.d.comb += [
            axi.arid.eq(0),
            axi.araddr.eq(split.out_addr),
            axi.arlen.eq(split.out_len),
            axi.arsize.eq(self.bytes_per_beat.bit_length() - 1),
            axi.arburst.eq(Burst.INCR),
            axi.arcache.eq(CACHE_NORMAL_BUFFERABLE),
            axi.arvalid.eq(split.out_valid),
            split.out_ready.eq(axi.arready),
            bursts.w_en.eq(axi.arvalid & axi.arready),
            bursts.w_data.eq(split.out_last),
        ]

        # R: into the FIFO, or dropped while aborting. Gating on the burst FIFO guards
        # against a response nobody asked for.
        r_fire = Signal()
        m.d.comb += [
            axi.rready.eq(bursts.r_rdy & (fifo.w_rdy | self.abort)),
            r_fire.eq(axi.rvalid & axi.rready),
            r_done.eq(r_fire & axi.rlast),
            bursts.r_en.eq(r_done),
            fifo.w_en.eq(r_fire & ~self.abort),
            fifo.w_data.eq(Cat(axi.rdata, axi.rlast & bursts.r_data)),
            self.o.valid.eq(fifo.r_rdy & ~self.abort),
            self.o.payload.data.eq(fifo.r_data[:self.data_width]),
            self.o.payload.last.eq(fifo.r_data[self.data_width]),
            fifo.r_en.eq(self.o.ready | self.abort),
        ]

        slverr, decerr = _resp_error(axi.rresp)
        _error_register(m, self.status, self.clear, [
            (r_fire & slverr, ErrorCode.SLVERR),
            (r_fire & decerr, ErrorCode.DECERR),
            (split.reject, split.reject_code),
        ])
        m.d.comb += self.status.busy.eq(split.active | split.out_valid | (outstanding != 0)
                                        | fifo.r_rdy)
        return m


class WriteDMA(wiring.Component, _Params):
    """AXI4 write DMA: commands and a data stream in, bursts to memory, a ``done`` per command.

    Parameters
    ----------
    data_width, addr_width, len_width, max_burst, id_width : int
        As for :class:`ReadDMA`.
    max_outstanding : int
        Bursts issued on AW and not yet answered on B, at most.
    fifo_depth : int
        Beats of the input FIFO between ``i`` and W.

    Members
    -------
    cmd : In(stream.Signature(command_layout(addr_width, len_width)))
        Commands: byte ``addr`` (aligned to ``data_width // 8``) and byte ``length`` (> 0).
    i : In(stream.Signature(write_data_layout(data_width)))
        ``ceil(length / (data_width // 8))`` beats per command, in command order; bytes of
        the last beat past ``length`` are not written (``wstrb`` low).
    done : Out(stream.Signature(done_layout()))
        One completion per command, in order, after the B response of its last burst;
        ``resp`` is the worst response of its bursts.
    status : Out(status_layout())
        ``busy``: a command, a burst or a response pending; ``error``/``code``: the first
        SLVERR/DECERR response or rejected command (dropped: its data is not consumed, no
        ``done``) since reset or ``clear``.
    clear : In(1)
        Clears ``status.error`` and ``status.code``.
    abort : In(1)
        While high: no new burst is issued, pending and new commands are dropped, ``i``
        is consumed and discarded, beats still owed to bursts already issued go out with
        ``wstrb`` all low (AXI requires them), completions pending on ``done`` or arriving
        are discarded. ``status.busy`` falls once every burst's B response has arrived.
    axi : Out(AXI4Signature(addr_width, data_width, id_width, read=False))
        The AXI4 write channels (AW, W, B). W beats of a burst follow its AW handshake.

    Attributes
    ----------
    beats_per_cycle : int
        Sustained W beats per cycle to a zero-wait memory with ``i`` always valid: 1.
    command_latency : int
        Cycles from a command's handshake to its ``awvalid``: 3.
    max_burst_beats : int
        Longest burst actually issued.
    """

    def __init__(self, *, data_width: int = 128, addr_width: int = 32, len_width: int = 24,
                 max_burst: int = MAX_BURST, max_outstanding: int = 4, fifo_depth: int = 4,
                 id_width: int = 1):
        self._init_params(data_width, addr_width, len_width, max_burst, max_outstanding,
                          fifo_depth, id_width)
        super().__init__({
            "cmd": In(stream.Signature(command_layout(addr_width, len_width))),
            "i": In(stream.Signature(write_data_layout(data_width))),
            "done": Out(stream.Signature(done_layout())),
            "status": Out(status_layout()),
            "clear": In(1),
            "abort": In(1),
            "axi": Out(AXI4Signature(addr_width=addr_width, data_width=data_width,
                                     id_width=id_width, read=False)),
        })

    @classmethod
    def from_config(cls, config, **kwargs) -> WriteDMA:
        """A write DMA on ``config.axi_data_width`` / ``axi_addr_width``."""
        return cls(**cls._config_kwargs(config, kwargs))

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        nbytes = self.bytes_per_beat
        split = _BurstSplitter(addr_width=self.addr_width, len_width=self.len_width,
                               bytes_per_beat=nbytes, max_burst=self.max_burst)
        m.submodules.split = split
        # Per burst on AW, for W: its AxLEN, whether it has one or two beats, and the
        # strobe of its last beat (the command's tail bytes if it is the command's last
        # burst). Precomputed here so that after the LUT-RAM read only a mux remains.
        full_strb = (1 << nbytes) - 1
        # Bytes [0, tail) of a command's last beat, all of them when tail is 0.
        tail_strb = Signal(nbytes)
        m.d.comb += tail_strb.eq(Mux(split.out_tail == 0, full_strb,
                                     ~(Const(full_strb, nbytes) << split.out_tail)[:nbytes]))
        end_strb = Mux(split.out_last, tail_strb, full_strb)
        m.submodules.w_bursts = w_bursts = SyncFIFO(width=8 + 2 + nbytes,
                                                    depth=self.max_outstanding)
        m.submodules.b_bursts = b_bursts = SyncFIFO(width=1, depth=self.max_outstanding)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.data_width,
                                                    depth=self.fifo_depth)
        m.submodules.done_fifo = done_fifo = SyncFIFO(width=2, depth=self.max_outstanding)

        wiring.connect(m, wiring.flipped(self.cmd), split.cmd)
        m.d.comb += split.abort.eq(self.abort)

        outstanding = Signal(range(self.max_outstanding + 1))
        b_fire = Signal()
        # `issue_en` is registered: `outstanding < max_outstanding` of the next cycle.
        next_outstanding = outstanding + split.load - b_fire
        m.d.sync += [outstanding.eq(next_outstanding),
                     split.issue_en.eq(next_outstanding < self.max_outstanding)]

        aw_fire = Signal()
        m.d.comb += [
            axi.awid.eq(0),
            axi.awaddr.eq(split.out_addr),
            axi.awlen.eq(split.out_len),
            axi.awsize.eq(nbytes.bit_length() - 1),
            axi.awburst.eq(Burst.INCR),
            axi.awcache.eq(CACHE_NORMAL_BUFFERABLE),
            axi.awvalid.eq(split.out_valid),
            split.out_ready.eq(axi.awready),
            aw_fire.eq(axi.awvalid & axi.awready),
            w_bursts.w_en.eq(aw_fire),
            w_bursts.w_data.eq(Cat(split.out_len, split.out_len == 0, split.out_len == 1,
                                   end_strb)),
            b_bursts.w_en.eq(aw_fire),
            b_bursts.w_data.eq(split.out_last),
        ]

        # Input: into the FIFO, or consumed and dropped while aborting.
        m.d.comb += [
            self.i.ready.eq(fifo.w_rdy | self.abort),
            fifo.w_en.eq(self.i.valid & ~self.abort),
            fifo.w_data.eq(self.i.payload.data),
        ]

        # W: an output register, loaded when empty or being taken, so that abort can
        # never change a beat that is already on the bus.
        w_len = w_bursts.r_data[:8]
        w_one = w_bursts.r_data[8]
        w_two = w_bursts.r_data[9]
        w_end_strb = w_bursts.r_data[10:10 + nbytes]
        # Within a burst (`mid`), `left` beats are still to load and `left_one` is
        # `left == 1`, both registered, so the end of a burst is known without comparing
        # a counter with the LUT-RAM's output.
        mid = Signal()
        left = Signal(8)
        left_one = Signal()
        end_of_burst = Signal()
        m.d.comb += end_of_burst.eq(Mux(mid, left_one, w_one))
        strb = Mux(end_of_burst, w_end_strb, full_strb)
        w_free = ~axi.wvalid | axi.wready
        have_beat = Mux(self.abort, 1, fifo.r_rdy)
        w_load = Signal()
        m.d.comb += [
            w_load.eq(w_free & w_bursts.r_rdy & have_beat),
            fifo.r_en.eq(w_load | self.abort),
            w_bursts.r_en.eq(w_load & end_of_burst),
        ]
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += axi.wvalid.eq(0)
        # The beat's bits are loaded whenever the register is free (they matter only
        # with `wvalid`), which keeps the wide data enable off the handshake logic.
        with m.If(w_free):
            m.d.sync += [
                axi.wdata.eq(Mux(self.abort, 0, fifo.r_data)),
                axi.wstrb.eq(Mux(self.abort, 0, strb)),
                axi.wlast.eq(end_of_burst),
            ]
        with m.If(w_load):
            m.d.sync += [
                axi.wvalid.eq(1),
                mid.eq(~end_of_burst),
            ]
            with m.If(mid):
                m.d.sync += [left.eq(left - 1), left_one.eq(left == 2)]
            with m.Else():
                m.d.sync += [left.eq(w_len), left_one.eq(w_two)]

        # B: collect the worst response per command; a completion per command's last burst.
        worst = Signal(Resp)
        merged = Signal(Resp)
        m.d.comb += [
            axi.bready.eq(b_bursts.r_rdy & done_fifo.w_rdy),
            b_fire.eq(axi.bvalid & axi.bready),
            b_bursts.r_en.eq(b_fire),
            merged.eq(Mux(axi.bresp.as_value() > worst.as_value(), axi.bresp, worst)),
            done_fifo.w_en.eq(b_fire & b_bursts.r_data & ~self.abort),
            done_fifo.w_data.eq(merged),
            self.done.valid.eq(done_fifo.r_rdy & ~self.abort),
            self.done.payload.resp.eq(done_fifo.r_data),
            done_fifo.r_en.eq(self.done.ready | self.abort),
        ]
        with m.If(b_fire):
            m.d.sync += worst.eq(Mux(b_bursts.r_data, Resp.OKAY, merged))

        slverr, decerr = _resp_error(axi.bresp)
        _error_register(m, self.status, self.clear, [
            (b_fire & slverr, ErrorCode.SLVERR),
            (b_fire & decerr, ErrorCode.DECERR),
            (split.reject, split.reject_code),
        ])
        m.d.comb += self.status.busy.eq(split.active | split.out_valid | (outstanding != 0)
                                        | fifo.r_rdy | axi.wvalid)
        return m


class DMA(wiring.Component, _Params):
    """A :class:`ReadDMA` and a :class:`WriteDMA` sharing one AXI4 manager port.

    The two engines are independent (AXI's read and write channels are); the accelerator's
    scheduler uses this one as its only path to external memory.

    Parameters
    ----------
    data_width, addr_width, len_width, max_burst, max_outstanding, fifo_depth, id_width
        As for :class:`ReadDMA`; both engines get the same values.

    Members
    -------
    rd_cmd : In(stream.Signature(command_layout(addr_width, len_width)))
        The read engine's ``cmd``.
    rd_data : Out(stream.Signature(read_data_layout(data_width)))
        The read engine's ``o``.
    rd_status : Out(status_layout())
        The read engine's ``status``.
    wr_cmd : In(stream.Signature(command_layout(addr_width, len_width)))
        The write engine's ``cmd``.
    wr_data : In(stream.Signature(write_data_layout(data_width)))
        The write engine's ``i``.
    wr_done : Out(stream.Signature(done_layout()))
        The write engine's ``done``.
    wr_status : Out(status_layout())
        The write engine's ``status``.
    clear : In(1)
        Clears both engines' errors.
    abort : In(1)
        Aborts both engines (see :class:`ReadDMA` and :class:`WriteDMA`).
    m_axi : Out(AXI4Signature(addr_width, data_width, id_width))
        The AXI4 manager port (Verilog ``m_axi__awaddr``, …).

    Attributes
    ----------
    beats_per_cycle : int
        Sustained beats per cycle in each direction: 1 (read and write may run at once).
    command_latency : int
        Cycles from a command's handshake to its address-channel ``valid``: 3.
    max_burst_beats : int
        Longest burst actually issued.
    """

    def __init__(self, *, data_width: int = 128, addr_width: int = 32, len_width: int = 24,
                 max_burst: int = MAX_BURST, max_outstanding: int = 4, fifo_depth: int = 4,
                 id_width: int = 1):
        self._init_params(data_width, addr_width, len_width, max_burst, max_outstanding,
                          fifo_depth, id_width)
        self._kwargs = dict(data_width=data_width, addr_width=addr_width, len_width=len_width,
                            max_burst=max_burst, max_outstanding=max_outstanding,
                            fifo_depth=fifo_depth, id_width=id_width)
        cmd = command_layout(addr_width, len_width)
        super().__init__({
            "rd_cmd": In(stream.Signature(cmd)),
            "rd_data": Out(stream.Signature(read_data_layout(data_width))),
            "rd_status": Out(status_layout()),
            "wr_cmd": In(stream.Signature(cmd)),
            "wr_data": In(stream.Signature(write_data_layout(data_width))),
            "wr_done": Out(stream.Signature(done_layout())),
            "wr_status": Out(status_layout()),
            "clear": In(1),
            "abort": In(1),
            "m_axi": Out(AXI4Signature(addr_width=addr_width, data_width=data_width,
                                       id_width=id_width)),
        })

    @classmethod
    def from_config(cls, config, **kwargs) -> DMA:
        """Both engines on ``config.axi_data_width`` / ``axi_addr_width``."""
        return cls(**cls._config_kwargs(config, kwargs))

    def elaborate(self, platform):
        m = Module()
        m.submodules.rd = rd = ReadDMA(**self._kwargs)
        m.submodules.wr = wr = WriteDMA(**self._kwargs)
        wiring.connect(m, wiring.flipped(self.rd_cmd), rd.cmd)
        wiring.connect(m, rd.o, wiring.flipped(self.rd_data))
        wiring.connect(m, wiring.flipped(self.wr_cmd), wr.cmd)
        wiring.connect(m, wiring.flipped(self.wr_data), wr.i)
        wiring.connect(m, wr.done, wiring.flipped(self.wr_done))
        m.d.comb += [
            self.rd_status.eq(rd.status),
            self.wr_status.eq(wr.status),
            rd.clear.eq(self.clear),
            wr.clear.eq(self.clear),
            rd.abort.eq(self.abort),
            wr.abort.eq(self.abort),
        ]
        # Each engine owns one half of the port; copy every member in its direction.
        for engine in (rd, wr):
            for name, member in engine.axi.signature.members.items():
                inner, outer = getattr(engine.axi, name), getattr(self.m_axi, name)
                if member.flow == wiring.Out:
                    m.d.comb += outer.eq(inner)
                else:
                    m.d.comb += inner.eq(outer)
        return m
