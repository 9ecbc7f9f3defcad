# amaranth: UnusedElaboratable=no
"""The accelerator top through the system bench: AxiRam as memory, AxiLiteMaster as host.

Every program of a preset runs on one Verilator build, all in one simulation (programs are
data). ``small``: END-only and bad-opcode programs (done/error/irq, no hang), single
pointwise and FC layers, global pools, and MobileNetV1 α 0.25 at 32×32 end to end — every
layer output kept in external memory compared bit-exactly with the golden model, the
hardware's per-layer cycle counters compared with the cycle model. ``tiny`` (1-lane
depthwise and requantizer, 32-bit bus): the first layers of that network, a pointwise
layer, a pool, and a program stopped by an opcode the scheduler does not execute, with the
RAM stalling every AXI channel at random. ``ecp5-85f`` (the default: 16-byte buffer words,
channels padded to 16): a pointwise layer and a pool whose channels are not multiples of
16, and MobileNetV1 α 0.25/32 end to end against the golden model and the cycle model.
"""

import numpy as np
import pytest

from mnaccel.compiler.cycle_model import AXIRAM, model
from mnaccel.compiler.image import compile_model
from mnaccel.golden.graph import Activation, Graph, Layer, Op, Tensor
from mnaccel.golden.model import load_model
from mnaccel.hw.accelerator import Accelerator
from mnaccel.hw.config import preset
from mnaccel.hw.csr import register
from mnaccel.hw.descriptor import DESCRIPTOR_BYTES, Descriptor, Opcode, to_bytes
from mnaccel.hw.scheduler import ErrorCode, Scheduler
from mnaccel.sim.system import (
    RunResult,
    check_outputs,
    hardware_outputs,
    run_images,
    run_programs,
)

# One worker runs every test here, so that the module's simulations (fixtures) run once.
pytestmark = pytest.mark.xdist_group("accelerator")

CONFIG = preset("small")
TINY = preset("tiny")
ECP5 = preset("ecp5-85f")

#: (h, w, c_in, c_out, fully connected, TFLite kernels)
PW_SHAPES = [
    (4, 4, 32, 16, False, "reference"),   # K = 4, J = 4, two tiles
    (5, 7, 24, 12, False, "optimized"),   # odd pixel count, channel padding
    (9, 9, 3, 8, False, "reference"),     # 3 input channels padded to 8, several tiles
    (1, 1, 40, 20, True, "optimized"),    # FC: one pixel, K = 5, J = 6
]
#: (h, w, c) of global average pools.
POOL_SHAPES = [(5, 5, 24), (3, 4, 16), (1, 1, 256)]


def _pw_graph(h, w, c_in, c_out, fc, seed):
    rng = np.random.default_rng(seed)
    shape_in, shape_out = ((1, c_in), (1, c_out)) if fc else ((1, h, w, c_in), (1, h, w, c_out))
    tensors = {"x": Tensor("x", shape_in, 0.05, int(rng.integers(-20, 20))),
               "y": Tensor("y", shape_out, 0.08, int(rng.integers(-10, 10)))}
    weights = rng.integers(-127, 128, (c_out, c_in) if fc else (c_out, 1, 1, c_in), np.int8)
    scales = (np.float32([0.01]) if fc
              else rng.uniform(0.002, 0.02, c_out).astype(np.float32))
    layer = Layer("fc" if fc else "pw", Op.FULLY_CONNECTED if fc else Op.CONV_2D, ("x",),
                  "y", weights=weights, weight_scales=scales,
                  bias=rng.integers(-3000, 3000, c_out, dtype=np.int32),
                  activation=Activation.RELU6)
    return Graph("pw", tensors, [layer], "x", ("y",))


def _pool_graph(h, w, c, seed):
    rng = np.random.default_rng(seed)
    tensors = {"x": Tensor("x", (1, h, w, c), 0.05, int(rng.integers(-20, 20))),
               "y": Tensor("y", (1, 1, 1, c), 0.04, int(rng.integers(-10, 10)))}
    layer = Layer("pool", Op.MEAN, ("x",), "y", params={"axes": (1, 2), "keepdims": True})
    return Graph("pool", tensors, [layer], "x", ("y",))


def _head(graph, n):
    """The graph of ``graph``'s first ``n`` layers."""
    layers = graph.layers[:n]
    names = {graph.input} | {layer.output for layer in layers}
    return Graph(f"{graph.name}_head{n}", {k: v for k, v in graph.tensors.items() if k in names},
                 layers, graph.input, (layers[-1].output,))


