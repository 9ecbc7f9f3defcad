# amaranth: UnusedElaboratable=no
"""Robustness of the accelerator top (issue 7): memory stalls, control, bad programs.

Everything runs on the ``small`` preset's build, in one simulation (programs are data), in
this order: a reference run; programs with one bad descriptor each (every one must end with
DONE, ERROR, the expected ``ERROR_CODE`` and an interrupt, within a bounded wait, having
written nothing but the outputs of the steps before it); the reference again (nothing was
left behind); the same programs with the RAM stalling to each pattern of
``mnaccel.sim.system.PAUSE_PATTERNS``; a start while busy; soft resets in the middle of a
layer followed at once by a new start; three inferences back to back. The program is the
head of MobileNetV1 α 0.25/32 (CONV0, a stride-1 and a stride-2 DW_PW step) plus single
PW, POOL and FC layers, a write-bound PW layer (eight input channels, 32 output
channels: the array needs 8 cycles per pixel, the write-back 4 beats) and a lone depthwise
layer (a DW step). Every good run is
compared bit-exactly with the golden model and checked to write only inside its output
tensors. docs/robustness.md has the figures.
"""

import numpy as np
import pytest

from mnaccel.compiler.image import compile_model
from mnaccel.golden.graph import Activation, Graph, Layer, Op, Tensor
from mnaccel.golden.interpreter import run as golden_run
from mnaccel.golden.model import load_model
from mnaccel.hw.config import preset
from mnaccel.hw.csr import register
from mnaccel.hw.descriptor import DESCRIPTOR_BYTES, Descriptor, Opcode, from_bytes, to_bytes
from mnaccel.hw.scheduler import CHECK_CYCLES, ErrorCode, check_descriptor
from mnaccel.sim.benches import system as bench
from mnaccel.sim.system import (
    PAUSE_PATTERNS,
    check_outputs,
    check_writes,
    hardware_outputs,
    run_images,
)

pytestmark = pytest.mark.xdist_group("accelerator")

CONFIG = preset("small")
#: A bad run stops within a few hundred cycles of its bad step; a good one within this.
MAX_CYCLES = 200_000
#: Cycles after the start at which the host writes CTRL again (the head takes ≈ 8,300
#: cycles on `small`: conv1 ≈ 3,200, then ≈ 2,550 and ≈ 2,600); the tests check that each
#: lands where it should (busy; inside the named step).
START_TWICE_AT = 4_000
SOFT_RESETS = {"reset_none": ("none", 4_000), "reset_slow_read": ("slow-read", 1_500),
               "reset_slow_write": ("slow-write", 6_500)}
STALLED = [p for p in PAUSE_PATTERNS if p != "none"]
#: The programs run under every stall pattern.
WORKLOAD = ("head", "pw", "pool", "fc", "pw_wide", "dw")


def _head(graph, n):
    """The graph of ``graph``'s first ``n`` layers."""
    layers = graph.layers[:n]
    names = {graph.input} | {layer.output for layer in layers}
    return Graph(f"{graph.name}_head{n}", {k: v for k, v in graph.tensors.items() if k in names},
                 layers, graph.input, (layers[-1].output,))


def _slice(graph, start, stop):
    """The graph of layers ``start … stop − 1``, its input the first one's input."""
    layers = graph.layers[start:stop]
    names = {layers[0].inputs[0]} | {layer.output for layer in layers}
    return Graph(f"{graph.name}_{start}_{stop}",
                 {k: v for k, v in graph.tensors.items() if k in names}, layers,
                 layers[0].inputs[0], (layers[-1].output,))


def _pw_graph(h, w, c_in, c_out, fc, seed):
    rng = np.random.default_rng(seed)
    shape_in, shape_out = ((1, c_in), (1, c_out)) if fc else ((1, h, w, c_in), (1, h, w, c_out))
    tensors = {"x": Tensor("x", shape_in, 0.05, int(rng.integers(-20, 20))),
               "y": Tensor("y", shape_out, 0.08, int(rng.integers(-10, 10)))}
    weights = rng.integers(-127, 128, (c_out, c_in) if fc else (c_out, 1, 1, c_in), np.int8)
    layer = Layer("fc" if fc else "pw", Op.FULLY_CONNECTED if fc else Op.CONV_2D, ("x",), "y",
                  weights=weights, weight_scales=rng.uniform(0.002, 0.02, c_out),
                  bias=rng.integers(-3000, 3000, c_out, dtype=np.int32),
                  activation=Activation.RELU6)
    return Graph("pw", tensors, [layer], "x", ("y",))


