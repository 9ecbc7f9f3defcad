"""Pixel tiles of compiler/plan.py: their lengths, and the first tile of DW_PW steps."""

import pytest

from mnaccel.compiler import plan as plan_module
from mnaccel.compiler.cycle_model import _blocks, model
from mnaccel.compiler.plan import plan
from mnaccel.golden.model import load_model
from mnaccel.hw.config import preset
from mnaccel.hw.descriptor import Opcode

# MobileNetV1 at sizes the presets map (`small`'s line buffer takes 64 pixels a row and
# 256 channels).
CASES = [("ecp5-85f", 1.0, 224), ("ecp5-85f", 0.25, 32), ("small", 0.25, 64)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def planned(request):
    name, alpha, resolution = request.param
    graph = load_model("mobilenet_v1", alpha=alpha, resolution=resolution, calibrate=False)
    return graph, preset(name), plan(graph, preset(name))


def test_tiles_cover_every_pixel_within_the_buffers(planned):
    _, _, p = planned
    for step in p.steps:
        tiles = [n for _, n in step.tiles()]
        # POOL's one tile is its input map; its `pixels` are the output's (one).
        assert sum(tiles) == (step.in_h * step.in_w if step.opcode is Opcode.POOL
                              else step.pixels), step.name
        assert len(tiles) == step.n_tiles, step.name
        assert 1 <= min(tiles) and max(tiles) <= step.max_tile_pixels, (step.name, tiles)
        # The tiles after the first are equal but for the last, which is not longer.
        assert len(set(tiles[1:-1])) <= 1 and tiles[-1] <= tiles[min(1, len(tiles) - 1)], (
            step.name, tiles)


def test_first_tile_covers_the_second_where_the_producer_is_quicker(planned):
    _, cfg, p = planned
    lengthened = 0
    for step in p.steps:
        if step.opcode is not Opcode.DW_PW or step.n_tiles < 2:
            continue
        short = min(cfg.pw_rows, step.max_tile_pixels)
        producer = _blocks(cfg).dw.cycles_per_output_pixel(step.kernel, step.stride, step.in_c)
        beats = step.j_chunks * step.k_chunks
        first = step.first_tile_pixels
        if producer >= beats:
            assert first == short, step.name
            continue
        assert first >= short, step.name
        # The array's beats on the first tile cover the producer's cycles on the second,
        # unless the first tile is already as long as a tile can be.
        assert (first * beats >= step.tile_pixels * producer
                or first == step.max_tile_pixels), (step.name, first, step.tile_pixels)
        lengthened += first > short
    if p.steps[0].in_w == 224:
        # conv_dw_2..conv_dw_5 at 224: their producers are quicker than the array.
        assert lengthened == 4


def test_lengthened_first_tiles_save_cycles_in_the_model(planned, monkeypatch):
    graph, cfg, p = planned
    cycles = sum(s.cycles for s in model(p))
    monkeypatch.setattr(plan_module, "_first_tiles", lambda _plan: None)
    short = plan(graph, cfg)
    assert all(s.first_tile_pixels == min(cfg.pw_rows, s.max_tile_pixels)
               for s in short.steps if s.opcode is not Opcode.POOL)
    before = sum(s.cycles for s in model(short))
    assert cycles <= before
    if p.steps[0].in_w == 224:
        assert before - cycles > 20_000, (before, cycles)   # 4,552,339 → 4,531,279
