"""ECP5 primitives that the blocks instantiate directly for their internal registers.

Yosys infers ``MULT18X18D`` from ``*`` but without its input and output registers, which
leaves the multiplier and the routes to and from the DSP row in one cycle; the blocks that
need those registers (the pointwise PE, the requantizer) build the primitive here. Yosys
has no simulation model of it; the tests simulate it with ``tests/hw/mult18x18d_model.v``.
"""

from amaranth.hdl import ClockSignal, Instance, Module, Signal, signed

__all__ = ["mult18x18d"]


def mult18x18d(m: Module, a, b, *, name: str, en=1) -> Signal:
    """An ECP5 ``MULT18X18D`` with input and output registers: ``a * b`` two cycles later.

    Parameters
    ----------
    m : Module
        The module the instance is added to (as submodule ``name``).
    a, b : Value
        Operands of at most 17 bits signed or 16 bits unsigned; sign- or zero-extended to
        18 bits and multiplied as signed numbers.
    name : str
        Submodule name, also the prefix of the operand and product signals.
    en : Value or int
        Clock enable of both register stages (``CE0``); the product appears two enabled
        cycles after its operands. Reset is tied off (``RST0 = 0``).

    Returns
    -------
    Signal
        The 36-bit signed product.
    """
    a18 = Signal(signed(18), name=f"{name}_a")
    b18 = Signal(signed(18), name=f"{name}_b")
    p = Signal(signed(36), name=f"{name}_p")
    m.d.comb += [a18.eq(a), b18.eq(b)]
    ports = {f"i_A{i}": a18[i] for i in range(18)}
    ports |= {f"i_B{i}": b18[i] for i in range(18)}
    ports |= {f"i_C{i}": 0 for i in range(18)}
    ports |= {f"o_P{i}": p[i] for i in range(36)}
    m.submodules[name] = Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0",
        p_REG_INPUTB_CLK="CLK0",
        p_REG_OUTPUT_CLK="CLK0",
        i_CLK0=ClockSignal(),
        i_CE0=en,
        i_RST0=0,
        i_SIGNEDA=1,
        i_SIGNEDB=1,
        i_SOURCEA=0,
        i_SOURCEB=0,
        **ports,
    )
    return p
