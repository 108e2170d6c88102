"""A learned context model over token grids whose integer tables are bit-exact on any machine.

p(token at level l, position (i, j) | tokens already decoded) comes from a small network:

    h0 = sum of int8 embedding rows for the context  (same-level neighbours decoded earlier, the 3x3
         neighbourhood one level coarser, every coarser level at the same position, level and group)
    a0 = clamp(h0, 0, 127)
    a1 = clamp(floor((W1[l] a0 + b1[l]) / 2^s1 + 1/2), 0, 127)          W1: int8
    token = hi * S + lo, S = 2^ceil(log2(K) / 2)  (16 x 16 for K = 256)
    p(hi)      from logits Whi[l] a1 + bhi[l]                           Whi, Wlo: int8
    p(lo | hi) from logits Wlo[l, hi] a1 + blo[l, hi]
    freq[k] = LUT[min(floor((max(logits) - logits[k]) / 2^s), len(LUT) - 1)]

Coding a token as two symbols of S-entry tables instead of one of K entries is the same distribution
family (any p(t) factors as p(hi) p(lo | hi)), but each token costs 2 S table entries to build, not K:
the tables, not the network, dominate the coder's time.

Every value is an integer below 2^24 in magnitude, so evaluating it with float32 arithmetic is exact
whatever the summation order, blocking, FMA use, thread count or batch size (all partial sums are
representable integers). The LUT (exp as integers, all entries >= 1) is stored, never recomputed, so
no transcendental function runs at coding time. Training uses the same graph with fake quantization
(straight-through rounding), so the float model and the integer model match closely.

Positions of a level are visited in GROUPS (a 4x4-periodic multi-scale pattern): all positions of a
group are decoded at once, batched over images, and see every neighbour of earlier groups.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache, wraps
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACT_SCALE = 32  # activations and embeddings are fixed point with 5 fraction bits: int8 = [-3.97, 3.97]
ACT_MAX = 127
LUT_STEP = 32  # the LUT resolves logit differences in 1/32 nat
LUT_SIZE = 32 * 14  # exp(-14) * 2^16 < 1: beyond this every symbol gets the floor count 1
LUT_ONE = 1 << 16
EXACT_LIMIT = 1 << 24  # float32 represents every integer below this exactly
BIAS_LIMIT = 1 << 20
# the widest network whose worst-case sums (d products of int8 values, plus a bias) stay exact with
# the margin IntegerContext._check asks for
MAX_DIM = (EXACT_LIMIT // 4 - 1 - BIAS_LIMIT) // (ACT_MAX * ACT_MAX)


def group_map(h: int, w: int) -> np.ndarray:
    """Decoding group of each position: a 4x4-periodic multi-scale pattern of 6 groups. Group 0 (1 in
    16 positions) is coded first with no same-level context; later groups see all earlier ones."""
    return group_of(*np.meshgrid(np.arange(h), np.arange(w), indexing="ij"))


def group_of(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """group_map's group of each position (i, j)."""
    g = np.full(np.shape(i), 5)
    g[(i % 2 == 0) & (j % 2 == 1)] = 4
    g[(i % 2 == 1) & (j % 2 == 1)] = 3
    g[((i % 4 == 0) & (j % 4 == 2)) | ((i % 4 == 2) & (j % 4 == 0))] = 2
    g[(i % 4 == 2) & (j % 4 == 2)] = 1
    g[(i % 4 == 0) & (j % 4 == 0)] = 0
    return g


GROUPS = 6
CACHED_POSITIONS = 1 << 16  # grids up to this size keep their coding order and context indices (grid_cache)
BLOCK = 4096  # positions per coding block (see schedule)
# Same-level neighbours a position may see (if their group comes first): the 3x3 ring, and the
# distance-2 points that groups 1 and 2 of the pattern rely on.
SAME_OFFSETS = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)] + \
    [(-2, -2), (-2, 2), (2, -2), (2, 2), (-2, 0), (2, 0), (0, -2), (0, 2)]
COARSE_OFFSETS = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]  # the level above: all decoded


