"""Functional model of the schedule: a compiled program run in NumPy, tile by tile.

It reads nothing but the memory image — the descriptors, the reordered weights, the
parameter records, the input — and executes every step in the order the scheduler will:
the line buffer's windows (pad value: the input zero point) through raw int8 × int8
products, the depthwise requantizer, the activation buffer of one pixel tile, then per
tile ``for j in J: for k in K:`` one weight tile from the weight stream (restarted for
each pixel tile) against all pixels of the tile, accumulating in int32 (``first`` at
``k = 0``, emitted at ``k = K − 1``), the output requantizer with the records of chunk
``j``, the output buffer, and the write of the tile to external memory. Agreement with
:func:`mnaccel.golden.interpreter.run` proves the tiling, the weight order and the bias
folding before any gateware exists.
"""

from __future__ import annotations

import numpy as np

from mnaccel.compiler.image import Program
from mnaccel.golden import quant
from mnaccel.hw.descriptor import (
    DESCRIPTOR_BYTES,
    PARAM_BYTES,
    PARAM_RECORD,
    Descriptor,
    Opcode,
    from_bytes,
)
from mnaccel.hw.line_buffer import Padding, axis_geometry

__all__ = ["execute"]


class _Machine:
    def __init__(self, program: Program, image: bytearray):
        self.cfg = program.plan.config
        self.mem = image

    # --- external memory ------------------------------------------------------------------
    def read(self, addr: int, n: int) -> np.ndarray:
        return np.frombuffer(bytes(self.mem[addr:addr + n]), dtype=np.int8)

    def act(self, addr: int, h: int, w: int, stride: int) -> np.ndarray:
        return self.read(addr, h * w * stride).reshape(h, w, stride)

    def params(self, addr: int, n: int):
        recs = [from_bytes(PARAM_RECORD, self.mem[addr + i * PARAM_BYTES:
                                                  addr + (i + 1) * PARAM_BYTES])
                for i in range(n)]
        return (np.array([r["bias"] for r in recs], np.int64),
                np.array([r["multiplier"] for r in recs], np.int64),
                np.array([r["shift"] for r in recs], np.int64),
                np.array([bool(r["round_up"]) for r in recs]))

    def requantize(self, acc: np.ndarray, prm, zp: int, lo: int, hi: int) -> np.ndarray:
        bias, mult, shift, up = prm
        return quant.requantize(quant.wrap_int32(acc), bias, mult, shift, zp, lo, hi, up)

    # --- the line buffer's windows -----------------------------------------------------------
    def windows(self, d: dict) -> tuple[np.ndarray, int, int]:
        """``taps[ky, kx]`` as (Ho, Wo, C) views of the zero-point-padded input."""
        x = self.act(d["in_addr"], d["in_h"], d["in_w"], d["in_stride"])[..., :d["in_c"]]
        k, s = d["kernel"], d["stride"]
        pad = Padding(d["padding"])
        oh, pt, pb = axis_geometry(d["in_h"], k, s, pad)
        ow, pl, pr = axis_geometry(d["in_w"], k, s, pad)
        xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)), constant_values=np.int8(d["in_zp"]))
        taps = np.empty((k, k, oh, ow, x.shape[2]), np.int64)
        for ky in range(k):
            for kx in range(k):
                taps[ky, kx] = xp[ky:ky + s * (oh - 1) + 1:s, kx:kx + s * (ow - 1) + 1:s]
        return taps, oh, ow

    def depthwise(self, d: dict, key: str) -> np.ndarray:
        """dw accumulators → dw requantizer: (Ho·Wo, C) int8."""
        cfg = self.cfg
        taps, oh, ow = self.windows(d)
        c, k = d["in_c"], d["kernel"]
        n = cfg.dw_kernel**2
        passes = -(-k * k // n)
        groups = c // cfg.dw_lanes
        beats = self.read(d["dw_weight_addr"], groups * passes * n * cfg.dw_lanes)
        # [group, pass, slot, lane] → flattened window taps × channels.
        w = beats.reshape(groups, passes, n, cfg.dw_lanes).astype(np.int64)
        w = w.transpose(1, 2, 0, 3).reshape(passes * n, c)[:k * k]
        acc = np.einsum("tyxc,tc->yxc", taps.reshape(k * k, oh, ow, c), w)
        prm = self.params(d["dw_param_addr"], c)
        zp, lo, hi = d[f"{key}_zp"], d[f"{key}_act_min"], d[f"{key}_act_max"]
        return self.requantize(acc.reshape(oh * ow, c), prm, zp, lo, hi)

    # --- the pointwise schedule ---------------------------------------------------------------
    def pointwise(self, d: dict, source, identity: str | None = None) -> np.ndarray:
        """Run the tiles; ``source(first, n)`` fills the activation buffer for a tile.

        ``identity``: the weight tiles are the generator's identities instead of the weight
        stream, summed over the tile's pixels (``"pool"``: POOL, one output pixel) or per
        pixel (``"pixel"``: DW).
        """
        pool = identity == "pool"
        cfg = self.cfg
        rows, cols, K, J = cfg.pw_rows, cfg.pw_cols, d["k_chunks"], d["j_chunks"]
        prm_all = self.params(d["pw_param_addr"], J * cols)
        out_stride = d["out_stride"]
        first = 0
        tiles = []
        for t in range(d["n_tiles"]):
            n = (d["first_tile_pixels"] if t == 0 else
                 d["last_tile_pixels"] if t == d["n_tiles"] - 1 else d["tile_pixels"])
            tiles.append((first, n))
            first += n
        for first, n in tiles:
            if n > cfg.pw_acc_depth:
                raise AssertionError(f"tile of {n} pixels exceeds pw_acc_depth")
            a = source(first, n)
            # Activation buffer half: K chunks of `rows` (the pool: all the channels).
            buf = np.zeros((n, max(K, -(-a.shape[1] // rows)) * rows), np.int64)
            buf[:, :a.shape[1]] = a
            # Output buffer half; the pool writes back its one output pixel only.
            out_buf = np.zeros((1 if pool else n, J * cols), np.int8)
            stream = d["pw_weight_addr"]                     # restarts for every tile
            for j in range(J):
                acc = np.zeros((n if not pool else 1, cols), np.int64)
                for k in range(K):
                    if identity is not None:
                        # Identity tile: channel j·cols + c sits in row (j·cols mod rows)+c
                        # of the chunk holding it; for POOL every pixel beat hits entry 0.
                        kk, off = divmod(j * cols, rows)
                        sel = buf[:, kk * rows + off:kk * rows + off + cols]
                        acc += sel.sum(0) if pool else sel
                        continue
                    tile = self.read(stream, rows * cols).reshape(rows, cols).astype(np.int64)
                    stream += rows * cols
                    part = buf[:, k * rows:(k + 1) * rows] @ tile
                    # int32 accumulator: wraps like the hardware's.
                    acc = quant.wrap_int32(part if k == 0 else acc + part)
                prm = tuple(p[j * cols:(j + 1) * cols] for p in prm_all)
                out_buf[:, j * cols:(j + 1) * cols] = self.requantize(
                    acc, prm, d["out_zp"], d["act_min"], d["act_max"])
            a0 = d["out_addr"] + first * out_stride
            self.mem[a0:a0 + len(out_buf) * out_stride] = out_buf[:, :out_stride].tobytes()
        return None


def execute(program: Program, x: np.ndarray, *, image: bytearray | None = None
            ) -> dict[str, np.ndarray]:
    """Run ``program`` on input ``x`` (the graph input's shape, int8).

    Returns every layer output tensor by name (the on-chip depthwise outputs of DW_PW steps
    taken from the activation buffer), in the graph tensors' shapes. ``image`` (default: a
    copy of the program's) is updated in place.
    """
    image = bytearray(program.image) if image is None else image
    graph = program.plan.graph
    program.write_tensor(image, graph.input, x)
    m = _Machine(program, image)
    mids: dict[str, np.ndarray] = {}
    steps = iter(program.plan.steps)
    pc = program.program_addr
    while True:
        d = from_bytes(Descriptor, image[pc:pc + DESCRIPTOR_BYTES])
        pc += DESCRIPTOR_BYTES
        op = Opcode(d["opcode"])
        if op is Opcode.END:
            break
        step = next(steps)
        if op is Opcode.DW_PW:
            y = m.depthwise(d, "mid")
            mids[step.mid] = y[:, :graph.tensors[step.mid].shape[-1]]   # drop padding
            m.pointwise(d, lambda first, n, y=y: y[first:first + n])
        elif op is Opcode.DW:
            y = m.depthwise(d, "mid")
            m.pointwise(d, lambda first, n, y=y: y[first:first + n], identity="pixel")
        elif op is Opcode.CONV0:
            taps, oh, ow = m.windows(d)
            c = d["conv_c"]
            # ConvVectorAdapter: v[(ky·K + kx)·C + c] per output pixel.
            v = taps[..., :c].transpose(2, 3, 0, 1, 4).reshape(oh * ow, -1)
            m.pointwise(d, lambda first, n, v=v: v[first:first + n])
        elif op in (Opcode.PW, Opcode.FC, Opcode.POOL):
            x_in = m.act(d["in_addr"], d["in_h"], d["in_w"], d["in_stride"])
            flat = x_in.reshape(d["in_h"] * d["in_w"], d["in_stride"])
            m.pointwise(d, lambda first, n, f=flat: f[first:first + n],
                        identity="pool" if op is Opcode.POOL else None)
        else:  # pragma: no cover - the compiler emits no other opcode
            raise AssertionError(f"opcode {op} is not executable")
    outputs = {}
    for layer in graph.layers:
        name = layer.output
        outputs[name] = (mids[name].reshape(graph.tensors[name].shape) if name in mids
                         else program.read_tensor(image, name))
    return outputs
