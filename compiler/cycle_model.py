# amaranth: UnusedElaboratable=no
# (The blocks are built here only to read their timing properties, never elaborated.)
"""Cycle model of a compiled plan: what the scheduler gateware does, engine by engine.

A step (one descriptor) is simulated at the grain of the scheduler's engines
(hw/scheduler.py), each from the timing properties of the blocks it drives and the step's
tiling, never from a measured cycle count:

* **read path** — the scheduler's command port, the DMA (``command_latency``, bursts of
  ``max_burst_beats``, at most ``max_outstanding`` bursts in flight), the memory
  (:class:`Memory`: request → data latency, requests it queues) and the DMA's output FIFO.
  Commands are served in order, one beat per cycle. The depthwise weights and parameter
  records are consumed beat by beat (their unpacking takes a cycle per entry), so they are
  walked cycle by cycle; every other consumer takes a beat per cycle (credits).
* **read issuer** — per tile the activation read (``PW``/``FC``/``POOL``), then per
  output-channel chunk its parameter records and ``K`` weight tiles (none for ``POOL`` and
  ``DW``, whose identity tiles the scheduler makes), each command issued
  once its FIFO has room: the weight FIFO frees as the array loads weight rows, the
  parameter FIFO as the banks load records (a bank frees when its chunk's last sum has
  been requantized).
* **producers** — ``PW``/``FC``/``POOL``: the activation read. ``DW_PW``, ``DW``: the line buffer's
  position-by-position walk (:func:`lb_walk`, the walk of ``LineBuffer.frame_cycles``, fed
  from the input reads in chunks of ``LB_CHUNK_BEATS``), ``DepthwiseLayer.latency`` to
  the int8 outputs, packed into buffer words; a producer ahead of the array stalls until
  its half of the activation buffer is released. ``CONV0``: the walk, the vector adapter
  and the words of each 27-byte vector.
* **pointwise array** — ``for j: for k: for p`` one beat per cycle, a weight tile swapped
  in once its ``weight_load_cycles`` rows are loaded (they load while the previous tile
  computes), a tile's first beat the cycle after its half is full. The array stalls (all
  of it) while a finished pixel's ``pw_cols`` sums are cut into ``pw_cols / rq_lanes``
  requantizer beats: ``pw_cols / rq_lanes − 1`` cycles per output pixel. Times are kept
  in *enabled* cycles (the array advances) and mapped to clock cycles by those stalls.
* **write-back** — a full output half (its last requantized beat + 1) is one write
  command; the data go out one beat per cycle through the write DMA; the step ends when
  the last write's response is back.

``model(plan)`` uses a typical DDR memory (:data:`DRAM`); ``model(plan, memory=AXIRAM)``
the cocotbext-axi ``AxiRam`` of the system bench, whose timing was measured on the
accelerator's AXI port (``tests/hw/test_accelerator.py`` compares the model with the RTL).
"""

from __future__ import annotations

import bisect
import functools
import inspect
from dataclasses import dataclass, field

from mnaccel.compiler.plan import Plan, Step
from mnaccel.golden.table import table_rows
from mnaccel.hw import scheduler as _sched
from mnaccel.hw.depthwise import DepthwiseArray, DepthwiseLayer
from mnaccel.hw.descriptor import DESCRIPTOR_BYTES, PARAM_BYTES, Opcode
from mnaccel.hw.dma import DMA
from mnaccel.hw.line_buffer import ConvVectorAdapter, LineBuffer, axis_geometry
from mnaccel.hw.pointwise import Pointwise
from mnaccel.hw.requantizer import Requantizer

__all__ = ["AXIRAM", "DRAM", "DRAM_LATENCY", "Memory", "StepCycles", "lb_pixel_times",
           "lb_walk", "model", "summary"]

#: Cycles from an AXI read request to its first data beat of a typical DDR3 controller at
#: a ~200 MHz fabric clock.
DRAM_LATENCY = 40

#: Cycles from a write into an Amaranth ``SyncFIFOBuffered`` to that entry on its output
#: (``SyncFIFO``'s one, plus the output register; amaranth.lib.fifo). The DMA's read and
#: write FIFOs and the scheduler's weight, parameter and line-buffer FIFOs are such FIFOs.
_BUFFERED_FIFO_LATENCY = 2
#: The same for a plain ``SyncFIFO`` (the write DMA's completion FIFO).
_FIFO_LATENCY = 1