def _pool_graph(h, w, c, seed):
    rng = np.random.default_rng(seed)
    tensors = {"x": Tensor("x", (1, h, w, c), 0.05, int(rng.integers(-20, 20))),
               "y": Tensor("y", (1, 1, 1, c), 0.04, int(rng.integers(-10, 10)))}
    layer = Layer("pool", Op.MEAN, ("x",), "y", params={"axes": (1, 2), "keepdims": True})
    return Graph("pool", tensors, [layer], "x", ("y",))


def _programs():
    net = load_model("mobilenet_v1", alpha=0.25, resolution=32)
    return {
        "head": compile_model(_head(net, 5), CONFIG, kernels="reference"),
        "dwpw": compile_model(_slice(net, 1, 3), CONFIG, kernels="optimized"),
        "pw": compile_model(_pw_graph(5, 7, 24, 12, False, 1), CONFIG, kernels="optimized"),
        "pool": compile_model(_pool_graph(5, 5, 24, 2), CONFIG),
        "fc": compile_model(_pw_graph(1, 1, 40, 20, True, 3), CONFIG, kernels="optimized"),
        "pw_wide": compile_model(_pw_graph(12, 12, 8, 32, False, 4), CONFIG,
                                 kernels="optimized"),
        # A lone depthwise layer (conv_dw_1, 16×16×8, stride 1): a DW step.
        "dw": compile_model(_slice(net, 1, 2), CONFIG, kernels="reference"),
    }


def _image(program, x, step=None, **fields):
    """``program``'s image with input ``x`` and, if ``step`` is given, that descriptor's
    ``fields`` replaced (the other fields as compiled)."""
    image = bytearray(program.image)
    program.write_tensor(image, program.plan.graph.input, x)
    if step is not None:
        a = program.program_addr + step * DESCRIPTOR_BYTES
        desc = from_bytes(Descriptor, image[a:a + DESCRIPTOR_BYTES])
        desc.update(fields)
        image[a:a + DESCRIPTOR_BYTES] = to_bytes(Descriptor, desc, DESCRIPTOR_BYTES)
    return bytes(image)


def _desc(program, step):
    """Descriptor ``step`` of ``program`` as the hardware reads it (every field)."""
    a = program.program_addr + step * DESCRIPTOR_BYTES
    return from_bytes(Descriptor, program.image[a:a + DESCRIPTOR_BYTES])


def _bad_descriptors(programs):
    """``{name: (program key, step, fields)}``: one broken rule (or more) each."""
    c = CONFIG
    dwpw = _desc(programs["dwpw"], 0)
    pw = _desc(programs["pw"], 0)
    dw = _desc(programs["dw"], 0)
    return {
        # Steps 0 and 1 run, step 2's opcode is not one the scheduler executes.
        "opcode": ("head", 2, {"opcode": 7}),
        # DW_PW: sizes beyond the line buffer, tiles against pixels, chunks against strides.
        "width": ("dwpw", 0, {"in_w": c.lb_max_width + 1}),
        "channels": ("dwpw", 0, {"in_c": 2 * c.lb_max_channels,
                                 "in_stride": 2 * c.lb_max_channels}),
        "no_tiles": ("dwpw", 0, {"n_tiles": 0}),
        "tile_sum": ("dwpw", 0, {"first_tile_pixels": dwpw["first_tile_pixels"] + 1}),
        "tile_depth": ("dwpw", 0, {"tile_pixels": c.pw_acc_depth + 1}),
        "k_chunks": ("dwpw", 0, {"k_chunks": dwpw["k_chunks"] + 1}),
        "j_chunks": ("dwpw", 0, {"j_chunks": dwpw["j_chunks"] + 1}),
        "geometry": ("dwpw", 0, {"out_h": dwpw["out_h"] + 1}),
        "kernel": ("dwpw", 0, {"kernel": 7}),
        "stride": ("dwpw", 0, {"stride": 3}),
        # PW: input pixels against output pixels, strides, buffer halves.
        "pw_pixels": ("pw", 0, {"in_h": pw["in_h"] + 1}),
        "pw_out_stride": ("pw", 0, {"out_stride": 0}),
        "act_half": ("pw", 0, {"in_stride": 4096}),
        "out_half": ("pw", 0, {"out_stride": 2048}),
        # POOL and CONV0.
        "pool_tiles": ("pool", 0, {"n_tiles": 2}),
        "pool_pixels": ("pool", 0, {"first_tile_pixels": 24}),
        "conv_kernel": ("head", 0, {"kernel": 5}),
        "conv_k_chunks": ("head", 0, {"k_chunks": 3}),
        # DW: one identity chunk per output chunk, within the pixel's channels.
        "dw_k_chunks": ("dw", 0, {"k_chunks": 2}),
        "dw_j_chunks": ("dw", 0, {"j_chunks": dw["j_chunks"] + 1}),
        "dw_channels": ("dw", 0, {"in_c": dw["in_c"] + 1, "in_stride": dw["in_c"] + 1}),
        # Unaligned addresses (the bus beat is 8 bytes).
        "in_addr": ("pw", 0, {"in_addr": pw["in_addr"] + 4}),
        "weight_addr": ("pw", 0, {"pw_weight_addr": pw["pw_weight_addr"] + 1}),
        "dw_param_addr": ("dwpw", 0, {"dw_param_addr": dwpw["dw_param_addr"] + 4}),
        "dw_weight_addr": ("dw", 0, {"dw_weight_addr": dw["dw_weight_addr"] + 4}),
    }


