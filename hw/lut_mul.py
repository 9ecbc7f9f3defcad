"""Signed products from logic alone: radix-4 Booth partial products summed by adders.

The functions here build ``a * b`` without Amaranth's ``*`` operator, so no ``$mul`` cell
reaches Yosys and the product cannot be mapped to a DSP block: it becomes LUTs
(partial-product selection) and carry chains (the adds). The depthwise PE array uses the
int8 ones (:func:`booth_mul_s8`, :func:`booth_terms_s8`) to leave the FPGA's 18×18
multipliers to the pointwise array and the requantizers (``AccelConfig.dw_mul_luts``); the
requantizer uses the pipelined n × n one (:func:`booth_mul`) for some of its 16 × 16
partial products (``AccelConfig.rq_lut_products``).

Radix-4 Booth recoding writes an n-bit ``b`` (n even) as n/2 digits
``d_i = −2·b[2i+1] + b[2i] + b[2i−1]`` in {−2, −1, 0, 1, 2} (with ``b[−1] = 0``), so
``a·b = Σ d_i·a·4**i``: n/2 partial products rather than the n of a plain shift-and-add
multiplier. Each partial product is ``a`` or ``2a`` (or 0), inverted when ``d_i`` is
negative; the ``+1`` completing that two's-complement negation is placed in the two zero
bits below the next partial product, so it costs no adder of its own (only the top digit's
``+1`` remains, a one-bit addend of the final sum: ``b``'s sign bit).

:func:`booth_terms_s8` stops after the first adder level and returns the product's three
addends instead, so that a pipelined adder tree (the depthwise PE array's) can sum the
products of a whole window with a register after every level: the multiplier's last adds
and the window's sum become levels of one tree. :func:`booth_addends` gives the n/2 + 1
addends of any signed product unsummed, and :func:`adder_tree` sums such addends with a
register after every level.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed

__all__ = ["adder_tree", "booth_addends", "booth_mul", "booth_mul_s8", "booth_terms_s8"]


def _partial(a: Value, b: Value, i: int) -> tuple[Value, Value]:
    """Booth digit ``i`` of ``b`` times ``a``, as (one's-complemented, neg).

    The partial product is ``signed(len(a) + 2)`` (``signed(10)`` for int8 ``a``).
    """
    lo = b[2 * i - 1] if i else Const(0, 1)
    mid, hi = b[2 * i], b[2 * i + 1]
    one = mid ^ lo                       # |d| = 1
    two = ~one & (hi ^ mid)              # |d| = 2: bits 011 or 100
    mag = Value.cast(Mux(one, a, Mux(two, Cat(Const(0, 1), a).as_signed(), 0)))  # len(a)+1
    # Sign-extended one more bit before inverting: ~(−2**len(a)) = 2**len(a) − 1 needs it.
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


def _signed_operand(name: str, v) -> Value:
    """``v`` as a signed value: unsigned ones gain a zero sign bit."""
    v = Value.cast(v)
    shape = v.shape()
    if len(v) < 1:
        raise ValueError(f"{name} must be at least one bit wide, not {shape!r}")
    return v if shape.signed else Cat(v, Const(0, 1)).as_signed()


def booth_addends(a, b) -> list[tuple[Value, int]]:
    """The radix-4 Booth addends of ``a * b``, unsummed: ``[(value, shift), ...]``.

    ``a * b == Σ value · 2**shift`` over the list. Unsigned operands are zero-extended by a
    sign bit; ``b`` is then sign-extended to an even width ``n``, giving n/2 digits.

    Parameters
    ----------
    a, b : Value
        Operands of any width, signed or unsigned. ``b`` is the recoded one (its bits drive
        the digit decode; ``a``'s fan out to every partial product).

    Returns
    -------
    list of (Value, int)
        n/2 partial products, digit ``i``'s as ``signed(len(a) + 4)`` at shift ``2i − 2``
        carrying digit ``i − 1``'s negation ``+1`` in its low bits (digit 0's alone,
        ``signed(len(a) + 2)`` at shift 0), sorted by shift; then, last, for a signed ``b``
        the top digit's negation ``+1``: ``unsigned(1)`` (``b``'s sign bit) at shift
        ``n − 2`` (an unsigned ``b``'s top digit is never negative, so it has none). Each
        partial product is one level of selection logic (a LUT or two per bit).
    """
    b_signed = Value.cast(b).shape().signed
    a, b = _signed_operand("a", a), _signed_operand("b", b)
    if len(b) % 2:
        b = Cat(b, b[-1]).as_signed()
    parts = [_partial(a, b, i) for i in range(len(b) // 2)]
    addends = [(parts[0][0], 0)]
    for i in range(1, len(parts)):
        # Digit i−1's +1 at bit 2i−2: one of the two zero bits below digit i's product.
        addends.append((Cat(parts[i - 1][1], Const(0, 1), parts[i][0]).as_signed(), 2 * i - 2))
    if b_signed:
        addends.append((parts[-1][1], len(b) - 2))
    return addends


def _levels(count: int) -> int:
    return (count - 1).bit_length()


def adder_tree(m: Module, addends, *, width: int, stages: int, name: str,
               domain: str = "sync") -> Signal:
    """``Σ value · 2**shift`` over ``addends``, summed by a pipelined tree of two-input adders.

    The sum is formed modulo ``2**width``: every addend and partial sum at shift ``s`` is
    kept to ``width − s`` bits, which is exact whenever the true sum fits ``signed(width)``
    (the caller's promise; a product of operands of ``wa`` and ``wb`` bits fits ``wa + wb``).

    Addends are paired by shift, neighbours first, one level of adders per stage, so that
    each stage holds one carry chain. ``ceil(log2(len(addends)))`` levels are needed; with
    exactly that many ``stages`` the first level shares its stage with whatever logic forms
    the addends (:func:`booth_addends`' selection: a LUT level, then a carry chain), with one
    more the addends are registered first, and further stages are delay registers at the end.

    Parameters
    ----------
    m : Module
        Module the registers and adders are added to.
    addends : list of (Value, int)
        ``(value, shift)`` pairs, as returned by :func:`booth_addends`.
    width : int
        Width of the result.
    stages : int
        Register stages from the addends to the result, at least the tree's levels (and 1).
    name : str
        Prefix of the register names.
    domain : str
        Clock domain of the registers (reset-less: a datapath without valid bits of its own).

    Returns
    -------
    Signal
        ``signed(width)``: the sum, ``stages`` cycles after the addends.

    Raises
    ------
    ValueError
        If ``stages`` is fewer than the levels the tree needs, or ``width`` or a shift is
        out of range.
    """
    addends = list(addends)
    if not addends:
        raise ValueError("adder_tree needs at least one addend")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, not {width!r}")
    if any(not 0 <= s < width for _, s in addends):
        raise ValueError(f"addend shifts must be in [0, {width}), not "
                         f"{[s for _, s in addends]!r}")
    levels = _levels(len(addends))
    if not isinstance(stages, int) or isinstance(stages, bool) or stages < max(levels, 1):
        raise ValueError(f"stages must be an integer >= {max(levels, 1)} (the tree's levels, "
                         f"at least 1) for {len(addends)} addends, not {stages!r}")

    def fit(v, s):
        # Modulo 2**(width − s) at weight 2**s: the bits that can reach the result.
        v = Value.cast(v)
        return v[:width - s].as_signed() if len(v) > width - s else v

    def reg(v, label):
        r = Signal(v.shape(), name=f"{name}_{label}", reset_less=True)
        m.d[domain] += r.eq(v)
        return r

    terms = sorted(((fit(v, s), s) for v, s in addends), key=lambda t: t[1])
    stage = 0
    if stages > levels:
        terms = [(reg(v, f"s0_{j}"), s) for j, (v, s) in enumerate(terms)]
        stage = 1
    level = 0
    while len(terms) > 1:
        level += 1
        paired = []
        for j in range(0, len(terms) - 1, 2):
            (x, sx), (y, sy) = terms[j], terms[j + 1]
            s = min(sx, sy)
            paired.append((fit((x << (sx - s)) + (y << (sy - s)), s), s))
        if len(terms) % 2:
            paired.append(terms[-1])
        stage += 1
        terms = [(reg(v, f"l{level}_{j}"), s) for j, (v, s) in enumerate(paired)]
    (v, s), = terms
    total = Signal(signed(width), name=f"{name}_sum{stage}" if stage < stages else name,
                   reset_less=True)
    m.d.comb += total.eq((Value.cast(v) << s)[:width].as_signed())
    while stage < stages:
        total = reg(total, f"d{stage}")
        stage += 1
    return total


def booth_mul(m: Module, a, b, *, stages: int, name: str, domain: str = "sync") -> Signal:
    """``a * b`` from LUTs and carry chains, pipelined: the product ``stages`` cycles later.

    :func:`booth_addends` summed by :func:`adder_tree`: the partial-product selection and
    then one two-input adder level per stage (with as many ``stages`` as levels, the first
    level shares the selection's stage). A ``signed(16)`` × ``signed(16)`` product has 9
    addends, so 4 levels; with ``stages=5`` every stage is one LUT level or one carry
    chain of at most ~34 bits.

    Parameters
    ----------
    m : Module
        Module the logic and registers are added to.
    a, b : Value
        Operands of any width, signed or unsigned (``b`` is Booth-recoded).
    stages : int
        Register stages from the operands to the product, at least the tree's levels,
        ``ceil(log2(len(booth_addends(a, b))))``.
    name : str
        Prefix of the register names.
    domain : str
        Clock domain of the (reset-less) registers.

    Returns
    -------
    Signal
        The product as ``signed(wa + wb)`` (widths of the operands as signed values:
        unsigned ones count one bit more), ``stages`` cycles after ``a`` and ``b``.

    Raises
    ------
    ValueError
        If ``stages`` is too few for the tree.
    """
    a, b = _signed_operand("a", a), _signed_operand("b", b)
    return adder_tree(m, booth_addends(a, b), width=len(a) + len(b), stages=stages,
                      name=name, domain=domain)
