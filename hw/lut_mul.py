"""A signed 8 × 8 → 16-bit product from logic alone: radix-4 Booth partial products summed.

:func:`booth_mul_s8` builds ``a * b`` for int8 ``a`` and ``b`` without Amaranth's ``*``
operator, so no ``$mul`` cell reaches Yosys and the product cannot be mapped to a DSP block:
it becomes LUTs (partial-product selection) and carry chains (the adds). The depthwise PE
array uses it to leave the FPGA's 18×18 multipliers to the pointwise array and the
requantizers (``AccelConfig.dw_mul_luts``).

Radix-4 Booth recoding writes ``b`` as four digits ``d_i = −2·b[2i+1] + b[2i] + b[2i−1]``
in {−2, −1, 0, 1, 2} (with ``b[−1] = 0``), so ``a·b = Σ d_i·a·4**i``: four partial products
rather than the eight of a plain shift-and-add multiplier, hence three adders rather than
seven. Each partial product is ``a`` or ``2a`` (or 0), inverted when ``d_i`` is negative;
the ``+1`` completing that two's-complement negation is placed in the two zero bits below
the next partial product, so it costs no adder of its own (only the top digit's ``+1``
remains, a one-bit addend of the final sum).

:func:`booth_terms_s8` stops after the first adder level and returns the product's three
addends instead, so that a pipelined adder tree (the depthwise PE array's) can sum the
products of a whole window with a register after every level: the multiplier's last adds
and the window's sum become levels of one tree.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value, signed

__all__ = ["booth_mul_s8", "booth_terms_s8"]


def _partial(a: Value, b: Value, i: int) -> tuple[Value, Value]:
    """Booth digit ``i`` of ``b`` times ``a``, as (one's-complemented signed(10), neg)."""
    lo = b[2 * i - 1] if i else Const(0, 1)
    mid, hi = b[2 * i], b[2 * i + 1]
    one = mid ^ lo                       # |d| = 1
    two = ~one & (hi ^ mid)              # |d| = 2: bits 011 or 100
    mag = Value.cast(Mux(one, a, Mux(two, Cat(Const(0, 1), a).as_signed(), 0)))  # signed(9)
    # Sign-extended to 10 bits before inverting: ~(−256) = 255 needs them.
    pp = Cat(mag, mag[-1]).as_signed()
    # Negative digit: invert; the +1 is added by the caller. For b bits 111 (d = 0,
    # neg = 1) the inverted zero is −1 and the +1 cancels it.
    return Mux(hi, ~pp, pp).as_signed(), hi


def _check(a: Value, b: Value) -> tuple[Value, Value]:
    a, b = Value.cast(a), Value.cast(b)
    for name, v in (("a", a), ("b", b)):
        if v.shape() != signed(8):
            raise ValueError(f"{name} must be signed(8), not {v.shape()!r}")
    return a, b


def booth_terms_s8(a: Value, b: Value) -> tuple[Value, Value, Value]:
    """The three addends of ``a * b`` after one adder level: ``(low, high, top)``.

    ``a * b == low + (high << 2) + (top << 6)`` for signed 8-bit ``a`` and ``b``.

    Parameters
    ----------
    a, b : Value
        Signed 8-bit operands (``signed(8)``); wider values raise.

    Returns
    -------
    low : Value
        ``signed(13)``: digits 0 and 1 (``p0 + n0 + 4·p1``).
    high : Value
        ``signed(15)``: digits 2 and 3 at weight 4 (``n1 + 4·p2 + 16·(n2 + 4·p3)`` / 4).
    top : Value
        ``unsigned(1)``: the top digit's negation ``+1``, at weight 64.

    Depth: one level of partial-product selection (a LUT or two per bit) and one adder
    (two side by side), so the three can be registered for a pipelined sum.

    Raises
    ------
    ValueError
        If an operand is not ``signed(8)``.
    """
    a, b = _check(a, b)
    # Digit i's partial product has weight 4**i; digit i's +1 sits at bit 2i, which is one
    # of the two zero bits below digit i+1's partial product.
    (p0, n0), (p1, n1), (p2, n2), (p3, n3) = (_partial(a, b, i) for i in range(4))
    t0 = p0                                              # weight 1
    t1 = Cat(n0, Const(0, 1), p1).as_signed()            # weight 1: n0 + 4·p1
    t2 = Cat(n1, Const(0, 1), p2).as_signed()            # weight 4: n1 + 4·p2
    t3 = Cat(n2, Const(0, 1), p3).as_signed()            # weight 16: n2 + 4·p3
    low = (t0 + t1)[:13].as_signed()                     # |low| < 2**12
    high = (t2 + (t3 << 2))[:15].as_signed()             # |high| < 2**14
    # n3 (weight 64) has no free slot left: a one-bit addend of its own.
    return low, high, n3


def booth_mul_s8(a: Value, b: Value) -> Value:
    """``a * b`` for signed 8-bit ``a`` and ``b``, as a signed(16) expression without ``*``.

    Parameters
    ----------
    a, b : Value
        Signed 8-bit operands (``signed(8)``); wider values raise.

    Returns
    -------
    Value
        Combinational ``signed(16)`` expression equal to ``a * b`` (the products lie in
        [−16256, 16384]): :func:`booth_terms_s8` summed. Depth: one level of
        partial-product selection (a LUT or two per bit) and three adder levels.

    Raises
    ------
    ValueError
        If an operand is not ``signed(8)``.
    """
    low, high, top = booth_terms_s8(a, b)
    total = low + (high << 2) + (top << 6)
    return total[:16].as_signed()