def _x(program, seed):
    shape = program.plan.graph.input_tensor.shape
    return np.random.default_rng(seed).integers(-128, 128, shape, dtype=np.int8)


@pytest.fixture(scope="module")
def sim():
    """Every run of this module in one simulation: {key: (program, x, RunResult, extra)}."""
    programs = _programs()
    bad = _bad_descriptors(programs)
    jobs = []   # (key, program, x, image, options, extra)

    def add(key, name, seed=0, options=None, image=None, extra=None):
        program = programs[name]
        x = _x(program, seed)
        jobs.append((key, program, x, image or _image(program, x), options or {}, extra or {}))

    add("ref", "head")
    for key, (name, step, fields) in bad.items():
        program = programs[name]
        x = _x(program, 0)
        add(f"bad_{key}", name, image=_image(program, x, step, **fields),
            extra={"step": step, "fields": fields})
    # An unaligned program address: nothing is fetched.
    end_only = bytearray(0x140)
    end_only[0x100:0x140] = to_bytes(Descriptor, {"opcode": Opcode.END}, DESCRIPTOR_BYTES)
    jobs.append(("bad_program_addr", None, None, (bytes(end_only), 0x104), {}, {}))
    add("after_bad", "head")
    for pattern in PAUSE_PATTERNS:
        for name in WORKLOAD:
            add(f"{pattern}/{name}", name, seed=1, options={"pause": pattern})
    add("twice", "head", options={"start_twice_at": START_TWICE_AT})
    for key, (pattern, at) in SOFT_RESETS.items():
        add(key, "head", seed=2, options={"pause": pattern, "soft_reset_at": at})
    for i in range(3):
        add(f"b2b{i}", "head", seed=10 + i)

    images = []
    for _, program, _, image, options, _ in jobs:
        if isinstance(image, tuple):
            images.append((*image, options))
        else:
            images.append((image, program.program_addr, options))
    results = run_images(CONFIG, images, max_cycles=MAX_CYCLES)
    out = {}
    for (key, program, x, _, _, extra), res in zip(jobs, results, strict=True):
        if program is not None:
            res.outputs = hardware_outputs(program, res.memory)
        out[key] = (program, x, res, extra)
    # The figures behind docs/robustness.md.
    print()
    for key, (_, _, res, _) in out.items():
        print(f"{key:24s} cycles {res.cycles:7d} read_stall {res.read_stall:6d} write_stall "
              f"{res.write_stall:6d} status {res.status:#06x} layers {res.layer_count} "
              f"{res.control or ''}")
    return out


def _bit(reg, field):
    return 1 << register(reg).field(field).lsb


def _flags(res):
    return {name: bool(res.status & _bit("STATUS", name))
            for name in ("BUSY", "DONE", "ERROR", "START_IGNORED")}


def _good(program, x, res):
    check_outputs(program, x, res)
    check_writes(program, res)
    assert not res.timeout and res.layer_count == len(program.plan.steps)
    assert _flags(res) == {"BUSY": False, "DONE": True, "ERROR": False,
                           "START_IGNORED": False}


# --- the bench's patterns and the descriptor rules, without a simulation ----------------------

def test_pause_patterns_are_the_benchs():
    assert tuple(bench.PATTERNS) == PAUSE_PATTERNS


