"""Graph → steps: which layers run as which descriptor, and how each is tiled.

A *step* is one descriptor: a first convolution (``CONV0``), a fused depthwise → pointwise
pair (``DW_PW``), a lone pointwise or depthwise layer, the global pool or the classifier.
Tiling follows docs/architecture.md: a step's output pixels (raster order) are cut into
``n_tiles`` pixel tiles of ``P`` pixels; per tile the activation buffer holds the ``P``
pixels' ``K·pw_rows`` input channels and the output buffer their ``J·pw_cols`` output
channels, and the pointwise array runs ``for j in J: for k in K: for p in P``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Graph, Layer, Op
from mnaccel.hw.config import AccelConfig
from mnaccel.hw.descriptor import Opcode
from mnaccel.hw.line_buffer import axis_geometry

__all__ = ["Plan", "Step", "TensorInfo", "plan"]


@dataclass
class TensorInfo:
    """How an activation tensor is stored in external memory: NHWC, channels padded."""

    name: str
    h: int
    w: int
    c: int
    c_stride: int
    #: The tensor whose storage this one shares (RESHAPE), or None.
    alias_of: str | None = None

    @property
    def nbytes(self) -> int:
        return self.h * self.w * self.c_stride


@dataclass
class Step:
    """One descriptor's worth of work (see :class:`mnaccel.hw.descriptor.Descriptor`)."""

    opcode: Opcode
    layers: list[Layer]
    input: str
    output: str
    #: DW_PW: the dw layer's output tensor, which stays on chip.
    mid: str | None = None
    kernel: int = 1
    stride: int = 1
    padding: str = "VALID"
    in_h: int = 1
    in_w: int = 1
    in_c: int = 0
    out_h: int = 1
    out_w: int = 1
    out_c: int = 0
    #: CONV0: channels that enter the K·K·C vector.
    conv_c: int = 0
    #: Pointwise tiling: pixel tile, tiles, last tile, reduction chunks K, output chunks J.
    tile_pixels: int = 1
    n_tiles: int = 1
    last_tile_pixels: int = 1
    first_tile_pixels: int = 1
    #: The most pixels a tile may have: the accumulators' and the buffer halves' limit.
    max_tile_pixels: int = 1
    k_chunks: int = 0
    j_chunks: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "+".join(layer.name for layer in self.layers)

    @property
    def pixels(self) -> int:
        """Output pixels of the pointwise part (tiled), or of the step."""
        return self.out_h * self.out_w

    def tiles(self) -> list[tuple[int, int]]:
        """``(first pixel, pixels)`` of every pixel tile, in order."""
        out, start = [], 0
        for t in range(self.n_tiles):
            n = (self.first_tile_pixels if t == 0 else
                 self.last_tile_pixels if t == self.n_tiles - 1 else self.tile_pixels)
            out.append((start, n))
            start += n
        return out


@dataclass
class Plan:
    graph: Graph
    config: AccelConfig
    steps: list[Step]
    tensors: dict[str, TensorInfo]
    align: int

    def storage(self, name: str) -> TensorInfo:
        """The tensor that owns ``name``'s bytes (following RESHAPE aliases)."""
        info = self.tensors[name]
        while info.alias_of is not None:
            info = self.tensors[info.alias_of]
        return info


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    if len(shape) == 2:
        return 1, 1, shape[1]
    raise UserError(f"tensor shape {shape} is neither NHWC nor (N, C)")