@dataclass(frozen=True)
class ContextConfig:
    levels: int
    vocab: int
    dim: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.dim <= MAX_DIM:
            raise ValueError(f"context prior width {self.dim} outside 1..{MAX_DIM} (wider sums would not be exact)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContextConfig:
        return cls(**{k: int(v) for k, v in d.items()})

    @property
    def split(self) -> tuple[int, int]:
        """(H, S): a token is hi * S + lo with hi < H, lo < S."""
        size = 1 << ((max(self.vocab, 2) - 1).bit_length() + 1) // 2
        return -(-self.vocab // size), size

    @property
    def rows(self) -> dict[str, tuple[int, int]]:
        """Start row and row count of each block of the embedding table (K = vocab; the extra row per
        neighbour block means 'unknown': outside the image, or not decoded yet)."""
        k, blocks, start = self.vocab, {}, 0
        for name, count in (("same", len(SAME_OFFSETS) * (k + 1)), ("coarse", len(COARSE_OFFSETS) * (k + 1)),
                            ("column", self.levels * k), ("site", self.levels * GROUPS)):
            blocks[name], start = (start, count), start + count
        return blocks

    def neighbour_rows(self, block: str) -> np.ndarray:
        """First embedding row of each neighbour's sub-table in block "same" or "coarse" (K + 1 rows
        each, the last meaning 'unknown')."""
        count = len(SAME_OFFSETS) if block == "same" else len(COARSE_OFFSETS)
        return self.rows[block][0] + np.arange(count) * (self.vocab + 1)

    @property
    def bag_size(self) -> int:
        return len(SAME_OFFSETS) + len(COARSE_OFFSETS) + self.levels + 1


@dataclass(frozen=True)
class Chunk:
    """Positions of one level evaluated together, with what their same-level context needs."""
    flat: Tensor  # (n,) row-major position index
    neighbours: Tensor  # (n, 16) index into the level's grid padded by 2 on every side, flattened
    known: Tensor  # (n, 16) whether that neighbour is decoded before this position

    def __len__(self) -> int:
        return self.flat.shape[0]


def padded_cell(i: np.ndarray, j: np.ndarray, w: int) -> np.ndarray:
    """Index of position (i, j) of a level of width w once padded by 2 on every side and flattened:
    where same-level neighbours are read, and where the decoder writes each decoded token."""
    return (i + 2) * (w + 4) + j + 2


def make_chunk(h: int, w: int, ii: np.ndarray, jj: np.ndarray) -> Chunk:
    """The chunk of positions (ii, jj) of an h x w level: each neighbour is known when it lies inside
    the level and its group (group_of) is decoded first."""
    di, dj = (np.array(v)[None] for v in zip(*SAME_OFFSETS))
    ni, nj = ii[:, None] + di, jj[:, None] + dj
    inside = (ni >= 0) & (ni < h) & (nj >= 0) & (nj < w)  # outside the image: never known
    known = inside & (group_of(ni, nj) < group_of(ii, jj)[:, None])
    return Chunk(torch.from_numpy(ii * w + jj), torch.from_numpy(padded_cell(ni, nj, w)), torch.from_numpy(known))


T = TypeVar("T")


def grid_cache(fn: Callable[[int, int], T]) -> Callable[[int, int], T]:
    """lru_cache for functions of a grid size, holding grids up to CACHED_POSITIONS positions (those
    met again and again: CIFAR-10, a batch's tiles); a larger grid's index arrays (hundreds of MB
    for a 24-megapixel photo) are rebuilt per call rather than kept for the life of the process."""
    cached = lru_cache(maxsize=64)(fn)

    @wraps(fn)
    def lookup(h: int, w: int) -> T:
        return cached(h, w) if h * w <= CACHED_POSITIONS else fn(h, w)
    lookup.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return lookup


@grid_cache
def raster_chunk(h: int, w: int) -> Chunk:
    """Every position of a level in raster order, each with the context it has when decoded: what
    training and whole-level evaluation use."""
    return make_chunk(h, w, *np.divmod(np.arange(h * w), w))


@grid_cache
def schedule(h: int, w: int) -> tuple[Chunk, ...]:
    """The blocks of a level in coding order: group by group, raster order within a group, at most
    BLOCK positions per block. Part of the format: a block's high parts are coded before its low
    parts, so the decoder must cut blocks exactly here."""
    groups = group_map(h, w).ravel()
    chunks = []
    for g in range(GROUPS):
        flat = np.flatnonzero(groups == g)
        chunks += [make_chunk(h, w, part // w, part % w) for part in np.split(flat, range(BLOCK, len(flat), BLOCK)) if len(part)]
    return tuple(chunks)


@grid_cache
def coding_spans(h: int, w: int) -> tuple[tuple[Chunk, tuple[int, ...]], ...]:
    """The blocks of schedule() joined into spans of at most BLOCK positions, in coding order, each
    with the lengths of its blocks. When all tokens are known (encoding), a span's tables are
    computed in one pass: the same tables the decoder builds block by block, in fewer, larger steps
    (a CIFAR-10 level is one span instead of six blocks)."""
    spans: list[list[Chunk]] = []
    current: list[Chunk] = []
    for block in schedule(h, w):
        if current and sum(map(len, current)) + len(block) > BLOCK:
            spans.append(current)
            current = []
        current.append(block)
    spans.append(current)

    def join(blocks: list[Chunk], f: str) -> Tensor:
        return torch.cat([getattr(b, f) for b in blocks])

    return tuple((Chunk(*(join(b, f) for f in ("flat", "neighbours", "known"))), tuple(map(len, b))) for b in spans)


def same_bags(tokens: Tensor, cfg: ContextConfig, level: int, chunk: Chunk) -> Tensor:
    """Embedding rows (N * len(chunk), 16), image-major, of the same-level neighbours of the chunk's
    positions as seen when each is decoded: 'unknown' unless the neighbour's group comes earlier.
    Tokens (N, L', h, w) need `level` filled in only where an earlier group is."""
    k = cfg.vocab
    padded = F.pad(tokens[:, level], (2, 2, 2, 2), value=k).flatten(1)
    t = torch.where(chunk.known, padded[:, chunk.neighbours], k)
    return (t + torch.from_numpy(cfg.neighbour_rows("same")).to(t.device)).reshape(-1, len(SAME_OFFSETS))


def level_bags(tokens: Tensor, cfg: ContextConfig, level: int) -> Tensor:
    """Embedding rows (N * h * w, 10) of everything a position of `level` sees that does not depend
    on its own level: the 3x3 neighbourhood one level coarser, and its (level, group) site row."""
    n, _, h, w = tokens.shape
    k, first = cfg.vocab, cfg.neighbour_rows("coarse").tolist()
    if level > 0:
        padded = F.pad(tokens[:, level - 1], (1, 1, 1, 1), value=k)
        parts = [first[o] + padded[:, 1 + di: 1 + di + h, 1 + dj: 1 + dj + w] for o, (di, dj) in enumerate(COARSE_OFFSETS)]
    else:
        parts = [torch.full((n, h, w), first[o] + k) for o in range(len(COARSE_OFFSETS))]
    site = cfg.rows["site"][0] + level * GROUPS + torch.from_numpy(group_map(h, w))
    parts.append(site.expand(n, h, w))
    return torch.stack(parts, -1).reshape(-1, len(COARSE_OFFSETS) + 1)


def column_rows(tokens: Tensor, cfg: ContextConfig, level: int) -> Tensor:
    """Embedding rows (N, h, w) of level `level`'s tokens in the column block: every finer level
    adds them, so the column features are a running sum over levels."""
    return cfg.rows["column"][0] + level * cfg.vocab + tokens[:, level]


def chunk_sources(chunk: Chunk, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each of the chunk's positions finds its 16 same-level and 9 coarser-level context tokens
    in bag_source()'s row, cat(level padded by 2, coarser level padded by 1) flattened (a neighbour
    not decoded yet points at a padding cell, which holds 'unknown'), as int32 (n, 25); and each
    position's group."""
    flat = chunk.flat.numpy()
    ii, jj = flat // w, flat % w
    coarse = np.stack([(ii + 1 + di) * (w + 2) + jj + 1 + dj for di, dj in COARSE_OFFSETS], 1)
    same = np.where(chunk.known.numpy(), chunk.neighbours.numpy(), 0)
    return np.concatenate([same, (h + 4) * (w + 4) + coarse], 1).astype(np.int32), group_of(ii, jj)


@grid_cache
def span_sources(h: int, w: int) -> tuple[tuple[Tensor, tuple[int, ...], np.ndarray, np.ndarray], ...]:
    """(positions, block lengths, *chunk_sources()) of each span of coding_spans(h, w): all the
    encoder needs of a span, without the Chunk's (n, 16) neighbour arrays."""
    return tuple((span.flat, blocks, *chunk_sources(span, h, w)) for span, blocks in coding_spans(h, w))


@grid_cache
def block_sources(h: int, w: int) -> tuple[tuple[Tensor, np.ndarray, np.ndarray], ...]:
    """(positions, *chunk_sources()) of each block of schedule(h, w): all the decoder needs of a
    block, without the Chunk's (n, 16) neighbour arrays."""
    return tuple((block.flat, *chunk_sources(block, h, w)) for block in schedule(h, w))


def bag_source(tokens: Tensor, cfg: ContextConfig, level: int) -> np.ndarray:
    """(N, P) what known_bags gathers from: `level` padded by 2 and the coarser level padded by 1
    ('unknown' for level 0), flattened and joined."""
    n, _, h, w = tokens.shape
    coarse = tokens[:, level - 1] if level > 0 else torch.full((n, h, w), cfg.vocab)
    return torch.cat([F.pad(tokens[:, level], (2, 2, 2, 2), value=cfg.vocab).flatten(1),
                      F.pad(coarse, (1, 1, 1, 1), value=cfg.vocab).flatten(1)], 1).numpy()


def known_bags(source: np.ndarray, cfg: ContextConfig, level: int, index: np.ndarray, groups: np.ndarray) -> Tensor:
    """Embedding rows (N * n, 26) of everything a chunk's positions see of their own level and the
    one above: what same_bags and level_bags give, in one gather. `source` is bag_source() (for the
    decoder: with the tokens decoded so far written in), `index` and `groups` the chunk's
    chunk_sources()."""
    offsets = np.concatenate([cfg.neighbour_rows("same"), cfg.neighbour_rows("coarse")])
    bags = np.empty((len(source), len(groups), index.shape[1] + 1), np.int64)
    np.add(np.take(source, index, axis=1), offsets, out=bags[..., :-1])  # numpy's take: twice torch's speed here
    bags[..., -1] = cfg.rows["site"][0] + level * GROUPS + groups
    return torch.from_numpy(bags.reshape(-1, bags.shape[-1]))


def _fake_quant(x: Tensor, scale: float, limit: int = ACT_MAX) -> Tensor:
    """Round to the fixed-point grid in the forward pass, identity in the backward pass."""
    q = torch.clamp(torch.round(x * scale), -limit, limit) / scale
    return x + (q - x).detach()


def _pow2_scale(w: Tensor) -> float:
    """Largest power of two s with max|w| * s <= 127, so int8 weights lose the least precision
    (below 1 for weights larger than 127)."""
    return float(2.0 ** np.floor(np.log2(ACT_MAX / max(float(w.detach().abs().max()), 1e-8))))


class ContextNet(nn.Module):
    """The trainable (float, fake-quantized) form of the context model."""

    lo_mask: Tensor  # a buffer: -inf where a low part names no code
    train_seconds: float  # set by prior_training.train_context

    def __init__(self, cfg: ContextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        (hi, lo), lv, d = cfg.split, cfg.levels, cfg.dim
        rows = sum(c for _, c in cfg.rows.values())
        self.embed = nn.Parameter(torch.randn(rows, d) * 0.1)
        self.w1 = nn.Parameter(torch.randn(lv, d, d) / d ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(lv, d))
        self.whi = nn.Parameter(torch.randn(lv, hi, d) / d ** 0.5)
        self.bhi = nn.Parameter(torch.zeros(lv, hi))
        self.wlo = nn.Parameter(torch.randn(lv, hi, lo, d) / d ** 0.5)
        self.blo = nn.Parameter(torch.zeros(lv, hi, lo))
        valid = torch.arange(hi * lo).view(hi, lo) < cfg.vocab
        self.register_buffer("lo_mask", torch.where(valid, 0.0, -torch.inf), persistent=False)

    def hidden(self, tokens: Tensor, level: int) -> Tensor:
        """a1 (N * h * w, D) of every position of `level`, teacher-forced, on the fixed-point grid."""
        h, w = tokens.shape[-2:]
        every = _to(raster_chunk(h, w), tokens.device)
        columns = [column_rows(tokens, self.cfg, lv).reshape(-1, 1) for lv in range(level)]
        bags = torch.cat([same_bags(tokens, self.cfg, level, every),
                          level_bags(tokens, self.cfg, level), *columns], 1)
        a0 = torch.clamp(F.embedding_bag(bags, _fake_quant(self.embed, ACT_SCALE), mode="sum"), 0, ACT_MAX / ACT_SCALE)
        w1, b1 = _fake_layer(self.w1[level], self.b1[level])
        return _fake_quant(torch.clamp(a0 @ w1.t() + b1, 0, ACT_MAX / ACT_SCALE), ACT_SCALE)

    def log_probs(self, tokens: Tensor, level: int) -> Tensor:
        """Natural log p(token) (N * h * w) of every token of `level`, teacher-forced."""
        a1 = self.hidden(tokens, level)
        t = tokens[:, level].reshape(-1)
        hi, lo = t // self.cfg.split[1], t % self.cfg.split[1]
        whi, bhi = _fake_layer(self.whi[level], self.bhi[level])
        wlo, blo = _fake_layer(self.wlo[level], self.blo[level])
        lp_hi = F.log_softmax(a1 @ whi.t() + bhi, -1).gather(1, hi[:, None])[:, 0]
        every = (a1 @ wlo.flatten(0, 1).t()).view(len(t), *self.cfg.split)  # BLAS beats gathering W per token
        lo_logits = every.gather(1, hi[:, None, None].expand(-1, 1, every.shape[-1]))[:, 0] + blo[hi] + self.lo_mask[hi]
        return lp_hi + F.log_softmax(lo_logits, -1).gather(1, lo[:, None])[:, 0]

    def loss_bits(self, tokens: Tensor, levels: int | None = None) -> Tensor:
        """Mean cross-entropy in bits per token over the first `levels` levels."""
        levels = levels or self.cfg.levels
        total = sum(-self.log_probs(tokens, lv).sum() for lv in range(levels))
        return total / (tokens[:, :levels].numel() * np.log(2))

    def to_integer(self) -> dict[str, np.ndarray]:
        """The integer model: the tensors the coder uses, with their power-of-two scales."""
        out: dict[str, np.ndarray] = {}
        with torch.no_grad():
            out["embed"] = torch.clamp(torch.round(self.embed * ACT_SCALE), -ACT_MAX, ACT_MAX).to(torch.int8).cpu().numpy()
            for name in ("1", "hi", "lo"):
                w, b = getattr(self, "w" + name), getattr(self, "b" + name)
                scales = [_pow2_scale(w[lv]) for lv in range(self.cfg.levels)]
                out["w" + name] = np.stack([torch.clamp(torch.round(w[lv] * s), -ACT_MAX, ACT_MAX).cpu().numpy()
                                            for lv, s in enumerate(scales)]).astype(np.int8)
                out["b" + name] = np.stack([torch.round(b[lv] * s * ACT_SCALE).clamp(-BIAS_LIMIT, BIAS_LIMIT).cpu().numpy()
                                            for lv, s in enumerate(scales)]).astype(np.int32)
                out["shift" + name] = np.array([round(np.log2(s)) for s in scales], dtype=np.int32)
        steps = np.arange(LUT_SIZE, dtype=np.float64) / LUT_STEP
        out["lut"] = np.maximum(1, np.round(LUT_ONE * np.exp(-steps))).astype(np.int32)
        return out


def _to(chunk: Chunk, device: torch.device) -> Chunk:
    return Chunk(chunk.flat.to(device), chunk.neighbours.to(device), chunk.known.to(device))


def _fake_layer(w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """int8 weights and int bias, on the grid the integer model uses (scale: a power of two)."""
    s = _pow2_scale(w)
    return _fake_quant(w, s), _fake_quant(b, s * ACT_SCALE, BIAS_LIMIT)


class IntegerContext:
    """Exact evaluation of the integer model (see the module docstring for why float32 is exact)."""

    def __init__(self, cfg: ContextConfig, tensors: dict[str, np.ndarray]) -> None:
        self.cfg = cfg
        f32 = lambda name: torch.from_numpy(np.asarray(tensors[name], dtype=np.float32))  # noqa: E731
        self.embed = f32("embed")
        self.w1, self.b1, self.whi, self.bhi, self.wlo, self.blo = (f32(n) for n in ("w1", "b1", "whi", "bhi", "wlo", "blo"))
        # powers of two: multiplying by them is exact
        self.inv = {n: [2.0 ** -int(s) for s in tensors["shift" + n]] for n in ("1", "hi", "lo")}
        self._check_lut(tensors["lut"])
        # LUT entries, and after them (index LUT_SIZE) the floor count 1 that codes past K get
        self.lut = np.append(np.asarray(tensors["lut"], dtype=np.float64), 1.0)
        self._check()

    @staticmethod
    def _check_lut(lut: np.ndarray) -> None:
        if np.shape(lut) != (LUT_SIZE,) or np.min(lut) < 1:
            raise ValueError("context prior LUT is malformed")

    def _check(self) -> None:
        """Refuse tensors of the wrong shape, and weights whose worst-case sums could leave the
        exactly representable range."""
        cfg, (hi, lo), lv, d = self.cfg, self.cfg.split, self.cfg.levels, self.cfg.dim
        shapes = {"embed": (sum(c for _, c in cfg.rows.values()), d), "w1": (lv, d, d), "b1": (lv, d),
                  "whi": (lv, hi, d), "bhi": (lv, hi), "wlo": (lv, hi, lo, d), "blo": (lv, hi, lo)}
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"context prior tensor {name} has shape {tuple(getattr(self, name).shape)}, not {shape}")
        worst = max(cfg.bag_size * ACT_MAX, d * ACT_MAX * ACT_MAX + BIAS_LIMIT)
        if any(float(t.abs().max()) > ACT_MAX for t in (self.embed, self.w1, self.whi, self.wlo)) or worst * 4 >= EXACT_LIMIT:
            raise ValueError("context prior exceeds the exact integer range of float32")

    def block_hidden(self, source: np.ndarray, tokens: Tensor, level: int, flat: Tensor,
                     index: np.ndarray, groups: np.ndarray) -> Tensor:
        """a1 (N, n, D) of the positions `flat` of `level` (a block of schedule(), or any chunk), from
        the tokens decoded so far: `source` is bag_source() with the level's decoded tokens written
        in, (index, groups) the chunk's chunk_sources(), and `tokens` (N, L, h, w) holds the coarser
        levels. The coarser levels' column rows join the same embedding bag, so the decoder keeps no
        per-position state beyond the tokens (the encoder's known_gaps keeps a column sum instead)."""
        n = len(source)
        bags = known_bags(source, self.cfg, level, index, groups).view(n, len(flat), -1)
        if level:
            coarser = [column_rows(tokens, self.cfg, lv).flatten(1)[:, flat] for lv in range(level)]
            bags = torch.cat([bags, torch.stack(coarser, 2)], 2)
        h0 = F.embedding_bag(bags.reshape(n * len(flat), -1), self.embed, mode="sum")
        return self._activate(h0.view(n, len(flat), -1), level)

    def known_gaps(self, tokens: Tensor,
                   levels: int) -> Iterator[tuple[int, tuple[int, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """(level, block lengths, hi, hi gaps, lo, lo gaps) of tokens (N, L, h, w) that are all known
        (encoding, measuring bits), span by span in coding order (coding_spans): the tables the
        decoder builds block by block, with fewer and larger steps. A span's context is gathered
        into one embedding bag, and the coarser levels' column sum is kept in coding order, so a
        span reads a contiguous slice of it."""
        n, _, h, w = tokens.shape
        spans = span_sources(h, w)
        order = torch.cat([flat for flat, *_ in spans])
        column = torch.zeros(n, h * w, self.cfg.dim)
        size = self.cfg.split[1]
        for level in range(levels):
            codes, source = tokens[:, level].flatten(1), bag_source(tokens, self.cfg, level)
            start = 0
            for flat, blocks, index, groups in spans:
                bags = known_bags(source, self.cfg, level, index, groups)
                h0 = F.embedding_bag(bags, self.embed, mode="sum").view(n, len(flat), -1)
                a1 = self._activate(h0.add_(column[:, start: start + len(flat)]), level)
                code = codes[:, flat].numpy()
                hi, lo = code // size, code % size
                yield level, blocks, hi, self.hi_gaps(a1, level), lo, self.lo_gaps(a1, level, hi)
                start += len(flat)
            if level + 1 < levels:  # a block at a time: no second (N, h * w, D) array on large images
                rows = column_rows(tokens, self.cfg, level).flatten(1)[:, order]
                for first in range(0, h * w, BLOCK):
                    column[:, first: first + BLOCK].add_(F.embedding(rows[:, first: first + BLOCK], self.embed))

    def _activate(self, h0: Tensor, level: int) -> Tensor:
        """a1 of h0, the summed embeddings (N, n, D), which it overwrites."""
        with _ieee_float32():
            a1 = torch.matmul(h0.clamp_(0, ACT_MAX), self.w1[level].t()).add_(self.b1[level])
            return a1.mul_(self.inv["1"][level]).add_(0.5).floor_().clamp_(0, ACT_MAX)

    def hi_tables(self, a1: Tensor, level: int) -> np.ndarray:
        """Tables (N, n, H) of the high part of each token, as float64 (the form the coder takes)."""
        return self.tables(self.hi_gaps(a1, level))

    def lo_tables(self, a1: Tensor, level: int, hi: np.ndarray) -> np.ndarray:
        """Tables (N, n, S) of the low part given the high part hi (N, n)."""
        return self.tables(self.lo_gaps(a1, level, hi))

    def tables(self, gaps: np.ndarray) -> np.ndarray:
        """Frequency tables (float64, integer valued) of LUT indices from hi_gaps() or lo_gaps(). The
        tables are a lookup of the indices, so indices can be stored (2 bytes an entry) and looked up
        later, all at once."""
        return np.take(self.lut, gaps)

    def hi_gaps(self, a1: Tensor, level: int) -> np.ndarray:
        """LUT indices (N, n, H), int16, of the high part of each token."""
        with _ieee_float32():
            return self._gaps(torch.matmul(a1, self.whi[level].t()).add_(self.bhi[level]), self.inv["hi"][level])

    def lo_gaps(self, a1: Tensor, level: int, hi: np.ndarray) -> np.ndarray:
        """LUT indices (N, n, S), int16, of the low part given the high part hi (N, n)."""
        (h, lo), d = self.cfg.split, self.cfg.dim
        rows, flat = a1.reshape(-1, d), hi.reshape(-1)
        # rows sorted by high part (numpy's radix sort), one matmul per high part: each row meets only
        # its own S x D weights (computing all H x S logits and keeping S would cost H times the arithmetic)
        order = torch.from_numpy(np.argsort(flat.astype(np.uint16), kind="stable"))
        ends = np.bincount(flat, minlength=h).cumsum().tolist()
        sorted_rows, logits = torch.index_select(rows, 0, order), torch.empty(len(flat), lo)
        with _ieee_float32():
            for part, (start, end) in enumerate(zip([0] + ends[:-1], ends)):
                if end > start:
                    torch.addmm(self.blo[level, part], sorted_rows[start:end], self.wlo[level, part].t(), out=logits[start:end])
        logits = torch.empty_like(logits).index_copy_(0, order, logits)
        gaps = self._gaps(logits, self.inv["lo"][level]).reshape(*hi.shape, lo)
        if h * lo > self.cfg.vocab:  # codes past K never occur; the decoder refuses them
            gaps[hi[..., None] * lo + np.arange(lo) >= self.cfg.vocab] = LUT_SIZE  # the floor count 1
        return gaps

    @staticmethod
    def _gaps(logits: Tensor, inv: float) -> np.ndarray:
        """LUT index of each logit: its distance below the row's largest, in LUT steps."""
        gap = logits.sub_(logits.amax(-1, keepdim=True)).mul_(-inv).floor_().clamp_(max=LUT_SIZE - 1)
        return gap.to(torch.int16).numpy()


class _ieee_float32:
    """Run with IEEE float32 matmuls: PyTorch can be told (globally, by the caller) to use bf16 or TF32
    internally, which would break exactness."""

    def __enter__(self) -> None:
        self._saved = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc: object) -> None:
        torch.set_float32_matmul_precision(self._saved)
