"""AXI4 and AXI4-Lite interface signatures, named as the AMBA specification names the wires.

A signature here is flat: every AMBA signal is a member named exactly as the specification
spells it (``awaddr``, ``wvalid``, ``rresp``, …), seen from the manager (master) side —
``Out`` for what a manager drives, ``In`` for what it receives; a subordinate (slave) port
is the ``.flip()`` of it. Amaranth flattens a port ``m_axi`` of this signature into the
Verilog ports ``m_axi__awaddr``, ``m_axi__awvalid``, … (two underscores between port and
member). That is the only naming difference from the usual ``m_axi_awaddr`` convention, and
both consumers handle it without a renaming shim:

* cocotbext-axi binds with its ``bus_separator`` argument (see :data:`BUS_SEPARATOR`)::

      AxiBus.from_prefix(dut, "m_axi", bus_separator="__")
      AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__")

* Vivado's and LiteX's interface inference match ``<prefix>_<signal>`` by the signal
  suffix, and a top-level wrapper for an SoC names the ports it exposes anyway.

Nested signatures (one per channel) would be cleaner Amaranth but produce
``m_axi__ar__araddr``, which no AXI tool recognises; hence one flat member list.

Only the signals the blocks of this project drive or use are present: ``*region`` and
``*user`` are left out (cocotbext-axi treats them as optional), and ``id`` is at least one
bit wide (cocotbext-axi requires ``awid``/``bid``/``arid``/``rid``).
"""

from __future__ import annotations

from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "AXI4LiteSignature",
    "AXI4Signature",
    "BUS_SEPARATOR",
    "Burst",
    "Resp",
]

#: Separator Amaranth puts between a port name and a member name in Verilog port names; pass
#: it as ``bus_separator=`` to cocotbext-axi's ``from_prefix``.
BUS_SEPARATOR = "__"


class Burst(enum.Enum, shape=2):
    """``AxBURST`` encodings."""

    FIXED = 0
    INCR = 1
    WRAP = 2


class Resp(enum.Enum, shape=2):
    """``xRESP`` encodings."""

    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


def _check_width(name: str, value, allowed) -> int:
    if not isinstance(value, int) or value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, not {value!r}")
    return value


_DATA_WIDTHS = (32, 64, 128, 256, 512, 1024)