def _pw_tiling(step: Step, cfg: AccelConfig, k_rows: int, what: str,
               small_first_tile: bool = True) -> None:
    """Choose P for a pointwise pass over ``step.pixels`` pixels of ``k_rows`` input bytes."""
    rows, cols = cfg.pw_rows, cfg.pw_cols
    step.k_chunks = _ceil(k_rows, rows)
    step.j_chunks = _ceil(step.out_c, cols)
    act_half, out_half = cfg.act_buf_bytes // 2, cfg.out_buf_bytes // 2
    in_bytes = step.k_chunks * rows
    out_bytes = step.j_chunks * cols
    if in_bytes > act_half:
        raise UserError(f"layer {step.name!r}: a pixel's {what} of {in_bytes} bytes does not fit "
                        f"half the activation buffer (act_buf_bytes/2 = {act_half})")
    if out_bytes > out_half:
        raise UserError(f"layer {step.name!r}: a pixel's {out_bytes} output bytes do not fit "
                        f"half the output buffer (out_buf_bytes/2 = {out_half})")
    if step.k_chunks > 255:
        raise UserError(f"layer {step.name!r}: {step.k_chunks} input-channel chunks exceed the "
                        f"descriptor's limit of 255")
    p_max = min(cfg.pw_acc_depth, act_half // in_bytes, out_half // out_bytes, step.pixels)
    step.max_tile_pixels = p_max
    # A short first tile: the pointwise array idles until the first tile is in the
    # activation buffer, so that tile has just enough pixels (pw_rows) to hide the weight
    # loads; the producer then runs ahead while the array works. plan() may lengthen it
    # (_first_tiles).
    _set_tiles(step, min(p_max, rows) if small_first_tile else p_max)


def _set_tiles(step: Step, first: int) -> None:
    """Cut ``step.pixels`` into a first tile of ``first`` pixels and equal tiles after it.

    Equal tiles after the first: a short last tile (< pw_rows pixels) would expose its
    weight loads.
    """
    p_max = step.max_tile_pixels
    rest = step.pixels - first
    n_rest = _ceil(rest, p_max)
    step.first_tile_pixels = first
    step.n_tiles = 1 + n_rest
    step.tile_pixels = _ceil(rest, n_rest) if n_rest else first
    step.last_tile_pixels = rest - (n_rest - 1) * step.tile_pixels if n_rest else first


def _first_tiles(plan: Plan) -> None:
    """Lengthen the first tile of ``DW_PW`` steps whose producer is quicker than the array.

    The array idles until the first tile is in, so that tile is short (``pw_rows``
    pixels); but the array then works on it while the producer — the depthwise array, or
    its line buffer where that is slower, as the depthwise layer reports it
    (:meth:`~mnaccel.hw.depthwise.DepthwiseLayer.cycles_per_output_pixel`) — makes the second
    tile, and a first tile too short for that leaves the array waiting. Where the producer
    takes fewer cycles per pixel than the array's ``J·K`` beats, the first tile gets
    ``ceil(T · producer / (J·K))`` pixels, ``T`` the length of the tiles after it (worked
    out twice, since it depends on the first): the array's work on it then just covers
    the second tile; never fewer than ``pw_rows``, though. (The deep layers, whose
    producer is far quicker, would take fewer. With 8 instead of 16 on ``ecp5-85f`` the
    RTL ran MobileNetV1 1.0/224 only 0.04 % quicker, where the model, which then missed
    the RTL by up to 0.6 % on a step, promised 0.4 %.) Where the producer is not quicker,
    the array waits on it anyway and the first tile stays at ``pw_rows``.
    """
    from mnaccel.compiler.cycle_model import _blocks  # it imports this module

    cfg = plan.config
    try:
        b = _blocks(cfg)
    except ValueError:      # blocks that cannot be built: no cycle model either
        return
    for step in plan.steps:
        if step.opcode is not Opcode.DW_PW or step.n_tiles < 2:
            continue
        producer = b.dw.cycles_per_output_pixel(step.kernel, step.stride, step.in_c)
        beats = step.j_chunks * step.k_chunks
        if producer >= beats:
            continue
        first = step.first_tile_pixels
        for _ in range(2):
            first = max(first, min(_ceil(step.tile_pixels * producer, beats),
                                   step.max_tile_pixels))
            _set_tiles(step, first)


def _check_line_buffer(step: Step, cfg: AccelConfig, layer: Layer) -> None:
    k, s = step.kernel, step.stride
    problems = []
    if k not in (3, 5) or k > cfg.max_kernel:
        problems.append(f"kernel {k} (the line buffer takes 3 or 5, at most max_kernel="
                        f"{cfg.max_kernel})")
    if s not in (1, 2):
        problems.append(f"stride {s} (1 or 2)")
    if step.in_w > cfg.lb_max_width:
        problems.append(f"width {step.in_w} > lb_max_width={cfg.lb_max_width}")
    if step.in_c > cfg.lb_max_channels:
        problems.append(f"{step.in_c} stored channels > lb_max_channels={cfg.lb_max_channels}")
    if step.in_w * step.in_c > cfg.lb_max_row_bytes:
        problems.append(f"a row of {step.in_w}×{step.in_c} bytes > lb_max_row_bytes="
                        f"{cfg.lb_max_row_bytes}")
    if step.in_h >= 2**16:
        problems.append(f"height {step.in_h} >= 65536")
    if problems:
        raise UserError(f"layer {layer.name!r} cannot be mapped: " + "; ".join(problems))


def _square(layer: Layer, what: tuple[int, int], kind: str) -> int:
    if what[0] != what[1]:
        raise UserError(f"layer {layer.name!r}: only square {kind}s are mapped, not {what}")
    return what[0]


def plan(graph: Graph, config: AccelConfig, *, small_first_tile: bool = True) -> Plan:
    """Map ``graph`` onto the accelerator ``config``.

    ``small_first_tile``: give the first pixel tile of each step only ``pw_rows`` pixels
    (in a ``DW_PW`` step whose producer is quicker than the array, more: as many as the
    array needs to cover the second tile, see :func:`_first_tiles`), so that the pointwise
    array starts early; with ``False`` every tile but the last has the most pixels the
    buffers take.

    Raises
    ------
    UserError
        If a layer cannot be mapped; the message names the layer and the limit.
    """
    cfg = config
    align = cfg.channel_align
    tensors: dict[str, TensorInfo] = {}

    def info(name: str) -> TensorInfo:
        if name not in tensors:
            h, w, c = _hwc(graph.tensors[name].shape)
            tensors[name] = TensorInfo(name, h, w, c, _ceil(c, align) * align)
        return tensors[name]

    info(graph.input)
    readers: dict[str, int] = {}
    for layer in graph.layers:
        for name in layer.inputs:
            readers[name] = readers.get(name, 0) + 1

    steps: list[Step] = []
    layers = graph.layers
    i = 0
    while i < len(layers):
        layer = layers[i]
        i += 1
        op = layer.op
        t_in, t_out = info(layer.inputs[0]), info(layer.output)
        if op is Op.RESHAPE:
            if t_in.h * t_in.w * t_in.c != t_out.h * t_out.w * t_out.c or (
                    t_in.h * t_in.w != 1 and t_in.c != t_out.c):
                raise UserError(f"layer {layer.name!r}: only reshapes that keep the NHWC bytes "
                                f"(e.g. a flatten of a 1×1 map) are mapped, not "
                                f"{graph.tensors[layer.inputs[0]].shape} → "
                                f"{graph.tensors[layer.output].shape}")
            t_out.c_stride = t_in.c_stride
            t_out.alias_of = t_in.name
            continue
        step = Step(opcode=Opcode.END, layers=[layer], input=t_in.name, output=t_out.name,
                    in_h=t_in.h, in_w=t_in.w, in_c=t_in.c_stride,
                    out_h=t_out.h, out_w=t_out.w, out_c=t_out.c_stride)
        if op is Op.CONV_2D and layer.kernel != (1, 1):
            step.opcode = Opcode.CONV0
            step.kernel = _square(layer, layer.kernel, "kernel")
            step.stride = _square(layer, layer.stride, "stride")
            step.padding = layer.padding.value
            step.conv_c = t_in.c
            if t_in.c > 255:
                raise UserError(f"layer {layer.name!r}: a standard K×K convolution over "
                                f"{t_in.c} input channels is not mapped (CONV0 takes ≤ 255)")
            _check_line_buffer(step, cfg, layer)
            _pw_tiling(step, cfg, step.kernel**2 * t_in.c, "K·K·C vector",
                       small_first_tile)
        elif op is Op.CONV_2D or op is Op.FULLY_CONNECTED:
            if op is Op.CONV_2D and layer.stride != (1, 1):
                raise UserError(f"layer {layer.name!r}: a strided 1×1 convolution is not mapped "
                                f"(stride {layer.stride})")
            if op is Op.FULLY_CONNECTED:
                c_in = int(layer.weights.shape[1])
                step.in_h = step.in_w = step.out_h = step.out_w = 1
                if t_in.h * t_in.w != 1:
                    raise UserError(f"layer {layer.name!r}: FULLY_CONNECTED over a "
                                    f"{t_in.h}×{t_in.w} map is not mapped")
            else:
                c_in = t_in.c
            step.opcode = Opcode.FC if t_in.h * t_in.w == 1 else Opcode.PW
            _pw_tiling(step, cfg, c_in, "input channels")
        elif op is Op.DEPTHWISE_CONV_2D:
            if layer.weights.shape[3] != t_in.c:
                raise UserError(f"layer {layer.name!r}: depth multiplier "
                                f"{layer.weights.shape[3] // t_in.c} is not mapped (only 1)")
            step.kernel = _square(layer, layer.kernel, "kernel")
            step.stride = _square(layer, layer.stride, "stride")
            step.padding = layer.padding.value
            _check_line_buffer(step, cfg, layer)
            nxt = layers[i] if i < len(layers) else None
            if (nxt is not None and nxt.op is Op.CONV_2D and nxt.kernel == (1, 1)
                    and nxt.stride == (1, 1) and nxt.inputs[0] == layer.output
                    and readers.get(layer.output, 0) == 1
                    and layer.output not in graph.outputs):
                i += 1
                t_pw = info(nxt.output)
                step.opcode = Opcode.DW_PW
                step.layers.append(nxt)
                step.mid = t_out.name
                step.output = t_pw.name
                step.out_c = t_pw.c_stride
                _pw_tiling(step, cfg, t_out.c_stride, "depthwise output",
                           small_first_tile)
            else:
                # Alone: the depthwise output goes through the pointwise array's identity
                # tiles (one per output chunk, made on chip) to the output requantizer.
                step.opcode = Opcode.DW
                _pw_tiling(step, cfg, t_out.c_stride, "depthwise output", small_first_tile)
                step.k_chunks = 1
        elif op is Op.MEAN:
            axes = tuple(sorted(int(a) % 4 for a in layer.params.get("axes", (1, 2))))
            if axes != (1, 2):
                raise UserError(f"layer {layer.name!r}: MEAN over axes {axes} is not mapped "
                                f"(only over height and width)")
            step.opcode = Opcode.POOL
            n = t_in.h * t_in.w
            half = cfg.act_buf_bytes // 2
            k_rows = _ceil(t_in.c_stride, cfg.pw_rows) * cfg.pw_rows
            if n * k_rows > half:
                raise UserError(f"layer {layer.name!r}: the pooled map of {n} pixels × "
                                f"{k_rows} bytes does not fit half the activation buffer "
                                f"(act_buf_bytes/2 = {half})")
            if n > 2**16 - 1:
                raise UserError(f"layer {layer.name!r}: {n} pixels exceed 65535")
            step.k_chunks = 1
            step.j_chunks = _ceil(t_out.c, cfg.pw_cols)
            step.tile_pixels = step.last_tile_pixels = step.first_tile_pixels = n
            step.max_tile_pixels = n
            step.n_tiles = 1
        else:
            reserved = {Op.ADD: "ADD", Op.MUL: "MUL", Op.HARD_SWISH: "HSWISH"}
            hint = (f" (opcode {reserved[op]} is reserved for it)" if op in reserved else "")
            raise UserError(f"layer {layer.name!r}: operator {op.value} is not mapped onto the "
                            f"accelerator yet{hint}")
        if step.opcode in (Opcode.CONV0, Opcode.DW_PW, Opcode.DW):
            out_h = axis_geometry(step.in_h, step.kernel, step.stride, step.padding)[0]
            out_w = axis_geometry(step.in_w, step.kernel, step.stride, step.padding)[0]
            if (out_h, out_w) != (step.out_h, step.out_w):  # pragma: no cover - graph bug
                raise UserError(f"layer {layer.name!r}: output {step.out_h}×{step.out_w} is not "
                                f"the window geometry's {out_h}×{out_w}")
        steps.append(step)
    result = Plan(graph, cfg, steps, tensors, align)
    if small_first_tile:
        _first_tiles(result)
    return result