@pytest.mark.parametrize("config", ["tiny", "small", "ecp5-85f"])
def test_compiled_programs_pass_the_descriptor_rules(config):
    cfg = preset(config)
    graphs = [load_model("mobilenet_v1", alpha=0.25, resolution=32),
              _pw_graph(5, 7, 24, 12, False, 1), _pool_graph(5, 5, 24, 2)]
    if config == "ecp5-85f":
        graphs.append(load_model("mobilenet_v1", alpha=1.0, resolution=224, calibrate=False))
    if config == "tiny":   # conv_dw_7 has more channels than tiny's line buffer holds
        graphs[0] = _head(graphs[0], 11)
    for graph in graphs:
        program = compile_model(graph, cfg, kernels="optimized")
        for i, _ in enumerate(program.descriptors):
            assert check_descriptor(_desc(program, i), cfg) == [], (graph.name, i)


def test_each_bad_descriptor_breaks_a_rule():
    programs = _programs()
    for key, (name, step, fields) in _bad_descriptors(programs).items():
        broken = check_descriptor(dict(_desc(programs[name], step), **fields), CONFIG)
        if key == "opcode":
            assert broken == []         # not a step: the decode refuses the opcode
        else:
            assert broken, key


def test_error_codes_are_documented():
    doc = register("STATUS").field("ERROR_CODE").doc
    for code in ErrorCode:
        if code is not ErrorCode.NONE:
            assert f"{code.value} " in doc, code


# --- external memory under stalls --------------------------------------------------------------

@pytest.mark.parametrize("pattern", PAUSE_PATTERNS)
@pytest.mark.parametrize("name", WORKLOAD)
def test_bit_exact_under_every_stall_pattern(sim, pattern, name):
    program, x, res, _ = sim[f"{pattern}/{name}"]
    _good(program, x, res)


def _pointwise_beats(program):
    """Beats the pointwise array takes, results the requantizer gives (per ``rq_lanes``),
    and tile boundaries, summed over the program's steps."""
    cfg = CONFIG
    beats = results = boundaries = 0
    for step in program.plan.steps:
        pixels = sum(n for _, n in step.tiles())
        if step.opcode is Opcode.POOL:
            beats += step.j_chunks * pixels
            results += step.j_chunks * cfg.pw_cols // cfg.rq_lanes
        else:
            beats += step.j_chunks * step.k_chunks * pixels
            results += step.j_chunks * pixels * cfg.pw_cols // cfg.rq_lanes
        boundaries += step.n_tiles - 1
    return beats, results, boundaries


@pytest.mark.parametrize("pattern", PAUSE_PATTERNS)
@pytest.mark.parametrize("name", WORKLOAD)
def test_stall_counters_account_for_the_cycles(sim, pattern, name):
    # READ_STALL counts cycles in which the beat generator waits for its tile's input or a
    # swap beat waits for weights, so it never overlaps a pointwise beat except in the cycle
    # the last beat of a tile leaves while the next tile is not in (once per boundary);
    # WRITE_STALL counts cycles in which a requantized result waits for an output half,
    # never one in which a result is taken. Hence, whatever the memory does:
    program, _, res, _ = sim[f"{pattern}/{name}"]
    beats, results, boundaries = _pointwise_beats(program)
    assert res.cycles >= beats + res.read_stall - boundaries
    assert res.cycles >= results + res.write_stall


@pytest.mark.parametrize("pattern", STALLED)
def test_stalls_cost_cycles_and_show_in_the_counters(sim, pattern):
    runs = {name: sim[f"{pattern}/{name}"][2] for name in WORKLOAD}
    none = {name: sim[f"none/{name}"][2] for name in WORKLOAD}
    assert sum(r.cycles for r in runs.values()) > sum(r.cycles for r in none.values())
    if pattern != "slow-write":
        # Reads slowed down: the array waits for its input and weights more often.
        assert runs["head"].read_stall > none["head"].read_stall
    if pattern == "slow-write":
        # The write-bound layer: the requantizer waits for an output half.
        assert runs["pw_wide"].write_stall > none["pw_wide"].write_stall == 0


# --- control -----------------------------------------------------------------------------------

def test_reference_runs_are_bit_exact(sim):
    for key in ("ref", "after_bad"):
        program, x, res, _ = sim[key]
        _good(program, x, res)


def test_bad_programs_leave_nothing_behind(sim):
    # The same run before and after the bad programs: the same cycles, layer by layer.
    ref, after = sim["ref"][2], sim["after_bad"][2]
    assert after.layer_cycles == ref.layer_cycles and after.cycles == ref.cycles