def _raw_program(opcodes, addr):
    image = bytearray(addr + len(opcodes) * DESCRIPTOR_BYTES)
    for i, op in enumerate(opcodes):
        a = addr + i * DESCRIPTOR_BYTES
        image[a:a + DESCRIPTOR_BYTES] = to_bytes(Descriptor, {"opcode": op}, DESCRIPTOR_BYTES)
    return bytes(image), addr


@pytest.fixture(scope="module")
def runs():
    """Every program of this module in one simulation: {key: (program, x, RunResult)}."""
    jobs = {}
    for i, (h, w, ci, co, fc, kernels) in enumerate(PW_SHAPES):
        jobs[f"pw{i}"] = compile_model(_pw_graph(h, w, ci, co, fc, i), CONFIG, kernels=kernels)
    for i, (h, w, c) in enumerate(POOL_SHAPES):
        jobs[f"pool{i}"] = compile_model(_pool_graph(h, w, c, 10 + i), CONFIG,
                                         kernels=("reference", "optimized")[i % 2])
    net = load_model("mobilenet_v1", alpha=0.25, resolution=32)
    jobs["mobilenet"] = compile_model(net, CONFIG, kernels="reference")
    # CONV0, a DW_PW step and a lone stride-2 DW step (conv_dw_2 without its pointwise layer).
    jobs["head_dw"] = compile_model(_head(net, 4), CONFIG, kernels="optimized")
    images, inputs = [], {}
    raw = {"end": _raw_program([Opcode.END], 0x100),
           "bad": _raw_program([Opcode.ADD, Opcode.END], 0x140),
           "end_after_error": _raw_program([Opcode.END], 0x40)}
    images.extend(raw.values())
    for seed, (key, program) in enumerate(jobs.items()):
        graph = program.plan.graph
        x = np.random.default_rng(seed).integers(-128, 128, graph.input_tensor.shape,
                                                 dtype=np.int8)
        inputs[key] = x
        image = bytearray(program.image)
        program.write_tensor(image, graph.input, x)
        images.append((bytes(image), program.program_addr))
    results = run_images(CONFIG, images, max_cycles=400_000)
    out = {}
    for key, res in zip(list(raw) + list(jobs), results, strict=True):
        if key in jobs:
            res.outputs = hardware_outputs(jobs[key], res.memory)
        out[key] = (jobs.get(key), inputs.get(key), res)
    return out


@pytest.fixture(scope="module")
def tiny_runs():
    """The ``tiny`` preset's programs in one simulation: {key: (program, x, RunResult)}."""
    net = load_model("mobilenet_v1", alpha=0.25, resolution=32)
    jobs = {
        # CONV0 and five DW_PW steps (the next dw layer has more channels than tiny holds).
        "head": compile_model(_head(net, 11), TINY, kernels="optimized"),
        # ... and one more layer: a lone depthwise layer (conv_dw_6, stride 2), a DW step.
        "head_dw": compile_model(_head(net, 12), TINY),
        "pw": compile_model(_pw_graph(5, 7, 24, 12, False, 1), TINY, kernels="optimized"),
        "pool": compile_model(_pool_graph(3, 4, 16, 4), TINY),
    }
    inputs = {key: np.random.default_rng(3).integers(-128, 128,
                                                     p.plan.graph.input_tensor.shape,
                                                     dtype=np.int8)
              for key, p in jobs.items()}
    images = []
    for key, p in jobs.items():
        image = bytearray(p.image)
        p.write_tensor(image, p.plan.graph.input, inputs[key])
        images.append((bytes(image), p.program_addr))
    # The RAM stalls every AXI channel at random: backpressure everywhere, out of step.
    results = run_images(TINY, images, max_cycles=400_000, pause="random", seed=5)
    for key, res in zip(jobs, results, strict=True):
        res.outputs = hardware_outputs(jobs[key], res.memory)
    return {key: (jobs[key], inputs[key], res) for key, res in zip(jobs, results, strict=True)}


