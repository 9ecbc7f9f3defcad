import pytest
from amaranth import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mnaccel.sim.build import build_root, content_hash, verilog_for


class Counter(wiring.Component):
    def __init__(self, width):
        super().__init__({"en": In(1), "count": Out(unsigned(width))})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        return m


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MNACCEL_BUILD_DIR", str(tmp_path / "b"))
    return tmp_path / "b"


def test_build_root_follows_environment(root, monkeypatch, tmp_path):
    assert build_root() == root.resolve()
    monkeypatch.delenv("MNACCEL_BUILD_DIR")
    monkeypatch.chdir(tmp_path)
    assert build_root() == (tmp_path / "build").resolve()


def test_verilog_is_content_addressed_and_written_once(root):
    path = verilog_for(Counter(4), name="counter")
    text = path.read_text()
    assert path.parent == root.resolve() / "verilog"
    assert path.name.startswith("counter-") and path.suffix == ".v"
    assert "module counter(" in text
    # The name carries the text's hash, so the same design maps to the same, untouched file.
    mtime = path.stat().st_mtime_ns
    assert verilog_for(Counter(4), name="counter") == path
    assert path.stat().st_mtime_ns == mtime
    # A different design (or top name) gets a different file; the first one stays.
    other = verilog_for(Counter(5), name="counter")
    assert other != path and path.exists()
    assert verilog_for(Counter(4), name="counter2") not in (path, other)


def test_bad_name_is_rejected(root):
    counter = Counter(4)
    for bad in ("1abc", "a-b", "", "a b"):
        with pytest.raises(ValueError, match=repr(bad)):
            verilog_for(counter, name=bad)
    assert verilog_for(counter, name="ok").exists()


def test_content_hash_separates_parts():
    assert content_hash("ab", "c") != content_hash("a", "bc")
    assert content_hash("x") == content_hash(b"x")
    assert len(content_hash("x")) == 12
