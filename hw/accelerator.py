# amaranth: UnusedElaboratable=no
"""The accelerator top: AXI4 master, AXI4-Lite registers, interrupt, scheduler and datapath.

::

    s_axil ─► ControlRegisters ──start/program_addr──► Scheduler ──done/error/layer_done──┐
                   │ irq                                 │  ▲                               │
                   ▼                                     ▼  │ rd/wr streams                 │
                  irq                                    DMA ◄──► m_axi (external memory) │
                                                         │                                │
                      Scheduler ─pw_w/pw_i─► Pointwise ─pw_o─► Scheduler ─rq_i─► Requantizer
                                                                    ▲────────rq_o─────────┘

An SoC sees an AXI4 manager port ``m_axi`` (to DRAM), an AXI4-Lite subordinate ``s_axil``
(docs/registers.md) and a level interrupt ``irq``. Software writes the program address to
``PROGRAM_ADDR``, sets ``CTRL.IRQ_EN`` and ``CTRL.START``, and waits for the interrupt.

Recovery: ``CTRL.SOFT_RESET``, and a run that ends on an error (a bad descriptor, a DMA
error), leave engines and the DMA mid-transfer. The top then *drains*: it holds the
scheduler and the datapath in reset and aborts the DMA (no new bursts; the bursts already
on the bus complete — reads are dropped, writes go out with no byte enabled) until both DMA
engines are idle. An errored run reports ``done`` (and its error) to the registers only
once drained, so ``STATUS.DONE`` always means "idle"; a start accepted during a soft
reset's drain is held and begins when it ends. See docs/hw/accelerator.md.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mnaccel.hw.axi import AXI4LiteSignature, AXI4Signature
from mnaccel.hw.config import AccelConfig
from mnaccel.hw.csr import ControlRegisters
from mnaccel.hw.depthwise import DepthwiseLayer
from mnaccel.hw.dma import DMA
from mnaccel.hw.line_buffer import ConvVectorAdapter, LineBuffer
from mnaccel.hw.pointwise import Pointwise
from mnaccel.hw.requantizer import Requantizer
from mnaccel.hw.scheduler import CONV0_CHANNELS, CONV0_KERNEL, LEN_WIDTH, Scheduler

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """The MobileNet accelerator: one AXI4 manager, one AXI4-Lite subordinate, one interrupt.

    Parameters
    ----------
    config : AccelConfig
        Hardware configuration (see :class:`~mnaccel.hw.scheduler.Scheduler` for the
        constraints the current scheduler puts on it).
    csr_addr_width : int
        Address width of the register window (default 12: 4 KiB).
    max_burst : int
        Longest AXI burst the DMA issues (beats).
    ecp5_dsp : bool
        Build the pointwise array's multipliers and accumulator memory, the requantizers'
        wide products and the line buffers' and depthwise weights' block RAMs from ECP5
        primitives with their registers (``MULT18X18D``, ``DP16KD``; see
        :class:`~mnaccel.hw.pointwise.Pointwise`, :class:`~mnaccel.hw.requantizer.Requantizer`
        and :class:`~mnaccel.hw.line_buffer.LineBuffer`); False gives portable Verilog.

    Members
    -------
    m_axi : Out(AXI4Signature(axi_addr_width, axi_data_width))
        To external memory (Verilog ``m_axi__araddr``, …).
    s_axil : In(AXI4LiteSignature(csr_addr_width))
        Control and status registers (docs/registers.md).
    irq : Out(1)
        Level interrupt (``IRQ_STATUS & IRQ_ENABLE``, gated by ``CTRL.IRQ_EN``).

    Attributes
    ----------
    config : AccelConfig
    scheduler : Scheduler
    pointwise : Pointwise
    requantizer : Requantizer
    dma : DMA
    csr : ControlRegisters
    depthwise : DepthwiseLayer
        Line buffer → depthwise array → dw requantizer of DW_PW steps.
    conv_line_buffer : LineBuffer
        CONV0's input map (RGB padded to ``channel_align`` channels), ``lb_in_lanes``
        channels per window.
    conv_adapter : ConvVectorAdapter
        CONV0's windows → 27-byte vectors (3×3 over RGB).
    """

    def __init__(self, config: AccelConfig, *, csr_addr_width: int = 12,
                 max_burst: int = 16, ecp5_dsp: bool = False):
        self._cfg = config
        self.scheduler = Scheduler(config)
        # Built here rather than through the blocks' from_config, so that this file's
        # UnusedElaboratable pragma covers an Accelerator made only for its properties.
        self.pointwise = Pointwise(rows=config.pw_rows, cols=config.pw_cols,
                                   acc_depth=config.pw_acc_depth,
                                   weight_rows=config.pw_weight_rows, ecp5=ecp5_dsp)
        self.requantizer = Requantizer(lanes=config.rq_lanes, ecp5_dsp=ecp5_dsp,
                                       lut_products=config.rq_lut_products)
        self.dma = DMA(data_width=config.axi_data_width, addr_width=config.axi_addr_width,
                       len_width=LEN_WIDTH, max_burst=max_burst,
                       max_outstanding=config.axi_max_outstanding)
        self.csr = ControlRegisters(addr_width=csr_addr_width,
                                    program_addr_width=config.axi_addr_width,
                                    config_id=int(config.config_id, 16))
        self.depthwise = DepthwiseLayer(
            lanes=config.dw_lanes, in_lanes=config.lb_in_lanes, kernel=config.dw_kernel,
            max_kernel=config.max_kernel, max_width=config.lb_max_width,
            max_channels=config.lb_max_channels, max_row_bytes=config.lb_max_row_bytes,
            mul_luts=config.dw_mul_luts, ecp5_dsp=ecp5_dsp)
        # CONV0's own small line buffer: pixels of `align` stored channels (RGB padded).
        # Its windows are as wide as its input beats (lb_in_lanes, not dw_lanes): with no
        # gearbox the stride-2 layer takes its input at one beat per cycle, 4·align/in_lanes
        # cycles per output pixel, and keeps pace with the pointwise array instead of
        # stalling it for a third of the layer.
        align = config.channel_align
        self.conv_line_buffer = LineBuffer(
            lanes=config.lb_in_lanes, in_lanes=config.lb_in_lanes, max_kernel=3,
            max_width=config.lb_max_width, max_channels=align,
            max_row_bytes=config.lb_max_width * align, ecp5_bram=ecp5_dsp)
        self.conv_adapter = ConvVectorAdapter(
            lanes=config.lb_in_lanes, max_kernel=3, max_channels=align, kernel=CONV0_KERNEL,
            channels=CONV0_CHANNELS, padded_channels=align)
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=config.axi_addr_width,
                                       data_width=config.axi_data_width)),
            "s_axil": In(AXI4LiteSignature(addr_width=csr_addr_width)),
            "irq": Out(1),
        })

    @property
    def config(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        sch, pw, rq, dma, csr = (self.scheduler, self.pointwise, self.requantizer, self.dma,
                                 self.csr)
        # The drain (module docstring): the registers keep their values, the control and
        # the datapath are held in reset, the DMA finishes what the bus has accepted.
        drain = Signal()
        hold = Signal()
        dma_idle = Signal()
        failed = Signal()            # the run ended on an error; its done waits for the drain
        failed_code = Signal(8)
        start_held = Signal()        # a start accepted during a drain
        go = Signal()
        m.d.comb += [
            hold.eq(csr.soft_reset | drain),
            dma_idle.eq(~dma.rd_status.busy & ~dma.wr_status.busy),
            go.eq((csr.start | start_held) & ~hold),
        ]
        with m.If(csr.soft_reset | (sch.done & sch.error)):
            m.d.sync += drain.eq(1)
        with m.Elif(drain & dma_idle):
            m.d.sync += drain.eq(0)
        with m.If(sch.done & sch.error):
            m.d.sync += [failed.eq(1), failed_code.eq(sch.error_code)]
        with m.Elif(drain & dma_idle):
            m.d.sync += failed.eq(0)
        with m.If(go):
            m.d.sync += start_held.eq(0)
        with m.Elif(csr.start):
            m.d.sync += start_held.eq(1)
        with m.If(csr.soft_reset):
            m.d.sync += [failed.eq(0), start_held.eq(0)]
        m.submodules.scheduler = ResetInserter(hold)(sch)
        m.submodules.pointwise = ResetInserter(hold)(pw)
        m.submodules.requantizer = ResetInserter(hold)(rq)
        m.submodules.depthwise = dw = ResetInserter(hold)(self.depthwise)
        m.submodules.conv_line_buffer = ResetInserter(hold)(self.conv_line_buffer)
        m.submodules.conv_adapter = ResetInserter(hold)(self.conv_adapter)
        m.submodules.dma = dma
        m.submodules.csr = csr

        wiring.connect(m, wiring.flipped(self.s_axil), csr.s_axil)
        wiring.connect(m, wiring.flipped(self.m_axi), dma.m_axi)
        m.d.comb += [
            self.irq.eq(csr.irq),
            sch.start.eq(go),
            sch.program_addr.eq(csr.program_addr),
            # A run without error is done at once; one with an error once drained (not if
            # a soft reset has just cancelled it).
            csr.done.eq(Mux(failed, drain & dma_idle & ~csr.soft_reset, sch.done & ~sch.error)),
            csr.error.eq(failed & drain & dma_idle & ~csr.soft_reset),
            csr.error_code.eq(failed_code),
            csr.layer_done.eq(sch.layer_done),
            csr.read_stall.eq(sch.read_stall),
            csr.write_stall.eq(sch.write_stall),
            sch.rd_status.eq(dma.rd_status),
            sch.wr_status.eq(dma.wr_status),
            dma.clear.eq(go),
            dma.abort.eq(hold),
        ]
        wiring.connect(m, sch.rd_cmd, dma.rd_cmd)
        wiring.connect(m, dma.rd_data, sch.rd_data)
        wiring.connect(m, sch.wr_cmd, dma.wr_cmd)
        wiring.connect(m, sch.wr_data, dma.wr_data)
        wiring.connect(m, dma.wr_done, sch.wr_done)
        wiring.connect(m, sch.pw_w, pw.w)
        wiring.connect(m, sch.pw_i, pw.i)
        wiring.connect(m, pw.o, sch.pw_o)
        wiring.connect(m, sch.rq_i, rq.i)
        wiring.connect(m, rq.o, sch.rq_o)
        dw = self.depthwise
        wiring.connect(m, sch.dw_cfg, dw.cfg)
        wiring.connect(m, sch.dw_i, dw.i)
        wiring.connect(m, sch.dw_w, dw.w)
        wiring.connect(m, sch.dw_p, dw.p)
        wiring.connect(m, dw.o, sch.dw_o)
        clb, cva = self.conv_line_buffer, self.conv_adapter
        wiring.connect(m, sch.cv_cfg, clb.cfg)
        wiring.connect(m, sch.cv_i, clb.i)
        wiring.connect(m, clb.o, cva.i)
        wiring.connect(m, cva.o, sch.cv_o)
        m.d.comb += [
            rq.output_zp.eq(sch.rq_output_zp),
            rq.act_min.eq(sch.rq_act_min),
            rq.act_max.eq(sch.rq_act_max),
        ]
        return m
