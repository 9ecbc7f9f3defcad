# amaranth: UnusedElaboratable=no
"""Property-based tests through the RTL: random single layers against the golden model.

Hypothesis draws layers — fused depthwise → pointwise pairs (kernel 3
or 5, stride 1 or 2, SAME or VALID), pointwise layers, first convolutions (3×3 over RGB,
stride 1 or 2, SAME or VALID), global average pools, fully connected layers and lone
depthwise layers (kernel 3 or 5, stride 1 or 2, SAME or VALID) — with
random shapes, weights, biases, scales, zero points, fused activations and TFLite kernel
flavours. Each is compiled for the ``small`` preset and all run on its one Verilator build
in one simulation (programs are data, so N examples cost one simulation, not N). The
property of every example: every output is the golden model's, bit for bit, nothing
outside the output tensor changed, and the run ended without error.

Hypothesis draws them as one tuple of layers (:data:`PER_KIND` of each kind),
derandomized (the same examples on every run, as CI needs), generation only: the layers
tested are the distinct ones of its first two tuples, the simplest (per kind one layer of
the smallest shape, zero bias, repeated) and a random one. No shrinking, since a smaller
example would need a simulation of its own: a failure names the example's full
description, and ``run_specs([spec])`` reruns it alone.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mnaccel.compiler.image import compile_model
from mnaccel.golden.graph import Activation, Graph, Layer, Op, Padding, Tensor
from mnaccel.hw.config import preset
from mnaccel.hw.descriptor import Opcode
from mnaccel.hw.line_buffer import axis_geometry
from mnaccel.sim.system import check_outputs, check_writes, run_programs

pytestmark = pytest.mark.xdist_group("accelerator")

CONFIG = preset("small")
#: Layers of each kind per drawn tuple: the fused pair has the most options.
PER_KIND = {"dw_pw": 16, "conv0": 8, "pw": 6, "pool": 5, "fc": 5, "dw": 8}
KINDS = tuple(PER_KIND)
#: The step each kind compiles to (a 1×1 convolution on a 1×1 map is an FC step).
OPCODES = {"dw_pw": Opcode.DW_PW, "pw": Opcode.PW, "conv0": Opcode.CONV0,
           "pool": Opcode.POOL, "fc": Opcode.FC, "dw": Opcode.DW}


def opcode_of(spec) -> Opcode:
    if spec["kind"] == "pw" and spec["h"] * spec["w"] == 1:
        return Opcode.FC
    return OPCODES[spec["kind"]]


def _quant(draw, prefix):
    return {f"{prefix}_scale": draw(st.floats(0.005, 0.2)),
            f"{prefix}_zp": draw(st.integers(-128, 127))}


@st.composite
def layer_specs(draw, kind):
    """One layer of ``kind``, described as plain data, so that a failure prints all of it."""
    spec = {"kind": kind, "seed": draw(st.integers(0, 2**31 - 1)),
            # The reference FULLY_CONNECTED rescales in double precision (the compiler
            # refuses it): FC layers use the optimized kernels.
            "kernels": "optimized" if kind == "fc" else draw(st.sampled_from(
                ["reference", "optimized"])),
            "activation": draw(st.sampled_from(list(Activation))),
            "weight_scale": draw(st.floats(0.001, 0.05)),
            "bias_range": draw(st.sampled_from([0, 100, 3000, 100_000])),
            **_quant(draw, "in"), **_quant(draw, "out")}
    if kind in ("dw_pw", "conv0", "dw"):
        k = 3 if kind == "conv0" else draw(st.sampled_from([3, 5]))
        padding = draw(st.sampled_from(["SAME", "VALID"]))
        low = k if padding == "VALID" else 1
        spec.update(kernel=k, stride=draw(st.sampled_from([1, 2])), padding=padding,
                    h=draw(st.integers(low, 10)), w=draw(st.integers(low, 10)))
    if kind == "dw_pw":
        spec.update(c=draw(st.integers(1, 32)), c_out=draw(st.integers(1, 24)),
                    mid_activation=draw(st.sampled_from(list(Activation))),
                    **_quant(draw, "mid"))
    elif kind == "dw":
        c = draw(st.integers(1, 32))
        spec.update(c=c, c_out=c)
    elif kind == "conv0":
        spec.update(c=3, c_out=draw(st.integers(1, 24)))
    elif kind == "pw":
        spec.update(h=draw(st.integers(1, 9)), w=draw(st.integers(1, 9)),
                    c=draw(st.integers(1, 48)), c_out=draw(st.integers(1, 32)))
    elif kind == "fc":
        spec.update(c=draw(st.integers(1, 64)), c_out=draw(st.integers(1, 32)))
    else:
        # The optimized MEAN folds the zero points into one int8 offset: keep them and the
        # scale ratio where it fits (the compiler refuses the rest).
        spec.update(h=draw(st.integers(1, 8)), w=draw(st.integers(1, 8)),
                    c=draw(st.integers(1, 64)), in_zp=draw(st.integers(-40, 40)),
                    out_zp=draw(st.integers(-40, 40)))
        spec["out_scale"] = spec["in_scale"] * draw(st.floats(0.5, 2.0))
    return spec


def graph_of(spec) -> Graph:
    """The one-layer (``dw_pw``: two-layer) graph that ``spec`` describes."""
    rng = np.random.default_rng(spec["seed"])
    kind, c, act = spec["kind"], spec["c"], Activation(spec["activation"])
    tensors = {}

    def tensor(name, shape, prefix):
        tensors[name] = Tensor(name, shape, spec[f"{prefix}_scale"], spec[f"{prefix}_zp"])

    def weights(shape, c_out):
        b = spec["bias_range"]
        return {"weights": rng.integers(-127, 128, shape, dtype=np.int8),
                "weight_scales": (rng.uniform(0.2, 1.0, c_out) * spec["weight_scale"]
                                  ).astype(np.float32),
                "bias": rng.integers(-b, b + 1, c_out, dtype=np.int32)}

    if kind == "pool":
        tensor("x", (1, spec["h"], spec["w"], c), "in")
        tensor("y", (1, 1, 1, c), "out")
        layers = [Layer("pool", Op.MEAN, ("x",), "y", params={"axes": (1, 2),
                                                              "keepdims": True})]
    elif kind == "fc":
        tensor("x", (1, c), "in")
        tensor("y", (1, spec["c_out"]), "out")
        layers = [Layer("fc", Op.FULLY_CONNECTED, ("x",), "y", activation=act,
                        **weights((spec["c_out"], c), spec["c_out"]))]
    elif kind == "pw":
        h, w = spec["h"], spec["w"]
        tensor("x", (1, h, w, c), "in")
        tensor("y", (1, h, w, spec["c_out"]), "out")
        layers = [Layer("pw", Op.CONV_2D, ("x",), "y", activation=act,
                        **weights((spec["c_out"], 1, 1, c), spec["c_out"]))]
    else:
        h, w, k, s, pad = spec["h"], spec["w"], spec["kernel"], spec["stride"], spec["padding"]
        oh, ow = (axis_geometry(n, k, s, pad)[0] for n in (h, w))
        tensor("x", (1, h, w, c), "in")
        tensor("y", (1, oh, ow, spec["c_out"]), "out")
        window = {"stride": (s, s), "padding": Padding(pad)}
        if kind == "conv0":
            layers = [Layer("conv", Op.CONV_2D, ("x",), "y", activation=act, **window,
                            **weights((spec["c_out"], k, k, c), spec["c_out"]))]
        elif kind == "dw":
            layers = [Layer("dw", Op.DEPTHWISE_CONV_2D, ("x",), "y", activation=act, **window,
                            **weights((1, k, k, c), c))]
        else:
            tensor("mid", (1, oh, ow, c), "mid")
            layers = [Layer("dw", Op.DEPTHWISE_CONV_2D, ("x",), "mid", **window,
                            activation=Activation(spec["mid_activation"]),
                            **weights((1, k, k, c), c)),
                      Layer("pw", Op.CONV_2D, ("mid",), "y", activation=act,
                            **weights((spec["c_out"], 1, 1, c), spec["c_out"]))]
    return Graph(f"{kind}_{spec['seed']}", tensors, layers, "x", ("y",))


def draw_specs() -> list[dict]:
    """The distinct layers of the first two tuples that Hypothesis generates."""
    lists = []

    @settings(max_examples=2, derandomize=True, database=None, phases=[Phase.generate],
              deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.tuples(*(layer_specs(kind) for kind, n in PER_KIND.items() for _ in range(n))))
    def collect(specs):
        lists.append(specs)

    collect()
    specs = []
    for spec in (s for specs in lists for s in specs):
        if spec not in specs:
            specs.append(spec)
    return specs


def run_specs(specs, **kwargs):
    """Compile every spec for ``small`` and run them all in one simulation:
    ``[(program, x, RunResult)]``."""
    jobs = []
    for spec in specs:
        program = compile_model(graph_of(spec), CONFIG, kernels=spec["kernels"])
        x = np.random.default_rng(spec["seed"] + 1).integers(
            -128, 128, program.plan.graph.input_tensor.shape, dtype=np.int8)
        jobs.append((program, x))
    results = run_programs(jobs, max_cycles=200_000, **kwargs)
    return [(p, x, r) for (p, x), r in zip(jobs, results, strict=True)]


@pytest.fixture(scope="module")
def examples():
    specs = draw_specs()
    runs = run_specs(specs)
    print()
    for spec, (_, _, res) in zip(specs, runs, strict=True):
        print(f"{res.cycles:7d} cycles  {spec}")
    return list(zip(specs, runs, strict=True))


def test_the_draw_covers_every_kind_and_option():
    specs = draw_specs()
    assert len(specs) > sum(PER_KIND.values())
    for kinds in (("dw_pw", "conv0"), ("dw",)):
        windows = [s for s in specs if s["kind"] in kinds]
        assert {s["stride"] for s in windows} == {1, 2}
        assert {s["padding"] for s in windows} == {"SAME", "VALID"}
    for kind in ("dw_pw", "dw"):
        assert {s["kernel"] for s in specs if s["kind"] == kind} == {3, 5}
    assert {s["kernels"] for s in specs} == {"reference", "optimized"}
    # And it is the same draw every time.
    assert draw_specs() == specs


def test_random_layers_are_bit_exact(examples):
    failures = []
    for spec, (program, x, res) in examples:
        try:
            assert [s.opcode for s in program.plan.steps] == [opcode_of(spec)]
            check_outputs(program, x, res)
            check_writes(program, res)
            assert res.layer_count == 1
        except AssertionError as e:
            failures.append(f"{e}\n  example: {spec}")
    assert not failures, (f"{len(failures)} of {len(examples)} layers failed:\n"
                          + "\n".join(failures))
