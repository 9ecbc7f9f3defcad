"""The bench runner on a one-register stream: results, failures, caching and waveforms."""

import re
import shutil

import pytest
from amaranth import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mnaccel.sim.runner import _fst_supported, _public_ports, build_bench, run_bench

BENCH = "mnaccel.sim.benches.selftest"


class StreamRegister(wiring.Component):
    """One pipeline register between two streams, ready when empty or draining."""

    def __init__(self, width):
        sig = stream.Signature(unsigned(width))
        super().__init__({"i": In(sig), "o": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory):
    # One build root for the module's tests, so they share one Verilator build.
    return tmp_path_factory.mktemp("build")


@pytest.fixture
def root(shared_root, monkeypatch):
    monkeypatch.setenv("MNACCEL_BUILD_DIR", str(shared_root))
    monkeypatch.delenv("MNACCEL_WAVES", raising=False)
    return shared_root


@pytest.mark.parametrize(
    ("bubble", "backpressure"), [(0.0, 0.0), (0.4, 0.0), (0.0, 0.5), (0.3, 0.3)]
)
def test_words_pass_and_are_recorded(root, bubble, backpressure):
    params = {"n": 400, "bubble": bubble, "backpressure": backpressure, "seed": 7}
    rec = run_bench(StreamRegister(8), name="sreg", bench=BENCH, params=params)
    assert rec["received"] == 400
    if bubble == backpressure == 0.0:
        assert rec["outputs_per_cycle"] == 1.0
    else:
        # Stalls of either kind must cost cycles; the register itself never loses one.
        assert 0.2 < rec["outputs_per_cycle"] < 0.95


def test_failure_carries_cocotb_message(root):
    with pytest.raises(AssertionError, match=r"passthrough: failure: .*word 50: got 0x"):
        run_bench(
            StreamRegister(8), name="sreg", bench=BENCH, params={"n": 100, "corrupt": True}
        )


def test_no_tests_is_an_error(root):
    with pytest.raises(AssertionError, match="ran no tests|without a results file"):
        run_bench(StreamRegister(8), name="sreg", bench="mnaccel.sim.benches.common")


def test_build_is_cached_by_verilog(tmp_path, monkeypatch):
    monkeypatch.setenv("MNACCEL_BUILD_DIR", str(tmp_path))
    monkeypatch.delenv("MNACCEL_WAVES", raising=False)
    first = build_bench(StreamRegister(8), name="sreg")
    assert first.built and first.seconds > 0
    stamp = first.build_dir / ".built"
    mtimes = {p: p.stat().st_mtime_ns for p in first.build_dir.rglob("*") if p.is_file()}
    rec = run_bench(StreamRegister(8), name="sreg", bench=BENCH, params={"n": 50})
    assert rec["received"] == 50
    again = build_bench(StreamRegister(8), name="sreg")
    assert not again.built and again.build_dir == first.build_dir
    # Neither the rerun nor run_bench touched the build: no file changed or appeared.
    assert {p: p.stat().st_mtime_ns for p in first.build_dir.rglob("*") if p.is_file()} == mtimes
    assert stamp.exists()
    # A different design builds into its own directory (not built here: that costs time).
    assert build_bench.__module__ == "mnaccel.sim.runner"


def test_waves_are_dumped_on_request(root, monkeypatch):
    monkeypatch.setenv("MNACCEL_WAVES", "1")
    rec = run_bench(StreamRegister(8), name="sreg", bench=BENCH, params={"n": 20})
    assert rec["received"] == 20
    if _fst_supported():
        fst = root / "waves" / "sreg-verilator.fst"
        assert fst.exists() and fst.stat().st_size > 100
        # FST files begin with a header block: type byte 0 followed by its 64-bit length 329.
        assert fst.read_bytes()[:9] == bytes([0]) + (329).to_bytes(8, "big")
    else:
        vcd = root / "waves" / "sreg-verilator.vcd"
        assert "$enddefinitions" in vcd.read_text()


def test_unknown_simulator(root):
    design = StreamRegister(8)
    with pytest.raises(ValueError, match="'ghdl'"):
        run_bench(design, name="sreg", bench=BENCH, simulator="ghdl")
    assert run_bench(design, name="sreg", bench=BENCH, params={"n": 5})["received"] == 5


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_icarus_agrees_with_verilator(root):
    params = {"n": 200, "bubble": 0.3, "backpressure": 0.4, "seed": 3}
    design = StreamRegister(8)
    on_icarus = run_bench(design, name="sreg", bench=BENCH, params=params, simulator="icarus")
    # Same seeds, same cycle-accurate design: the handshake timing must match exactly.
    assert on_icarus == run_bench(design, name="sreg", bench=BENCH, params=params)


def test_only_the_top_ports_are_public(root):
    # cocotb's --public-flat-rw is undone (it makes Verilator re-evaluate the fan-out of
    # every signal in every evaluation); VPI sees the top module's ports and nothing else.
    info = build_bench(StreamRegister(8), name="sreg")
    syms = "".join(p.read_text() for p in info.build_dir.glob("Vtop__Syms*.cpp"))
    public = set(re.findall(r'varInsert\("([^"]+)"', syms))
    assert public == {"clk", "rst", "i__valid", "i__ready", "i__payload", "o__valid",
                      "o__ready", "o__payload"}


def test_public_ports_come_from_the_module_header():
    text = "module sub(x);\nendmodule\nmodule top(a, \\b$c ,\n  d);\n  input a;\nendmodule\n"
    config = _public_ports(text, "top")
    assert config.splitlines() == ["`verilator_config",
                                   'public_flat_rw -module "top" -var "a"',
                                   'public_flat_rw -module "top" -var "b$c"',
                                   'public_flat_rw -module "top" -var "d"']
    with pytest.raises(RuntimeError, match="no header of module 'other'"):
        _public_ports(text, "other")
