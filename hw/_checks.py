"""Argument checks shared by the gateware constructors and the configuration."""

__all__ = ["check_pow2", "is_pow2"]


def is_pow2(n) -> bool:
    """Whether ``n`` is a positive integer power of two (booleans are not integers here)."""
    return isinstance(n, int) and not isinstance(n, bool) and n > 0 and n & (n - 1) == 0


def check_pow2(name: str, value) -> int:
    """``value`` if it is a power of two, else ValueError naming ``name`` and the value."""
    if not is_pow2(value):
        raise ValueError(f"{name} must be a power of two, not {value!r}")
    return value