class AXI4Signature(wiring.Signature):
    """An AXI4 manager port (full AXI4: bursts up to 256 beats), or one half of it.

    Parameters
    ----------
    addr_width : int
        ``AxADDR`` width in bits, 12…64 (at least one 4 KB page).
    data_width : int
        ``xDATA`` width in bits: 32, 64, 128, 256, 512 or 1024.
    id_width : int
        ``xID`` width in bits, 1…16.
    read, write : bool
        Include the read channels (AR, R) and the write channels (AW, W, B). A DMA engine
        that only reads takes ``write=False``; :class:`~mnaccel.hw.dma.DMA` joins a read
        half and a write half into one full port.

    Members
    -------
    awid, awaddr, awlen, awsize, awburst, awlock, awcache, awprot, awqos, awvalid : Out
        Write address channel (``write``).
    awready : In(1)
    wdata, wstrb, wlast, wvalid : Out
        Write data channel (``write``).
    wready : In(1)
    bid, bresp, bvalid : In
        Write response channel (``write``).
    bready : Out(1)
    arid, araddr, arlen, arsize, arburst, arlock, arcache, arprot, arqos, arvalid : Out
        Read address channel (``read``).
    arready : In(1)
    rid, rdata, rresp, rlast, rvalid : In
        Read data channel (``read``).
    rready : Out(1)
    """

    def __init__(self, *, addr_width: int, data_width: int, id_width: int = 1,
                 read: bool = True, write: bool = True):
        self._addr_width = _check_width("addr_width", addr_width, range(12, 65))
        self._data_width = _check_width("data_width", data_width, _DATA_WIDTHS)
        self._id_width = _check_width("id_width", id_width, range(1, 17))
        if not (read or write):
            raise ValueError("an AXI4 signature needs read=True, write=True or both")
        self._read, self._write = bool(read), bool(write)
        members = {}
        if write:
            members |= self._address_channel("aw") | {
                "wdata": Out(data_width),
                "wstrb": Out(data_width // 8),
                "wlast": Out(1),
                "wvalid": Out(1),
                "wready": In(1),
                "bid": In(id_width),
                "bresp": In(Resp),
                "bvalid": In(1),
                "bready": Out(1),
            }
        if read:
            members |= self._address_channel("ar") | {
                "rid": In(id_width),
                "rdata": In(data_width),
                "rresp": In(Resp),
                "rlast": In(1),
                "rvalid": In(1),
                "rready": Out(1),
            }
        super().__init__(members)

    def _address_channel(self, x: str) -> dict:
        return {
            f"{x}id": Out(self._id_width),
            f"{x}addr": Out(self._addr_width),
            f"{x}len": Out(8),
            f"{x}size": Out(3),
            f"{x}burst": Out(Burst),
            f"{x}lock": Out(1),
            f"{x}cache": Out(4),
            f"{x}prot": Out(3),
            f"{x}qos": Out(4),
            f"{x}valid": Out(1),
            f"{x}ready": In(1),
        }

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def data_width(self) -> int:
        return self._data_width

    @property
    def id_width(self) -> int:
        return self._id_width

    @property
    def read(self) -> bool:
        return self._read

    @property
    def write(self) -> bool:
        return self._write

    def _key(self):
        return (self._addr_width, self._data_width, self._id_width, self._read, self._write)

    def __eq__(self, other):
        return type(other) is type(self) and other._key() == self._key()

    def __hash__(self):
        return hash((type(self), self._key()))

    def __repr__(self):
        halves = "+".join(h for h, on in (("read", self._read), ("write", self._write)) if on)
        return (f"AXI4Signature(addr_width={self._addr_width}, data_width={self._data_width}, "
                f"id_width={self._id_width}, {halves})")


class AXI4LiteSignature(wiring.Signature):
    """An AXI4-Lite manager port; a register file's port is ``AXI4LiteSignature(...).flip()``.

    Parameters
    ----------
    addr_width : int
        ``AxADDR`` width in bits, 4…64.
    data_width : int
        32 or 64.

    Members
    -------
    awaddr, awprot, awvalid : Out
        Write address channel.
    awready : In(1)
    wdata, wstrb, wvalid : Out
        Write data channel.
    wready : In(1)
    bresp, bvalid : In
        Write response channel.
    bready : Out(1)
    araddr, arprot, arvalid : Out
        Read address channel.
    arready : In(1)
    rdata, rresp, rvalid : In
        Read data channel.
    rready : Out(1)
    """

    def __init__(self, *, addr_width: int, data_width: int = 32):
        self._addr_width = _check_width("addr_width", addr_width, range(4, 65))
        self._data_width = _check_width("data_width", data_width, (32, 64))
        super().__init__({
            "awaddr": Out(addr_width),
            "awprot": Out(3),
            "awvalid": Out(1),
            "awready": In(1),
            "wdata": Out(data_width),
            "wstrb": Out(data_width // 8),
            "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(Resp),
            "bvalid": In(1),
            "bready": Out(1),
            "araddr": Out(addr_width),
            "arprot": Out(3),
            "arvalid": Out(1),
            "arready": In(1),
            "rdata": In(data_width),
            "rresp": In(Resp),
            "rvalid": In(1),
            "rready": Out(1),
        })

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def data_width(self) -> int:
        return self._data_width

    def __eq__(self, other):
        return (type(other) is type(self) and other._addr_width == self._addr_width
                and other._data_width == self._data_width)

    def __hash__(self):
        return hash((type(self), self._addr_width, self._data_width))

    def __repr__(self):
        return (f"AXI4LiteSignature(addr_width={self._addr_width}, "
                f"data_width={self._data_width})")
