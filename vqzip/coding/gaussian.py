"""Bit-exact coding of the photo codec's tokens: an integer hyper-synthesis and Gaussian tables.

The coder depends on one network, h_s (z_hat -> mean and log2 scale of every token). It is evaluated
here in integer arithmetic: weights and activations are fixed point, every product and partial sum is
an integer below 2^53, so float64 matrix products compute them exactly whatever the BLAS, blocking,
thread count or batch size. Rounding is floor division by powers of two, also exact. The outputs pick
one of a fixed set of integer frequency tables (by scale, and by the mean's fraction); the tables are
computed once when the model is exported and stored with it, so no transcendental function runs at
coding time.

Payload of one image: z tokens channel by channel (one table per channel), then y tokens table by
table (positions in raster order of (channel, row, column) within each table), then escapes: a token
further than T from its mean's integer part is coded as the table's end symbol plus an Exp-Golomb
remainder, so any token in range stays codable and the tables stay small.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import FormatError
from .entropy import TokenDecoder, TokenEncoder, categorical

FRACTION_BITS = 8  # activations, means and log2 scales are fixed point with 8 fraction bits
ONE = 1 << FRACTION_BITS
WEIGHT_LIMIT = 1 << 12  # |integer weight| <= this
ACT_LIMIT = 1 << 20  # |integer activation| <= this (clamped)
EXACT_LIMIT = 1 << 53  # float64 holds every integer below this exactly
SCALE_STEPS = 8  # Gaussian tables per octave of scale
MEAN_STEPS = 8  # tables per unit of the mean's fraction
LOG2_SCALE_MIN = -3.25
LOG2_SCALE_MAX = 8.0
SCALES = int((LOG2_SCALE_MAX - LOG2_SCALE_MIN) * SCALE_STEPS)  # 90
Z_SUPPORT = 64  # z tokens are clamped to -64..64
TOKEN_LIMIT = 1 << 15  # |y token| < this: the encoder clamps, the decoder never produces more
TABLE_TOTAL = 1 << 16  # frequencies of a table sum to about this; every entry >= 1
ESCAPE_BITS = 17  # Exp-Golomb prefix: 0..16 bits follow
ROWS_PER_CHUNK = 1 << 15  # positions per float64 product: bounds memory on large images
CHUNK_FLOATS = 1 << 23  # and at most this many floats per product's operand or result (64 MB), for wide layers
OUTPUT_FLOATS = 1 << 24  # a stack's last layer computes at most this many outputs (128 MB of float64) at a time
SMALL_GRID = 256  # grids of at most this many positions take conv3x3's taps (batches of small images); larger, shifted taps
TABLE_ROWS = 1 << 20  # floats of per-token table rows one coder call may take (8 MB)
BLOCKS_PER_CHUNK = 1024  # blocks (PhotoConfig.prior_block) whose entropy parameters the encoder derives at once
LAYERS = ("up1", "up2", "out")
STORED_TABLES = ("z_tables", "y_tables", "y_offsets")  # what a model file must hold of the coder
CONTEXT_TOKEN_LIMIT = 4096  # as codec.hyperprior's: tokens enter a slice's context clamped to +-this


def table_halfwidth(k: int) -> int:
    """T of scale table k: its symbols are -T..T around the mean's integer part."""
    return max(16, math.ceil(12 * 2.0 ** (LOG2_SCALE_MIN + (k + 0.5) / SCALE_STEPS)))


PEAK_SHARE = 63 / 64  # no symbol gets more: every token costs >= 0.0227 bits, which bounds what a payload can claim


def _frequencies(p: np.ndarray) -> np.ndarray:
    """Integer frequencies summing to about TABLE_TOTAL, each in 1..65535 (stored as uint16), the
    largest at most PEAK_SHARE of the total (the decoder's payload bound relies on it)."""
    f = np.clip(np.round(p / p.sum() * TABLE_TOTAL), 1, (1 << 16) - 1).astype(np.int64)
    top = int(f.argmax())
    f[top] = min(int(f[top]), int((f.sum() - f[top]) * PEAK_SHARE / (1 - PEAK_SHARE)))
    return f


def raise_peak(freq: np.ndarray) -> np.ndarray:
    """A stored table with its largest entry raised back to what the Gaussian gives it: the table's
    total less the other entries (at most 65535), where PEAK_SHARE had capped it. Integer arithmetic
    on the stored integers, so every machine derives the same table."""
    f = np.array(freq, dtype=np.int64)
    top = int(f.argmax())
    f[top] = max(int(f[top]), min((1 << 16) - 1, TABLE_TOTAL - (int(f.sum()) - int(f[top]))))
    return f


def gaussian_tables() -> list[np.ndarray]:
    """Integer tables, index k * MEAN_STEPS + f: a Gaussian of scale 2^(min + (k + 1/2) / 8) and mean
    (f + 1/2) / 8 above an integer, over offsets -T..T from that integer, the ends holding the tails.
    Computed at export, stored with the model."""
    out = []
    for k in range(SCALES):
        sigma, t = 2.0 ** (LOG2_SCALE_MIN + (k + 0.5) / SCALE_STEPS), table_halfwidth(k)
        edges = np.arange(-t - 0.5, t + 1.0, 1.0)
        for f in range(MEAN_STEPS):
            mu = (f + 0.5) / MEAN_STEPS
            cdf = np.array([0.5 * math.erfc(-(e - mu) / (sigma * math.sqrt(2))) for e in edges])
            cdf[0], cdf[-1] = 0.0, 1.0
            out.append(_frequencies(np.diff(cdf)))
    return out


