"""Control and status registers: an AXI4-Lite register file, defined once as data.

:data:`REGISTERS` is the register map. :class:`ControlRegisters` builds its gateware from it
(decoding, access semantics, reset values) and :func:`registers_markdown` renders it as the
table in ``docs/registers.md`` — regenerate with ``python -m mnaccel.hw.csr >
docs/registers.md``; a test checks the file matches. Host software and the system bench take
offsets and bit positions from :func:`register` / :class:`Field` rather than hard-coding them.

Access types (:class:`Access`):

``RW``
    Read/write storage; byte strobes honoured.
``RO``
    Read-only, driven by the hardware; writes are ignored.
``W1C``
    Set by hardware events, cleared by writing 1 (writing 0 leaves a bit alone). An event
    in the same cycle as the clearing write wins, so no event is lost.
``W1P``
    Write 1 to pulse: a one-cycle command to the hardware; reads as 0.

64-bit counters are two registers, ``*_LO`` and ``*_HI``. Reading any ``*_LO`` copies the
upper half of that counter into a shadow that the next read of a ``*_HI`` returns, so read
``LO`` then ``HI`` of the same counter (nothing else in between) for a consistent value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mnaccel.hw.axi import AXI4LiteSignature, Resp

__all__ = [
    "Access",
    "ControlRegisters",
    "Field",
    "HW_VERSION",
    "REGISTERS",
    "Register",
    "register",
    "registers_markdown",
]

#: Hardware version reported in ``VERSION`` (major, minor, patch); bump the minor number
#: when the register map or the descriptor format changes.
HW_VERSION = (0, 2, 0)


class Access(enum.Enum):
    """How software may access a field (see the module docstring)."""

    RW = "RW"
    RO = "RO"
    W1C = "W1C"
    W1P = "W1P"


@dataclass(frozen=True)
class Field:
    """A bit field of a register.

    Attributes
    ----------
    name : str
        Field name, unique within its register.
    lsb : int
        Lowest bit.
    width : int
        Bits.
    access : Access
    reset : int or None
        Value after reset; None if it depends on the configuration (``CONFIG_ID``).
    doc : str
        One-line description (Markdown).
    """

    name: str
    lsb: int
    width: int
    access: Access
    reset: int | None
    doc: str

    @property
    def mask(self) -> int:
        """The field's bits within its 32-bit register."""
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    """A 32-bit register: byte ``offset`` in the AXI4-Lite window, and its fields."""

    name: str
    offset: int
    fields: tuple[Field, ...]
    doc: str

    def field(self, name: str) -> Field:
        """The field called ``name``; KeyError naming the register if there is none."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")

    def reset_value(self, config_id: int = 0) -> int:
        """The register's value after reset (``config_id`` for fields without a fixed one)."""
        value = 0
        for f in self.fields:
            value |= ((config_id if f.reset is None else f.reset) << f.lsb) & f.mask
        return value


def _f(name, lsb, width, access, reset, doc):
    return Field(name, lsb, width, Access(access), reset, doc)


def _counter(name: str, offset: int, doc: str) -> tuple[Register, Register]:
    return (
        Register(f"{name}_LO", offset, (_f("COUNT", 0, 32, "RO", 0, "bits 31:0"),),
                 f"{doc}, low half; reading it latches the high half for `{name}_HI`"),
        Register(f"{name}_HI", offset + 4, (_f("COUNT", 0, 32, "RO", 0, "bits 63:32"),),
                 f"{doc}, high half as latched by the last read of a `*_LO`"),
    )


