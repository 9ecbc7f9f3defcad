"""The compiled schedule, run tile by tile from the memory image, against the golden model."""

from pathlib import Path

import numpy as np
import pytest

from mnaccel.compiler.functional import execute
from mnaccel.compiler.image import compile_model
from mnaccel.compiler.plan import plan
from mnaccel.golden.errors import UserError
from mnaccel.golden.interpreter import run
from mnaccel.golden.model import load_model
from mnaccel.hw.config import preset
from mnaccel.hw.descriptor import Opcode
from mnaccel.sim.commands.simulate import select

DATA = Path(__file__).resolve().parent.parent / "data" / "tflite"
FIXTURE = str(DATA / "mobilenet_v1_a025_64.tflite")


def _graph(spec):
    if spec.endswith(".tflite"):
        return load_model(spec)
    return load_model(spec, alpha=0.25, resolution=64)


def _check(graph, outputs, expected):
    assert set(outputs) == set(expected)
    for name, want in expected.items():
        got = outputs[name]
        assert got.shape == want.shape, f"layer output {name!r}: shape {got.shape} != {want.shape}"
        diff = np.argwhere(got != want)
        if diff.size:
            where = tuple(int(i) for i in diff[0])
            layer = next(lay.name for lay in graph.layers if lay.output == name)
            raise AssertionError(f"layer {layer!r}: {len(diff)} elements differ, first at "
                                 f"{where}: schedule {got[where]}, golden {want[where]}")


@pytest.mark.parametrize("spec, config, kernels", [
    ("mobilenet_v1", "ecp5-85f", "reference"),
    ("mobilenet_v1", "small", "optimized"),
    ("mobilenet_v1", "large", "reference"),
    (FIXTURE, "ecp5-85f", "reference"),
    (FIXTURE, "small", "optimized"),
])
def test_schedule_is_bit_exact(spec, config, kernels):
    graph = _graph(spec)
    x = np.random.default_rng(7).integers(-128, 128, graph.input_tensor.shape, dtype=np.int8)
    program = compile_model(graph, preset(config), kernels=kernels)
    steps = program.plan.steps
    # The schedule really tiles: several pixel tiles, reduction and output chunks.
    assert any(s.n_tiles >= 3 for s in steps)
    assert any(s.k_chunks >= 2 for s in steps) and any(s.j_chunks >= 2 for s in steps)
    assert [s.opcode for s in steps][:2] == [Opcode.CONV0, Opcode.DW_PW]
    assert {Opcode.POOL, Opcode.FC} <= {s.opcode for s in steps}
    _check(graph, execute(program, x), run(graph, x, kernel=kernels))


def test_schedule_with_many_short_tiles_is_bit_exact():
    # Small buffers force many tiles, some shorter than pw_rows.
    graph = _graph("mobilenet_v1")
    cfg = preset("small").replace(act_buf_bytes=2048, out_buf_bytes=2048)
    x = np.random.default_rng(3).integers(-128, 128, graph.input_tensor.shape, dtype=np.int8)
    program = compile_model(graph, cfg, small_first_tile=False)
    assert max(s.n_tiles for s in program.plan.steps) >= 30
    _check(graph, execute(program, x), run(graph, x))


@pytest.mark.parametrize("config", ["tiny", "small", "ecp5-85f", "large"])
@pytest.mark.parametrize("kernels", ["reference", "optimized"])
def test_lone_depthwise_steps_are_bit_exact(config, kernels):
    # V1 α 0.25/32 up to conv_dw_1 (stride 1) and up to conv_dw_2 (stride 2), each cut off
    # from its pointwise layer: a DW step, its output through the identity tiles.
    graph = load_model("mobilenet_v1", alpha=0.25, resolution=32)
    x = np.random.default_rng(5).integers(-128, 128, graph.input_tensor.shape, dtype=np.int8)
    want = run(graph, x, kernel=kernels)
    for last in (1, 3):
        sub = select(graph, 0, last)
        program = compile_model(sub, preset(config), kernels=kernels)
        step = program.plan.steps[-1]
        assert step.opcode is Opcode.DW and step.k_chunks == 1
        assert step.j_chunks * preset(config).pw_cols == step.in_c
        outputs = {layer.output for layer in sub.layers}
        _check(sub, execute(program, x), {k: want[k] for k in outputs})


def test_bias_folding_matters():
    # Corrupting one folded bias in the image must show up in that layer's output.
    graph = _graph("mobilenet_v1")
    program = compile_model(graph, preset("ecp5-85f"))
    x = np.random.default_rng(1).integers(-128, 128, graph.input_tensor.shape, dtype=np.int8)
    step = program.plan.steps[1]
    addr = program.descriptors[1]["pw_param_addr"]
    program.image[addr] ^= 0x40  # bias of output channel 0
    out = execute(program, x)
    ref = run(graph, x)
    assert not np.array_equal(out[step.output], ref[step.output])


def test_unmappable_layers_are_named():
    with pytest.raises(UserError, match=r"'conv1'.*lb_max_width=32"):
        plan(_graph("mobilenet_v1"), preset("tiny"))
    limit = r"layer 'conv_dw_5\+conv_pw_5'.*256 bytes.*act_buf_bytes/2 = 128"
    with pytest.raises(UserError, match=limit):
        plan(load_model("mobilenet_v1", alpha=1.0, resolution=32, calibrate=False),
             preset("ecp5-85f").replace(act_buf_bytes=256))
    with pytest.raises(UserError, match=r"operator ADD .*reserved"):
        plan(load_model(str(DATA / "mobilenet_v2_a035_64.tflite")), preset("small"))
