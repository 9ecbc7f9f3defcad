"""The .tflite importer: structure against LiteRT's view of the file, every tensor against
LiteRT's results, and every error path.

The fixtures in ``tests/data/tflite`` come from ``scripts/make_tflite_fixtures.py`` (see the
README there). LiteRT is the referee: its own parser supplies the operators, tensors and
quantization parameters that the imported graph is checked against, and its builtin kernels
(without delegates) the values that the golden model must reproduce bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Activation, Op, Padding
from mnaccel.golden.interpreter import run as run_golden
from mnaccel.golden.tflite_import import load_tflite
from mnaccel.sim.commands.verify import load_input, run_litert

DATA = Path(__file__).resolve().parent.parent / "data" / "tflite"
MODELS = [
    "mobilenet_v1_a025_64",
    "mobilenet_v2_a035_64",
    "mobilenet_v3_small_a050_64",
    "mobilenet_v3_large_a025_64",
    "mobilenet_v1_a025_33",
    "probe_odd_channels",
]
# Operators that the importer drops (shape arithmetic) or leaves to the host.
DROPPED = {"SHAPE", "STRIDED_SLICE", "PACK", "SOFTMAX"}
ACTIVATIONS = {"NONE": Activation.NONE, "RELU": Activation.RELU, "RELU6": Activation.RELU6}


def model_path(name: str) -> Path:
    return DATA / f"{name}.tflite"


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    """(path, graph, LiteRT interpreter after one run on a seeded input, that input)."""
    path = model_path(request.param)
    graph = load_tflite(path)
    x = load_input(None, graph, seed=0)
    return path, graph, run_litert(path, x), x


def int8_activations(interp) -> set[int]:
    """Indices of the int8 tensors that some operator computes (not constants)."""
    produced = set()
    for op in interp._get_ops_details():
        produced.update(int(i) for i in op["outputs"])
    return {
        d["index"]
        for d in interp.get_tensor_details()
        if d["dtype"] == np.int8 and d["index"] in produced
    }


# ---------------------------------------------------------------------------------------
# Bit-exactness against LiteRT


def assert_equal_tensors(graph, golden, interp, where: str) -> int:
    """Compare every layer output whole; return the number of elements compared."""
    compared = 0
    for layer in graph.layers:
        t = graph.tensors[layer.output]
        ref = interp.get_tensor(t.index)
        got = np.asarray(golden[layer.output])
        assert got.dtype == ref.dtype and got.shape == ref.shape, (
            f"{where}: layer {layer.name}: golden {got.dtype}{got.shape}, "
            f"LiteRT {ref.dtype}{ref.shape}"
        )
        bad = np.argwhere(got != ref)
        if len(bad):
            i = tuple(int(k) for k in bad[0])
            pytest.fail(
                f"{where}: layer {layer.name} ({layer.op.value}, tensor {t.index}): "
                f"{len(bad)} of {ref.size} elements differ, first at {i}: "
                f"golden {got[i]}, LiteRT {ref[i]}"
            )
        compared += ref.size
    return compared


@pytest.mark.parametrize("kernel", ["optimized", "reference"])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_tensor_matches_litert(model, seed, kernel):
    """LiteRT's optimized kernels (the default) and its reference kernels, each against the
    golden model's reproduction of the same kernels."""
    path, graph, interp, _ = model
    x = load_input(None, graph, seed=seed)
    if seed or kernel == "reference":
        interp = run_litert(path, x, reference=kernel == "reference")
    golden = run_golden(graph, x, kernel=kernel)
    compared = assert_equal_tensors(graph, golden, interp, f"{path.name}/{seed}/{kernel}")
    assert compared > 0


def test_extreme_inputs_match_litert(model):
    """Saturated inputs: all -128 and all 127 (zero-point and clamp corner cases)."""
    path, graph, _, _ = model
    shape = graph.input_tensor.shape
    for value in (-128, 127):
        x = np.full(shape, value, dtype=np.int8)
        golden = run_golden(graph, x, kernel="optimized")
        assert_equal_tensors(graph, golden, run_litert(path, x), f"{value}")


def test_every_int8_tensor_is_compared(model):
    """The layer outputs are all the int8 tensors LiteRT computes, minus SOFTMAX's."""
    _, graph, interp, _ = model
    ops = interp._get_ops_details()
    softmax_out = {int(o["outputs"][0]) for o in ops if o["op_name"] == "SOFTMAX"}
    compared = {graph.tensors[layer.output].index for layer in graph.layers}
    assert compared == int8_activations(interp) - softmax_out