@pytest.fixture(scope="module")
def ecp5_runs():
    """The default preset's programs in one simulation: {key: (program, x, RunResult)}."""
    net = load_model("mobilenet_v1", alpha=0.25, resolution=32)
    programs = {
        # 24 input channels padded to 32 (K = 2), 12 output channels to 16 (J = 2).
        "pw": compile_model(_pw_graph(5, 7, 24, 12, False, 1), ECP5, kernels="optimized"),
        # 40 channels padded to 48: chunks j = 1 and 3 start half-way into a buffer word.
        "pool": compile_model(_pool_graph(3, 4, 40, 2), ECP5),
        "mobilenet": compile_model(net, ECP5, kernels="reference"),
        # CONV0 and a lone stride-1 DW step: 8 channels padded to 16, J = 2, so that chunk
        # j = 1 starts half-way into a buffer word.
        "head_dw": compile_model(_head(net, 2), ECP5, kernels="optimized"),
    }
    jobs = [(p, np.random.default_rng(seed).integers(-128, 128, p.plan.graph.input_tensor.shape,
                                                     dtype=np.int8))
            for seed, p in enumerate(programs.values())]
    results = run_programs(jobs, max_cycles=400_000)
    return {key: (p, x, res) for key, (p, x), res in zip(programs, jobs, results, strict=True)}


def test_ecp5_channels_are_padded_to_buffer_words(ecp5_runs):
    plan = ecp5_runs["mobilenet"][0].plan
    assert ECP5.channel_align == ECP5.pw_rows == 16
    assert plan.storage(plan.graph.input).c_stride == 16          # RGB
    assert plan.storage(plan.steps[0].output).c_stride == 16      # conv1: 8 channels
    assert ecp5_runs["pool"][0].plan.storage("x").c_stride == 48


@pytest.mark.parametrize("key, opcode", [("pw", Opcode.PW), ("pool", Opcode.POOL)])
def test_ecp5_single_layer_is_bit_exact(ecp5_runs, key, opcode):
    program, x, res = ecp5_runs[key]
    assert [s.opcode for s in program.plan.steps] == [opcode]
    check_outputs(program, x, res)
    assert res.layer_count == 1


def test_ecp5_mobilenet_v1_end_to_end_is_bit_exact(ecp5_runs):
    program, x, res = ecp5_runs["mobilenet"]
    steps = program.plan.steps
    assert {Opcode.CONV0, Opcode.DW_PW, Opcode.POOL, Opcode.FC} == {s.opcode for s in steps}
    check_outputs(program, x, res)
    assert len(res.outputs) == len(steps) + 1   # + the RESHAPE that aliases the pool


@pytest.mark.parametrize("preset_runs", ["runs", "ecp5_runs"])
def test_cycle_counters_against_the_cycle_model(request, preset_runs):
    # Every compiled program of the preset: single PW, FC and POOL layers and MobileNetV1's
    # CONV0, DW_PW (stride 1 and 2), POOL and FC steps. The memory is AxiRam, whose timing
    # the model's AXIRAM setting describes; the program's addresses place the bursts. Each
    # step within 1 % of LAYER_CYCLES.
    lines = [f"{'program':10s} {'step':28s} {'op':6s} {'measured':>9s} {'model':>9s} "
             f"{'diff':>6s}"]
    checks = []
    for key, (program, _, res) in request.getfixturevalue(preset_runs).items():
        if program is None:
            continue
        steps = program.plan.steps
        assert res.layer_count == len(steps)
        assert all(c is not None for c in res.layer_cycles), res.layer_cycles
        assert sum(res.layer_cycles) <= res.cycles
        predicted = model(program, memory=AXIRAM)
        for step, got, want in zip(steps, res.layer_cycles, predicted, strict=True):
            lines.append(f"{key:10s} {step.name:28s} {step.opcode.name:6s} {got:9d} "
                         f"{want.cycles:9d} {want.cycles - got:+6d}")
            checks.append((key, step, got, want.cycles))
    print("\n".join(lines))
    for key, step, got, want in checks:
        assert abs(want - got) <= 0.01 * got, (
            f"{key}/{step.name} ({step.opcode.name}): {got} cycles measured, {want} modelled")


@pytest.mark.parametrize("key", ["head", "pw", "pool"])
def test_tiny_preset_is_bit_exact(tiny_runs, key):
    program, x, res = tiny_runs[key]
    check_outputs(program, x, res)
    assert res.layer_count == len(program.plan.steps)


