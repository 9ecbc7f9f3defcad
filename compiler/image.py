"""Plan → memory map, descriptor binary and memory image.

Memory map (every region 64-byte aligned, from address 0 of the accelerator's window)::

    program      one Descriptor per step, then END
    per step     dw weights (weight_beats order), dw parameter records,
                 pw weight tiles (beat order), pw parameter records
    tensors      every activation tensor NHWC, channels padded to the plan's alignment
                 (RESHAPE outputs share their input's bytes)

Weights are reordered into the order the arrays consume them: pointwise tiles as
``for j in J: for k in K: for r in pw_rows: pw_cols bytes`` (tile ``(k, j)`` holds
``W[k·rows + r][j·cols + c]``), re-read from the start for every pixel tile; depthwise
entries as :func:`mnaccel.hw.depthwise.weight_beats`, ``9·dw_lanes`` bytes each. Parameter
records (:data:`~mnaccel.hw.descriptor.PARAM_RECORD`) hold the bias with the input zero
point folded in, ``bias − zp_in·Σw[c]`` (wrapped to int32, like the hardware's sum), the Q31
multiplier, the shift and the tie-rounding bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mnaccel.compiler.plan import Plan, Step, plan
from mnaccel.golden import ops, quant
from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Graph, Layer, Op
from mnaccel.hw.config import AccelConfig
from mnaccel.hw.depthwise import weight_beats
from mnaccel.hw.descriptor import (
    DESCRIPTOR_BYTES,
    PARAM_BYTES,
    PARAM_RECORD,
    Descriptor,
    Opcode,
    to_bytes,
)
from mnaccel.hw.line_buffer import Padding

__all__ = ["ALIGN", "Program", "compile_model", "param_bytes", "pw_weight_matrix"]

#: Alignment of every region, bytes.
ALIGN = 64


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass
class Program:
    """A compiled model: the plan, the descriptors and the memory image."""

    plan: Plan
    kernels: str
    descriptors: list[dict]
    program_addr: int
    image: bytearray
    tensor_addr: dict[str, int]
    regions: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def program_bytes(self) -> bytes:
        n = len(self.descriptors) * DESCRIPTOR_BYTES
        return bytes(self.image[self.program_addr:self.program_addr + n])

    def addr(self, name: str) -> int:
        return self.tensor_addr[self.plan.storage(name).name]

    def write_tensor(self, image: bytearray, name: str, x: np.ndarray) -> None:
        """Store ``x`` (the graph tensor's shape) into ``image``, channels padded with 0."""
        info = self.plan.storage(name)
        x = np.asarray(x, dtype=np.int8).reshape(info.h, info.w, info.c)
        padded = np.zeros((info.h, info.w, info.c_stride), dtype=np.int8)
        padded[..., :info.c] = x
        a = self.addr(name)
        image[a:a + info.nbytes] = padded.tobytes()

    def read_tensor(self, image: bytes, name: str) -> np.ndarray:
        """The tensor ``name`` from ``image``, in the graph tensor's shape."""
        info = self.plan.storage(name)
        a = self.addr(name)
        raw = np.frombuffer(bytes(image[a:a + info.nbytes]), dtype=np.int8)
        x = raw.reshape(info.h, info.w, info.c_stride)[..., :info.c]
        return x.reshape(self.plan.graph.tensors[name].shape).copy()


def _wrap32(x: np.ndarray) -> np.ndarray:
    return quant.wrap_int32(np.asarray(x, dtype=np.int64))


def param_bytes(bias, multiplier, shift, round_up, channels: int) -> bytes:
    """Parameter records for ``channels`` channels (beyond the given ones: all zero)."""
    out = bytearray(channels * PARAM_BYTES)
    n = len(bias)
    for c in range(n):
        out[c * PARAM_BYTES:(c + 1) * PARAM_BYTES] = to_bytes(PARAM_RECORD, {
            "bias": int(bias[c]), "multiplier": int(multiplier[c]), "shift": int(shift[c]),
            "round_up": int(bool(round_up[c]))}, PARAM_BYTES)
    return bytes(out)


def pw_weight_matrix(step: Step, layer: Layer, config: AccelConfig) -> np.ndarray:
    """The ``(K·pw_rows, J·pw_cols)`` int8 matrix the pointwise array multiplies by."""
    w = layer.weights.astype(np.int64)
    rows = step.k_chunks * config.pw_rows
    cols = step.j_chunks * config.pw_cols
    m = np.zeros((rows, cols), dtype=np.int64)
    if step.opcode is Opcode.CONV0:
        c_out, k, _, c_in = w.shape
        # Vector index (ky·K + kx)·C + c, the order of ConvVectorAdapter.
        m[:k * k * c_in, :c_out] = w.reshape(c_out, k * k * c_in).T
    elif layer.op is Op.FULLY_CONNECTED:
        m[:w.shape[1], :w.shape[0]] = w.T
    else:
        m[:w.shape[3], :w.shape[0]] = w[:, 0, 0, :].T
    return m.astype(np.int8)


def _tiles_bytes(m: np.ndarray, step: Step, config: AccelConfig) -> bytes:
    rows, cols = config.pw_rows, config.pw_cols
    t = m.reshape(step.k_chunks, rows, step.j_chunks, cols)   # [k, r, j, c]
    return np.ascontiguousarray(t.transpose(2, 0, 1, 3)).tobytes()  # j, k, r, c


def _conv_params(graph: Graph, layer: Layer, zp_in: int, wsum: np.ndarray, kernels: str,
                 dw: bool):
    t_in, t_out = graph.tensors[layer.inputs[0]], graph.tensors[layer.output]
    m, s = quant.conv_multipliers(t_in.scale, layer.weight_scales, t_out.scale)
    c = wsum.shape[0]
    m, s = np.broadcast_to(m, (c,)), np.broadcast_to(s, (c,))
    bias = np.zeros(c, np.int64) if layer.bias is None else layer.bias.astype(np.int64)
    bias = _wrap32(bias - int(zp_in) * wsum)
    if kernels == "reference":
        if layer.op is Op.FULLY_CONNECTED:
            raise UserError(f"layer {layer.name!r}: the reference FULLY_CONNECTED rescales in "
                            f"double precision, which the fixed-point requantizer cannot "
                            f"reproduce; compile with kernels='optimized'")
        up = np.zeros(c, bool)
    else:
        up = ops.optimized_ties_up(c, 8) if dw else np.ones(c, bool)
    lo, hi = quant.activation_range(layer.activation, t_out.scale, t_out.zero_point)
    return (bias, m, s, up), (t_out.zero_point, lo, hi)


def _pool_params(graph: Graph, layer: Layer, kernels: str):
    t_in, t_out = graph.tensors[layer.inputs[0]], graph.tensors[layer.output]
    _, h, w, c = t_in.shape
    n = h * w
    if kernels == "reference":
        mult, shift = quant.quantize_multiplier(
            float(np.float32(t_in.scale)) / float(np.float32(t_out.scale)))
        k = min(n.bit_length() - 1, 32, 31 + shift)
        mult, shift = (mult << k) // n, shift - k
        bias, zp, up = -int(t_in.zero_point) * n, t_out.zero_point, np.zeros(c, bool)
    else:
        s_in, s_out = np.float32(t_in.scale), np.float32(t_out.scale)
        temp = np.float32(t_in.zero_point) * s_in / s_out
        temp = temp + np.float32(0.5) if temp > 0 else temp - np.float32(0.5)
        zp = int(t_out.zero_point) - int(np.trunc(temp))
        if not -128 <= zp <= 127:
            raise UserError(f"layer {layer.name!r}: the optimized MEAN's output offset {zp} "
                            f"does not fit the requantizer's int8 zero point")
        mult, shift = quant.quantize_multiplier(float(s_in / (np.float32(n) * s_out)))
        bias, up = 0, ops.optimized_ties_up(c, 16)
    full = np.full(c, 1, np.int64)
    return (full * bias, full * mult, full * shift, up), (zp, -128, 127)


def compile_model(graph: Graph, config: AccelConfig, *, kernels: str = "reference",
                  **plan_options) -> Program:
    """Compile ``graph`` for ``config``: plan, memory map, descriptors and memory image.

    Parameters
    ----------
    kernels : {"reference", "optimized"}
        Which TFLite flavour the requantization follows (per-channel tie rounding).
    plan_options
        Passed to :func:`mnaccel.compiler.plan.plan`.

    Raises
    ------
    UserError
        If a layer cannot be mapped or the image does not fit the address space.
    """
    if kernels not in ("reference", "optimized"):
        raise ValueError(f"kernels must be 'reference' or 'optimized', not {kernels!r}")
    p = plan(graph, config, **plan_options)
    cfg = config
    blobs: list[tuple[str, bytes]] = []
    fields: list[dict] = []
    for step in p.steps:
        f = _fields(step, p)
        def put(what: str, blob: bytes, key: str, _f=f, _step=step) -> None:
            _f[key] = len(blobs)
            blobs.append((f"{_step.name}: {what}", blob))
        zp_in = graph.tensors[step.input].zero_point
        if step.opcode in (Opcode.DW_PW, Opcode.DW):
            dwl = step.layers[0]
            c_pad = step.in_c
            w = np.zeros((dwl.kernel[0], dwl.kernel[1], c_pad), np.int64)
            w[..., :dwl.weights.shape[3]] = dwl.weights[0]
            beats = weight_beats(w, cfg.dw_lanes, cfg.dw_kernel)
            put("dw weights", np.array([b["taps"] for b in beats], np.int8).tobytes(),
                "dw_weight_addr")
            real = dwl.weights.shape[3]
            (b, m, s, up), (zp, lo, hi) = _conv_params(
                graph, dwl, zp_in, w[..., :real].reshape(-1, real).sum(0), kernels, dw=True)
            put("dw params", param_bytes(b, m, s, up, c_pad), "dw_param_addr")
            f["mid_zp"], f["mid_act_min"], f["mid_act_max"] = zp, lo, hi
        if step.opcode is Opcode.DW:
            # The pointwise stage passes the depthwise output through: identity tiles, and
            # records that requantize by exactly 1 (bias 0, 2**30 · 2**1 / 2**31, no tie to
            # round) with no offset or clamp.
            c = step.j_chunks * cfg.pw_cols
            mult, shift = quant.quantize_multiplier(1.0)
            put("identity params", param_bytes(np.zeros(c, np.int64), np.full(c, mult),
                                               np.full(c, shift), np.zeros(c, bool), c),
                "pw_param_addr")
            f["out_zp"], f["act_min"], f["act_max"] = 0, -128, 127
        if step.opcode in (Opcode.CONV0, Opcode.DW_PW, Opcode.PW, Opcode.FC):
            pwl = step.layers[-1]
            m_w = pw_weight_matrix(step, pwl, cfg)
            put("pw weights", _tiles_bytes(m_w, step, cfg), "pw_weight_addr")
            pw_zp = (graph.tensors[step.mid].zero_point if step.mid else zp_in)
            c_out = pwl.weights.shape[0]
            (b, m, s, up), (zp, lo, hi) = _conv_params(
                graph, pwl, pw_zp, m_w.astype(np.int64).sum(0)[:c_out], kernels, dw=False)
            put("pw params", param_bytes(b, m, s, up, step.j_chunks * cfg.pw_cols),
                "pw_param_addr")
            f["out_zp"], f["act_min"], f["act_max"] = zp, lo, hi
        if step.opcode is Opcode.POOL:
            (b, m, s, up), (zp, lo, hi) = _pool_params(graph, step.layers[0], kernels)
            put("pool params", param_bytes(b, m, s, up, step.j_chunks * cfg.pw_cols),
                "pw_param_addr")
            f["out_zp"], f["act_min"], f["act_max"] = zp, lo, hi
        fields.append(f)
    fields.append({"opcode": Opcode.END})

    # --- memory map ----------------------------------------------------------------------
    regions = []
    addr = 0
    program_addr = addr
    addr = _align(addr + len(fields) * DESCRIPTOR_BYTES)
    regions.append(("program", program_addr, len(fields) * DESCRIPTOR_BYTES))
    blob_addr = []
    for what, blob in blobs:
        blob_addr.append(addr)
        regions.append((what, addr, len(blob)))
        addr = _align(addr + len(blob))
    tensor_addr = {}
    for name, info in p.tensors.items():
        if info.alias_of is None:
            tensor_addr[name] = addr
            regions.append((f"tensor {name}", addr, info.nbytes))
            addr = _align(addr + info.nbytes)
    limit = min(2**cfg.axi_addr_width, 2**32)
    if addr > limit:
        raise UserError(f"the memory image needs {addr} bytes, more than the {limit} bytes "
                        f"that axi_addr_width={cfg.axi_addr_width} (and 32-bit descriptor "
                        f"addresses) reach")
    image = bytearray(addr)
    for (_, blob), a in zip(blobs, blob_addr, strict=True):
        image[a:a + len(blob)] = blob
    prog = Program(p, kernels, fields, program_addr, image, tensor_addr, regions)
    for f, step in zip(fields, p.steps, strict=False):
        for key in ("dw_weight_addr", "dw_param_addr", "pw_weight_addr", "pw_param_addr"):
            if key in f:
                f[key] = blob_addr[f[key]]
        f["in_addr"] = prog.addr(step.input)
        f["out_addr"] = prog.addr(step.output)
    for i, f in enumerate(fields):
        a = program_addr + i * DESCRIPTOR_BYTES
        image[a:a + DESCRIPTOR_BYTES] = to_bytes(Descriptor, f, DESCRIPTOR_BYTES)
    return prog


def _fields(step: Step, p: Plan) -> dict:
    info_in, info_out = p.storage(step.input), p.storage(step.output)
    return {
        "opcode": step.opcode,
        "padding": Padding[step.padding],
        "kernel": step.kernel,
        "stride": step.stride,
        "in_h": step.in_h, "in_w": step.in_w, "in_c": step.in_c,
        "out_h": step.out_h, "out_w": step.out_w, "out_c": step.out_c,
        "in_stride": info_in.c_stride, "out_stride": info_out.c_stride,
        "in_zp": p.graph.tensors[step.input].zero_point,
        "conv_c": step.conv_c,
        "tile_pixels": step.tile_pixels, "n_tiles": step.n_tiles,
        "last_tile_pixels": step.last_tile_pixels,
        "first_tile_pixels": step.first_tile_pixels,
        "k_chunks": step.k_chunks, "j_chunks": step.j_chunks,
    }