# ---------------------------------------------------------------------------------------
# Structure: the graph says what LiteRT's own parser says


def test_tensors_match_the_file(model):
    _, graph, interp, _ = model
    details = {d["index"]: d for d in interp.get_tensor_details()}
    for name, t in graph.tensors.items():
        d = details[t.index]
        q = d["quantization_parameters"]
        assert d["dtype"] == np.int8, name
        assert t.shape == tuple(int(s) for s in d["shape"]), name
        assert q["scales"].size == 1 and np.float32(t.scale) == q["scales"][0], name
        assert t.zero_point == int(q["zero_points"][0]), name
        if t.data is not None:
            np.testing.assert_array_equal(t.data, interp.get_tensor(t.index), err_msg=name)
    assert graph.input_tensor.index == interp.get_input_details()[0]["index"]


def test_layers_match_the_operators(model):
    _, graph, interp, _ = model
    details = {d["index"]: d for d in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    by_output = {int(o["outputs"][0]): o for o in ops}
    kept = [o for o in ops if o["op_name"] not in DROPPED]
    assert len(graph.layers) == len(kept)
    for layer, op in zip(graph.layers, kept, strict=True):
        assert by_output[graph.tensors[layer.output].index] is op
        expected_op = "RESHAPE" if op["op_name"] == "SQUEEZE" else op["op_name"]
        assert layer.op.value == expected_op, layer.name
        data_inputs = [graph.tensors[n].index for n in layer.inputs]
        assert data_inputs == [int(i) for i in op["inputs"][: len(data_inputs)]], layer.name
        if layer.op in (Op.CONV_2D, Op.DEPTHWISE_CONV_2D, Op.FULLY_CONNECTED):
            w_index, b_index = int(op["inputs"][1]), int(op["inputs"][2])
            np.testing.assert_array_equal(layer.weights, interp.get_tensor(w_index))
            np.testing.assert_array_equal(layer.bias, interp.get_tensor(b_index))
            wq = details[w_index]["quantization_parameters"]
            np.testing.assert_array_equal(layer.weight_scales, wq["scales"])
            assert not np.any(wq["zero_points"])
            qdim = 3 if layer.op is Op.DEPTHWISE_CONV_2D else 0
            if wq["scales"].size > 1:
                assert wq["quantized_dimension"] == qdim
                assert wq["scales"].size == layer.weights.shape[qdim]


def test_per_channel_scales_vary(model):
    """The fixtures are meant to exercise per-channel requantization."""
    path, graph, _, _ = model
    spreads = [
        float(layer.weight_scales.max() / layer.weight_scales.min())
        for layer in graph.layers
        if layer.op is Op.CONV_2D and layer.weight_scales.size > 1
    ]
    assert max(spreads) > 2.0, path.name


def test_conv_options_from_the_file():
    """Strides, padding and fused activations, checked against the Keras definition of V1."""
    graph = load_tflite(model_path("mobilenet_v1_a025_64"))
    convs = [layer for layer in graph.layers if layer.op is not Op.RESHAPE][:28]
    # MobileNet V1: conv1 stride 2, then dw/pw pairs with dw strides 1,2,1,2,1,2,1x5,2,1.
    dw_strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert convs[0].op is Op.CONV_2D and convs[0].stride == (2, 2)
    dws = [layer for layer in convs if layer.op is Op.DEPTHWISE_CONV_2D]
    assert [layer.stride[0] for layer in dws] == dw_strides
    assert all(layer.activation is Activation.RELU6 for layer in convs[:27])
    assert all(layer.padding is Padding.SAME for layer in convs[:27])
    head = graph.producer(graph.outputs[0])
    assert head.op is Op.RESHAPE  # the classifier's Reshape; SOFTMAX stays on the host
    assert graph.producer(head.inputs[0]).activation is Activation.NONE


def test_v3_uses_hard_swish_mean_and_constants():
    graph = load_tflite(model_path("mobilenet_v3_large_a025_64"))
    ops = {layer.op for layer in graph.layers}
    assert {Op.HARD_SWISH, Op.MEAN, Op.MUL, Op.ADD} <= ops
    # include_preprocessing: Rescaling is a MUL and an ADD by int8 constants
    first, second = graph.layers[:2]
    assert (first.op, second.op) == (Op.MUL, Op.ADD)
    assert graph.tensors[first.inputs[1]].data is not None
    assert graph.tensors[second.inputs[1]].data is not None


# ---------------------------------------------------------------------------------------
# Errors: one line, naming the problem


def assert_user_error(path, *needles):
    with pytest.raises(UserError) as info:
        load_tflite(path)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.97])