#: The register map, in offset order.
REGISTERS: tuple[Register, ...] = (
    Register("CTRL", 0x00, (
        _f("START", 0, 1, "W1P", 0, "start a run of the program at `PROGRAM_ADDR`; "
           "ignored while `STATUS.BUSY` (sets `STATUS.START_IGNORED`)"),
        _f("SOFT_RESET", 1, 1, "W1P", 0, "reset the accelerator's datapath and clear "
           "`STATUS`; registers keep their values; the AXI bursts in flight complete "
           "(reads dropped, writes without byte enables) and a start meanwhile waits for "
           "them"),
        _f("IRQ_EN", 2, 1, "RW", 0, "global interrupt enable"),
    ), "control"),
    Register("STATUS", 0x04, (
        _f("BUSY", 0, 1, "RO", 0, "a run is in progress"),
        _f("DONE", 1, 1, "RO", 0, "the last run has finished and the accelerator is "
           "idle (cleared by a start)"),
        _f("ERROR", 2, 1, "RO", 0, "the last run reported an error (cleared by a start)"),
        _f("START_IGNORED", 3, 1, "RO", 0, "a start arrived while busy (cleared by a start)"),
        _f("ERROR_CODE", 8, 8, "RO", 0, "code of the run's first error, 0 if none: 1 "
           "opcode not executed, 2 read DMA error, 3 write DMA error, 4 descriptor sizes "
           "out of range, 5 unaligned address (`hw/scheduler.ErrorCode`)"),
    ), "run status; `DONE`, `ERROR`, `START_IGNORED` and `ERROR_CODE` are also cleared by "
       "`CTRL.SOFT_RESET`"),
    Register("IRQ_STATUS", 0x08, (
        _f("DONE", 0, 1, "W1C", 0, "a run finished"),
        _f("ERROR", 1, 1, "W1C", 0, "an error was reported"),
        _f("LAYER", 2, 1, "W1C", 0, "a layer finished (`LAYER_CYCLES` holds its cycles)"),
    ), "interrupt sources, pending; `irq` is `CTRL.IRQ_EN` and any bit of "
       "`IRQ_STATUS & IRQ_ENABLE`"),
    Register("IRQ_ENABLE", 0x0C, (
        _f("DONE", 0, 1, "RW", 1, "interrupt on `IRQ_STATUS.DONE`"),
        _f("ERROR", 1, 1, "RW", 1, "interrupt on `IRQ_STATUS.ERROR`"),
        _f("LAYER", 2, 1, "RW", 0, "interrupt on `IRQ_STATUS.LAYER`"),
    ), "per-source interrupt enables"),
    Register("VERSION", 0x10, (
        _f("PATCH", 0, 8, "RO", HW_VERSION[2], "patch version"),
        _f("MINOR", 8, 8, "RO", HW_VERSION[1], "minor version (register map, descriptors)"),
        _f("MAJOR", 16, 8, "RO", HW_VERSION[0], "major version"),
    ), "hardware version"),
    Register("CONFIG_ID", 0x14, (
        _f("ID", 0, 32, "RO", None, "`AccelConfig.config_id` as a 32-bit number"),
    ), "identifies the hardware configuration the compiler must target"),
    Register("PROGRAM_ADDR_LO", 0x18, (
        _f("ADDR", 0, 32, "RW", 0, "bits 31:0"),
    ), "byte address of the program (layer descriptors) in external memory"),
    Register("PROGRAM_ADDR_HI", 0x1C, (
        _f("ADDR", 0, 32, "RW", 0, "bits 63:32 (ignored above the AXI address width)"),
    ), "program address, high half"),
    *_counter("CYCLES", 0x20, "cycles of the current or last run"),
    *_counter("LAYER_CYCLES", 0x28, "cycles of the last finished layer"),
    Register("LAYER_COUNT", 0x30, (
        _f("COUNT", 0, 32, "RO", 0, "layers finished in the current or last run"),
    ), "layer progress"),
    *_counter("READ_STALL", 0x38, "cycles of the run in which the datapath waited for "
              "external-memory reads"),
    *_counter("WRITE_STALL", 0x40, "cycles of the run in which the datapath waited for "
              "external-memory writes"),
)


