# amaranth: UnusedElaboratable=no
"""The Verilog external memory of whole-network runs (sim/memory.py, sim/hdl/)."""

import numpy as np
import pytest

from mnaccel.compiler.image import compile_model
from mnaccel.golden.model import load_model
from mnaccel.golden.zoo import random_input
from mnaccel.hw.config import preset
from mnaccel.sim.memory import AcceleratorWithRam, read_dump_hex, write_image_hex
from mnaccel.sim.system import check_outputs, check_writes, run_programs


@pytest.mark.parametrize("size", [1, 15, 16, 17, 1000])
@pytest.mark.parametrize("word", [4, 16, 32])
def test_hex_files_round_trip(tmp_path, size, word):
    image = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
    write_image_hex(tmp_path / "m.hex", image, word)
    lines = (tmp_path / "m.hex").read_text().split()
    assert len(lines) == -(-size // word) and all(len(x) == 2 * word for x in lines)
    # $readmemh's order: the first line is word 0, its last two digits byte 0.
    assert lines[0][-2:] == f"{image[0]:02x}"
    back = read_dump_hex(tmp_path / "m.hex", word)
    assert back[:size] == image and back[size:] == bytes(len(back) - size)


def test_dump_reader_skips_address_lines_and_pads_short_words(tmp_path):
    (tmp_path / "d.hex").write_text("// comment\n@0\n1\nff00\n")
    assert read_dump_hex(tmp_path / "d.hex", 4) == bytes([1, 0, 0, 0, 0, 0xFF, 0, 0])


def test_ram_size_must_be_a_power_of_two_of_words():
    with pytest.raises(ValueError, match="power of two"):
        AcceleratorWithRam(preset("small"), mem_bytes=3 << 20)
    with pytest.raises(ValueError, match="power of two"):
        AcceleratorWithRam(preset("small"), mem_bytes=4)     # below one 64-bit word


@pytest.mark.xdist_group("accelerator")
def test_network_and_back_to_back_runs_are_bit_exact_on_the_verilog_memory():
    # Two different inputs back to back: the second load must replace all of the first.
    # The DMA keeps more bursts outstanding than the RAM queues (FIFO_DEPTH 4), so its AR
    # and AW queues fill with their pointers wrapped: the full tests must hold then (at
    # 32 bits they did not, and the run hung).
    assert preset("small").axi_max_outstanding > 4
    graph = load_model("mobilenet_v1", alpha=0.25, resolution=32)
    program = compile_model(graph, preset("small"))
    xs = [random_input(graph, seed) for seed in (1, 2)]
    results = run_programs([(program, x) for x in xs], memory="verilog", max_cycles=400_000)
    for x, res in zip(xs, results, strict=True):
        check_outputs(program, x, res)
        check_writes(program, res)
        assert res.layer_count == len(program.plan.steps)
        assert all(c for c in res.layer_cycles)


def test_stall_patterns_need_the_python_memory():
    graph = load_model("mobilenet_v1", alpha=0.25, resolution=32, calibrate=False)
    program = compile_model(graph, preset("small"))
    with pytest.raises(ValueError, match="axiram"):
        run_programs([(program, random_input(graph, 0))], memory="verilog", pause="random")
