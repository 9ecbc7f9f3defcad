"""The pointwise systolic array: a rows × cols grid of :class:`~mnaccel.hw.pe.PE`.

Weight-stationary: PE ``(r, c)`` holds the weights of input channel ``r`` → output channel
``c`` (two banks). Activations enter at the left edge, one input channel per row, and move
right one PE per cycle; partial sums start at zero at the top and move down one PE per
cycle, so column ``c`` reduces ``rows`` input channels into output channel ``c``. The array
expects skewed inputs and gives skewed outputs; :class:`~mnaccel.hw.pointwise.Pointwise`
does the skewing (like Gemmini's ``Mesh`` inside ``MeshWithDelays``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from mnaccel.hw._checks import check_pow2
from mnaccel.hw.pe import PE, product_sum_width

__all__ = ["SystolicArray", "weight_write_layout"]


def weight_write_layout(rows: int, weight_rows: int = 1) -> data.StructLayout:
    """Layout of one column's weight-write bus: write ``data[i]`` into the PE of row
    ``row·weight_rows + i`` (``i < weight_rows``), bank ``bank``."""
    return data.StructLayout({
        "en": unsigned(1),
        "row": range(rows // weight_rows),
        "bank": unsigned(1),
        "data": data.ArrayLayout(signed(8), weight_rows),
    })


class SystolicArray(wiring.Component):
    """A weight-stationary rows × cols grid of int8 MAC PEs.

    Timing, counted in enabled cycles (``en`` high; nothing moves otherwise): an activation
    vector whose element ``r`` (with its bank bit) is presented on ``x[r]``/``bank[r]`` in
    cycle ``t + r`` (the input skew) yields, for output channel ``c``, the sum
    ``Σ_r x[r] · weight[bank[r]][r][c]`` on ``sums[c]`` in cycle ``t + rows + c + D`` (the
    output skew), where ``D = PE.latency − 1`` is the PEs' product pipeline (the sums run
    ``D`` cycles behind the activations in every PE alike).

    Weight writes travel down their column one PE per cycle, like the partial sums, rather
    than on a bus reaching every row at once (which would span the die). A write into row
    ``r`` presented on ``w[c]`` in cycle ``T`` reaches PE ``(r, c)`` in cycle ``T + r`` and
    replaces its weight at the end of that cycle: it belongs to wavefront ``s = T - c`` —
    the vector passing that PE in cycle ``T + r`` (vector ``T - c``, for every ``r``) still
    uses the old weight, the vectors after ``s`` the new one. The wrapper skews writes by
    column like activations, so that loading one bank while the other computes is exact
    per vector. A write carries ``weight_rows`` consecutive rows of the column at once (one
    register per row it passes, as wide as the rows it carries), so that a tile loads in
    ``rows / weight_rows`` cycles.

    Parameters
    ----------
    rows : int
        Input channels reduced per activation vector. Power of two.
    cols : int
        Output channels computed per activation vector. Power of two.
    weight_rows : int
        Rows of a column written per weight write: a power of two dividing ``rows``.
    ecp5_dsp : bool
        Build the PEs' multipliers from ECP5 ``MULT18X18D`` primitives with their own
        registers (see :class:`~mnaccel.hw.pe.PE`); same timing and arithmetic.

    Members
    -------
    en : In(1)
        Global clock enable of the grid (stall when low).
    x : In(ArrayLayout(signed(8), rows))
        Activations entering the left edge, row ``r`` skewed by ``r`` cycles.
    bank : In(rows)
        Weight bank of each row's entering activation (travels with it).
    w : In(ArrayLayout(weight_write_layout(rows, weight_rows), cols))
        Per-column weight writes, column ``c`` skewed by ``c`` cycles; passed down the
        column one row per cycle.
    sums : Out(ArrayLayout(signed(sum_width), cols))
        Bottom-edge partial sums, column ``c`` skewed by ``c`` cycles.

    Attributes
    ----------
    rows, cols : int
        The grid size.
    sum_width : int
        Bits of the bottom-edge sums (enough for ``rows`` int8 products, no overflow).
    latency : int
        Cycles from an activation vector's row-0 element entering to its last column's
        sum leaving: ``rows + cols − 1 + D`` with ``D = PE.latency − 1`` (6).
    macs_per_cycle : int
        ``rows * cols``: one activation vector enters per cycle.
    """

    def __init__(self, *, rows: int, cols: int, weight_rows: int = 1, ecp5_dsp: bool = False):
        self._rows = check_pow2("rows", rows)
        self._cols = check_pow2("cols", cols)
        self._weight_rows = check_pow2("weight_rows", weight_rows)
        if weight_rows > rows:
            raise ValueError(f"weight_rows must be at most rows = {rows}, not {weight_rows!r}")
        self._ecp5_dsp = bool(ecp5_dsp)
        super().__init__({
            "en": In(1),
            "x": In(data.ArrayLayout(signed(8), rows)),
            "bank": In(rows),
            "w": In(data.ArrayLayout(weight_write_layout(rows, weight_rows), cols)),
            "sums": Out(data.ArrayLayout(signed(self.sum_width), cols)),
        })

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def weight_rows(self) -> int:
        return self._weight_rows

    @property
    def sum_width(self) -> int:
        return product_sum_width(self._rows)

    @property
    def ecp5_dsp(self) -> bool:
        return self._ecp5_dsp

    @property
    def latency(self) -> int:
        return self._rows + self._cols - 1 + PE.PRODUCT_STAGES

    @property
    def macs_per_cycle(self) -> int:
        return self._rows * self._cols

    def elaborate(self, platform):
        m = Module()
        pes, bus = {}, {}
        for r in range(self._rows):
            # Row r's sums carry r products in and r + 1 out: narrow sums near the top.
            sum_in = product_sum_width(r) if r else 16
            for c in range(self._cols):
                pe = PE(sum_in_width=sum_in, sum_out_width=product_sum_width(r + 1),
                        ecp5_dsp=self._ecp5_dsp)
                m.submodules[f"pe_{r}_{c}"] = pes[r, c] = pe
                w = bus[r, c] = self._write_hop(m, bus[r - 1, c] if r else self.w[c], r, c)
                wr = self._weight_rows
                m.d.comb += [
                    pe.en.eq(self.en),
                    pe.w_en.eq(w.en & (w.row == r // wr)),
                    pe.w_bank.eq(w.bank),
                    pe.w_data.eq(w.data[r % wr]),
                ]
                if c == 0:
                    m.d.comb += [pe.x_in.eq(self.x[r]), pe.bank_in.eq(self.bank[r])]
                else:
                    left = pes[r, c - 1]
                    m.d.comb += [pe.x_in.eq(left.x_out), pe.bank_in.eq(left.bank_out)]
                if r == 0:
                    m.d.comb += pe.sum_in.eq(0)
                else:
                    m.d.comb += pe.sum_in.eq(pes[r - 1, c].sum_out)
        for c in range(self._cols):
            m.d.comb += self.sums[c].eq(pes[self._rows - 1, c].sum_out)
        return m

    def _write_hop(self, m, above, r, c):
        """The weight write as row ``r`` of column ``c`` sees it: ``r`` registers down."""
        if r == 0:
            return above
        # No reset: a write still travelling when the block is reset lands before any
        # write issued after it (the column is a pipeline), which overwrites it.
        here = Signal(weight_write_layout(self._rows, self._weight_rows), name=f"w_hop_{r}_{c}",
                      reset_less=True)
        with m.If(self.en):
            m.d.sync += here.eq(above)
        return here