def register(name: str) -> Register:
    """The register called ``name``; KeyError listing the names if there is none."""
    for r in REGISTERS:
        if r.name == name:
            return r
    raise KeyError(f"no register {name!r}; registers: {', '.join(r.name for r in REGISTERS)}")


def _check_map(registers) -> None:
    offsets = [r.offset for r in registers]
    if offsets != sorted(set(offsets)) or any(o % 4 for o in offsets):
        raise ValueError(f"register offsets must be distinct, ascending, 4-aligned: {offsets}")
    for r in registers:
        used = 0
        for f in r.fields:
            if f.mask & used or f.lsb + f.width > 32:
                raise ValueError(f"field {r.name}.{f.name} overlaps or leaves the register")
            used |= f.mask


_check_map(REGISTERS)


def registers_markdown() -> str:
    """``docs/registers.md``: the register map as Markdown tables."""
    lines = [
        "# Control and status registers",
        "",
        "<!-- Generated by `python -m mnaccel.hw.csr > docs/registers.md` from",
        "     `mnaccel.hw.csr.REGISTERS`; do not edit (tests/hw/test_csr.py checks it). -->",
        "",
        "An AXI4-Lite subordinate (`s_axil`), 32-bit registers at the byte offsets below. "
        "Reads and writes of unmapped offsets answer SLVERR (reads return 0). "
        f"Hardware version {'.'.join(map(str, HW_VERSION))}.",
        "",
        "Access: **RW** read/write (byte strobes honoured); **RO** read-only, writes "
        "ignored; **W1C** set by hardware, write 1 to clear (a hardware event in the same "
        "cycle wins); **W1P** write 1 to pulse a command, reads 0.",
        "",
        "64-bit counters: reading `*_LO` latches the counter's high half, which the next "
        "read of a `*_HI` returns — read `LO` then `HI`. Counters clear on an accepted "
        "start and count while `STATUS.BUSY`.",
        "",
        "## Map",
        "",
        "| Offset | Register | Reset | Description |",
        "| --- | --- | --- | --- |",
    ]
    for r in REGISTERS:
        fixed = all(f.reset is not None for f in r.fields)
        reset = f"`0x{r.reset_value():08x}`" if fixed else "config"
        lines.append(f"| `0x{r.offset:02x}` | `{r.name}` | {reset} | {r.doc} |")
    lines += ["", "## Fields", "",
              "| Register | Bits | Field | Access | Reset | Description |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in REGISTERS:
        for f in r.fields:
            bits = str(f.lsb) if f.width == 1 else f"{f.lsb + f.width - 1}:{f.lsb}"
            reset = "config" if f.reset is None else (
                str(f.reset) if f.width < 8 else f"`0x{f.reset:x}`")
            lines.append(f"| `{r.name}` | {bits} | `{f.name}` | {f.access.value} | {reset} "
                         f"| {f.doc} |")
    return "\n".join(lines) + "\n"


class ControlRegisters(wiring.Component):
    """AXI4-Lite register file of the accelerator: control, status, counters, interrupt.

    One access at a time per direction: a write is taken when ``awvalid`` and ``wvalid``
    are both high (AXI allows a subordinate to wait for both), takes effect the next cycle
    and is answered on B the cycle after; a read is answered on R two cycles after its AR
    handshake (the decoded address is registered, then the selected value). The next
    address is taken once the response has been accepted.

    Parameters
    ----------
    addr_width : int
        AXI4-Lite address width, 7…32 (the map spans ``0x00``–``0x47``; higher address
        bits are decoded too, so the window must be exactly ``2**addr_width`` bytes).
    program_addr_width : int
        Width of ``program_addr`` (the accelerator's AXI4 address width), 12…64.
    config_id : int
        Value of ``CONFIG_ID`` (``int(AccelConfig.config_id, 16)``), 32 bits.

    Members
    -------
    s_axil : In(AXI4LiteSignature(addr_width))
        The register port (Verilog ``s_axil__awaddr``, …).
    start : Out(1)
        One-cycle pulse: an accepted ``CTRL.START``. ``busy`` rises in the same cycle.
    soft_reset : Out(1)
        One-cycle pulse: ``CTRL.SOFT_RESET``.
    program_addr : Out(program_addr_width)
        ``PROGRAM_ADDR_HI:PROGRAM_ADDR_LO``.
    busy : Out(1)
        ``STATUS.BUSY``: from ``start`` until ``done`` (or ``soft_reset``).
    done : In(1)
        Pulse: the run has finished (with or without error). Ends ``busy``.
    error : In(1)
        Pulse: an error with code ``error_code`` (the first one of a run is kept).
    error_code : In(8)
        Error code, read with ``error``; non-zero.
    layer_done : In(1)
        Pulse: a layer has finished; latches ``LAYER_CYCLES``, counts ``LAYER_COUNT``.
    read_stall, write_stall : In(1)
        High in each cycle the datapath waits for memory; counted while ``busy``.
    irq : Out(1)
        Level interrupt, ``CTRL.IRQ_EN & |(IRQ_STATUS & IRQ_ENABLE)`` as those registers
        stood one cycle before (a flip-flop output): it rises two cycles after the event's
        pulse and falls three cycles after the clearing write's handshake.

    Attributes
    ----------
    read_latency : int
        Cycles from an AR handshake to ``rvalid``: 2.
    write_latency : int
        Cycles from the AW/W handshake to ``bvalid``: 2.
    """

    def __init__(self, *, addr_width: int = 12, program_addr_width: int = 32,
                 config_id: int = 0):
        if not isinstance(addr_width, int) or not 7 <= addr_width <= 32:
            raise ValueError(f"addr_width must be in [7, 32], not {addr_width!r}")
        if not isinstance(program_addr_width, int) or not 12 <= program_addr_width <= 64:
            raise ValueError(
                f"program_addr_width must be in [12, 64], not {program_addr_width!r}")
        if not isinstance(config_id, int) or not 0 <= config_id < 1 << 32:
            raise ValueError(f"config_id must be a 32-bit unsigned int, not {config_id!r}")
        self._addr_width = addr_width
        self._program_addr_width = program_addr_width
        self._config_id = config_id
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=addr_width)),
            "start": Out(1),
            "soft_reset": Out(1),
            "program_addr": Out(program_addr_width),
            "busy": Out(1),
            "done": In(1),
            "error": In(1),
            "error_code": In(8),
            "layer_done": In(1),
            "read_stall": In(1),
            "write_stall": In(1),
            "irq": Out(1),
        })

    @classmethod
    def from_config(cls, config, **kwargs) -> ControlRegisters:
        """Registers for ``config``: its ``config_id`` and AXI4 address width."""
        return cls(config_id=int(config.config_id, 16),
                   program_addr_width=config.axi_addr_width, **kwargs)

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def program_addr_width(self) -> int:
        return self._program_addr_width

    @property
    def config_id(self) -> int:
        return self._config_id

    @property
    def read_latency(self) -> int:
        return 2

    @property
    def write_latency(self) -> int:
        return 2

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil

        # -- The bus side: one write (AW and W together) and one read at a time.
        # Both take two cycles: the handshake registers the decoded address (one flag per
        # register) and, for writes, the data and strobes; the next cycle performs the
        # access. Decoding in the same cycle as the read mux or the writes' effects (the
        # counters' clear on a start fans out to 300 flip-flops) limited the clock.
        wr = Signal()  # this cycle takes a write
        wpending = Signal()  # the write is decoded, it takes effect this cycle
        m.d.comb += [
            wr.eq(bus.awvalid & bus.wvalid & ~bus.bvalid & ~wpending),
            bus.awready.eq(wr),
            bus.wready.eq(wr),
        ]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        m.d.sync += wpending.eq(wr)
        rd = Signal()  # this cycle takes a read address
        pending = Signal()  # the address is decoded, the data is muxed this cycle
        m.d.comb += [rd.eq(bus.arvalid & bus.arready),
                     bus.arready.eq(~bus.rvalid & ~pending)]
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        m.d.sync += pending.eq(rd)
        wdec = {r.name: Signal(name=f"wdec_{r.name}") for r in REGISTERS}
        wsel = {r.name: Signal(name=f"wsel_{r.name}") for r in REGISTERS}
        rsel = {r.name: Signal(name=f"rsel_{r.name}") for r in REGISTERS}
        wdata = Signal(32)
        wstrb = Signal(4)
        with m.If(wr):
            m.d.sync += [wdata.eq(bus.wdata), wstrb.eq(bus.wstrb)]
        for r in REGISTERS:
            # Cleared by every address taken, so at most one flag is set per access.
            with m.If(wr):
                m.d.sync += wdec[r.name].eq(bus.awaddr[2:] == r.offset >> 2)
            m.d.comb += wsel[r.name].eq(wpending & wdec[r.name])
            with m.If(rd):
                m.d.sync += rsel[r.name].eq(bus.araddr[2:] == r.offset >> 2)
        with m.If(wpending):
            hit = Cat(wdec.values()).any()
            m.d.sync += [bus.bvalid.eq(1), bus.bresp.eq(Mux(hit, Resp.OKAY, Resp.SLVERR))]
        # Bits of the write data that are written: the byte strobes, expanded.
        wmask = Cat(*(b.replicate(8) for b in wstrb))
        wbits = Signal(32)
        m.d.comb += wbits.eq(wdata & wmask)

        def written(reg: str, fld: str) -> Signal:
            """This cycle writes 1s to the field: the written bits, else 0."""
            f = register(reg).field(fld)
            # Decoded at the handshake, so a pulse (a start clears 300 counter bits) is
            # one gate from a flip-flop.
            bits = Signal(f.width, name=f"wq_{reg}_{fld}")
            port_mask = Cat(*(b.replicate(8) for b in bus.wstrb))
            with m.If(wr):
                m.d.sync += bits.eq(Mux(bus.awaddr[2:] == register(reg).offset >> 2,
                                        (bus.wdata & port_mask)[f.lsb:f.lsb + f.width], 0))
            s = Signal(f.width, name=f"w_{reg}_{fld}")
            m.d.comb += s.eq(Mux(wpending, bits, 0))
            return s

        def storage(reg: str, fld: str) -> Signal:
            """An RW field's flip-flops, written through the byte strobes."""
            f = register(reg).field(fld)
            s = Signal(f.width, init=f.reset, name=f"{reg}_{fld}")
            keep = ~wmask[f.lsb:f.lsb + f.width]
            with m.If(wsel[reg]):
                m.d.sync += s.eq((s & keep) | wbits[f.lsb:f.lsb + f.width])
            return s

        # -- Control.
        irq_en = storage("CTRL", "IRQ_EN")
        irq_enable = Cat(storage("IRQ_ENABLE", x) for x in ("DONE", "ERROR", "LAYER"))
        prog_lo = storage("PROGRAM_ADDR_LO", "ADDR")
        prog_hi = storage("PROGRAM_ADDR_HI", "ADDR")
        m.d.comb += self.program_addr.eq(Cat(prog_lo, prog_hi)[:self._program_addr_width])

        start_req = written("CTRL", "START")
        soft_req = written("CTRL", "SOFT_RESET")
        accept = Signal()
        m.d.comb += accept.eq(start_req & ~self.busy & ~soft_req)
        m.d.sync += [self.start.eq(accept), self.soft_reset.eq(soft_req)]

        done_flag = Signal()
        error_flag = Signal()
        start_ignored = Signal()
        error_code = Signal(8)
        cycles = Signal(64)
        layer_run = Signal(64)  # cycles of the layer in progress
        layer_cycles = Signal(64)
        layer_count = Signal(32)
        read_stall = Signal(64)
        write_stall = Signal(64)

        # Counting: while busy. `busy` rises with the `start` pulse, so the start cycle
        # counts, and falls after the `done` cycle, which counts too.
        with m.If(self.busy):
            m.d.sync += [
                cycles.eq(cycles + 1),
                layer_run.eq(layer_run + 1),
                read_stall.eq(read_stall + self.read_stall),
                write_stall.eq(write_stall + self.write_stall),
            ]
            with m.If(self.layer_done):
                m.d.sync += [
                    layer_cycles.eq(layer_run + 1),
                    layer_run.eq(0),
                    layer_count.eq(layer_count + 1),
                ]
            with m.If(self.done):
                m.d.sync += [self.busy.eq(0), done_flag.eq(1)]
        with m.If(self.error & ~error_flag):
            m.d.sync += [error_flag.eq(1), error_code.eq(self.error_code)]
        with m.If(start_req & self.busy):
            m.d.sync += start_ignored.eq(1)
        with m.If(accept):
            m.d.sync += [
                self.busy.eq(1),
                done_flag.eq(0),
                error_flag.eq(0),
                error_code.eq(0),
                start_ignored.eq(0),
                cycles.eq(0),
                layer_run.eq(0),
                layer_cycles.eq(0),
                layer_count.eq(0),
                read_stall.eq(0),
                write_stall.eq(0),
            ]
        with m.If(soft_req):
            m.d.sync += [
                self.busy.eq(0),
                done_flag.eq(0),
                error_flag.eq(0),
                error_code.eq(0),
                start_ignored.eq(0),
            ]

        # -- Interrupts: events set, writes of 1 clear, events win.
        events = Cat(self.busy & self.done, self.error, self.busy & self.layer_done)
        irq_status = Signal(3)
        clear = written("IRQ_STATUS", "DONE") | (written("IRQ_STATUS", "ERROR") << 1) | (
            written("IRQ_STATUS", "LAYER") << 2)
        m.d.sync += [
            irq_status.eq((irq_status & ~clear) | events),
            self.irq.eq(irq_en & (irq_status & irq_enable).any()),
        ]

        # -- Reads.
        shadow = Signal(32)
        counters = {"CYCLES": cycles, "LAYER_CYCLES": layer_cycles,
                    "READ_STALL": read_stall, "WRITE_STALL": write_stall}
        version = register("VERSION").reset_value()
        values = {
            "CTRL": Cat(Const(0, 2), irq_en),
            "STATUS": Cat(self.busy, done_flag, error_flag, start_ignored, Const(0, 4),
                          error_code),
            "IRQ_STATUS": irq_status,
            "IRQ_ENABLE": irq_enable,
            "VERSION": Const(version, 32),
            "CONFIG_ID": Const(self._config_id, 32),
            "PROGRAM_ADDR_LO": prog_lo,
            "PROGRAM_ADDR_HI": prog_hi,
            "LAYER_COUNT": layer_count,
        }
        for name, counter in counters.items():
            values[f"{name}_LO"] = counter[:32]
            values[f"{name}_HI"] = shadow
            # In the cycle that returns the low half, so both halves are one snapshot.
            with m.If(pending & rsel[f"{name}_LO"]):
                m.d.sync += shadow.eq(counter[32:])
        assert set(values) == {r.name for r in REGISTERS}, "a register without a read value"
        # One-hot select: an AND-OR tree, no priority chain.
        rvalue = 0
        for name, value in values.items():
            rvalue = rvalue | (rsel[name].replicate(32) & value)
        with m.If(pending):
            hit = Cat(rsel.values()).any()
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(rvalue),
                         bus.rresp.eq(Mux(hit, Resp.OKAY, Resp.SLVERR))]
        return m


if __name__ == "__main__":
    print(registers_markdown(), end="")
