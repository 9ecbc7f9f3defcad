"""Build the small int8 .tflite MobileNets that the importer is tested on.

Needs TensorFlow (``pip install -e .[convert]``); the tests that use the files it writes need
only ``ai-edge-litert``. Everything runs offline: the Keras applications are built with
``weights=None``, and their weights and batch-norm statistics are drawn from a seed, so the
same seed gives the same files.

Each model is a ``tf.keras.applications`` MobileNet at reduced width and resolution with 10
classes. Random weights alone would give every channel of a layer about the same range;
instead each batch-norm layer gets random gamma and beta, its moving statistics are set to
the batch statistics of seeded random inputs (so that activations neither saturate nor
vanish), and the moving variance and mean are then perturbed per channel. After the
converter folds batch norm into the convolutions, the per-channel weight scales spread over
roughly an order of magnitude.

The conversion is full-integer: ``optimizations=[DEFAULT]``, a representative dataset of
seeded random inputs, ``supported_ops=[TFLITE_BUILTINS_INT8]`` and int8 input and output.

Usage::

    python scripts/make_tflite_fixtures.py                       # tests/data/tflite/
    python scripts/make_tflite_fixtures.py --set unseen --out ~/unseen_tflite

``--set fixtures`` (the default) writes the four committed MobileNets, a small probe with
channel counts that are not multiples of 8 (see :func:`odd_channels`), and the tiny models
the error tests use (float, uint8, int16x8, an unsupported operator, depth multiplier 2,
dilation 2). ``--set unseen`` writes other widths, resolutions, seeds and a second probe
that the tests never see, for checking that the importer and the golden model generalize.
``--only NAME ...`` limits either set to the named files.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

keras = tf.keras

#: Number of random images in the representative dataset and in the statistics batch.
CALIBRATION_SAMPLES = 32


@dataclass(frozen=True)
class Spec:
    """One MobileNet to build: Keras family, width, resolution, seed and file name."""

    name: str
    family: str
    alpha: float
    resolution: int
    seed: int
    preprocessing: bool = False  # MobileNetV3's built-in Rescaling layer
    minimalistic: bool = False


FIXTURES = [
    Spec("mobilenet_v1_a025_64", "v1", 0.25, 64, seed=1),
    Spec("mobilenet_v2_a035_64", "v2", 0.35, 64, seed=2),
    Spec("mobilenet_v3_small_a050_64", "v3_small", 0.5, 64, seed=3),
    # With the Rescaling layer, so that a MUL and an ADD by constants start the graph.
    Spec("mobilenet_v3_large_a025_64", "v3_large", 0.25, 64, seed=4, preprocessing=True),
    # An odd resolution: Keras' stride-2 layers then keep explicit PAD operators.
    Spec("mobilenet_v1_a025_33", "v1", 0.25, 33, seed=5),
]

UNSEEN = [
    Spec("unseen_v1_a050_96", "v1", 0.5, 96, seed=101),
    Spec("unseen_v1_a075_65", "v1", 0.75, 65, seed=102),
    Spec("unseen_v2_a050_96", "v2", 0.5, 96, seed=103),
    Spec("unseen_v2_a100_72", "v2", 1.0, 72, seed=104),
    Spec("unseen_v3_small_a075_96", "v3_small", 0.75, 96, seed=105, preprocessing=True),
    Spec("unseen_v3_small_a100_80_min", "v3_small", 1.0, 80, seed=106, minimalistic=True),
    Spec("unseen_v3_large_a050_96", "v3_large", 0.5, 96, seed=107),
    Spec("unseen_v3_large_a075_75", "v3_large", 0.75, 75, seed=108, preprocessing=True),
    # Channel counts that are not multiples of 8 (9, 19, 38, ...): the optimized kernels
    # treat the last channel_count % 8 channels separately.
    Spec("unseen_v1_a030_64", "v1", 0.3, 64, seed=109),
]


def build_keras(spec: Spec) -> keras.Model:
    shape = (spec.resolution, spec.resolution, 3)
    common = dict(input_shape=shape, alpha=spec.alpha, weights=None, classes=10)
    if spec.family == "v1":
        return keras.applications.MobileNet(**common)
    if spec.family == "v2":
        return keras.applications.MobileNetV2(**common)
    v3 = dict(include_preprocessing=spec.preprocessing, minimalistic=spec.minimalistic)
    if spec.family == "v3_small":
        return keras.applications.MobileNetV3Small(**common, **v3)
    if spec.family == "v3_large":
        return keras.applications.MobileNetV3Large(**common, **v3)
    raise ValueError(f"unknown family {spec.family!r}")


def random_inputs(spec: Spec, rng: np.random.Generator, n: int) -> np.ndarray:
    """Inputs in the range the model expects: [0, 255] with Rescaling, else [-1, 1]."""
    shape = (n, spec.resolution, spec.resolution, 3)
    if spec.preprocessing:
        return rng.uniform(0.0, 255.0, shape).astype(np.float32)
    return rng.uniform(-1.0, 1.0, shape).astype(np.float32)


def randomize(model: keras.Model, spec: Spec, rng: np.random.Generator) -> None:
    """Give the model seeded weights and varied, yet sane, batch-norm statistics."""
    bns = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.3, 2.0, c).astype(np.float32))
            layer.beta.assign(rng.normal(0.0, 0.5, c).astype(np.float32))
            bns.append(layer)
        else:
            for w in layer.weights:
                if len(w.shape) >= 2:  # kernels: He-normal over the fan-in
                    fan_in = (
                        int(np.prod(w.shape[:-2]))  # depthwise kernels are (kh, kw, c, 1)
                        if isinstance(layer, keras.layers.DepthwiseConv2D)
                        else int(np.prod(w.shape[:-1]))
                    )
                    std = np.sqrt(2.0 / fan_in)
                    w.assign(rng.normal(0.0, std, w.shape).astype(np.float32))
                else:  # biases (the v3 head, Dense, SE convolutions)
                    w.assign(rng.normal(0.0, 0.1, w.shape).astype(np.float32))
    # One training-mode pass with momentum 0 sets each moving statistic to the batch
    # statistic of its input, with the upstream layers already normalized the same way.
    for bn in bns:
        bn.momentum = 0.0
    model(random_inputs(spec, rng, CALIBRATION_SAMPLES), training=True)
    for bn in bns:
        c = bn.gamma.shape[0]
        var = bn.moving_variance.numpy()
        bn.moving_variance.assign((var * rng.uniform(0.5, 2.0, c)).astype(np.float32))
        mean = bn.moving_mean.numpy()
        shift = rng.normal(0.0, 0.2, c) * np.sqrt(var)
        bn.moving_mean.assign((mean + shift).astype(np.float32))
        bn.momentum = 0.99


def convert(
    model: keras.Model | tf.types.experimental.ConcreteFunction,
    samples: np.ndarray,
    *,
    mode: str = "int8",
) -> bytes:
    """Convert with TFLiteConverter; ``mode`` is int8, uint8_io, int16x8 or float."""
    if isinstance(model, keras.Model):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    else:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([model])
    if mode == "float":
        return converter.convert()

    def representative():
        for s in samples:
            yield [s[None]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    if mode == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        converter.inference_input_type = tf.int16
        converter.inference_output_type = tf.int16
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = tf.uint8 if mode == "uint8_io" else tf.int8
        converter.inference_input_type = io
        converter.inference_output_type = io
    return converter.convert()


def make_mobilenet(spec: Spec) -> bytes:
    keras.utils.set_random_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    model = build_keras(spec)
    randomize(model, spec, rng)
    return convert(model, random_inputs(spec, rng, CALIBRATION_SAMPLES))


def tiny(kind: str, seed: int) -> tuple[keras.Model | tf.types.experimental.ConcreteFunction, str]:
    """A few-layer model for an error test; returns it and its conversion mode."""
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    mode = "int8"
    if kind in ("float", "uint8_io", "int16x8"):
        x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
        mode = kind
    elif kind == "maxpool":  # MAX_POOL_2D: not a MobileNet operator
        x = keras.layers.MaxPooling2D(2)(x)
    elif kind == "depth_multiplier":
        x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    elif kind == "dilation":
        return dilated_conv(seed), mode
    else:
        raise ValueError(f"unknown tiny model {kind!r}")
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(4)(x)
    return keras.Model(inp, x), mode


def dilated_conv(seed: int) -> tf.types.experimental.ConcreteFunction:
    """A CONV_2D with dilation 2.

    Keras 3 lowers a dilated Conv2D to SPACE_TO_BATCH_ND, CONV_2D, BATCH_TO_SPACE_ND, which
    the converter leaves apart; a plain ``tf.nn.conv2d(dilations=2)`` on constant weights
    converts to one CONV_2D with ``dilation_*_factor = 2``.
    """
    rng = np.random.default_rng(seed)
    w1 = tf.constant(rng.normal(0.0, 0.3, (3, 3, 3, 8)).astype(np.float32))
    w2 = tf.constant(rng.normal(0.0, 0.3, (3, 3, 8, 8)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((1, 16, 16, 3), tf.float32)])
    def f(x):
        x = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        x = tf.nn.conv2d(x, w2, 1, "SAME", dilations=2)
        return tf.reduce_mean(x, axis=[1, 2])

    return f.get_concrete_function()


def odd_channels(seed: int, size: int = 12, channels: tuple[int, ...] = (5, 13, 21, 11, 11)):
    """A MobileNet-like probe whose channel counts are not multiples of 8.

    Keras' MobileNets round every width to a multiple of 8 (V2, V3) or follow every
    convolution by a ReLU6 (V1), so they never exercise the channels that LiteRT's
    optimized kernels handle one by one after their 8-wide vector loops, nor a linear
    layer there. This probe has them: 3x3 CONV_2D, DEPTHWISE_CONV_2D at strides 1 and 2,
    1x1 CONV_2D, a squeeze-and-excite branch (MEAN with keep_dims, two 1x1 convolutions on a
    1x1 map, a broadcasting MUL), MEAN without keep_dims and FULLY_CONNECTED, all linear.
    """
    rng = np.random.default_rng(seed)
    cin, c1, c2, c3, classes = channels

    def w(*shape, fan):
        return tf.constant(rng.normal(0.0, np.sqrt(2.0 / fan), shape).astype(np.float32))

    def b(n):
        return tf.constant(rng.normal(0.0, 0.3, n).astype(np.float32))

    w1, b1 = w(3, 3, cin, c1, fan=9 * cin), b(c1)
    d1, db1, d2 = w(3, 3, c1, 1, fan=9), b(c1), w(3, 3, c1, 1, fan=9)
    w2, b2 = w(1, 1, c1, c2, fan=c1), b(c2)
    w3, b3, w4 = w(1, 1, c2, c3, fan=c2), b(c3), w(1, 1, c3, c2, fan=c3)
    fc, fb = w(c2, classes, fan=c2), b(classes)

    @tf.function(input_signature=[tf.TensorSpec((1, size, size, cin), tf.float32)])
    def f(x):
        x = tf.nn.conv2d(x, w1, 1, "SAME") + b1
        x = tf.nn.depthwise_conv2d(x, d1, [1, 1, 1, 1], "SAME") + db1
        x = tf.nn.depthwise_conv2d(x, d2, [1, 2, 2, 1], "SAME")
        x = tf.nn.conv2d(x, w2, 1, "SAME") + b2
        s = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        s = tf.nn.conv2d(s, w3, 1, "SAME") + b3
        s = tf.nn.conv2d(s, w4, 1, "SAME")
        x = x * s
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), fc) + fb

    samples = rng.uniform(-1.0, 1.0, (CALIBRATION_SAMPLES, size, size, cin)).astype(np.float32)
    return convert(f.get_concrete_function(), samples)


PROBES = {
    "fixtures": {"probe_odd_channels": lambda: odd_channels(7)},
    "unseen": {
        "unseen_probe_odd_channels": lambda: odd_channels(
            107, size=15, channels=(3, 19, 27, 9, 7)
        )
    },
}


TINY = {
    "error_float": "float",
    "error_uint8": "uint8_io",
    "error_int16x8": "int16x8",
    "error_maxpool": "maxpool",
    "error_depth_multiplier": "depth_multiplier",
    "error_dilation": "dilation",
}


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    print(f"wrote {path} ({len(data):,} bytes)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=("fixtures", "unseen"), default="fixtures")
    parser.add_argument("--out", type=Path, help="output folder (default: tests/data/tflite)")
    parser.add_argument("--only", nargs="*", help="build only these names")
    args = parser.parse_args(argv)
    out = args.out or Path(__file__).resolve().parent.parent / "tests" / "data" / "tflite"
    out.mkdir(parents=True, exist_ok=True)
    tf.config.experimental.enable_op_determinism()

    specs = FIXTURES if args.set == "fixtures" else UNSEEN
    for spec in specs:
        if args.only and spec.name not in args.only:
            continue
        write(out / f"{spec.name}.tflite", make_mobilenet(spec))
    for name, make in PROBES[args.set].items():
        if not args.only or name in args.only:
            write(out / f"{name}.tflite", make())
    if args.set == "fixtures":
        for i, (name, kind) in enumerate(TINY.items()):
            if args.only and name not in args.only:
                continue
            model, mode = tiny(kind, seed=1000 + i)
            rng = np.random.default_rng(1000 + i)
            samples = rng.uniform(-1.0, 1.0, (8, 16, 16, 3)).astype(np.float32)
            write(out / f"{name}.tflite", convert(model, samples, mode=mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