def weight_shift(peak: float) -> int:
    """The largest s with peak * 2^s <= WEIGHT_LIMIT, found exactly (ldexp scales by powers of two
    without rounding): a decoder that derives its integer layers from the stored float weights must
    find the same shift on every machine, which a libm's log2 near a power of two would not promise."""
    s = WEIGHT_LIMIT.bit_length() - 1 - math.frexp(peak)[1]  # within one of the answer
    while math.ldexp(peak, s + 1) <= WEIGHT_LIMIT:
        s += 1
    while math.ldexp(peak, s) > WEIGHT_LIMIT:
        s -= 1
    return s


def export_conv_layers(state: dict[str, Any], layers: dict[str, str]) -> dict[str, np.ndarray]:
    """Integer weights of 3x3 convolutions from a float state dict: for each `name: prefix` of
    `layers`, a weight matrix (out, in * 9), a bias, and the power-of-two shift that returns to 8
    fraction bits."""
    out: dict[str, np.ndarray] = {}
    for name, prefix in layers.items():
        w = np.asarray(state[f"{prefix}.weight"])
        w = w.astype(np.result_type(w.dtype, np.float32))  # float16 as float32: scaling by 2^shift stays exact
        b = np.asarray(state[f"{prefix}.bias"], dtype=np.float64)
        shift = weight_shift(max(float(np.abs(w).max()), 1e-12))
        out[f"{name}.weight"] = np.round(w * 2.0**shift).astype(np.int16).reshape(len(w), -1)
        out[f"{name}.bias"] = np.round(b * 2.0 ** (shift + FRACTION_BITS)).astype(np.int64)
        out[f"{name}.shift"] = np.array([shift], dtype=np.int64)
    return out


def export_hyper_synthesis(state: dict[str, Any]) -> dict[str, np.ndarray]:
    """Integer weights of h_s from its float state dict (keys 'up1.conv.weight', ...)."""
    return export_conv_layers(state, {name: "out" if name == "out" else f"{name}.conv" for name in LAYERS})


def export_slice_context(state: dict[str, Any]) -> dict[str, np.ndarray]:
    """Integer weights of the slice context networks (codec.hyperprior.SliceContext) from its float
    state dict (keys 'nets.0.0.weight', ..., 'spatial.0.0.weight', ...): 'ctx1.in.*', 'ctx1.out.*', ...
    for slices 1, 2, ..., and 'sp0.in.*', 'sp0.out.*', ... for each slice's checkerboard network."""
    out: dict[str, np.ndarray] = {}
    for group, name, first in (("nets", "ctx", 1), ("spatial", "sp", 0)):
        for i in sorted({int(k.split(".")[1]) for k in state if k.startswith(f"{group}.")}):
            out.update(export_conv_layers(state, {f"{name}{i + first}.in": f"{group}.{i}.0",
                                                  f"{name}{i + first}.out": f"{group}.{i}.2"}))
    return out


def derived_layers(weights: dict[str, Any]) -> dict[str, np.ndarray]:
    """The integer h_s and context layers of a photo model, from its stored float weights ('h_s.*',
    'context.*'). Model files written since photo-cb128's second save store only STORED_TABLES and
    derive these at load: the rounding is exact, so every machine gets the encoder's integers, and
    the file does not hold those networks twice (older files keep their stored copies, which win)."""
    def sub(prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}

    out = {f"hs.{k}": v for k, v in export_hyper_synthesis(sub("h_s.")).items()}
    out.update(export_slice_context(sub("context.")))
    return out


def _floor_shift(acc: np.ndarray, shift: int) -> np.ndarray:
    """round(acc / 2^shift), halves up, exactly (acc holds integers, the division is by a power of
    two), in place."""
    if shift > 0:
        acc += 2.0 ** (shift - 1)
    acc *= 2.0**-shift
    return np.floor(acc, out=acc)