@dataclass(frozen=True)
class Memory:
    """Timing of the external memory as the accelerator's AXI port sees it.

    Attributes
    ----------
    read_latency : int
        Cycles from an AR handshake to the burst's first R beat.
    write_latency : int
        Cycles from a burst's last W beat to its B response.
    read_queue : int or None
        Read requests the memory takes beside the burst it is serving; with the queue full,
        ``arready`` stays low until it starts the next burst. None: it takes any number.
    read_ahead : int
        Cycles before a burst's first R beat in which the memory starts it (and frees a
        queue entry).
    """

    read_latency: int
    write_latency: int
    read_queue: int | None = None
    read_ahead: int = 0

    def __post_init__(self):
        for name in ("read_latency", "write_latency", "read_ahead"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")
        if self.read_queue is not None and (not isinstance(self.read_queue, int)
                                            or self.read_queue < 1):
            raise ValueError(f"read_queue must be a positive int or None, not "
                             f"{self.read_queue!r}")


#: A typical DDR3 controller: :data:`DRAM_LATENCY` cycles to read data and to a write
#: response, requests queued without limit (the DMA's outstanding limit binds). Equal to
#: ``model(plan, dram_latency=DRAM_LATENCY)``.
DRAM = Memory(read_latency=DRAM_LATENCY, write_latency=DRAM_LATENCY)

#: cocotbext-axi's ``AxiRam`` (the system bench's memory), measured on the accelerator's
#: port: R two cycles after the AR handshake, B two cycles after the last W beat, no
#: bubbles between bursts; it queues two requests beside the one it serves and takes the
#: next one two cycles before a burst's first beat (it runs two beats ahead of the bus).
AXIRAM = Memory(read_latency=2, write_latency=2, read_queue=2, read_ahead=2)


@dataclass
class StepCycles:
    """Cycle figures of one step (descriptor); keys match issue 6's report.json."""

    name: str
    op: str
    macs: int
    cycles: int
    ideal_cycles: int
    utilization: float
    dram_read_bytes: int
    dram_write_bytes: int
    bound: str
    #: Where the cycles went: setup (descriptor, depthwise weights and parameters, until
    #: the engines run), fill (pointwise idle before its first beat), pw (array busy:
    #: beats, exposed weight loads and requantizer stalls), stall (pointwise waiting on its
    #: producer between tiles), drain (after the last beat: latency and write-back).
    breakdown: dict[str, int] = field(default_factory=dict)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


# --- the blocks ------------------------------------------------------------------------------

@dataclass
class _Blocks:
    cfg: object
    pw: Pointwise
    rq: Requantizer
    dw: DepthwiseLayer
    dwa: DepthwiseArray
    lb: LineBuffer
    conv_lb: LineBuffer | None
    adapter: ConvVectorAdapter | None
    dma: DMA
    weight_fifo_beats: int


@functools.lru_cache(maxsize=16)
def _blocks(cfg) -> _Blocks:
    """The blocks the accelerator builds for ``cfg``, for their timing properties."""
    from mnaccel.hw.accelerator import Accelerator

    beat = cfg.axi_data_width // 8
    try:
        acc = Accelerator(cfg)
    except ValueError:
        acc = None          # a configuration today's scheduler does not run: same blocks
    if acc is not None:
        dw = acc.depthwise
        return _Blocks(cfg=cfg, pw=acc.pointwise, rq=acc.requantizer, dw=dw,
                       dwa=dw.engine.array, lb=dw.engine.line_buffer,
                       conv_lb=acc.conv_line_buffer, adapter=acc.conv_adapter, dma=acc.dma,
                       weight_fifo_beats=acc.scheduler.weight_fifo_beats)
    max_burst = inspect.signature(Accelerator).parameters["max_burst"].default
    dw = DepthwiseLayer(lanes=cfg.dw_lanes, in_lanes=cfg.lb_in_lanes, kernel=cfg.dw_kernel,
                        max_kernel=cfg.max_kernel, max_width=cfg.lb_max_width,
                        max_channels=cfg.lb_max_channels, max_row_bytes=cfg.lb_max_row_bytes)
    align = cfg.channel_align
    try:
        conv_lb = LineBuffer(lanes=cfg.lb_in_lanes, in_lanes=cfg.lb_in_lanes, max_kernel=3,
                             max_width=cfg.lb_max_width, max_channels=align,
                             max_row_bytes=cfg.lb_max_width * align)
        adapter = ConvVectorAdapter(lanes=cfg.lb_in_lanes, max_kernel=3, max_channels=align,
                                    kernel=_sched.CONV0_KERNEL,
                                    channels=_sched.CONV0_CHANNELS, padded_channels=align)
    except ValueError:
        conv_lb = adapter = None     # no CONV0 path on this configuration
    dma = DMA(data_width=cfg.axi_data_width, addr_width=cfg.axi_addr_width,
              len_width=_sched.LEN_WIDTH, max_burst=max_burst,
              max_outstanding=cfg.axi_max_outstanding)
    return _Blocks(cfg=cfg, pw=Pointwise(rows=cfg.pw_rows, cols=cfg.pw_cols,
                                         acc_depth=cfg.pw_acc_depth,
                                         weight_rows=cfg.pw_weight_rows),
                   rq=Requantizer(lanes=cfg.rq_lanes), dw=dw, dwa=dw.engine.array,
                   lb=dw.engine.line_buffer, conv_lb=conv_lb, adapter=adapter, dma=dma,
                   weight_fifo_beats=cfg.pw_weight_fifo_bytes // beat)


# --- the line buffer's walk ------------------------------------------------------------------

def _geometry(lb: LineBuffer, height, width, channels, kernel, stride, padding):
    lb.check_layer(height, width, channels, kernel, stride, padding)
    geo = []
    for size in (height, width):
        out, before, after = axis_geometry(size, kernel, stride, padding)
        geo.append((size + after, before - (kernel - 1), (out - 1) * stride))
    return geo


def _walk(lb: LineBuffer, height, width, channels, kernel, stride, padding, *, start,
          cycles_per_window, beat_positions, beat_ready, emit_ready, pixel_ready, done,
          pops):
    """Generator of :func:`lb_walk`: yields after each output pixel (appended to ``done``)."""
    (rows, offy, maxy), (cols, offx, maxx) = _geometry(lb, height, width, channels, kernel,
                                                     stride, padding)
    gc = channels // lb.in_lanes
    m = lb.in_lanes // lb.lanes
    cpw = cycles_per_window
    emit_x = [0 <= x + offx <= maxx and (x + offx) % stride == 0 for x in range(cols)]
    t, busy = start, 0
    q = 0                                  # real input positions so far
    bp = beat_positions
    for y in range(rows):
        ey = y + offy
        row = 0 <= ey <= maxy and ey % stride == 0
        real_y = y < height
        if not row and (not real_y or (beat_ready is None and bp == 1)):
            # A row without outputs and without waits: one cycle per position.
            n_real = width * gc if real_y else 0
            pops.extend(range(t, t + n_real))
            q += n_real
            t += cols * gc
            continue
        for x in range(cols):
            real = real_y and x < width
            emits = row and emit_x[x]
            for g in range(gc):
                if real and beat_ready is not None and q % bp == 0:
                    t = max(t, beat_ready(q // bp, pops))
                if emits:
                    t = max(t, busy)
                    if g == 0 and emit_ready is not None:
                        t = max(t, emit_ready(len(done)))
                    busy = t + m * cpw
                    if g == gc - 1 and pixel_ready is not None:
                        # The last sub-window waits for the consumer; so does the gearbox.
                        busy = max(busy, pixel_ready(len(done), done))
                if real:
                    q += 1
                    if q % bp == 0:
                        pops.append(t)
                t += 1
            if emits:
                done.append(busy)
                yield
    if q % bp:
        pops.append(t - 1)


def lb_walk(lb: LineBuffer, height, width, channels, kernel, stride, padding, *,
            start: int = 1, cycles_per_window: int = 1, beat_positions: int = 1,
            beat_ready=None, emit_ready=None, pixel_ready=None
            ) -> tuple[list[int], list[int]]:
    """The line buffer's position-by-position walk (the one :meth:`LineBuffer.frame_cycles`
    documents), with its input and its consumer.

    One position per cycle in raster order (channel groups fastest); a position that takes
    an input beat waits for it, an emitting position waits until the gearbox has sent the
    previous window's ``in_lanes / lanes`` sub-windows (``cycles_per_window`` cycles each).

    Parameters
    ----------
    start : int
        Cycle of the first position.
    beat_positions : int
        Positions per input beat (input-FIFO entry).
    beat_ready : callable, optional
        ``beat_ready(b, pops)``: the first cycle input beat ``b`` can be taken, given the
        cycles ``pops`` at which the beats before it were popped (the reads are issued as
        the FIFO frees); None: the input is always there.
    emit_ready : callable, optional
        ``emit_ready(p)``: the first cycle output pixel ``p``'s first window may be taken
        (a consumer that stalls the walk); None: always.
    pixel_ready : callable, optional
        ``pixel_ready(p, done)``: the first cycle the last sub-window of output pixel ``p``
        can leave, given ``done`` of the pixels before it; None: always.

    Returns
    -------
    done : list of int
        Per output pixel (raster order), the cycle its last sub-window leaves the gearbox.
    pops : list of int
        Per input beat, the cycle it is popped (its last position is processed).
    """
    done: list[int] = []
    pops: list[int] = []
    for _ in _walk(lb, height, width, channels, kernel, stride, padding, start=start,
                   cycles_per_window=cycles_per_window, beat_positions=beat_positions,
                   beat_ready=beat_ready, emit_ready=emit_ready, pixel_ready=pixel_ready,
                   done=done, pops=pops):
        pass
    return done, pops


def lb_pixel_times(lb: LineBuffer, height, width, channels, kernel, stride, padding, *,
                   cycles_per_window: int = 1) -> list[int]:
    """Cycle in which each output pixel's last window leaves the line buffer (raster order).

    The free-running walk of :meth:`LineBuffer.frame_cycles` (cycle 0: ``cfg`` accepted),
    kept per output pixel; its last entry equals ``frame_cycles(...)[1]``.
    """
    return lb_walk(lb, height, width, channels, kernel, stride, padding,
                   start=lb.start_latency, cycles_per_window=cycles_per_window)[0]


# --- the read path ---------------------------------------------------------------------------

class _Reads:
    """Scheduler command port → DMA → memory → DMA FIFO → scheduler, in command order."""

    def __init__(self, b: _Blocks, mem: Memory):
        self.mem = mem
        self.cl = b.dma.command_latency        # fire → take → burst load → arvalid
        self.max_out = b.dma.max_outstanding
        if mem.read_queue is not None:
            # The DMA counts a burst outstanding from its load into the AR register. A
            # memory that queues `read_queue` requests holds at most that many, the one it
            # answers and the one in that register: more bursts never leave the DMA sooner
            # (the measured AxiRam, 2 queued, with 8 allowed: as with 4).
            self.max_out = min(self.max_out, mem.read_queue + 2)
        self.max_burst = b.dma.max_burst_beats
        self.beat = b.dma.bytes_per_beat
        self.last_fire = -10**9
        self.take = -10**9                     # last command taken by the splitter
        self.last_load = -10**9                # last burst loaded into the AR register
        self.last_ar = -10**9
        self.rs: list[int] = []                # per burst: first and last R beat
        self.re: list[int] = []
        self.sched_last = -10**9               # last beat delivered to the scheduler
        self.hist_fire: list[int] = []         # every command: fire cycle, last R beat
        self.hist_end: list[int] = []
        # Cycles in which the command port takes nothing from the issuer: the DMA holds a
        # command it has not taken, or a line-buffer read (priority) is waiting.
        self.blocked: list[tuple[int, int]] = []

    def past(self, valid: int, beats: int) -> tuple[int, int, int]:
        """An issuer's read presented at ``valid``, before commands already placed.

        The model walks the line buffer (and places its input reads) ahead of the array,
        whose progress the issuer waits on: such a read fires at the first cycle from
        ``valid`` on in which the port would take it, goes behind the commands fired before
        it, on an otherwise idle path (it does not delay the ones placed after it).
        """
        fire = valid
        moved = True
        while moved:
            moved = False
            i = bisect.bisect_right(self.blocked, (fire, 10**18))
            for lo, hi in self.blocked[max(0, i - 16):i]:
                if lo <= fire <= hi:
                    fire, moved = hi + 1, True
        if fire > self.last_fire:
            return None
        i = bisect.bisect_right(self.hist_fire, fire)
        prev = self.hist_end[i - 1] if i else -10**9
        rs = max(fire + self.cl + self.mem.read_latency, prev + 1)
        self.hist_fire.insert(i, fire)
        self.hist_end.insert(i, rs + beats - 1)
        first = rs + _BUFFERED_FIFO_LATENCY
        return fire, first, first + beats - 1

    def fire_time(self, valid: int) -> int:
        """The cycle a command presented from ``valid`` on is accepted."""
        return max(valid, self.last_fire + 1, self.take)

    def command(self, valid: int, beats: int, consumer=None, addr: int | None = None,
                priority: bool = False):
        """Issue a read of ``beats`` beats; returns (fire, first, last) scheduler cycles.

        ``consumer``: a :class:`_Unpacker` taking the beats at its own pace (else one per
        cycle). ``addr``: the byte address, which places the burst boundaries (None: on
        one). ``first``/``last``: the cycles the first/last beat is taken.
        """
        fire = self.fire_time(valid)
        self.last_fire = fire
        take = max(fire + 1, self.last_load)
        self.take = take
        # The port is busy from the line-buffer read's valid (it has priority), or from this
        # fire, until the DMA takes the command out of its input register.
        bisect.insort(self.blocked, (valid if priority else fire, take - 1))
        load = take + self.cl - 2
        head = self.max_burst
        if addr is not None:
            head -= (addr // self.beat) % self.max_burst
        if beats <= head and consumer is None:
            # One burst (the common case), as below.
            b = len(self.rs)
            rs_, re_ = self.rs, self.re
            load = max(load, self.last_load + 1, self.last_ar)
            if b >= self.max_out:
                load = max(load, re_[b - self.max_out] + 1)
            ar = load + 1
            q = self.mem.read_queue
            if q is not None and b >= q:
                ar = max(ar, rs_[b - q] - self.mem.read_ahead)
            rs = ar + self.mem.read_latency
            if b:
                rs = max(rs, re_[-1] + 1)
            rs_.append(rs)
            re_.append(rs + beats - 1)
            self.last_load, self.last_ar = load, ar
            first = max(rs + _BUFFERED_FIFO_LATENCY, self.sched_last + 1)
            self.sched_last = last = first + beats - 1
            self.hist_fire.append(fire)
            self.hist_end.append(re_[-1])
            return fire, first, last
        # Bursts end on multiples of max_burst beats: a short first one, then whole ones.
        lengths = [min(head, beats)]
        while sum(lengths) < beats:
            lengths.append(min(self.max_burst, beats - sum(lengths)))
        starts = []
        q = self.mem.read_queue
        for length in lengths:
            b = len(self.rs)
            load = max(load, self.last_load + 1, self.last_ar)
            if b >= self.max_out:
                load = max(load, self.re[b - self.max_out] + 1)
            ar = load + 1
            if q is not None and b >= q:
                ar = max(ar, self.rs[b - q] - self.mem.read_ahead)
            rs = max(ar + self.mem.read_latency, self.re[-1] + 1 if self.re else -10**9)
            self.rs.append(rs)
            self.re.append(rs + length - 1)
            starts.append(rs)
            self.last_load, self.last_ar = load, ar
        fifo = _BUFFERED_FIFO_LATENCY
        if consumer is None:
            # Each burst's beats are taken back to back, once in the FIFO and after the
            # previous ones.
            last = self.sched_last
            for i, (rs, length) in enumerate(zip(starts, lengths, strict=True)):
                t0 = max(rs + fifo, last + 1)
                first = t0 if i == 0 else first
                last = t0 + length - 1
            self.sched_last = last
            self.hist_fire.append(fire)
            self.hist_end.append(self.re[-1])
            return fire, first, last
        # A consumer slower than one beat per cycle: R beats → FIFO → consumer, per cycle.
        # The R beats wait for room in the FIFO, so the bursts end later (and stay
        # outstanding longer) than they would.
        times = [rs + i for rs, length in zip(starts, lengths, strict=True)
                 for i in range(length)]
        taken, written = consumer.run(times, self.sched_last + 1)
        k = 0
        for i, length in enumerate(lengths):
            b = len(self.rs) - len(lengths) + i
            self.rs[b], self.re[b] = written[k], written[k + length - 1]
            k += length
        self.sched_last = taken[-1]
        self.hist_fire.append(fire)
        self.hist_end.append(self.re[-1])
        return fire, taken[0], taken[-1]


class _Unpacker:
    """A consumer of read beats that stops to hand out what it has gathered.

    The depthwise weights: beats of ``beat`` bytes are taken while fewer than ``need``
    bytes are held; with an entry held, the entry leaves (one cycle) and no beat is taken.
    The depthwise records: ``beat = 1`` and ``need`` beats per group of records.
    """

    def __init__(self, beat: int, need: int, fifo_depth: int):
        self.beat, self.need, self.depth = beat, need, fifo_depth
        self.emitted: list[int] = []

    def run(self, arrive: list[int], earliest: int) -> tuple[list[int], list[int]]:
        """Cycles each beat is taken and enters the DMA's FIFO, given the cycle each is
        offered to the FIFO."""
        lat = _BUFFERED_FIFO_LATENCY
        taken: list[int] = []
        written: list[int] = []
        held = 0
        n = len(arrive)
        t = arrive[0]
        while len(taken) < n or held >= self.need:
            i, k = len(written), len(taken)
            # The FIFO takes an offered beat while it has room.
            if i < n and arrive[i] <= t and i - k < self.depth:
                written.append(t)
            if held >= self.need:
                held -= self.need                # an entry leaves; no beat is taken
                self.emitted.append(t)
            elif k < len(written) and written[k] + lat <= t and t >= earliest:
                held += self.beat
                taken.append(t)
            t += 1
        return taken, written


# --- the pointwise array ---------------------------------------------------------------------

class _Array:
    """Enabled-cycle bookkeeping of the pointwise array and its output stalls.

    ``wall(e)`` is the clock cycle of enabled cycle ``e``: every output sum held in the
    array's output register stalls the array ``extra`` cycles before the enabled cycle
    that takes it, and a chunk's first sum also waits for its parameter bank
    (:meth:`add_stall`).
    """

    def __init__(self, extra: int):
        self.extra = extra
        self.starts: list[int] = []    # output runs: first enabled cycle, count
        self.counts: list[int] = []
        self.cum: list[int] = [0]
        self.stall_at: list[int] = []  # further stalls: enabled cycle, cumulative cycles
        self.stall_cum: list[int] = [0]

    def add_stall(self, e: int, cycles: int) -> None:
        """The output of enabled cycle ``e`` is held ``cycles`` more clock cycles."""
        if self.stall_at and e < self.stall_at[-1]:
            raise AssertionError("stalls out of order")
        self.stall_at.append(e)
        self.stall_cum.append(self.stall_cum[-1] + cycles)

    def stalls_upto(self, e: int) -> int:
        return self.stall_cum[bisect.bisect_right(self.stall_at, e)]

    def add_outputs(self, first: int, count: int, step: int = 1) -> None:
        if step != 1:
            for i in range(count):
                self.add_outputs(first + i * step, 1)
            return
        if self.starts and first <= self.starts[-1] + self.counts[-1] - 1:
            raise AssertionError("output runs out of order")
        self.starts.append(first)
        self.counts.append(count)
        self.cum.append(self.cum[-1] + count)

    def outputs_upto(self, e: int) -> int:
        i = bisect.bisect_right(self.starts, e) - 1
        if i < 0:
            return 0
        return self.cum[i] + min(e - self.starts[i] + 1, self.counts[i])

    def wall(self, e: int) -> int:
        return e + self.extra * self.outputs_upto(e) + self.stalls_upto(e)

    def enabled(self, w: int, lo: int = 0) -> int:
        """The first enabled cycle at clock cycle ``w`` or after, and not before ``lo``."""
        if self.wall(lo) >= w:
            return lo
        lo, hi = max(lo, w - self.extra * self.cum[-1] - self.stall_cum[-1]), max(lo, w)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.wall(mid) >= w:
                hi = mid
            else:
                lo = mid + 1
        return lo


# --- one step --------------------------------------------------------------------------------

class _NotYet(Exception):
    """The event a command waits for has not been simulated yet."""


class _Step:
    """One step, from its descriptor fetch (cycle 0) to ``layer_done``."""

    def __init__(self, plan: Plan, step: Step, b: _Blocks, mem: Memory,
                 addrs: dict | None = None):
        self.plan, self.step, self.b, self.mem = plan, step, b, mem
        self.addrs = addrs
        cfg = self.cfg = plan.config
        self.AB = cfg.axi_data_width // 8
        self.R, self.C = cfg.pw_rows, cfg.pw_cols
        self.op = step.opcode
        self.reads = _Reads(b, mem)
        self.K, self.J = step.k_chunks, step.j_chunks
        self.tiles = step.tiles()
        self.wl = b.pw.weight_load_cycles
        self.tbeats = self.R * self.C // self.AB          # beats of one weight tile
        self.rec_beats = PARAM_BYTES // self.AB
        self.array = _Array(self.C // cfg.rq_lanes - 1)
        self.cmds = self._commands()
        self.cmd_index = {cmd: i for i, cmd in enumerate(self.cmds)}
        self.cmd_i = 0
        self.issuer_last = -10**9
        self.param_data: dict[int, int] = {}    # chunk -> first beat taken
        self.weight_data: dict[int, int] = {}   # sub-tile -> first beat taken
        self.act_data: dict[int, int] = {}      # tile -> last beat taken
        self.pops: dict[int, list[int]] = {}    # chunk -> cycles its records enter a bank
        self.chunk_done: dict[int, int] = {}    # chunk -> its last requantizer beat
        self.wpop: dict[int, int] = {}          # sub-tile -> its last weight row loaded
        self.release: dict[int, int] = {}       # tile -> its half reads free
        self.read_bytes = DESCRIPTOR_BYTES
        self.write_bytes = 0

    # --- the read issuer -------------------------------------------------------------------

    def _commands(self) -> list[tuple[str, int]]:
        op, J, K = self.op, self.J, self.K
        out = [("dw_weight", 0), ("dw_param", 0)] if op in (Opcode.DW_PW, Opcode.DW) else []
        s = 0
        for t in range(len(self.tiles)):
            if op in (Opcode.PW, Opcode.FC, Opcode.POOL):
                out.append(("act", t))
            for j in range(J):
                out.append(("param", t * J + j))
                if op not in (Opcode.POOL, Opcode.DW):      # identity tiles: no weights
                    for _ in range(K):
                        out.append(("weight", s))
                        s += 1
        return out

    def _pop_time(self, c: int, r: int) -> int:
        """Cycle record ``r`` of chunk ``c`` leaves the parameter FIFO for its bank."""
        if c not in self.pops:
            prev = self._pop_time(c - 1, self.C - 1) + 1 if c else 0
            free = self._chunk_done(c - 2) + 1 if c >= 2 else 0
            self._issue_until(("param", c))
            first = self.param_data[c]
            pops = []
            for i in range(self.C):
                avail = first + (i + 1) * self.rec_beats - 1 + _BUFFERED_FIFO_LATENCY
                prev = max(prev, free, avail)
                pops.append(prev)
                prev += 1
            self.pops[c] = pops
        return self.pops[c][r]

    def _chunk_done(self, c: int) -> int:
        if c not in self.chunk_done:
            raise _NotYet(c)
        return self.chunk_done[c]

    def _valid(self, kind: str, idx: int) -> int:
        """The first cycle the issuer presents the command (state, credits, halves)."""
        ready = max(self.issuer_last + 1, self.start)
        if kind == "act":
            # The tile's byte count is a product the scheduler computes by shift and add.
            ready = max(ready, self.go + _sched.PRODUCT_CYCLES)
        if kind == "act" and idx >= 2:
            if idx - 2 not in self.release:
                raise _NotYet(idx)
            return max(ready, self.release[idx - 2])
        if kind == "param" and idx >= 2:
            # p_res + C <= 2C + 1: all but one record of chunk idx − 1 are in a bank.
            c, r = divmod(self.C * (idx - 1) - 2, self.C)
            return max(ready, self._pop_time(c, r) + 1)
        if kind == "weight":
            x = self.b.weight_fifo_beats // self.tbeats
            if idx >= x:
                if idx - x not in self.wpop:
                    raise _NotYet(idx)
                return max(ready, self.wpop[idx - x] + 1)
        return ready

    def _addr(self, field: str, offset: int = 0) -> int | None:
        return None if self.addrs is None else self.addrs[field] + offset

    def _read(self, valid: int, beats: int, addr: int | None):
        if valid < self.reads.last_fire:
            placed = self.reads.past(valid, beats)
            if placed is not None:
                return placed
        return self.reads.command(valid, beats, None, addr)

    def _fire(self, kind: str, idx: int, valid: int) -> None:
        step, cfg, AB = self.step, self.cfg, self.AB
        if kind == "act":
            stride = self.plan.storage(step.input).c_stride
            first_px, n = self.tiles[idx]
            nbytes = n * stride
            fire, _, last = self._read(valid, _ceil(nbytes, AB),
                                       self._addr("in_addr", first_px * stride))
            self.act_data[idx] = last
        elif kind == "param":
            # Every pixel tile reads the records (and weights) from the start again.
            nbytes = self.C * PARAM_BYTES
            fire, first, _ = self._read(valid, self.C * self.rec_beats,
                                        self._addr("pw_param_addr", idx % self.J * nbytes))
            self.param_data[idx] = first
        elif kind == "weight":
            nbytes = self.tbeats * AB
            fire, first, _ = self._read(
                valid, self.tbeats,
                self._addr("pw_weight_addr", idx % (self.J * self.K) * nbytes))
            self.weight_data[idx] = first
        elif kind == "dw_weight":
            entries = step.in_c // cfg.dw_lanes * self.b.dwa.passes(step.kernel)
            entry = cfg.dw_kernel**2 * cfg.dw_lanes
            nbytes = entries * entry
            self.dw_w = _Unpacker(AB, entry, self.b.dma.fifo_depth)
            fire, _, _ = self.reads.command(valid, _ceil(nbytes, AB), self.dw_w,
                                            self._addr("dw_weight_addr"))
        else:                                   # dw_param: dw_lanes records per group
            per = self.rec_beats * cfg.dw_lanes
            nbytes = step.in_c * PARAM_BYTES
            self.dw_p = _Unpacker(1, per, self.b.dma.fifo_depth)
            fire, _, _ = self.reads.command(valid, step.in_c // cfg.dw_lanes * per, self.dw_p,
                                            self._addr("dw_param_addr"))
        self.issuer_last = fire
        self.read_bytes += nbytes
        self.cmd_i += 1

    def _issue_until(self, cmd: tuple[str, int]) -> None:
        """Issue the commands up to ``cmd``, in order."""
        end = self.cmd_index[cmd]
        while self.cmd_i <= end:
            kind, idx = self.cmds[self.cmd_i]
            self._fire(kind, idx, self._valid(kind, idx))

    def _issue_before(self, t: int) -> None:
        """Issue the commands that would be accepted before cycle ``t``."""
        while self.cmd_i < len(self.cmds):
            kind, idx = self.cmds[self.cmd_i]
            try:
                valid = self._valid(kind, idx)
            except _NotYet:
                return
            if self.reads.fire_time(valid) >= t:
                return
            self._fire(kind, idx, valid)

    # --- the step --------------------------------------------------------------------------

    def run(self) -> dict:
        op = self.op
        # FETCH (cycle 0): the descriptor; DECODE the cycle after its last beat (step_go).
        _, _, last = self.reads.command(0, _ceil(DESCRIPTOR_BYTES, self.AB), None,
                                        self._addr("desc_addr"))
        self.go = last + 1
        self.start = self.go + 1                  # the engines' first cycle
        self.producer = None
        if op in (Opcode.DW_PW, Opcode.DW):
            self._issue_until(("dw_param", 0))
            # dw_loaded the cycle after the last entry and record group; DW_CFG the next.
            loaded = max(self.dw_w.emitted[-1], self.dw_p.emitted[-1]) + 1
            lb_go = loaded + 1
            self.setup_end = lb_go
            self.producer = self._dw_producer(lb_go)
        elif op is Opcode.CONV0:
            lb_go = self.start                    # CV_CFG: the line buffer takes cfg
            self.setup_end = lb_go
            self.producer = self._conv_producer(lb_go)
        else:
            self.setup_end = self.start
        return self._compute()

    # --- producers -------------------------------------------------------------------------

    def _lb_input(self, lb_go: int):
        """``beat_ready`` of the walk: the input beats, read in chunks as the FIFO frees.

        A chunk is read once the line buffer has popped enough beats (credits); it goes out
        ahead of the issuer's reads that are not yet accepted (the reader has priority).
        """
        AB = self.AB
        chunk = _sched.LB_CHUNK_BEATS
        credit_chunks = _sched.LB_FIFO_BEATS // chunk
        step = self.step
        in_bytes = step.in_h * step.in_w * step.in_c
        self.read_bytes += in_bytes
        total = _ceil(in_bytes, AB)
        firsts: list[int] = []
        # The reader starts once the line buffer is configured and the map's byte count
        # (a product the scheduler computes by shift and add) is known.
        state = {"valid": max(lb_go, self.go + _sched.IN_BYTES_CYCLES) + 1}

        def beat_ready(beat: int, pops: list[int]) -> int:
            n = beat // chunk
            while len(firsts) <= n:
                k = len(firsts)
                valid = state["valid"]
                if k >= credit_chunks:
                    valid = max(valid, pops[chunk * (k - credit_chunks + 1) - 1] + 1)
                self._issue_before(valid)
                fire, first, _ = self.reads.command(valid, min(chunk, total - k * chunk),
                                                    None, self._addr("in_addr", k * chunk * AB),
                                                    priority=True)
                firsts.append(first)
                state["valid"] = fire + 1
            return firsts[n] + beat % chunk + _BUFFERED_FIFO_LATENCY

        return beat_ready

    def _dw_producer(self, lb_go: int) -> _Producer:
        step, b, cfg = self.step, self.b, self.cfg
        passes = b.dwa.passes(step.kernel)
        beats_px = step.in_c // cfg.dw_lanes
        # Beats the dw pipeline holds while its packer waits for a buffer half: the
        # requantizer's credits, the join and the array's stages.
        cap = b.dw.requantizer.fifo_depth + DepthwiseLayer.JOIN_LATENCY + b.dwa.latency
        prod = _Producer(self, beats_px, b.dw.latency - 1)

        def emit_ready(p):
            # A pixel's first window waits until the packer has taken all but ``cap`` of
            # the beats of its tile before it (the packer takes one per cycle from the
            # tile's release on).
            t, first = prod.tile_of(p)
            if t < 2:
                return 0
            return self.release[t - 2] + (p - first) * beats_px - cap

        prod.walker = _walk(
            b.lb, step.in_h, step.in_w, step.in_c, step.kernel, step.stride, step.padding,
            start=lb_go + b.lb.start_latency, cycles_per_window=passes,
            beat_positions=self.AB // cfg.lb_in_lanes, beat_ready=self._lb_input(lb_go),
            emit_ready=emit_ready, pixel_ready=None, done=prod.done, pops=[])
        return prod

    def _conv_producer(self, lb_go: int) -> _Producer:
        step, b, cfg = self.step, self.b, self.cfg
        if b.conv_lb is None:
            raise ValueError(f"configuration {cfg.config_id} has no CONV0 line buffer")
        vwords = _ceil(_sched.CONV0_KERNEL**2 * _sched.CONV0_CHANNELS, self.R)
        ad = b.adapter.latency
        prod = _Producer(self, vwords, vwords)
        vec = prod.vec                        # cycle each vector is taken by the packer

        def vectors(done):
            # A vector is taken once the previous one is out as words and, for a tile's
            # first, once the tile's half is free (its first word is written then).
            while len(vec) < len(done):
                p = len(vec)
                ready = done[p] + ad
                if vec:
                    ready = max(ready, vec[-1] + vwords + 1)
                t, first = prod.tile_of(p)
                if p == first and t >= 2:
                    ready = max(ready, self.release[t - 2] - 1)
                vec.append(ready)

        def pixel_ready(p, done):
            # The adapter takes a pixel's last window once its previous vector has left.
            vectors(done)
            return vec[p - 1] if p else 0

        prod.vectors = vectors
        prod.walker = _walk(
            b.conv_lb, step.in_h, step.in_w, step.in_c, step.kernel, step.stride,
            step.padding, start=lb_go + b.conv_lb.start_latency, cycles_per_window=1,
            beat_positions=self.AB // cfg.lb_in_lanes, beat_ready=self._lb_input(lb_go),
            emit_ready=None, pixel_ready=pixel_ready, done=prod.done, pops=[])
        return prod

    # --- the pointwise array -----------------------------------------------------------------

    def _compute(self) -> dict:
        op, b = self.op, self.b
        J, K = self.J, self.K
        arr = self.array
        lat = b.pw.latency
        pool = op is Opcode.POOL
        identity = op in (Opcode.POOL, Opcode.DW)     # weight tiles from the generator
        e = -1                       # enabled cycle of the last beat so far
        swap_prev = None             # enabled cycle of the last swap beat
        s = 0                        # weight tile (sub-tile) index
        first_beat = e_first = None
        waits = 0
        tile_out = []
        for t, (_, n) in enumerate(self.tiles):
            if self.producer is None:
                self._issue_until(("act", t))
                full = self.act_data[t] + 1
            else:
                full = self.producer.full(t)
                # The producer fills the other half meanwhile: walk it first, so that its
                # input reads go out ahead of the issuer's reads that wait on this tile.
                if t + 1 < len(self.tiles):
                    self.producer.full(t + 1)
            # The generator issues the tile's first beat once its half reads full.
            e_tile = arr.enabled(full + 1, e + 1)
            for j in range(J):
                for k in range(K):
                    # Weight tile s loads one row per enabled cycle from the previous swap
                    # (or from its arrival); its first beat (the swap) waits for all rows.
                    avail = self.start if identity else self._weights(s)
                    e_ls = arr.enabled(avail, 0 if swap_prev is None else swap_prev)
                    e0 = max(e + 1, e_ls + self.wl)
                    if j == k == 0 and e_tile > e0:
                        waits += e_tile - e0        # the array waits for the tile
                        e0 = e_tile
                    self.wpop[s] = arr.wall(e_ls + self.wl - 1)
                    if first_beat is None:
                        first_beat, e_first, waits = arr.wall(e0), e0, 0
                    e_before = e0 + n - 2 if n > 1 else e
                    swap_prev = e0
                    e = e0 + n - 1
                    out_e = e + lat if pool else e0 + lat
                    if pool or k == K - 1:
                        # The chunk's first sum is taken once its parameter bank is full
                        # (its last record in, use_ok the cycle after), the serializer's
                        # extra cycles after that.
                        arr.add_outputs(out_e, 1 if pool else n)
                        presented = arr.wall(out_e) - arr.extra
                        bank = self._pop_time(t * J + j, self.C - 1) + 1
                        if bank > presented:
                            arr.add_stall(out_e, bank - presented)
                    # The generator issues a beat when the one before it leaves the stage.
                    g_issue = arr.wall(e_before) if e_before >= 0 else full
                    s += 1
                # The chunk's last sum leaves the serializer: its parameter bank frees.
                self.chunk_done[t * J + j] = arr.wall(e + lat)
            # The half is released the cycle after the generator issued the tile's last
            # beat; the tile's sums are in the output buffer a requantizer latency after
            # the last leaves the array.
            self.release[t] = max(g_issue, full) + 1
            tile_out.append(arr.wall(e + lat) + b.rq.latency + 1)
        end = self._write_back(tile_out)
        return {"end": end, "first_beat": first_beat, "last_beat": arr.wall(e),
                "beats": e - e_first + 1 - waits,
                "stalls": arr.extra * arr.outputs_upto(e) + arr.stalls_upto(e)}

    def _weights(self, s: int) -> int:
        if s not in self.weight_data:
            self._issue_until(("weight", s))
        return self.weight_data[s] + _BUFFERED_FIFO_LATENCY

    # --- write-back ------------------------------------------------------------------------

    def _write_back(self, tile_out: list[int]) -> int:
        """``layer_done``: the last tile's write response is back."""
        out_stride = self.plan.storage(self.step.output).c_stride
        # No write command before the descriptor's checks are done.
        free = self.go + _sched.CHECK_CYCLES
        end = 0
        for t, (_, n) in enumerate(self.tiles):
            nbytes = (1 if self.op is Opcode.POOL else n) * out_stride
            self.write_bytes += nbytes
            beats = _ceil(nbytes, self.AB)
            fire = max(tile_out[t], free)
            # The writer sends one beat per cycle from fire + 1 (registered: on the write
            # DMA's port from fire + 2) and takes the next command after the last.
            free = fire + beats + 1
            # Through the write DMA's FIFO and its W register onto the bus.
            last_w = fire + 1 + beats + _BUFFERED_FIFO_LATENCY + 1
            # The response, its completion FIFO; the step ends the cycle after.
            end = last_w + self.mem.write_latency + _FIFO_LATENCY + 1
        return end


class _Producer:
    """The on-chip producer of a step's activation buffer (line buffer and dw layer, or the
    CONV0 line buffer and vector adapter), walked as far as the array needs it.

    ``full(t)``: the cycle tile ``t``'s half reads full — its last word written, one cycle
    after its last pixel's last beat (``lat`` after the pixel's last window for the dw
    layer; the vector's last word for CONV0), and no earlier than the packer can take the
    tile's ``beats_px`` beats per pixel once the half is free.
    """

    def __init__(self, owner: _Step, beats_px: int, lat: int):
        self.o = owner
        self.beats_px, self.lat = beats_px, lat
        self.done: list[int] = []
        self.walker = None
        self.vectors = None          # CONV0: resolves ``vec`` (vector taken) per pixel
        self.vec: list[int] = []
        self.cache: dict[int, int] = {}
        self.starts = [first for first, _ in owner.tiles]

    def tile_of(self, p: int) -> tuple[int, int]:
        t = bisect.bisect_right(self.starts, p) - 1
        return t, self.starts[t]

    def full(self, t: int) -> int:
        if t not in self.cache:
            first, n = self.o.tiles[t]
            last = first + n - 1
            while len(self.done) <= last:
                next(self.walker)
            if self.vectors is not None:
                self.vectors(self.done)
                done = self.vec[last] + self.lat
            else:
                done = self.done[last] + self.lat
            if t >= 2:
                done = max(done, self.o.release[t - 2] + n * self.beats_px - 1)
            self.cache[t] = done + 1
        return self.cache[t]


# --- the model -------------------------------------------------------------------------------

def _macs(plan: Plan) -> dict[str, int]:
    return {r.name: r.mul for r in table_rows(plan.graph) if r.type in ("conv", "dw", "pw", "fc")}


def _fused_pool(plan: Plan, step: Step, b: _Blocks, mem: Memory) -> StepCycles:
    """The what-if of a pool accumulated on the previous step's output stream: only its
    requantization and write are left."""
    cfg = plan.config
    axi = cfg.axi_data_width // 8
    lat = mem.read_latency + b.dma.command_latency + _BUFFERED_FIFO_LATENCY
    setup = lat + _ceil(DESCRIPTOR_BYTES, axi)
    out = plan.storage(step.output)
    rq = b.rq
    body = (_ceil(step.j_chunks * cfg.pw_cols, rq.outputs_per_cycle) + rq.latency
            + _ceil(out.nbytes, axi) + mem.write_latency)
    return StepCycles(step.name, step.opcode.name, 0, setup + body, 0, 0.0,
                      DESCRIPTOR_BYTES, out.nbytes, "latency",
                      {"setup": setup, "fill": 0, "pw": 0, "stall": 0, "drain": body})


def _step(plan: Plan, step: Step, b: _Blocks, mem: Memory, step_macs: int,
          addrs: dict | None) -> StepCycles:
    cfg = plan.config
    axi = cfg.axi_data_width // 8
    sim = _Step(plan, step, b, mem, addrs)
    r = sim.run()
    cycles = r["end"] + 1                     # cycles 0 … layer_done
    setup = sim.setup_end
    fill = r["first_beat"] - setup
    # From the first beat to the last: the array busy (beats, exposed weight loads, its
    # requantizer stalls) or waiting for its producer.
    busy = r["beats"] + r["stalls"]
    stall = r["last_beat"] - r["first_beat"] + 1 - busy
    drain = cycles - r["last_beat"] - 1
    bound = "pw"
    if all(n < sim.wl for _, n in sim.tiles):
        bound = "pw weight load"
    if stall > busy // 10:
        bound = "dw" if step.opcode is Opcode.DW_PW else "input"
    if _ceil(sim.read_bytes, axi) > 0.9 * cycles:
        bound = "memory (read)"
    if _ceil(sim.write_bytes, axi) > 0.9 * cycles:
        bound = "memory (write)"
    ideal = _ceil(step_macs, cfg.multipliers)
    return StepCycles(step.name, step.opcode.name, step_macs, cycles, ideal,
                      step_macs / (cycles * cfg.multipliers), sim.read_bytes,
                      sim.write_bytes, bound,
                      {"setup": setup, "fill": fill, "pw": busy, "stall": stall,
                       "drain": drain})


def model(plan, *, memory: Memory | None = None, dram_latency: int | None = None,
          fuse_pool: bool = False) -> list[StepCycles]:
    """Cycles of every step of ``plan``, in program order, as ``LAYER_CYCLES`` counts them.

    A step counts from the cycle its descriptor is requested to its ``layer_done``; the
    first also counts the cycle in which the scheduler takes ``start``.

    Parameters
    ----------
    plan : Plan or Program
        The plan, or its compiled :class:`~mnaccel.compiler.image.Program`, whose
        addresses place the DMA's burst boundaries exactly (with a plan, every read is
        taken to start on one).
    memory : Memory
        The external memory's timing; default :data:`DRAM`, :data:`AXIRAM` for the system
        bench.
    dram_latency : int, optional
        Shorthand for ``Memory(read_latency=dram_latency, write_latency=dram_latency)``.
    fuse_pool : bool
        What-if: the global pool accumulates the previous step's output stream (a bank of
        int32 sums after the output requantizer), leaving only its requantization.
    """
    program = None
    if hasattr(plan, "descriptors") and hasattr(plan, "plan"):
        program, plan = plan, plan.plan
    if memory is not None and dram_latency is not None:
        raise ValueError("give memory or dram_latency, not both")
    if dram_latency is not None:
        memory = Memory(read_latency=dram_latency, write_latency=dram_latency)
    mem = DRAM if memory is None else memory
    if not isinstance(mem, Memory):
        raise TypeError(f"memory must be a Memory, not {mem!r}")
    b = _blocks(plan.config)
    macs = _macs(plan)
    out = []
    for i, step in enumerate(plan.steps):
        step_macs = sum(macs.get(layer.name, 0) for layer in step.layers)
        if step.opcode is Opcode.POOL and fuse_pool:
            s = _fused_pool(plan, step, b, mem)
        else:
            addrs = None
            if program is not None:
                addrs = {**program.descriptors[i],
                         "desc_addr": program.program_addr + i * DESCRIPTOR_BYTES}
            s = _step(plan, step, b, mem, step_macs, addrs)
        if i == 0:
            # The first step also counts the cycle in which the scheduler sees start.
            s.cycles += 1
            s.breakdown["setup"] += 1
            s.utilization = s.macs / (s.cycles * plan.config.multipliers)
        out.append(s)
    return out


def summary(plan: Plan, steps: list[StepCycles]) -> dict:
    """Whole-network totals: MACs, cycles, utilization, external-memory bytes."""
    cfg = plan.config
    macs = sum(s.macs for s in steps)
    cycles = sum(s.cycles for s in steps)
    return {
        "macs": macs,
        "cycles": cycles,
        "ideal_cycles": _ceil(macs, cfg.multipliers),
        "multipliers": cfg.multipliers,
        "utilization": macs / (cycles * cfg.multipliers),
        "dram_read_bytes": sum(s.dram_read_bytes for s in steps),
        "dram_write_bytes": sum(s.dram_write_bytes for s in steps),
    }
