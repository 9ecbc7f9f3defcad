import pytest
from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mnaccel.sim.synth import ECP5_CELLS, synth_stats


class MulAdd(wiring.Component):
    """``p <= a * b + c`` registered: one 18×18 multiplier, an adder and flip-flops."""

    def __init__(self, width):
        super().__init__(
            {"a": In(signed(width)), "b": In(signed(width)), "c": In(signed(2 * width)),
             "p": Out(signed(2 * width))}
        )

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.p.eq(self.a * self.b + self.c)
        return m


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MNACCEL_BUILD_DIR", str(tmp_path))
    return tmp_path


def test_ecp5_counts_and_cache(root):
    stats = synth_stats(MulAdd(16), name="muladd")
    print(stats)
    assert set(ECP5_CELLS) <= set(stats)
    assert stats["MULT18X18D"] == 1  # 16×16 fits one 18×18 DSP
    assert stats["TRELLIS_FF"] >= 32  # the 32-bit output register
    assert stats["CCU2C"] >= 16  # the 32-bit adder on carry chains
    assert stats["DP16KD"] == 0
    cached = list((root / "synth").glob("muladd-ecp5-*.json"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    assert synth_stats(MulAdd(16), name="muladd") == stats
    assert cached[0].stat().st_mtime_ns == mtime


def test_wide_multiplier_takes_more_dsps(root):
    assert synth_stats(MulAdd(32), name="muladd32")["MULT18X18D"] == 4


def test_unknown_target(root):
    design = MulAdd(8)
    with pytest.raises(ValueError, match="'ice40'"):
        synth_stats(design, name="m", target="ice40")
    assert synth_stats(design, name="m")["MULT18X18D"] == 1