@pytest.mark.parametrize("preset_runs", ["runs", "ecp5_runs", "tiny_runs"])
def test_lone_depthwise_step_is_bit_exact(request, preset_runs):
    # A depthwise layer whose output goes to memory: the identity pass of the pointwise
    # array (tiny: under random stalls on every AXI channel).
    program, x, res = request.getfixturevalue(preset_runs)["head_dw"]
    steps = program.plan.steps
    assert steps[-1].opcode is Opcode.DW and steps[-1].j_chunks >= 2
    assert not res.timeout and res.error_code == 0
    assert res.layer_count == len(steps)
    check_outputs(program, x, res)
    assert steps[-1].output in res.outputs


def _bit(reg, field):
    return 1 << register(reg).field(field).lsb


def _status(res: RunResult):
    return {name: bool(res.status & _bit("STATUS", name))
            for name in ("BUSY", "DONE", "ERROR")}


def test_end_only_program_finishes_with_an_interrupt(runs):
    _, _, res = runs["end"]
    assert not res.timeout
    assert _status(res) == {"BUSY": False, "DONE": True, "ERROR": False}
    assert res.error_code == 0 and res.layer_count == 0 and res.irqs >= 1
    # Start, one descriptor fetch, decode: a few tens of cycles, not thousands.
    assert 0 < res.cycles < 100


def test_unsupported_opcode_raises_error_and_does_not_hang(runs):
    _, _, res = runs["bad"]
    assert not res.timeout
    assert _status(res) == {"BUSY": False, "DONE": True, "ERROR": True}
    assert res.error_code == ErrorCode.OPCODE.value
    assert res.layer_count == 0 and res.irqs >= 1
    # The next run starts clean.
    _, _, after = runs["end_after_error"]
    assert _status(after) == {"BUSY": False, "DONE": True, "ERROR": False}


@pytest.mark.parametrize("index", range(len(PW_SHAPES)))
def test_pointwise_layer_is_bit_exact(runs, index):
    program, x, res = runs[f"pw{index}"]
    check_outputs(program, x, res)
    assert res.layer_count == 1 and res.layer_cycles[0] is not None
    assert program.plan.steps[0].opcode in (Opcode.PW, Opcode.FC)


@pytest.mark.parametrize("index", range(len(POOL_SHAPES)))
def test_global_pool_is_bit_exact(runs, index):
    program, x, res = runs[f"pool{index}"]
    assert program.plan.steps[0].opcode is Opcode.POOL
    check_outputs(program, x, res)


def test_mobilenet_v1_end_to_end_is_bit_exact(runs):
    program, x, res = runs["mobilenet"]
    steps = program.plan.steps
    assert {Opcode.CONV0, Opcode.DW_PW, Opcode.POOL, Opcode.FC} == {s.opcode for s in steps}
    check_outputs(program, x, res)
    # Every step's output that lives in memory was compared; the dw outputs stay on chip.
    assert len(res.outputs) == len(steps) + 1   # + the RESHAPE that aliases the pool


def test_scheduler_rejects_configurations_it_cannot_run():
    # large: a 256-bit beat holds two parameter records.
    with pytest.raises(ValueError, match="axi_data_width must be <= 128 bits, not 256"):
        Scheduler(preset("large"))
    with pytest.raises(ValueError, match="axi_data_width == 8·pw_rows"):
        Scheduler(CONFIG.replace(axi_data_width=128))
    # The weight rows the array takes per cycle come from one beat.
    with pytest.raises(ValueError, match="pw_weight_rows·pw_cols = 32 must be <= pw_rows=8"):
        Scheduler(CONFIG.replace(pw_cols=16))
    with pytest.raises(ValueError, match="pw_weight_rows·pw_cols = 16 must be <= pw_rows=8"):
        Scheduler(CONFIG.replace(pw_weight_rows=4))
    assert Scheduler(CONFIG.replace(pw_cols=8, pw_weight_rows=1)).weight_fifo_beats > 0
    # The default preset is accepted: the compiler pads its channels to 16-byte words.
    assert Scheduler(preset("ecp5-85f")).act_words == preset("ecp5-85f").act_buf_bytes // 16


def test_documented_members_match_the_signature():
    acc = Accelerator(CONFIG)
    doc = acc.__doc__
    for name in acc.signature.members:
        assert f"{name} :" in doc, f"member {name} is not documented"
    sched = Scheduler(CONFIG)
    for name in sched.signature.members:
        assert name in sched.__doc__, f"scheduler member {name} is not documented"