def test_truncated_file(tmp_path, fraction):
    data = model_path("mobilenet_v2_a035_64").read_bytes()
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(data[: int(len(data) * fraction)])
    assert_user_error(bad, "cut.tflite", "truncated or corrupt")


def test_random_bytes(tmp_path):
    bad = tmp_path / "noise.tflite"
    bad.write_bytes(np.random.default_rng(5).bytes(4096))
    assert_user_error(bad, "noise.tflite", "not a TFLite file")


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.tflite").write_bytes(b"")
    assert_user_error(tmp_path / "empty.tflite", "not a TFLite file")
    assert_user_error(tmp_path / "missing.tflite", "cannot read", "missing.tflite")


def test_corrupt_body_with_valid_identifier(tmp_path):
    data = bytearray(model_path("probe_odd_channels").read_bytes())
    data[8:] = np.random.default_rng(1).bytes(len(data) - 8)
    (tmp_path / "garbled.tflite").write_bytes(bytes(data))
    assert_user_error(tmp_path / "garbled.tflite", "garbled.tflite")


@pytest.mark.parametrize(
    "name, needles",
    [
        ("error_float", ["float32 model", "FLOAT32"]),
        ("error_uint8", ["uint8 model", "UINT8"]),
        ("error_int16x8", ["int16x8 model", "INT16"]),
        ("error_maxpool", ["operator 1", "MAX_POOL_2D", "does not support"]),
        ("error_depth_multiplier", ["operator 1", "DEPTHWISE_CONV_2D", "depth multiplier 2"]),
        ("error_dilation", ["operator 1", "CONV_2D", "dilation 2x2"]),
    ],
)
def test_unsupported_models(name, needles):
    assert_user_error(model_path(name), f"{name}.tflite", *needles)


def test_dynamic_range_model(tmp_path):
    """int8 weights, float32 activations (``optimizations=[DEFAULT]`` without representative
    data): named as such rather than as a float32 model."""

    def quantize_weights(model):
        for t in model.subgraphs[0].tensors:
            buffer = model.buffers[t.buffer]
            if t.type == schema.TensorType.FLOAT32 and buffer.data is not None and len(t.shape) > 1:
                w = np.frombuffer(bytes(bytearray(buffer.data)), np.float32)
                scale = float(np.abs(w).max()) / 127
                buffer.data = np.round(w / scale).astype(np.int8).view(np.uint8)
                t.type = schema.TensorType.INT8
                t.quantization = schema.QuantizationParametersT()
                t.quantization.scale, t.quantization.zeroPoint = [scale], [0]

    path = tmp_path / "dynamic.tflite"
    path.write_bytes(rewrite("error_float", quantize_weights))
    assert_user_error(path, "dynamic-range quantized model (int8 weights, float activations)")


# ---------------------------------------------------------------------------------------
# Corrupt files: whatever the damage, a UserError or a graph that the golden model runs


