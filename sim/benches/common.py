"""Helpers shared by the cocotb benches: parameters, records, clock, reset, streams, layouts.

The bench process is started by :func:`mnaccel.sim.runner.run_bench`, which passes the
parameters and the record file through environment variables. Streams follow
:mod:`amaranth.lib.stream`: Amaranth flattens a stream port ``i`` into the Verilog ports
``i__valid``, ``i__ready`` (absent if the stream is ``always_ready``) and ``i__payload``.

Handshake sampling: every driver here writes only right after a rising clock edge and reads
in the :class:`~cocotb.triggers.ReadOnly` phase of that same time step, when the design has
settled; what it reads then is exactly what the next rising edge samples. This makes the
drivers correct for combinational ``ready``/``valid`` paths on any simulator.
"""

from __future__ import annotations

import json
import os
import random
from collections import deque
from pathlib import Path

import cocotb
from amaranth.hdl import Shape, ShapeCastable
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = [
    "StreamSink",
    "StreamSource",
    "bench_params",
    "pack",
    "record",
    "reset",
    "start_clock",
    "unpack",
]

_params_cache: dict | None = None


def bench_params() -> dict:
    """The ``params`` dict given to :func:`~mnaccel.sim.runner.run_bench` (``{}`` if none)."""
    global _params_cache
    if _params_cache is None:
        path = os.environ.get("MNACCEL_BENCH_PARAMS")
        _params_cache = json.loads(Path(path).read_text()) if path else {}
    return _params_cache


def _jsonable(value):
    if hasattr(value, "item"):  # NumPy scalar
        return value.item()
    if hasattr(value, "tolist"):  # NumPy array
        return value.tolist()
    raise TypeError(f"cannot record {value!r} of type {type(value).__name__} as JSON")


def record(**values) -> None:
    """Record measurements; :func:`~mnaccel.sim.runner.run_bench` returns them as a dict.

    Later calls add keys and overwrite earlier values of the same key. Values must be
    JSON-serialisable (NumPy scalars and arrays are converted).
    """
    path = os.environ.get("MNACCEL_BENCH_RECORD")
    if not path:
        return
    path = Path(path)
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(json.loads(json.dumps(values, default=_jsonable)))
    path.write_text(json.dumps(current, sort_keys=True))


def start_clock(clk, period_ns: int = 10, *, impl: str | None = None) -> Clock:
    """Start a free-running clock of ``period_ns`` on ``clk``; return the :class:`Clock`.

    ``impl`` is cocotb's: ``"gpi"`` toggles the clock in the simulator interface (C), with
    no Python per edge; ``"py"`` in a Python task; None (default) lets cocotb choose, which
    is ``"py"`` unless ``COCOTB_TRUST_INERTIAL_WRITES`` is set.
    """
    clock = Clock(clk, period_ns, unit="ns", impl=impl)
    clock.start()
    return clock


async def reset(dut, *, cycles: int = 2, clk=None, rst=None) -> None:
    """Hold Amaranth's synchronous reset (``rst``) high for ``cycles`` rising edges of ``clk``."""
    clk = dut.clk if clk is None else clk
    rst = dut.rst if rst is None else rst
    rst.value = 1
    for _ in range(cycles):
        await RisingEdge(clk)
    rst.value = 0


def _port(dut, name: str, required: bool = True):
    try:
        return getattr(dut, name)
    except AttributeError:
        if required:
            raise AttributeError(f"the design has no port {name!r}") from None
        return None


class StreamSource:
    """Drives an :mod:`amaranth.lib.stream` input ``<prefix>`` of the design.

    Parameters
    ----------
    dut : cocotb handle
        The toplevel.
    prefix : str
        Stream port name (``"i"`` for ports ``i__valid``, ``i__ready``, ``i__payload``).
    clk : cocotb handle
        The clock the stream is synchronous to.
    bubble : float
        Probability, before each word, of inserting one more idle cycle (``valid`` low).
    seed : int
        Seed of the bubble pattern.

    Attributes
    ----------
    cycles : list of int
        For each accepted word, the clock cycle (counted from the first :meth:`send`) in
        which it was transferred.
    times : list of float
        For each accepted word, the simulation time in ns of the rising edge that began its
        transfer cycle: comparable across drivers (latency = difference / clock period).
    """

    def __init__(self, dut, prefix: str, clk, *, bubble: float = 0.0, seed: int = 0):
        if not 0.0 <= bubble < 1.0:
            raise ValueError(f"bubble must be in [0, 1), not {bubble!r}")
        self._clk = clk
        self._valid = _port(dut, f"{prefix}__valid")
        self._payload = _port(dut, f"{prefix}__payload")
        self._ready = _port(dut, f"{prefix}__ready", required=False)
        self._bubble = bubble
        self._rng = random.Random(seed)
        self._cycle = 0
        self.cycles: list[int] = []
        self.times: list[float] = []
        self._valid.value = 0

    async def send(self, words) -> None:
        """Transfer ``words`` (ints, the flat payloads) in order; return when all are taken.

        Must be awaited right after a rising edge (e.g. after :func:`reset`).
        """
        for word in words:
            while self._bubble and self._rng.random() < self._bubble:
                self._valid.value = 0
                await RisingEdge(self._clk)
                self._cycle += 1
            self._valid.value = 1
            self._payload.value = int(word)
            while True:
                await ReadOnly()
                fire = self._ready is None or str(self._ready.value) == "1"
                if fire:
                    self.times.append(get_sim_time("ns"))
                await RisingEdge(self._clk)
                self._cycle += 1
                if fire:
                    self.cycles.append(self._cycle - 1)
                    break
        self._valid.value = 0


