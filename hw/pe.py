"""One processing element of the pointwise systolic array: an int8 × int8 MAC.

The PE is weight-stationary (see :mod:`mnaccel.hw.pointwise` for why): it holds two int8
weights, one per *bank*, multiplies the activation passing through it by the weight of the
bank that activation names, adds the product to the partial sum coming from the PE above
and passes the activation (with its bank bit) to the right and the sum down.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

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
    """An int8 × int8 multiply-accumulate cell with double-buffered weights.

    Each enabled cycle::

        sum_out <= sum_in + x_in * weight[bank_in]
        x_out   <= x_in;  bank_out <= bank_in

    The weight of bank ``w_bank`` is replaced by ``w_data`` in enabled cycles with
    ``w_en``. Because the bank bit travels with the activation, the PE switches from one
    weight tile to the next exactly between two activations, and the other bank may be
    rewritten meanwhile. Nothing changes in a cycle without ``en`` (the array's global
    stall).

    Operands are raw int8 values: no zero point is subtracted here (the compiler folds the
    input zero point into the bias, see :mod:`mnaccel.hw.pointwise`).

    Parameters
    ----------
    sum_in_width : int
        Width of the signed partial sum arriving from above (at least 1; tie it to 0 in
        the top row).
    sum_out_width : int
        Width of the signed partial sum passed down; at least 16 and at least
        ``sum_in_width``. The caller sizes it so that the sum cannot overflow (see
        :func:`product_sum_width`); wider bits are dropped, narrower ones wrap.

    Members
    -------
    en : In(1)
        Advance: register the sum and the passed-on activation, perform a weight write.
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
        ``sum_in + x_in * weight[bank_in]``, registered, to the PE below.

    Attributes
    ----------
    latency : int
        Enabled cycles from ``x_in``/``sum_in`` to ``x_out``/``sum_out``: 1.
    macs_per_cycle : int
        Multiply-accumulates per enabled cycle: 1.
    """

    def __init__(self, *, sum_in_width: int = 16, sum_out_width: int = 16):
        if not isinstance(sum_in_width, int) or sum_in_width < 1:
            raise ValueError(f"sum_in_width must be a positive int, not {sum_in_width!r}")
        if not isinstance(sum_out_width, int) or sum_out_width < max(16, sum_in_width):
            raise ValueError(
                f"sum_out_width must be an int >= max(16, sum_in_width={sum_in_width}), "
                f"not {sum_out_width!r}"
            )
        self._sum_in_width = sum_in_width
        self._sum_out_width = sum_out_width
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
    def latency(self) -> int:
        return 1

    @property
    def macs_per_cycle(self) -> int:
        return 1

    def elaborate(self, platform):
        m = Module()
        w0 = Signal(signed(8))
        w1 = Signal(signed(8))
        weight = Mux(self.bank_in, w1, w0)
        with m.If(self.en):
            m.d.sync += [
                self.x_out.eq(self.x_in),
                self.bank_out.eq(self.bank_in),
                self.sum_out.eq(self.sum_in + self.x_in * weight),
            ]
            with m.If(self.w_en):
                with m.If(self.w_bank):
                    m.d.sync += w1.eq(self.w_data)
                with m.Else():
                    m.d.sync += w0.eq(self.w_data)
        return m
