"""The accelerator with its external memory inside the simulator, for whole-network runs.

:class:`AcceleratorWithRam` wraps :class:`~mnaccel.hw.accelerator.Accelerator` and the
Verilog AXI4 RAM model ``sim/hdl/mnaccel_axi_ram.v`` (an ``Instance``): the memory traffic
then never leaves the simulator, and Python — the cocotb host in
:mod:`mnaccel.sim.benches.system` — runs only at register accesses and interrupts. The RAM is
filled and read back through files (:func:`write_image_hex`, :func:`read_dump_hex`).

Its timing is fixed and documented in the Verilog (``READ_LATENCY`` cycles from an AR
handshake to its first beat at the earliest, one beat per cycle, several bursts in flight)
— unlike cocotbext-axi's ``AxiRam``, which the bench uses when stalls are to be injected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mnaccel.hw.accelerator import Accelerator
from mnaccel.hw.config import AccelConfig

__all__ = ["AcceleratorWithRam", "RAM_MIN_BYTES", "RAM_SOURCE", "read_dump_hex",
           "write_image_hex"]

#: The Verilog RAM model, compiled beside the wrapper's Verilog.
RAM_SOURCE = Path(__file__).parent / "hdl" / "mnaccel_axi_ram.v"

#: The smallest RAM :func:`mnaccel.sim.system.run_images` builds (16 MB: MobileNetV1
#: 1.0/224's image is 10 MB), so that programs of different sizes share one build.
RAM_MIN_BYTES = 1 << 24

#: Signals of the accelerator's ``m_axi`` port that the RAM model takes (the rest —
#: lock, cache, prot, qos — it ignores).
_RAM_PORTS = ("awid", "awaddr", "awlen", "awsize", "awburst", "awvalid", "awready",
              "wdata", "wstrb", "wlast", "wvalid", "wready", "bid", "bresp", "bvalid",
              "bready", "arid", "araddr", "arlen", "arsize", "arburst", "arvalid", "arready",
              "rid", "rdata", "rresp", "rlast", "rvalid", "rready")


class AcceleratorWithRam(wiring.Component):
    """:class:`~mnaccel.hw.accelerator.Accelerator` with its ``m_axi`` port on a RAM model.

    Parameters
    ----------
    config : AccelConfig
    mem_bytes : int
        RAM size, a power of two, at least one bus word.
    read_latency : int
        Cycles from a read address handshake to its first data beat, at the earliest.

    Members
    -------
    s_axil : In(AXI4LiteSignature)
        The accelerator's control and status registers.
    irq : Out(1)
    mem_load : In(1)
        Pulse: zero the RAM, then load ``mem_image.hex`` from the simulator's working
        directory (or the file of the plusarg ``+mem_image=PATH``).
    mem_dump : In(1)
        Pulse: write words ``0 .. mem_dump_words - 1`` to ``mem_dump.hex`` (or
        ``+mem_dump=PATH``).
    mem_dump_words : In(32)
    """

    def __init__(self, config: AccelConfig, *, mem_bytes: int, read_latency: int = 2):
        word = config.axi_data_width // 8
        if mem_bytes < word or mem_bytes & (mem_bytes - 1):
            raise ValueError(f"mem_bytes must be a power of two >= {word}, not {mem_bytes}")
        self.accelerator = Accelerator(config)
        self._depth_log2 = (mem_bytes // word).bit_length() - 1
        self._read_latency = int(read_latency)
        super().__init__({
            "s_axil": self.accelerator.signature.members["s_axil"],
            "irq": Out(1),
            "mem_load": In(1),
            "mem_dump": In(1),
            "mem_dump_words": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = acc = self.accelerator
        wiring.connect(m, wiring.flipped(self.s_axil), acc.s_axil)
        m.d.comb += self.irq.eq(acc.irq)
        cfg = acc.config
        ports = {}
        for name in _RAM_PORTS:
            sig = getattr(acc.m_axi, name)
            # The RAM drives what the accelerator receives.
            driven_by_ram = name in ("awready", "wready", "bid", "bresp", "bvalid", "arready",
                                     "rid", "rdata", "rresp", "rlast", "rvalid")
            ports[("o_" if driven_by_ram else "i_") + name] = sig
        m.submodules.ram = Instance(
            "mnaccel_axi_ram",
            p_DATA_WIDTH=cfg.axi_data_width,
            p_ADDR_WIDTH=cfg.axi_addr_width,
            p_ID_WIDTH=len(acc.m_axi.arid),
            p_DEPTH_LOG2=self._depth_log2,
            p_READ_LATENCY=self._read_latency,
            i_clk=ClockSignal(),
            i_rst=ResetSignal(),
            i_mem_load=self.mem_load,
            i_mem_dump=self.mem_dump,
            i_mem_dump_words=self.mem_dump_words,
            **ports,
        )
        return m


def write_image_hex(path: Path, image: bytes, word_bytes: int) -> None:
    """Write ``image`` as ``$readmemh`` text: one bus word per line, most significant first."""
    data = np.frombuffer(bytes(image), np.uint8)
    pad = -len(data) % word_bytes
    if pad:
        data = np.concatenate([data, np.zeros(pad, np.uint8)])
    words = data.reshape(-1, word_bytes)[:, ::-1]
    text = words.tobytes().hex()
    step = 2 * word_bytes
    lines = [text[i:i + step] for i in range(0, len(text), step)]
    Path(path).write_text("\n".join(lines) + "\n")


def read_dump_hex(path: Path, word_bytes: int) -> bytes:
    """The bytes of a ``$writememh`` file written by the RAM model, in address order."""
    hexes = [line.strip() for line in Path(path).read_text().splitlines()]
    hexes = [h for h in hexes if h and not h.startswith(("@", "//"))]
    words = np.frombuffer(bytes.fromhex("".join(h.zfill(2 * word_bytes) for h in hexes)),
                          np.uint8).reshape(-1, word_bytes)
    return words[:, ::-1].tobytes()