class StreamSink:
    """Receives an :mod:`amaranth.lib.stream` output ``<prefix>`` of the design.

    Starts collecting at construction, in the background, so no word is missed between
    calls of :meth:`recv`.

    Parameters
    ----------
    dut : cocotb handle
        The toplevel.
    prefix : str
        Stream port name (``"o"`` for ports ``o__valid``, ``o__ready``, ``o__payload``).
    clk : cocotb handle
        The clock the stream is synchronous to.
    backpressure : float
        Probability, each cycle, of holding ``ready`` low.
    seed : int
        Seed of the backpressure pattern.

    Attributes
    ----------
    cycles : list of int
        For each received word, the clock cycle (counted from construction) of its transfer.
    times : list of float
        For each received word, the simulation time in ns of the rising edge that began its
        transfer cycle (see :attr:`StreamSource.times`).
    """

    def __init__(self, dut, prefix: str, clk, *, backpressure: float = 0.0, seed: int = 0):
        if not 0.0 <= backpressure < 1.0:
            raise ValueError(f"backpressure must be in [0, 1), not {backpressure!r}")
        self._clk = clk
        self._valid = _port(dut, f"{prefix}__valid")
        self._payload = _port(dut, f"{prefix}__payload")
        self._ready = _port(dut, f"{prefix}__ready", required=False)
        self._backpressure = backpressure
        self._rng = random.Random(seed)
        self._queue: deque[int] = deque()
        self.cycles: list[int] = []
        self.times: list[float] = []
        if self._ready is not None:
            self._ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        cycle = 0
        while True:
            ready = not (self._backpressure and self._rng.random() < self._backpressure)
            if self._ready is not None:
                self._ready.value = int(ready)
            else:
                ready = True
            await ReadOnly()
            if ready and str(self._valid.value) == "1":
                self._queue.append(int(self._payload.value))
                self.cycles.append(cycle)
                self.times.append(get_sim_time("ns"))
            await RisingEdge(self._clk)
            cycle += 1

    async def recv(self, n: int, *, timeout_cycles: int | None = None) -> list[int]:
        """The next ``n`` words (flat payload ints) in order.

        Raises
        ------
        TimeoutError
            If they have not all arrived within ``timeout_cycles`` (default
            ``10_000 + 100 * n``), naming how many did.
        """
        limit = 10_000 + 100 * n if timeout_cycles is None else timeout_cycles
        waited = 0
        while len(self._queue) < n:
            if waited >= limit:
                raise TimeoutError(
                    f"received {len(self._queue)} of {n} words in {limit} cycles"
                )
            await RisingEdge(self._clk)
            waited += 1
        return [self._queue.popleft() for _ in range(n)]

    @property
    def pending(self) -> int:
        """Words received but not yet taken by :meth:`recv`."""
        return len(self._queue)


def _layout(shape):
    if isinstance(shape, data.Layout):
        return shape
    if isinstance(shape, type) and issubclass(shape, data.View):
        return data.Layout.cast(shape)
    if isinstance(shape, ShapeCastable) and not isinstance(shape, Shape):
        try:
            return data.Layout.cast(shape)
        except TypeError:
            pass
    return None


def pack(layout, value) -> int:
    """The flat unsigned integer of ``value`` laid out as ``layout``.

    Parameters
    ----------
    layout : amaranth.lib.data.Layout, a Struct class, or a shape
        ``StructLayout`` values are dicts (every field required), ``ArrayLayout`` values
        are sequences of the layout's length, plain shapes take ints (and enum members).

    Raises
    ------
    ValueError
        If a field is missing, a list has the wrong length or an int does not fit; the
        message names the field path.
    """
    return _pack(layout, value, "value")


def _pack(layout, value, where: str) -> int:
    lay = _layout(layout)
    if lay is None:
        shape = Shape.cast(layout)
        v = int(value.value if hasattr(value, "value") and not isinstance(value, int) else value)
        lo, hi = (-(1 << (shape.width - 1)), 1 << (shape.width - 1)) if shape.signed \
            else (0, 1 << shape.width)
        if shape.width == 0:
            lo, hi = 0, 1
        if not lo <= v < hi:
            raise ValueError(f"{where} = {v} does not fit {shape!r}")
        return v & ((1 << shape.width) - 1)
    if isinstance(lay, data.ArrayLayout):
        if len(value) != lay.length:
            raise ValueError(f"{where} has {len(value)} elements, the layout {lay.length}")
    elif isinstance(lay, data.StructLayout):
        missing = [key for key, _ in lay if key not in value]
        if missing:
            raise ValueError(f"{where} lacks field(s) {', '.join(map(str, missing))}")
    else:
        raise TypeError(f"pack supports struct and array layouts, not {lay!r}")
    flat = 0
    for key, field in lay:
        flat |= _pack(field.shape, value[key], f"{where}[{key!r}]") << field.offset
    return flat


def unpack(layout, flat: int):
    """The nested dicts/lists/ints that ``flat`` encodes in ``layout`` (inverse of :func:`pack`).

    Signed fields are sign-extended; enum fields come back as plain ints.
    """
    flat = int(flat)
    lay = _layout(layout)
    if lay is None:
        shape = Shape.cast(layout)
        v = flat & ((1 << shape.width) - 1)
        if shape.signed and shape.width and v >> (shape.width - 1):
            v -= 1 << shape.width
        return v
    if isinstance(lay, data.ArrayLayout):
        return [unpack(field.shape, flat >> field.offset) for _, field in lay]
    if isinstance(lay, data.StructLayout):
        return {key: unpack(field.shape, flat >> field.offset) for key, field in lay}
    raise TypeError(f"unpack supports struct and array layouts, not {lay!r}")