def _pixel_shuffle(x: np.ndarray) -> np.ndarray:
    """Channels-last 2x pixel shuffle (B, H, W, 4C) -> (B, 2H, 2W, C): channel 4c + 2i + j of a
    position goes to row offset i, column offset j (torch's pixel_shuffle)."""
    b, h, w, c4 = x.shape
    c = c4 // 4
    return x.reshape(b, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(b, 2 * h, 2 * w, c)


class IntegerConvStack:
    """3x3 convolutions in exact integer arithmetic, ReLU between them (and a 2x pixel shuffle after
    each but the last where `upsample`): fixed-point inputs with 8 fraction bits to fixed-point
    outputs, as float64 holding integers. Activations are kept channels-last between layers, so that
    a convolution's inputs are rows of channels that its matrix products read without transposing."""

    def __init__(self, tensors: dict[str, np.ndarray], names: tuple[str, ...], upsample: bool = False) -> None:
        self.upsample = upsample
        self.layers = []
        for name in names:
            w = np.asarray(tensors[f"{name}.weight"])  # int16 as stored or derived: checked and reordered so
            b = np.asarray(tensors[f"{name}.bias"], dtype=np.float64)
            shift = int(np.asarray(tensors[f"{name}.shift"]).ravel()[0])
            if max(-float(w.min()), float(w.max())) > WEIGHT_LIMIT or \
                    w.shape[1] * WEIGHT_LIMIT * ACT_LIMIT + np.abs(b).max() >= EXACT_LIMIT // 2:
                raise ValueError(f"integer network layer {name} exceeds the exact integer range")
            self.layers.append((tap_major(w).astype(np.float64), b, shift))  # then float64 for exact products

    @property
    def out_channels(self) -> int:
        return self.layers[-1][0].shape[2]

    def run(self, a: np.ndarray) -> np.ndarray:
        """Fixed-point input (B, C, H, W) -> fixed-point output (B, C', H', W') as int32, clipped to
        +-ACT_LIMIT. The last layer's output channels are computed OUTPUT_FLOATS at a time, each group
        stored as int32 before the next: on a whole-grid model's 24-megapixel photo, h_s's output (mean
        and log2 scale of every token) would otherwise take three float64 copies of 770 MB."""
        x = a.transpose(0, 2, 3, 1)
        *hidden, (taps, b, shift) = self.layers
        for taps_h, b_h, shift_h in hidden:
            x = np.clip(_floor_shift(self._conv(x)(x, taps_h, b_h), shift_h), 0, ACT_LIMIT)
            x = _pixel_shuffle(x) if self.upsample else x
        cout = taps.shape[2]
        out = np.empty((*x.shape[:3], cout), np.int32)
        step = max(1, OUTPUT_FLOATS // max(1, x.shape[0] * x.shape[1] * x.shape[2]))
        for c0 in range(0, cout, step):
            part = _floor_shift(self._conv(x)(x, taps[:, :, c0: c0 + step], b[c0: c0 + step]), shift)
            out[..., c0: c0 + step] = np.clip(part, -ACT_LIMIT, ACT_LIMIT, out=part)
        return out.transpose(0, 3, 1, 2)

    @staticmethod
    def _conv(x: np.ndarray) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
        return conv3x3 if x.shape[1] * x.shape[2] <= SMALL_GRID else conv3x3_shifted


def tap_major(w: np.ndarray) -> np.ndarray:
    """A stored weight matrix (out, in * 9), in-channel major as torch's, as taps (9, in, out)."""
    return np.ascontiguousarray(w.reshape(len(w), -1, 9).transpose(2, 1, 0))


def conv3x3(x: np.ndarray, taps: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 convolution, zero padding, of integer-valued float64 x (B, H, W, C) channels-last under
    taps (9, C, C') -> (B, H, W, C'): exact sums (every partial sum is an integer below 2^53, the
    layer check, so no order of summation changes them). For small grids (larger ones:
    conv3x3_shifted), as many whole images at a time as fit a chunk: the centre tap's product over
    every position, then each other tap's over only the positions whose neighbour it reads is
    inside the grid (on a 4x4 grid, 100 of the 144 products an im2col would make; on 1x1, 1 of 9)."""
    bsz, h, w, c = x.shape
    cout = taps.shape[2]
    out = np.empty((bsz, h, w, cout))
    step = max(1, min(ROWS_PER_CHUNK, CHUNK_FLOATS // max(c, cout)) // (h * w))
    for i in range(0, bsz, step):
        part, acc = x[i: i + step], out[i: i + step]
        n = len(part)
        np.matmul(part.reshape(-1, c), taps[4], out=acc.reshape(-1, cout))
        acc += b
        for k in (0, 1, 2, 3, 5, 6, 7, 8):
            dy, dx = k // 3 - 1, k % 3 - 1
            r0, r1, c0, c1 = max(0, -dy), h - max(0, dy), max(0, -dx), w - max(0, dx)
            if r1 > r0 and c1 > c0:
                src = part[:, r0 + dy: r1 + dy, c0 + dx: c1 + dx].reshape(-1, c)
                acc[:, r0:r1, c0:c1] += (src @ taps[k]).reshape(n, r1 - r0, c1 - c0, cout)
    return out


def conv3x3_shifted(x: np.ndarray, taps: np.ndarray, b: np.ndarray) -> np.ndarray:
    """conv3x3 for large grids, without copying the input for each tap: the zero-padded image laid out as rows
    of channels, each of the nine taps reads one contiguous run of those rows, so the convolution
    is nine matrix products summed (the two border columns of each row are computed and dropped).
    The same integers as conv3x3's, exactly."""
    bsz, h, w, c = x.shape
    cout, row = taps.shape[2], w + 2
    out = np.empty((bsz, h, w, cout))
    rows = max(1, min(ROWS_PER_CHUNK, CHUNK_FLOATS // (9 * c)) // row)
    for i in range(bsz):
        flat = np.zeros(((h + 2) * row + 2, c))  # one spare zero row before and after the padded image
        flat[1:-1].reshape(h + 2, row, c)[1:-1, 1:-1] = x[i]
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            n = (r1 - r0) * row
            acc = np.broadcast_to(b, (n, cout)).copy()
            for k in range(9):
                start = (r0 + k // 3) * row + k % 3
                acc += flat[start: start + n] @ taps[k]
            out[i, r0:r1] = acc.reshape(r1 - r0, row, cout)[:, 1:-1]
    return out


class IntegerHyperSynthesis(IntegerConvStack):
    """h_s in exact integer arithmetic: z tokens -> (mean, log2 scale) of every y token, both fixed
    point with 8 fraction bits, as int32 (|value| <= ACT_LIMIT)."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        super().__init__(tensors, LAYERS, upsample=True)

    def __call__(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, log_scale = np.split(self.run(np.asarray(z, dtype=np.float64) * ONE), 2, axis=1)
        return mean, log_scale


def anchors(h: int, w: int) -> np.ndarray:
    """True at a checkerboard's anchors ((row + column) even), as codec.hyperprior.anchor_mask."""
    return (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0


class IntegerSliceContext:
    """codec.hyperprior.SliceContext in exact integer arithmetic: the fixed-point mean and log2 scale
    of slice s's tokens from h_s's and the latents of slices 0..s-1 as the synthesis sees them, in
    fixed point (tokens * ONE, or with mean-shifted rounding offset * ONE + mean); with a checkerboard,
    those of the slice's non-anchor half corrected from its anchors' latents (`spatial`)."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        count = len({k.split(".")[0] for k in tensors if k.startswith("ctx")})
        self.nets = [IntegerConvStack(tensors, (f"ctx{s}.in", f"ctx{s}.out")) for s in range(1, count + 1)]
        spatial = len({k.split(".")[0] for k in tensors if k.startswith("sp")})
        self.spatial_nets = [IntegerConvStack(tensors, (f"sp{s}.in", f"sp{s}.out")) for s in range(spatial)]
        self.slices = max(count + 1, spatial)
        if spatial and spatial != self.slices:
            raise ValueError("hyperprior tables are malformed: checkerboard networks do not match the slices")

    @property
    def checkerboard(self) -> bool:
        return bool(self.spatial_nets)

    def width(self, latent: int) -> int:
        return latent // self.slices

    def __call__(self, s: int, mean: np.ndarray, log_scale: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, log scale) of slice s (N, width, h, w) from h_s's of all channels and the fixed-point
        latents (N, >= s * width, h, w) of the slices before (before the checkerboard's correction)."""
        w = self.width(mean.shape[1])
        m, ls = mean[:, s * w: (s + 1) * w], log_scale[:, s * w: (s + 1) * w]
        if s == 0:
            return m, ls
        d = self._run(self.nets[s - 1], fixed[:, : s * w], m, ls)
        return m + d[:, :w], ls + d[:, w:]

    def spatial(self, s: int, mean: np.ndarray, log_scale: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slice s's (mean, log scale) from what __call__ gave and the slice's own fixed-point latents
        (N, width, h, w), of which only the anchors are read: the non-anchors' corrected, the anchors' as
        they were."""
        keep = anchors(*fixed.shape[2:])
        d = self._run(self.spatial_nets[s], np.where(keep, fixed, 0), mean, log_scale)
        w = mean.shape[1]
        return np.where(keep, mean, mean + d[:, :w]), np.where(keep, log_scale, log_scale + d[:, w:])

    @staticmethod
    def _run(net: IntegerConvStack, fixed: np.ndarray, m: np.ndarray, ls: np.ndarray) -> np.ndarray:
        """The network on [latents clipped, means, log scales], written straight into one float64 input (on a
        24-megapixel photo at stride 8, the clipped copy and the float copies before concatenating took 0.6 GB)."""
        limit = CONTEXT_TOKEN_LIMIT * ONE
        k, w = fixed.shape[1], m.shape[1]
        x = np.empty((len(fixed), k + 2 * w, *fixed.shape[2:]))
        np.clip(fixed, -limit, limit, out=x[:, :k])
        x[:, k: k + w], x[:, k + w:] = m, ls
        return net.run(x)


def to_blocks(x: np.ndarray, block: int) -> np.ndarray:
    """(N, C, H, W) -> (N * H/block * W/block, C, block, block): each block as an image of its own, in
    raster order of blocks within each image (PhotoConfig.prior_block)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // block, block, w // block, block).transpose(0, 2, 4, 1, 3, 5).reshape(-1, c, block, block)


def from_blocks(x: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """The inverse of to_blocks: blocks (N * blocks, C, b, b) back to (N, C, h, w)."""
    c, b = x.shape[1], x.shape[2]
    return x.reshape(n, h // b, w // b, c, b, b).transpose(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def _scale_step(log_scale: np.ndarray) -> np.ndarray:
    """Each token's scale table k (0..SCALES-1) from its fixed-point log2 scale."""
    return np.clip((log_scale - round(LOG2_SCALE_MIN * ONE)) // (ONE // SCALE_STEPS), 0, SCALES - 1)


def table_index(mean: np.ndarray, log_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(table index, integer part of the mean) of each token from the fixed-point h_s outputs."""
    base = mean >> FRACTION_BITS
    f = (mean - (base << FRACTION_BITS)) // (ONE // MEAN_STEPS)
    return _scale_step(log_scale) * MEAN_STEPS + f, base


def offset_table(log_scale: np.ndarray) -> np.ndarray:
    """The table index of a mean-shifted token, round(y - mean): its scale's f = 0 slot, where a
    mean-shifted coder keeps the scale's zero-centred table (with_mean_shift)."""
    return _scale_step(log_scale) * MEAN_STEPS


def _fill(fixed: np.ndarray, part: slice, positions: np.ndarray, values: np.ndarray) -> None:
    """fixed[:, part] at `positions` (flat (channel, row, column) indices within the slice) = values (N, P)."""
    ch, row, col = np.unravel_index(positions, fixed[0, part].shape)
    fixed[:, part.start + ch, row, col] = values


def escape_table() -> np.ndarray:
    """Frequencies of an escape's Exp-Golomb prefix (0..16 remainder bits): geometric, all >= 1."""
    return np.array([1 << (16 - n) for n in range(ESCAPE_BITS)], dtype=np.int64)


ESCAPE_COST = -np.log2(escape_table() / escape_table().sum())  # bits of each Exp-Golomb prefix


Segment = tuple[int, int, int, "np.ndarray | None"]  # (start, end, run, table rows or None) in coding order


class HyperpriorCoder:
    """Codes each image's tokens, y (M, h, w) and z (C, h/4, w/4), into one payload and back."""

    _fine: HyperpriorCoder | None  # this coder under the fine tables, once asked for
    _shifted: HyperpriorCoder | None = None  # and with mean-shifted rounding, once asked for
    shifted = False  # tokens are round(y - mean), the synthesis sees them + mean (with_mean_shift)

    def __init__(self, tensors: dict[str, np.ndarray], block: int = 0) -> None:
        self.block = block  # token positions a side of the blocks h_s and the contexts run on (0: the whole grid)
        self.hs = IntegerHyperSynthesis({k[3:]: v for k, v in tensors.items() if k.startswith("hs.")})
        self.context = IntegerSliceContext({k: v for k, v in tensors.items() if k.startswith(("ctx", "sp"))})
        self.z_freq = np.asarray(tensors["z_tables"], dtype=np.int64)
        flat, offsets = np.asarray(tensors["y_tables"], dtype=np.int64), np.asarray(tensors["y_offsets"], dtype=np.int64)
        if len(offsets) != SCALES * MEAN_STEPS + 1 or offsets[-1] != len(flat) or (flat <= 0).any() or (self.z_freq <= 0).any():
            raise ValueError("hyperprior tables are malformed")
        self.fine = False  # the stored tables (peaks capped at PEAK_SHARE); see with_fine_tables
        self._z_cost = -np.log2(self.z_freq / self.z_freq.sum(1, keepdims=True))
        self._z_rows = self.z_freq.astype(np.float64)
        # the payload bound comes from the stored tables, whichever tables code (with_fine_tables)
        self._cheapest_y = min(float(-np.log2(flat[a:b].max() / flat[a:b].sum())) for a, b in zip(offsets[:-1], offsets[1:]))
        self._cheapest_z = float(-np.log2(self.z_freq.max(1) / self.z_freq.sum(1)).sum())
        self._set_y_tables(flat, offsets)

    def with_fine_tables(self) -> HyperpriorCoder:
        """This coder with each y table's peak restored (raise_peak; format versions 7 and 8): a token
        its table makes near certain costs ~0.0007 bits instead of the cap's 0.0227, which is most of
        the latent at low rates (-6.4 % of a Kodak file at quality 1). The payload bound stays the stored
        tables': the encoder pads the rare payload that comes out shorter (a near-uniform image), so a
        decoder's check of claim against payload length is unchanged. Made once per coder."""
        if self._fine is None:
            fine = copy.copy(self)
            flat = np.concatenate([raise_peak(f) for f in self.y_freq])
            fine._set_y_tables(flat, np.cumsum([0] + [len(f) for f in self.y_freq]))
            fine.fine, fine._fine = True, fine
            self._fine = fine
        return self._fine

    def with_mean_shift(self) -> HyperpriorCoder:
        """This coder under the fine tables with mean-shifted rounding (format version 9): each token is
        round(y - mean), its offset from its mean (the fixed-point mean h_s and the context give, so
        both sides know it exactly), coded under a table centred on zero, and the synthesis sees offset
        + mean. Where the entropy model is sure of a latent, its token is 0 and the synthesis sees the
        predicted mean rather than the nearest integer (Minnen & Singh 2020). The stored tables are
        centred on a mean's fraction, (f + 1/2) / 8; the zero-centred table of each scale is the mean of
        its f = 0 table (mean +1/16) and that table mirrored (-1/16), in integers: every machine derives
        the same. Made once per coder."""
        if self._shifted is None:
            fine = self.with_fine_tables()
            shifted = copy.copy(fine)
            tables = list(fine.y_freq)
            for i in range(0, len(tables), MEAN_STEPS):
                tables[i] = (tables[i] + tables[i][::-1] + 1) // 2
            shifted._set_y_tables(np.concatenate(tables), np.cumsum([0] + [len(t) for t in tables]))
            shifted.shifted, shifted._fine, shifted._shifted = True, shifted, shifted
            self._shifted = fine._shifted = shifted
        return self._shifted

    def _set_y_tables(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        """The y tables and what coding a batch needs of them, computed once: each symbol's cost (for
        the ideal bits) and the tables as float64 rows, stacked per run of consecutive tables of one
        length (for one coder call per run: TABLE_ROWS)."""
        self.y_freq = [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        self.half = np.array([(len(f) - 1) // 2 for f in self.y_freq], dtype=np.int32)
        self._models: dict[tuple[str, int], Any] = {}
        self._fine = None
        self._y_offsets = offsets[:-1]
        self._y_cost = -np.log2(flat / np.repeat(np.add.reduceat(flat, offsets[:-1]).astype(np.float64),
                                                  np.diff(offsets)))
        lengths = np.diff(offsets)
        self._run_start = np.flatnonzero(np.r_[True, lengths[1:] != lengths[:-1]])  # first table of each run
        self._run_of = np.repeat(np.arange(len(self._run_start)), np.diff(np.r_[self._run_start, len(lengths)]))
        self._run_rows = [np.stack(self.y_freq[a: a + n]).astype(np.float64) for a, n in
                          zip(self._run_start, np.diff(np.r_[self._run_start, len(lengths)]))]

    @staticmethod
    def tables(z_pmf: np.ndarray, hs_state: dict[str, Any], context_state: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Everything the coder stores in the model file, from the float model at export."""
        ys = gaussian_tables()
        out = {f"hs.{k}": v for k, v in export_hyper_synthesis(hs_state).items()}
        out.update(export_slice_context(context_state or {}))
        out["z_tables"] = np.stack([_frequencies(p) for p in np.asarray(z_pmf, dtype=np.float64) + 1e-12]).astype(np.uint16)
        out["y_tables"] = np.concatenate(ys).astype(np.uint16)
        out["y_offsets"] = np.cumsum([0] + [len(t) for t in ys]).astype(np.int64)
        return out

    def min_payload_bits(self, channels: int, h: int, w: int) -> float:
        """The fewest bits any payload of an h x w token grid can hold: every y token costs at least
        the cheapest symbol of the most peaked table, every z token its channel's cheapest symbol."""
        return channels * h * w * self._cheapest_y + (h // 4) * (w // 4) * self._cheapest_z

    def _model(self, kind: str, i: int) -> Any:
        key = (kind, i)
        if key not in self._models:
            freq = {"y": lambda: self.y_freq[i], "z": lambda: self.z_freq[i], "esc": escape_table,
                    "bits": lambda: np.ones(1 << i, dtype=np.int64)}[kind]()
            self._models[key] = categorical(freq)
        return self._models[key]

    def params(self, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(table index, mean's integer part) of every y token of images with z tokens (N, C, hz, wz)
        and y tokens (N, M, h, w): what the decoder derives slice by slice (half by half), all at once.
        Blocks are independent, so a blocked model takes BLOCKS_PER_CHUNK of them at a time: the float64
        activations of a whole large image would take gigabytes."""
        n, _, h, w = y.shape
        z, y = self._blocks(z, 4), self._blocks(y)
        step = BLOCKS_PER_CHUNK if self.block else len(z)
        parts = [self._params(z[i: i + step], y[i: i + step]) for i in range(0, len(z), step)] or [self._params(z, y)]
        tables, bases = zip(*parts)
        return self._unblocks(np.concatenate(tables), n, h, w), self._unblocks(np.concatenate(bases), n, h, w)

    def _params(self, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """params of grids (or blocks) z, y: each slice's fixed-point outputs become its table indices at
        once (int16, and int32 means: 6 bytes a token, not the 16 of the outputs)."""
        mean, log_scale = self.hs(z)
        width = self.context.width(mean.shape[1])
        tables, bases = [], []
        for s in range(self.context.slices):
            m, ls = self.context(s, mean, log_scale, y[:, : s * width] * ONE)
            if self.context.checkerboard:
                m, ls = self.context.spatial(s, m, ls, y[:, s * width: (s + 1) * width] * ONE)
            table, base = table_index(m, ls)
            tables.append(table.astype(np.int16))  # < SCALES * MEAN_STEPS
            bases.append(base.astype(np.int32))  # |mean| <= ACT_LIMIT / ONE
        return np.concatenate(tables, 1), np.concatenate(bases, 1)

    def _blocks(self, x: np.ndarray, per_position: int = 1) -> np.ndarray:
        """A grid (N, C, H, W) as the entropy model runs it: whole, or as blocks of self.block token
        positions (per_position: token positions per position of x, 4 for z)."""
        return to_blocks(x, self.block // per_position) if self.block else x

    def _unblocks(self, x: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
        return from_blocks(x, n, h, w) if self.block else x

    def _groups(self, width: int, h: int, w: int) -> list[np.ndarray]:
        """Positions (in one slice's flat (channel, row, column) order) of the groups coded one after
        another within a slice: the whole slice, or its checkerboard anchors and then the rest."""
        if not self.context.checkerboard:
            return [np.arange(width * h * w)]
        keep = np.broadcast_to(anchors(h, w), (width, h, w)).ravel()
        return [np.flatnonzero(keep), np.flatnonzero(~keep)]

    def _plan(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[Segment]]]:
        """The coding order of one group's tokens in each of n images, by table index t (n, P)
        (stable: raster order within a table), those tokens' tables in that order, and each image's
        segments: the tokens of one run of same-length tables, with their table rows for one coder
        call where those fit TABLE_ROWS. Planned for every image at once: the sort, and each run's
        row gather over all images, are one numpy call each (the coder calls stay per image)."""
        n, p = t.shape
        order = np.argsort(t, axis=1, kind="stable")
        ts = np.take_along_axis(t, order, 1)
        runs = self._run_of[ts].ravel()
        key = np.repeat(np.arange(n) * len(self._run_start), p) + runs  # ascends: image, then run
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if n * p else np.zeros(0, np.int64)
        lengths = np.diff(np.r_[starts, n * p])
        seg_run = runs[starts]
        rows: list[np.ndarray | None] = [None] * len(starts)
        by_run = np.argsort(seg_run, kind="stable")  # each run's segments, in image order
        cuts = np.flatnonzero(np.diff(seg_run[by_run])) + 1
        for segs in np.split(by_run, cuts) if len(by_run) > 1 else []:
            run, count = int(seg_run[segs[0]]), lengths[segs]
            table_rows = self._run_rows[run]
            if len(segs) == 1 or int(count.sum()) * table_rows.shape[1] > TABLE_ROWS:
                continue  # _rows per segment (as fast for one), or one call per table
            ends = np.cumsum(count)
            tokens = np.repeat(starts[segs] - (ends - count), count) + np.arange(ends[-1])
            gathered = table_rows[ts.ravel()[tokens] - self._run_start[run]]
            for k, end, size in zip(segs.tolist(), ends.tolist(), count.tolist()):
                rows[k] = gathered[end - size: end]
        segments: list[list[Segment]] = [[] for _ in range(n)]
        for start, size, run, r in zip(starts.tolist(), lengths.tolist(), seg_run.tolist(), rows):
            i, a = divmod(start, p)
            segments[i].append((a, a + size, run, r))
        return order, ts, segments

    def _rows(self, run: int, tables: np.ndarray) -> np.ndarray | None:
        """One table row per token for a single coder call, or None where that would take more than
        TABLE_ROWS floats (a long run of wide tables: then one call per table)."""
        rows = self._run_rows[run]
        return rows[tables - self._run_start[run]] if len(tables) * rows.shape[1] <= TABLE_ROWS else None

    def _z_rows_for(self, hz: int, wz: int) -> np.ndarray | None:
        rows = len(self.z_freq) * hz * wz
        return np.repeat(self._z_rows, hz * wz, axis=0) if rows * self._z_rows.shape[1] <= TABLE_ROWS else None

    def encode(self, y: np.ndarray, z: np.ndarray) -> list[tuple[bytes, float]]:
        """y (N, M, h, w) and z (N, C, h/4, w/4) integer tokens, z within +-Z_SUPPORT and
        |y| < TOKEN_LIMIT -> (payload, ideal bits) per image, with plain rounding (a mean-shifted coder
        takes the latents themselves: encode_latents).

        Order: z channel by channel, then slice by slice (the whole latent where the model has one
        slice; with a checkerboard, a slice's anchors and then its other half) y's tokens by table
        index and their escapes. A run of tokens whose tables have
        one length goes to the coder in one call with a table row per token, which codes exactly what
        one call per table does (the same models, in the same order), with far fewer calls for a
        small image."""
        if self.shifted:
            raise ValueError("a mean-shifted coder codes the latents themselves: encode_latents")
        table, base = self.params(z, y)
        n = len(y)
        # |y| < TOKEN_LIMIT: offsets as int32, a quarter of the memory of int64s
        return self._code(table.reshape(n, -1), (y - base).reshape(n, -1).astype(np.int32), z, y.shape[1:])

    def encode_latents(self, y: np.ndarray, z: np.ndarray, deadzone: float = 0.0) -> tuple[list[tuple[bytes, float]], np.ndarray]:
        """A mean-shifted coder's (with_mean_shift) encode: float latents y (N, M, h, w) and integer
        side tokens z -> (payload, ideal bits) per image, and the latents the decoder gives the
        synthesis (offset + mean, float64 multiples of 1/ONE). Each group's means come from the
        latents of the groups before, already rounded, as the decoder derives them. `deadzone` > 0
        rounds each offset d towards zero, sign(d) * floor(|d| + 1/2 - deadzone): cheaper tokens for a
        little distortion, the decoder unchanged."""
        if not self.shifted:
            raise ValueError("only a mean-shifted coder codes latents; round them and call encode")
        n, latent, h, w = y.shape
        fixed = np.zeros(y.shape, np.int64)
        table, offset = np.empty((n, latent * h * w), np.int16), np.empty((n, latent * h * w), np.int32)
        for part, positions, m, ls in self._walk(z, fixed):
            d = y[:, part].reshape(n, -1)[:, positions] - m / ONE
            r = np.round(d) if deadzone <= 0 else np.sign(d) * np.floor(np.abs(d) + 0.5 - deadzone)
            r = np.clip(r, 1 - TOKEN_LIMIT, TOKEN_LIMIT - 1)
            _fill(fixed, part, positions, r.astype(np.int64) * ONE + m)
            at = part.start * h * w + positions
            table[:, at], offset[:, at] = offset_table(ls), r
        return self._code(table, offset, z, y.shape[1:]), fixed / ONE

    def _walk(self, z: np.ndarray, fixed: np.ndarray) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray]]:
        """A latent's groups in coding order, each as (its slice's channels, its positions in the
        slice's flat (channel, row, column) order, its tokens' fixed-point means and log2 scales
        (N, positions)), from z and the fixed-point latents `fixed` (N, M, h, w): the caller fills a
        group's positions of `fixed` before it asks for the next group."""
        n, latent, h, w = fixed.shape
        mean, log_scale = self.hs(self._blocks(z, 4))  # per block where the model has blocks, as m and ls below
        width = self.context.width(latent)
        for sl in range(self.context.slices):  # a slice's tables need the latents of the slices before
            part = slice(sl * width, (sl + 1) * width)
            before = self._blocks(fixed[:, : sl * width]) if sl else fixed[:, :0]  # slice 0 reads none
            m, ls = self.context(sl, mean, log_scale, before)
            for g, positions in enumerate(self._groups(width, h, w)):
                if g:  # the checkerboard's second half: its tables need the anchors' latents
                    m, ls = self.context.spatial(sl, m, ls, self._blocks(fixed[:, part]))
                gm, gls = (self._unblocks(a, n, h, w).reshape(n, -1)[:, positions] for a in (m, ls))
                yield part, positions, gm, gls

    def _code(self, t: np.ndarray, s: np.ndarray, z: np.ndarray, shape: tuple[int, ...]) -> list[tuple[bytes, float]]:
        """Payloads (and ideal bits) of images whose y tokens, of latent shape `shape` (M, h, w), have
        table indices t and offsets s (both (N, M * h * w)), and whose side tokens are z."""
        n, c = len(z), len(self.z_freq)
        z_sym = (z.reshape(n, c, -1) + Z_SUPPORT).astype(np.int32)
        z_rows = self._z_rows_for(*z.shape[2:])
        bits = self._z_cost[np.arange(c)[:, None], z_sym].sum((1, 2))
        width = shape[0] // self.context.slices
        block = width * shape[1] * shape[2]
        groups = [sl * block + g for sl in range(self.context.slices) for g in self._groups(width, *shape[1:])]
        floor_bits = self.min_payload_bits(*shape) if self.fine else 0.0  # see with_fine_tables
        encoders = [TokenEncoder() for _ in range(n)]
        for i, enc in enumerate(encoders):
            if z_rows is not None:
                enc.encode_rows(z_sym[i].ravel(), z_rows)
            else:
                for ch in range(c):
                    enc.encode_with(z_sym[i, ch], self._model("z", ch))
        escape_bits = np.zeros(n)
        for part in groups:  # one group's order, symbols and escapes for every image at once, then its coding
            # symbols and ideal bits a group at a time: for the whole latent of a 24-megapixel photo at
            # stride 8, their int64 and float64 temporaries alone took over 1 GB. C order, so that each image's
            # bits are summed along its own row, as they are when it is coded alone
            tp = np.ascontiguousarray(t[:, part])
            half = self.half[tp]
            clipped = np.clip(s[:, part], -half, half) + half
            bits += self._y_cost[self._y_offsets[tp] + clipped].sum(1)
            order, ts, segments = self._plan(tp)
            sym = np.take_along_axis(clipped, order, 1).astype(np.int32)
            offset, hs = np.take_along_axis(s[:, part], order, 1), self.half[ts]
            excess, at_end = np.abs(offset) - hs, np.abs(offset) >= hs
            for i, enc in enumerate(encoders):
                self._encode_segments(enc, segments[i], ts[i], sym[i])
                if at_end[i].any():
                    escape_bits[i] += self._encode_escapes(enc, excess[i], at_end[i])
        return [(enc.finish(floor_bits), float(bits[i]) + float(escape_bits[i])) for i, enc in enumerate(encoders)]

    def _encode_segments(self, enc: TokenEncoder, segments: list[Segment], ts: np.ndarray, sym: np.ndarray) -> None:
        """One group's symbols of one image, in coding order (tables ts), segment by segment."""
        for a, b, run, rows in segments:
            if rows is None:
                rows = self._rows(run, ts[a:b])
            if rows is not None:
                enc.encode_rows(sym[a:b], rows)
                continue
            cuts = np.flatnonzero(np.diff(ts[a:b])) + 1 + a
            for u, v in zip(np.r_[a, cuts], np.r_[cuts, b]):
                enc.encode_with(sym[u:v], self._model("y", int(ts[u])))

    def _encode_escapes(self, enc: TokenEncoder, excess: np.ndarray, at_end: np.ndarray) -> float:
        """Exp-Golomb remainders of the tokens coded as a table's end symbol, in coding order."""
        bits = 0.0
        for e in excess[at_end]:
            n = int(e + 1).bit_length() - 1
            enc.encode_with(np.array([n], np.int32), self._model("esc", 0))
            bits += float(ESCAPE_COST[n]) + n
            rest = int(e + 1) - (1 << n)
            for shift in range(0, n, 8):
                width = min(8, n - shift)
                enc.encode_with(np.array([(rest >> shift) & ((1 << width) - 1)], np.int32), self._model("bits", width))
        return bits

    def decode(self, payloads: list[bytes], h: int, w: int, latent: int) -> tuple[np.ndarray, np.ndarray]:
        """y (N, latent, h, w) and z tokens (N, C, h/4, w/4) of same-size payloads (the order of encode):
        y the integer tokens, or for a mean-shifted coder the latents the synthesis sees (offset + mean,
        float64 multiples of 1/ONE)."""
        c, hz, wz = len(self.z_freq), h // 4, w // 4
        decoders = []
        z = np.empty((len(payloads), c, hz, wz), np.int64)
        z_rows = self._z_rows_for(hz, wz)
        for i, p in enumerate(payloads):
            d = TokenDecoder(p)
            if z_rows is not None:
                z[i] = d.decode_rows(z_rows).reshape(c, hz, wz) - Z_SUPPORT
            else:
                for ch in range(c):
                    z[i, ch] = d.decode_with(self._model("z", ch), hz * wz).reshape(hz, wz) - Z_SUPPORT
            decoders.append(d)
        n = len(payloads)
        fixed = np.zeros((n, latent, h, w), np.int64)  # the latents so far, fixed point
        for part, positions, m, ls in self._walk(z, fixed):
            if self.shifted:
                table, base = offset_table(ls), np.zeros_like(m)
            else:
                table, base = table_index(m, ls)
            order, ts, segments = self._plan(table)
            offsets = np.stack([self._decode_segments(d, segments[i], ts[i]) for i, d in enumerate(decoders)]) \
                if n else np.zeros((0, len(positions)), np.int64)
            if self.shifted and np.abs(offsets).max(initial=0) >= TOKEN_LIMIT:  # the encoder clips offsets
                raise FormatError("payload decodes to a token outside the model's range")
            np.put_along_axis(offsets, order, offsets.copy(), 1)  # coding order -> position order
            _fill(fixed, part, positions, offsets * ONE + m if self.shifted else (offsets + base) * ONE)
        if self.shifted:
            return fixed / ONE, z
        y = fixed >> FRACTION_BITS
        if np.abs(y).max(initial=0) >= TOKEN_LIMIT:
            raise FormatError("payload decodes to a token outside the model's range")
        return y, z

    def _decode_segments(self, d: TokenDecoder, segments: list[Segment], ts: np.ndarray) -> np.ndarray:
        """One group's offsets from their means' integer parts, in coding order (tables ts), as
        _encode_segments and _encode_escapes wrote them."""
        sym = np.empty(len(ts), np.int64)
        for a, b, run, rows in segments:
            if rows is None:
                rows = self._rows(run, ts[a:b])
            if rows is not None:
                sym[a:b] = d.decode_rows(rows)
                continue
            cuts = np.flatnonzero(np.diff(ts[a:b])) + 1 + a
            for u, v in zip(np.r_[a, cuts], np.r_[cuts, b]):
                sym[u:v] = d.decode_with(self._model("y", int(ts[u])), int(v - u))
        half = self.half[ts]
        s = sym - half
        for pos in np.flatnonzero(np.abs(s) >= half):
            n = int(d.decode_with(self._model("esc", 0), 1)[0])
            rest = 0
            for shift in range(0, n, 8):
                width = min(8, n - shift)
                rest |= int(d.decode_with(self._model("bits", width), 1)[0]) << shift
            s[pos] = np.sign(s[pos]) * (half[pos] + (1 << n) + rest - 1)
        return s
