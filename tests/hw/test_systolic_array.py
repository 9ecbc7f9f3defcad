# amaranth: UnusedElaboratable=no
"""The systolic grid, in amaranth.sim, driven with skewed inputs as its docstring specifies."""

import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from mnaccel.hw.pe import PE, product_sum_width
from mnaccel.hw.systolic_array import SystolicArray


@pytest.mark.parametrize(("rows", "cols", "wr"),
                         [(1, 1, 1), (4, 2, 1), (2, 4, 1), (8, 4, 1), (4, 2, 2), (8, 4, 4),
                          (2, 2, 2)])
def test_skewed_vectors_with_bank_switches_writes_and_stalls(rows, cols, wr):
    """Random per-row banks, weight writes landing among the vectors, random stalls.

    The documented timing, in enabled cycles: vector ``u`` enters row ``r`` in cycle
    ``u + r``; column ``c``'s sum of vector ``u`` leaves in cycle ``u + rows + c + D`` (``D``
    the PEs' product pipeline, ``latency - (rows + cols - 1)``); a write
    into row ``r`` on ``w[c]`` in cycle ``T`` travels down the column, reaches row ``r`` in
    cycle ``T + r``, belongs to wavefront ``s = T - c`` (the vector passing that PE then)
    and is seen by the vectors after ``s``. A write carries ``wr`` rows: those of group
    ``row`` (rows ``row·wr … row·wr + wr − 1``).
    """
    dut = SystolicArray(rows=rows, cols=cols, weight_rows=wr)
    groups = rows // wr
    delay = dut.latency - (rows + cols - 1)
    rng = np.random.default_rng(rows * 10 + cols)
    n = 60
    x = rng.integers(-128, 128, size=(n, rows))
    x[:4] = -128  # extremes: the largest positive sums first
    banks = rng.integers(0, 2, size=(n, rows))
    # writes[T, c]: (row group, bank, values) on w[c] in cycle T. The first 2 * groups
    # cycles fill both banks; later writes land among the computing vectors.
    writes = {}
    for c in range(cols):
        for t in range(2 * groups):
            writes[t, c] = (t % groups, t // groups,
                            [-128 if t < 4 else int(v) for v in rng.integers(-128, 128, wr)])
        for t in range(2 * groups, n + rows + cols):
            if rng.random() < 0.3:
                writes[t, c] = (int(rng.integers(groups)), int(rng.integers(2)),
                                [int(v) for v in rng.integers(-128, 128, wr)])
    by_wavefront = {}
    for (t, c), (group, bank, values) in writes.items():
        for i, value in enumerate(values):
            by_wavefront.setdefault(max(t - c, -1), []).append(
                (group * wr + i, bank, c, value))
    first = 2 * rows  # vectors before this one may see banks not yet filled: not checked

    # Reference: vector u uses the weights after all writes of wavefronts < u.
    weights = np.zeros((2, rows, cols), dtype=np.int64)
    expected = np.zeros((n, cols), dtype=np.int64)
    for u in range(-1, n):
        if u >= 0:
            for c in range(cols):
                expected[u, c] = sum(
                    int(x[u, r]) * weights[banks[u, r], r, c] for r in range(rows)
                )
        for row, bank, c, value in by_wavefront.get(u, []):
            weights[bank, row, c] = value

    got = np.zeros((n, cols), dtype=np.int64)
    stall = np.random.default_rng(1)

    async def bench(ctx):
        t = 0
        while t < n + rows + cols + delay:
            en = stall.random() < 0.75
            ctx.set(dut.en, en)
            for r in range(rows):
                u = t - r
                # Stalled cycles and idle slots get junk, which must change nothing.
                live = en and 0 <= u < n
                ctx.set(dut.x[r], int(x[u, r]) if live else int(stall.integers(-128, 128)))
                ctx.set(dut.bank[r], int(banks[u, r]) if 0 <= u < n else 0)
            for c in range(cols):
                write = writes.get((t, c)) if en else None
                junk = [int(v) for v in stall.integers(-128, 128, wr)]
                group, bank, values = write if write else (0, 0, junk)
                ctx.set(dut.w[c], {"en": bool(write) or not en, "row": group, "bank": bank,
                                   "data": values})
            if en:
                for c in range(cols):
                    u = t - rows - c - delay
                    if 0 <= u < n:
                        got[u, c] = ctx.get(dut.sums[c])
                t += 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for u in range(first, n):
        for c in range(cols):
            assert got[u, c] == expected[u, c], (
                f"vector {u} column {c}: got {got[u, c]}, expected {expected[u, c]}"
            )


def test_properties_and_widths():
    dut = SystolicArray(rows=16, cols=8)
    assert (dut.rows, dut.cols, dut.macs_per_cycle) == (16, 8, 128)
    # The skew (16 + 8 - 1) plus the PEs' product pipeline.
    assert dut.latency == 16 + 8 - 1 + PE.PRODUCT_STAGES == PE().latency + 22
    assert dut.sum_width == product_sum_width(16) == 20


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [({"rows": 6, "cols": 4}, "rows must be a power of two, not 6"),
     ({"rows": 4, "cols": -2}, "cols must be a power of two, not -2"),
     ({"rows": 4, "cols": 2, "weight_rows": 3}, "weight_rows must be a power of two, not 3"),
     ({"rows": 4, "cols": 2, "weight_rows": 8}, "weight_rows must be at most rows = 4, not 8")],
)
def test_rejects_bad_sizes(kwargs, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        SystolicArray(**kwargs)


def test_docstring_lists_the_ports():
    documented = set(re.findall(r"^    (\w+) : (?:In|Out)\(", SystolicArray.__doc__, re.M))
    assert documented == set(SystolicArray(rows=2, cols=2).signature.members)