def rewrite(name: str, edit) -> bytes:
    """Fixture ``name`` through the TFLite schema's object API, changed by ``edit(model)``."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_path(name).read_bytes()), 0)
    edit(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _op(i):
    return lambda m: m.subgraphs[0].operators[i]


def _tensor_of_op(i, pos, output=False):
    def get(m):
        op = m.subgraphs[0].operators[i]
        return m.subgraphs[0].tensors[(op.outputs if output else op.inputs)[pos]]

    return get


# The probe: op 0 CONV_2D (12x12x5 -> 12x12x13), op 1 DEPTHWISE_CONV_2D, op 7 MUL.
CORRUPTIONS = {
    "operator code index": (_op(2), "opcodeIndex", 40, ["operator 2 has operator code 40 of"]),
    "buffer index": (_tensor_of_op(0, 1), "buffer", 999, ["refers to buffer 999 of"]),
    "negative dimension": (_tensor_of_op(0, 0, True), "shape", np.array([1, -12, 12, 13], np.int32),
                           ["has shape (1, -12, 12, 13)"]),
    "empty feature map": (_tensor_of_op(0, 0, True), "shape", np.array([1, 0, 12, 13], np.int32),
                          ["has shape (1, 0, 12, 13); a feature map needs 1 to"]),
    "missing input": (_op(0), "inputs", np.array([0], np.int32),
                      ["operator 0 (CONV_2D): has 1 inputs; expected 2"]),
    "missing output": (_op(1), "outputs", np.array([], np.int32),
                       ["operator 1 (DEPTHWISE_CONV_2D): has no output"]),
    "weights of rank 1": (_tensor_of_op(1, 1), "shape", np.array([117], np.int32),
                          ["operator 1 (DEPTHWISE_CONV_2D): weights", "not 4 positive dimensions"]),
    "input of rank 2": (_tensor_of_op(0, 0), "shape", np.array([144, 5], np.int32),
                        ["operator 0 (CONV_2D): input", "is not NHWC"]),
    "output shape": (_tensor_of_op(1, 0, True), "shape", np.array([1, 12, 12, 14], np.int32),
                     ["operator 1 (DEPTHWISE_CONV_2D): output", "has shape (1, 12, 12, 14); "
                      "the operator computes (1, 12, 12, 13)"]),
    "infinite scale": (lambda m: _tensor_of_op(0, 0, True)(m).quantization, "scale",
                       [np.inf], ["has scale inf; it must be positive and finite"]),
    "conv rescaling out of range": (lambda m: _tensor_of_op(0, 0, True)(m).quantization,
                                    "scale", [1e-30], ["operator 0 (CONV_2D): its scales are "
                                                       "outside what TFLite's int8 kernels"]),
    "MUL rescaling out of range": (lambda m: _tensor_of_op(7, 0, True)(m).quantization,
                                   "scale", [1e-35], ["operator 7 (MUL): its scales are "
                                                      "outside"]),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_fields(tmp_path, case):
    get, field_name, value, needles = CORRUPTIONS[case]

    def edit(model):
        setattr(get(model), field_name, value)

    path = tmp_path / "bad.tflite"
    path.write_bytes(rewrite("probe_odd_channels", edit))
    assert_user_error(path, "bad.tflite", *needles)


def test_rewrite_alone_changes_nothing(tmp_path):
    """The object-API round trip that the corruptions go through keeps a valid model valid."""
    path = tmp_path / "same.tflite"
    path.write_bytes(rewrite("probe_odd_channels", lambda model: None))
    a, b = load_tflite(path), load_tflite(model_path("probe_odd_channels"))
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    x = load_input(None, a, seed=0)
    ya, yb = run_golden(a, x), run_golden(b, x)
    assert all(np.array_equal(ya[k], yb[k]) for k in yb)


@pytest.mark.parametrize("seed", range(4))
def test_random_byte_damage(tmp_path, seed):
    """Copies of the probe with 1 to 4 bytes overwritten at random: each one is refused with
    a one-line UserError, or imported into a graph that the golden model runs."""
    data = model_path("probe_odd_channels").read_bytes()
    rng = np.random.default_rng([seed, 11])
    path = tmp_path / "damaged.tflite"
    refused = ran = 0
    for _ in range(50):
        bad = bytearray(data)
        for pos in rng.integers(8, len(bad), size=int(rng.integers(1, 5))):
            bad[pos] = int(rng.integers(256))
        path.write_bytes(bytes(bad))
        try:
            graph = load_tflite(path)
        except UserError as exc:
            assert "\n" not in str(exc)
            refused += 1
            continue
        run_golden(graph, load_input(None, graph, seed=0))
        ran += 1
    assert refused and ran  # both outcomes occur: the damage is neither always fatal nor inert


@pytest.mark.parametrize("name", ["probe_odd_channels", "error_maxpool"])
def test_every_cut(tmp_path, name):
    """The file cut after every 2 % of its length."""
    data = model_path(name).read_bytes()
    path = tmp_path / "cut.tflite"
    for k in range(50):
        path.write_bytes(data[: len(data) * k // 50])
        assert_user_error(path, "cut.tflite")


def test_odd_resolution_keeps_explicit_pad():
    graph = load_tflite(model_path("mobilenet_v1_a025_33"))
    pads = [layer for layer in graph.layers if layer.op is Op.PAD]
    assert pads, "Keras MobileNet at an odd resolution should keep PAD operators"
    for layer in pads:
        (top, bottom), (left, right) = layer.params["paddings"]
        src, dst = graph.tensors[layer.inputs[0]].shape, graph.tensors[layer.output].shape
        assert dst == (src[0], src[1] + top + bottom, src[2] + left + right, src[3])
