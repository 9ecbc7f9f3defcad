"""One processing element of the pointwise systolic array: an int8 × int8 MAC.

The PE is weight-stationary (see :mod:`mnaccel.hw.pointwise` for why): it holds two int8
weights, one per *bank*, multiplies the activation passing through it by the weight of the
bank that activation names, adds the product to the partial sum coming from the PE above
and passes the activation (with its bank bit) to the right and the sum down.

The multiply is pipelined so that the DSP block's own registers hold its operands and its
product, and the routes to and from the DSP rows have cycles of their own: an ECP5
``MULT18X18D`` used combinationally, with those routes, limited the array to ~65 MHz
(docs/synthesis.md).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mnaccel.hw.ecp5 import mult18x18d

__all__ = ["PE", "product_sum_width"]


def product_sum_width(terms: int) -> int:
    """Bits of a signed integer holding any sum of ``terms`` int8 × int8 products.

    One product lies in [−128·127, 128·128] = [−16256, 16384] and needs 16 bits; a sum of
    ``n`` products lies in [−16256·n, 16384·n], so it needs the bits of ``16384·n`` plus a
    sign bit (``16 + ceil(log2(n))`` when ``n`` is a power of two).

    Raises
    ------
    ValueError
        If ``terms`` is not a positive int.
    """
    if not isinstance(terms, int) or terms < 1:
        raise ValueError(f"terms must be a positive int, not {terms!r}")
    return (128 * 128 * terms).bit_length() + 1


class PE(wiring.Component):
    """An int8 × int8 multiply-accumulate cell with double-buffered weights, pipelined.

    Timing, in enabled cycles (``en`` high; nothing changes otherwise), with
    ``L =`` :attr:`latency`::

        x_out(t + 1)   = x_in(t);   bank_out(t + 1) = bank_in(t)
        sum_out(t + L) = sum_in(t + L − 1) + x_in(t) · weight[bank_in(t)]

    i.e. the activation and the partial sum each pass one register, and the product of the
    activation of cycle ``t`` joins the sum ``L − 1`` cycles later. In a grid every PE has
    the same ``L``, so the sums merely run ``L − 1`` cycles behind the activations. The
    product's pipeline, one register per step:

    1. the operands in fabric: ``x_out`` and the selected weight ``weight[bank_in]``;
    2. the operands again, for the multiplier alone;
    3. the multiplier's input registers;
    4. its output register (with ``ecp5_dsp`` 3 and 4 are the ``MULT18X18D``'s own);
    5. the product in fabric, and 6. again, for the adder alone;
    7. ``sum_out = sum_in + product``.

    The DSP blocks sit in three rows across the die, and the placer cannot put every PE's
    DSP next to its neighbours' (the grid's two directions do not fit a row), so the fabric
    around a PE may sit far from its DSP: steps 2 and 5 give the routes to and from the DSP
    two register hops each (on the LFE5U-85F single hops took up to 6.7 ns).

    The weight of bank ``w_bank`` is replaced by ``w_data`` in enabled cycles with ``w_en``;
    the activation entering in that cycle still uses the old weight. Because the bank bit
    travels with the activation, the PE switches from one weight tile to the next exactly
    between two activations, and the other bank may be rewritten meanwhile.

    Operands are raw int8 values: no zero point is subtracted here (the compiler folds the
    input zero point into the bias, see :mod:`mnaccel.hw.pointwise`). No register is reset:
    which sums are meaningful is tracked outside, and a reset would keep the DSP's
    registers from being used (and cost routing).

    Parameters
    ----------
    sum_in_width : int
        Width of the signed partial sum arriving from above (at least 1; tie it to 0 in
        the top row).
    sum_out_width : int
        Width of the signed partial sum passed down; at least 16 and at least
        ``sum_in_width``. The caller sizes it so that the sum cannot overflow (see
        :func:`product_sum_width`); wider bits are dropped, narrower ones wrap.
    ecp5_dsp : bool
        Instantiate an ECP5 ``MULT18X18D`` with its input and output registers (steps 2 and
        3) instead of leaving the multiplier to Yosys' inference, which puts no register
        inside the DSP. Same timing and arithmetic; simulating it needs a model of the
        primitive (the tests use ``tests/hw/mult18x18d_model.v``).

    Members
    -------
    en : In(1)
        Advance: every register of the PE moves, a weight write takes effect.
    x_in : In(signed(8))
        Activation from the left.
    bank_in : In(1)
        Weight bank the activation uses.
    sum_in : In(signed(sum_in_width))
        Partial sum from above.
    w_en : In(1)
        Write ``w_data`` into bank ``w_bank``.
    w_bank : In(1)
        Bank to write.
    w_data : In(signed(8))
        Weight to write.
    x_out : Out(signed(8))
        ``x_in`` delayed one enabled cycle, to the PE on the right.
    bank_out : Out(1)
        ``bank_in`` delayed one enabled cycle.
    sum_out : Out(signed(sum_out_width))
        ``sum_in`` plus the product of the activation of ``latency`` cycles ago,
        registered, to the PE below.

    Attributes
    ----------
    latency : int
        Enabled cycles from ``x_in`` to the ``sum_out`` holding its product:
        :attr:`PRODUCT_STAGES` ``+ 1`` (7).
    macs_per_cycle : int
        Multiply-accumulates per enabled cycle: 1.
    """

    #: Register stages from ``x_in`` to the product beside the adder (steps 1-6 above).
    PRODUCT_STAGES = 6

    def __init__(self, *, sum_in_width: int = 16, sum_out_width: int = 16,
                 ecp5_dsp: bool = False):
        if not isinstance(sum_in_width, int) or sum_in_width < 1:
            raise ValueError(f"sum_in_width must be a positive int, not {sum_in_width!r}")
        if not isinstance(sum_out_width, int) or sum_out_width < max(16, sum_in_width):
            raise ValueError(
                f"sum_out_width must be an int >= max(16, sum_in_width={sum_in_width}), "
                f"not {sum_out_width!r}"
            )
        self._sum_in_width = sum_in_width
        self._sum_out_width = sum_out_width
        self._ecp5_dsp = bool(ecp5_dsp)
        super().__init__({
            "en": In(1),
            "x_in": In(signed(8)),
            "bank_in": In(1),
            "sum_in": In(signed(sum_in_width)),
            "w_en": In(1),
            "w_bank": In(1),
            "w_data": In(signed(8)),
            "x_out": Out(signed(8)),
            "bank_out": Out(1),
            "sum_out": Out(signed(sum_out_width)),
        })

    @property
    def sum_in_width(self) -> int:
        return self._sum_in_width

    @property
    def sum_out_width(self) -> int:
        return self._sum_out_width

    @property
    def ecp5_dsp(self) -> bool:
        return self._ecp5_dsp

    @property
    def latency(self) -> int:
        return self.PRODUCT_STAGES + 1

    @property
    def macs_per_cycle(self) -> int:
        return 1

    def elaborate(self, platform):
        m = Module()

        def reg(shape, value, name):
            r = Signal(shape, name=name, reset_less=True)
            with m.If(self.en):
                m.d.sync += r.eq(value)
            return r

        # Ports cannot be reset-less, so the registers are internal signals.
        x = reg(signed(8), self.x_in, "x")
        bank = reg(1, self.bank_in, "bank")
        w0 = Signal(signed(8), reset_less=True)
        w1 = Signal(signed(8), reset_less=True)
        with m.If(self.en):
            with m.If(self.w_en):
                with m.If(self.w_bank):
                    m.d.sync += w1.eq(self.w_data)
                with m.Else():
                    m.d.sync += w0.eq(self.w_data)

        # 1: the operands; x is the activation's own register. 2: again, for the DSP.
        weight = reg(signed(8), Mux(self.bank_in, w1, w0), "weight")
        x_dsp = reg(signed(8), x, "x_dsp")
        weight_dsp = reg(signed(8), weight, "weight_dsp")
        # 3-4: multiplier input and output registers.
        if self._ecp5_dsp:
            product = mult18x18d(m, x_dsp, weight_dsp, en=self.en, name="dsp")[:16]
        else:
            a = reg(signed(8), x_dsp, "dsp_a")
            b = reg(signed(8), weight_dsp, "dsp_b")
            product = reg(signed(16), a * b, "dsp_p")
        # 5-6: the product out of the DSP, then beside the adder; 7: the accumulate.
        out = reg(signed(16), product.as_signed(), "product")
        near = reg(signed(16), out, "product_near")
        total = reg(signed(self._sum_out_width), self.sum_in + near, "sum")
        m.d.comb += [self.x_out.eq(x), self.bank_out.eq(bank), self.sum_out.eq(total)]
        return m