def test_start_while_busy_is_ignored_and_flagged(sim):
    program, x, res, _ = sim["twice"]
    assert res.control["busy_at_second_start"]
    assert res.control["status_after_second_start"] & _bit("STATUS", "START_IGNORED")
    check_outputs(program, x, res)
    check_writes(program, res)
    assert _flags(res) == {"BUSY": False, "DONE": True, "ERROR": False, "START_IGNORED": True}
    # The run went on as if the second start had not been written.
    ref = sim["ref"][2]
    assert res.layer_cycles == ref.layer_cycles and res.cycles == ref.cycles


@pytest.mark.parametrize("key", list(SOFT_RESETS))
def test_soft_reset_mid_layer_then_start_is_bit_exact(sim, key):
    program, x, res, _ = sim[key]
    steps = len(program.plan.steps)
    # The reset came in the middle of the run, with a layer under way.
    assert 0 <= res.control["layers_before_reset"] < steps
    assert not res.control["status_after_reset"] & (
        _bit("STATUS", "BUSY") | _bit("STATUS", "DONE") | _bit("STATUS", "ERROR"))
    _good(program, x, res)
    if SOFT_RESETS[key][0] == "none":
        # The second run is the reference run, after the bus has drained (the start is
        # held meanwhile and counted): every step but the first takes the same cycles.
        ref = sim["ref"][2]
        assert res.layer_cycles[1:] == ref.layer_cycles[1:]
        assert ref.layer_cycles[0] <= res.layer_cycles[0] < ref.layer_cycles[0] + 200


def test_soft_resets_landed_inside_layers(sim):
    assert sim["reset_none"][2].control["layers_before_reset"] == 1       # in dw1+pw1
    assert sim["reset_slow_read"][2].control["layers_before_reset"] == 0  # in conv1
    assert sim["reset_slow_write"][2].control["layers_before_reset"] >= 1


def test_back_to_back_inferences_without_reset(sim):
    ref = sim["ref"][2]
    outputs = []
    for i in range(3):
        program, x, res, _ = sim[f"b2b{i}"]
        _good(program, x, res)
        # No state is carried from one run into the next: the same cycles, step by step.
        assert res.layer_cycles == ref.layer_cycles
        outputs.append(res.outputs[program.plan.steps[-1].output])
    assert not np.array_equal(outputs[0], outputs[1])   # three different inferences


# --- bad programs ------------------------------------------------------------------------------

def _bad_keys():
    return list(_bad_descriptors(_programs()))


@pytest.mark.parametrize("key", _bad_keys())
def test_bad_descriptor_stops_with_an_error(sim, key):
    program, x, res, extra = sim[f"bad_{key}"]
    step, fields = extra["step"], extra["fields"]
    broken = check_descriptor(dict(_desc(program, step), **fields), CONFIG)
    if key == "opcode":
        want = ErrorCode.OPCODE
    elif any(code is ErrorCode.ALIGN for code, _ in broken):
        want = ErrorCode.ALIGN
    else:
        want = ErrorCode.SHAPE
    # Bounded wait: the run ended by itself, with done, error and the interrupt.
    assert not res.timeout
    assert _flags(res) == {"BUSY": False, "DONE": True, "ERROR": True, "START_IGNORED": False}
    assert res.error_code == want.value, (key, broken)
    assert res.irqs >= 1
    # The steps before it ran and are right; the bad step wrote nothing.
    assert res.layer_count == step
    check_writes(program, res, steps=step)
    ran = {s.output for s in program.plan.steps[:step]}
    if ran:
        want_out = golden_run(program.plan.graph, x, kernel=program.kernels)
        for name in ran:
            assert np.array_equal(res.outputs[name], want_out[name]), name
    # A shape error is found within CHECK_CYCLES of the step's start: the bad step costs
    # a fetch, the checks and the drain, not a layer's worth of cycles.
    assert res.cycles - sum(c for c in res.layer_cycles if c) < 60 + CHECK_CYCLES + 200


def test_unaligned_program_address_stops_before_any_fetch(sim):
    _, _, res, _ = sim["bad_program_addr"]
    assert not res.timeout and res.error_code == ErrorCode.ALIGN.value
    assert _flags(res) == {"BUSY": False, "DONE": True, "ERROR": True, "START_IGNORED": False}
    assert res.layer_count == 0 and res.cycles < 20
    assert res.memory[:len(res.image)] == res.image
