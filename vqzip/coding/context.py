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
no transcendental function runs at coding time. Training (vqzip.training.context_net) uses the same
graph with fake quantization (straight-through rounding onto the grids above), so the float model it
optimizes and the integer model the coder runs match closely (tests/test_context.py holds their bits
within 2%): were the two to disagree (another rounding, scale or clamp), the prior would be trained
for tables the coder never builds.

This module needs numpy only, so files are coded and decoded without torch; any float32 BLAS
(numpy's matmul) gives exactly the same tables, for the reason above.

Positions of a level are visited in GROUPS (a 4x4-periodic multi-scale pattern): all positions of a
group are decoded at once, batched over images, and see every neighbour of earlier groups.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache, wraps
from typing import Any, TypeVar

import numpy as np

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
SMALL_GEMM = 1 << 18  # m * n * k of a matrix product OpenBLAS runs single-threaded (its GEMM_MULTITHREAD_THRESHOLD 4 x 65536)
PIECE = 256  # bags IntegerContext sums at once: their gathered rows (about 30 x PIECE x D int8, 0.5 MB) stay in cache
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
    flat: np.ndarray  # (n,) row-major position index
    neighbours: np.ndarray  # (n, 16) index into the level's grid padded by 2 on every side, flattened
    known: np.ndarray  # (n, 16) whether that neighbour is decoded before this position

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
    return Chunk(ii * w + jj, padded_cell(ni, nj, w), known)


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

    def join(blocks: list[Chunk], f: str) -> np.ndarray:
        return np.concatenate([getattr(b, f) for b in blocks])

    return tuple((Chunk(*(join(b, f) for f in ("flat", "neighbours", "known"))), tuple(map(len, b))) for b in spans)


def _pad(grid: np.ndarray, width: int, value: int) -> np.ndarray:
    """Grids (N, h, w) padded by `width` on every side with `value` ('unknown'), flattened (N, P)."""
    return np.pad(grid, ((0, 0), (width, width), (width, width)), constant_values=value).reshape(len(grid), -1)


def same_bags(tokens: np.ndarray, cfg: ContextConfig, level: int, chunk: Chunk) -> np.ndarray:
    """Embedding rows (N * len(chunk), 16), image-major, of the same-level neighbours of the chunk's
    positions as seen when each is decoded: 'unknown' unless the neighbour's group comes earlier.
    Tokens (N, L', h, w) need `level` filled in only where an earlier group is."""
    k = cfg.vocab
    t = np.where(chunk.known, _pad(tokens[:, level], 2, k)[:, chunk.neighbours], k)
    return (t + cfg.neighbour_rows("same")).reshape(-1, len(SAME_OFFSETS))


def level_bags(tokens: np.ndarray, cfg: ContextConfig, level: int) -> np.ndarray:
    """Embedding rows (N * h * w, 10) of everything a position of `level` sees that does not depend
    on its own level: the 3x3 neighbourhood one level coarser, and its (level, group) site row."""
    n, _, h, w = tokens.shape
    k, first = cfg.vocab, cfg.neighbour_rows("coarse").tolist()
    if level > 0:
        padded = np.pad(tokens[:, level - 1], ((0, 0), (1, 1), (1, 1)), constant_values=k)
        parts = [first[o] + padded[:, 1 + di: 1 + di + h, 1 + dj: 1 + dj + w] for o, (di, dj) in enumerate(COARSE_OFFSETS)]
    else:
        parts = [np.full((n, h, w), first[o] + k) for o in range(len(COARSE_OFFSETS))]
    site = cfg.rows["site"][0] + level * GROUPS + group_map(h, w)
    parts.append(np.broadcast_to(site, (n, h, w)))
    return np.stack(parts, -1).reshape(-1, len(COARSE_OFFSETS) + 1)


def column_rows(tokens: np.ndarray, cfg: ContextConfig, level: int) -> np.ndarray:
    """Embedding rows (N, h, w) of level `level`'s tokens in the column block: every finer level
    adds them, so the column features are a running sum over levels."""
    return cfg.rows["column"][0] + level * cfg.vocab + tokens[:, level]


@dataclass(frozen=True)
class BlockSource:
    """What the coder needs of a block of schedule(), without the Chunk's (n, 16) arrays. All its
    positions are of one group, so a same-level neighbour that none of them sees (of a later group)
    is 'unknown' for all: only the neighbours in `same` vary from position to position."""
    flat: np.ndarray  # (n,) row-major position index
    group: int
    same: np.ndarray  # (V,) the SAME_OFFSETS that some position of the block sees
    # (n, V + 9) int32: where in bag_source()'s row, cat(level padded by 2, coarser level padded by 1)
    # flattened, each position finds those V neighbours (a padding cell, which holds 'unknown', where it
    # does not see one) and then its 9 coarser neighbours
    index: np.ndarray

    def __len__(self) -> int:
        return self.flat.shape[0]


def block_source(block: Chunk, h: int, w: int) -> BlockSource:
    """The BlockSource of a block (positions of one group) of an h x w level."""
    ii, jj = block.flat // w, block.flat % w
    groups = np.unique(group_of(ii, jj))
    if len(groups) != 1:
        raise ValueError("a block holds the positions of one group")
    same = np.flatnonzero(block.known.any(0))
    coarse = np.stack([(ii + 1 + di) * (w + 2) + jj + 1 + dj for di, dj in COARSE_OFFSETS], 1)
    seen = np.where(block.known[:, same], block.neighbours[:, same], 0)
    return BlockSource(block.flat, int(groups[0]), same, np.concatenate([seen, (h + 4) * (w + 4) + coarse], 1).astype(np.int32))


@grid_cache
def block_sources(h: int, w: int) -> tuple[BlockSource, ...]:
    """The BlockSource of each block of schedule(h, w): all the decoder needs of a block."""
    return tuple(block_source(block, h, w) for block in schedule(h, w))


@grid_cache
def span_sources(h: int, w: int) -> tuple[tuple[np.ndarray, tuple[BlockSource, ...]], ...]:
    """(positions, its blocks' BlockSources) of each span of coding_spans(h, w): all the encoder
    needs of a span."""
    blocks = iter(block_sources(h, w))
    return tuple((span.flat, tuple(next(blocks) for _ in lengths)) for span, lengths in coding_spans(h, w))


def bag_source(tokens: np.ndarray, cfg: ContextConfig, level: int) -> np.ndarray:
    """(N, P) what known_bags gathers from: `level` padded by 2 and the coarser level padded by 1
    ('unknown' for level 0), flattened and joined."""
    n, _, h, w = tokens.shape
    coarse = tokens[:, level - 1] if level > 0 else np.full((n, h, w), cfg.vocab, tokens.dtype)
    return np.concatenate([_pad(tokens[:, level], 2, cfg.vocab), _pad(coarse, 1, cfg.vocab)], 1)


def known_bags(source: np.ndarray, cfg: ContextConfig, level: int, block: BlockSource) -> np.ndarray:
    """Embedding rows (N * n, V + 9; V at level 0) of the context a block's positions see of their
    own level and the one above where it varies from position to position, in one gather: with
    constant_bag()'s rows, each position's rows of same_bags and level_bags. `source` is
    bag_source() (for the decoder: with the tokens decoded so far written in)."""
    offsets = cfg.neighbour_rows("same")[block.same]
    index = block.index[:, : len(offsets)]
    if level > 0:  # level 0's coarser neighbours are all 'unknown': constant_bag() has them
        offsets, index = np.concatenate([offsets, cfg.neighbour_rows("coarse")]), block.index
    return (np.take(source, index, axis=1) + offsets).reshape(len(source) * len(block), len(offsets))


def constant_bag(cfg: ContextConfig, level: int, block: BlockSource) -> np.ndarray:
    """Embedding rows every position of the block sees alike: the 'unknown' row of each same-level
    neighbour none of them sees, the (level, group) site row, and at level 0 the 'unknown' coarser
    neighbours."""
    unseen = np.setdiff1d(np.arange(len(SAME_OFFSETS)), block.same)
    rows = [cfg.neighbour_rows("same")[unseen] + cfg.vocab, [cfg.rows["site"][0] + level * GROUPS + block.group]]
    if level == 0:
        rows.append(cfg.neighbour_rows("coarse") + cfg.vocab)
    return np.concatenate(rows)


class IntegerContext:
    """Exact evaluation of the integer model (see the module docstring for why float32 is exact)."""

    def __init__(self, cfg: ContextConfig, tensors: dict[str, np.ndarray]) -> None:
        self.cfg = cfg
        self._check(tensors)
        # the embedding table as int8 (a gathered row is one 64-byte cache line for D = 64), summed in
        # int16 when no bag can reach past it (half the memory traffic of int32)
        self.embed = np.asarray(tensors["embed"], dtype=np.int8)
        self.sum_dtype = np.int16 if cfg.bag_size * ACT_MAX <= np.iinfo(np.int16).max else np.int32
        # Weights (K x N, the layout matmul takes) and biases as float32, times their layer's power of
        # two 2^-shift: every sum is then the integer sum times 2^-shift, which is exact (an integer
        # below 2^24 times a power of two), so no pass over the outputs has to scale them.
        def scaled(name: str, shift: str) -> np.ndarray:
            scale = 2.0 ** -np.asarray(tensors[shift], dtype=np.float64)
            t = np.asarray(tensors[name], dtype=np.float64) * scale.reshape(-1, *[1] * (np.ndim(tensors[name]) - 1))
            return np.ascontiguousarray(np.swapaxes(t, -1, -2) if name[0] == "w" else t, dtype=np.float32)

        self.w1, self.b1 = scaled("w1", "shift1"), scaled("b1", "shift1")
        self.whi, self.bhi = scaled("whi", "shifthi"), scaled("bhi", "shifthi")
        self.wlo, self.blo = scaled("wlo", "shiftlo"), scaled("blo", "shiftlo")
        # LUT entries, and after them (index LUT_SIZE) the floor count 1 that codes past K get
        self.lut = np.append(np.asarray(tensors["lut"], dtype=np.float64), 1.0)

    def _check(self, tensors: dict[str, np.ndarray]) -> None:
        """Refuse tensors of the wrong shape, and weights or biases that are not integers or whose
        worst-case sums could leave the exactly representable range."""
        cfg, (hi, lo), lv, d = self.cfg, self.cfg.split, self.cfg.levels, self.cfg.dim
        shapes = {"embed": (sum(c for _, c in cfg.rows.values()), d), "w1": (lv, d, d), "b1": (lv, d),
                  "whi": (lv, hi, d), "bhi": (lv, hi), "wlo": (lv, hi, lo, d), "blo": (lv, hi, lo), "lut": (LUT_SIZE,)}
        for name, shape in shapes.items():
            if np.shape(tensors[name]) != shape:
                raise ValueError(f"context prior tensor {name} has shape {np.shape(tensors[name])}, not {shape}")
        if np.min(tensors["lut"]) < 1:
            raise ValueError("context prior LUT is malformed")
        worst = max(cfg.bag_size * ACT_MAX, d * ACT_MAX * ACT_MAX + BIAS_LIMIT)
        limits = dict.fromkeys(("embed", "w1", "whi", "wlo"), ACT_MAX) | dict.fromkeys(("b1", "bhi", "blo"), BIAS_LIMIT)
        values = {n: np.asarray(tensors[n]) for n in limits}
        inexact = any(np.abs(t).max() > limits[n] or not np.array_equal(t, np.round(t)) for n, t in values.items())
        if inexact or worst * 4 >= EXACT_LIMIT:
            raise ValueError("context prior exceeds the exact integer range of float32")

    def block_hidden(self, source: np.ndarray, tokens: np.ndarray, level: int, block: BlockSource) -> np.ndarray:
        """a1 (N, n, D) of the positions of a block of `level`, from the tokens decoded so far:
        `source` is bag_source() with the level's decoded tokens written in, and `tokens` (N, L, h, w)
        holds the coarser levels. Their column rows join the same embedding bag, so the decoder keeps
        no per-position state beyond the tokens (the encoder's known_gaps keeps a column sum instead)."""
        n = len(source)
        coarser = None
        if level:  # column_rows() of the coarser levels, at the block's positions only
            coarser = tokens.reshape(n, tokens.shape[1], -1)[:, :level, block.flat].transpose(0, 2, 1)
            coarser = coarser + self.cfg.rows["column"][0] + self.cfg.vocab * np.arange(level)
        return self._activate(self._block_sum(source, level, block, coarser), level)

    def known_gaps(self, tokens: np.ndarray,
                   levels: int) -> Iterator[tuple[int, tuple[int, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """(level, block lengths, hi, hi gaps, lo, lo gaps) of tokens (N, L, h, w) that are all known
        (encoding, measuring bits), span by span in coding order (coding_spans): the tables the
        decoder builds block by block, with fewer and larger steps. The coarser levels' column sum
        is kept in coding order, so a span reads a contiguous slice of it."""
        n, _, h, w = tokens.shape
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.cfg.vocab):
            raise ValueError(f"tokens outside the context prior's vocabulary 0..{self.cfg.vocab - 1}")
        spans = span_sources(h, w)
        order = np.concatenate([flat for flat, _ in spans])
        column = np.zeros((n, h * w, self.cfg.dim), self.sum_dtype)
        size = self.cfg.split[1]
        for level in range(levels):
            codes, source = tokens[:, level].reshape(n, -1), bag_source(tokens, self.cfg, level)
            start = 0
            for flat, blocks in spans:
                h0, columns = np.empty((n, len(flat), self.cfg.dim), self.sum_dtype), column[:, start: start + len(flat)]
                at = 0
                for block in blocks:
                    part = slice(at, at + len(block))
                    np.add(self._block_sum(source, level, block), columns[:, part], out=h0[:, part])
                    at = part.stop
                a1 = self._activate(h0, level)
                code = codes[:, flat]
                hi, lo = code // size, code % size
                yield level, tuple(map(len, blocks)), hi, self.hi_gaps(a1, level), lo, self.lo_gaps(a1, level, hi)
                start += len(flat)
            if level + 1 < levels:  # a block at a time: no second (N, h * w, D) array on large images
                rows = column_rows(tokens, self.cfg, level).reshape(n, -1)[:, order]
                for first in range(0, h * w, BLOCK):
                    column[:, first: first + BLOCK] += np.take(self.embed, rows[:, first: first + BLOCK], axis=0)

    def _block_sum(self, source: np.ndarray, level: int, block: BlockSource, extra: np.ndarray | None = None) -> np.ndarray:
        """h0 (N, n, D), as sum_dtype: the summed embedding rows of what the block's positions see, and
        of `extra` (N, n, E) rows more. Only the rows that vary are gathered per position: at level 0
        a CIFAR-10 grid's positions gather 5 rows on average, not 26."""
        bags = known_bags(source, self.cfg, level, block)
        if extra is not None:
            bags = np.concatenate([bags.reshape(*extra.shape[:2], bags.shape[1]), extra], 2).reshape(len(bags), -1)
        h0 = self._embedding_sum(bags).reshape(len(source), len(block), self.cfg.dim)
        h0 += self.embed[constant_bag(self.cfg, level, block)].sum(0, dtype=self.sum_dtype)
        return h0

    def _embedding_sum(self, bags: np.ndarray) -> np.ndarray:
        """(M, D), as sum_dtype: the sum of the embedding rows of each bag (M, B). PIECE bags at a
        time, slot by slot: the (B, PIECE, D) rows gathered stay in cache, and summing over the outer
        axis is B - 1 long vector additions (not M * B short ones)."""
        (m, b), d = bags.shape, self.cfg.dim
        out = np.empty((m, d), self.sum_dtype)
        buffer = np.empty(b * PIECE * d, np.int8)
        for start in range(0, m, PIECE):
            piece = bags[start: start + PIECE].T
            rows = buffer[: piece.size * d].reshape(*piece.shape, d)
            # every row is in range (known_gaps checks the tokens, the decoder refuses codes past K): "clip"
            # only spares the bounds check, and numpy buffers `out` under the default mode
            np.take(self.embed, piece, axis=0, out=rows, mode="clip")
            np.add.reduce(rows, axis=0, dtype=self.sum_dtype, out=out[start: start + PIECE])
        return out

    def _activate(self, h0: np.ndarray, level: int) -> np.ndarray:
        """a1 (..., D) of h0, the summed embeddings (..., D)."""
        a1 = _matmul(np.clip(h0, 0, ACT_MAX, out=np.empty(h0.shape, np.float32)), self.w1[level])
        a1 += self.b1[level]  # (W1 a0 + b1) / 2^s1, exactly
        a1 += np.float32(0.5)
        return np.clip(np.floor(a1, out=a1), 0, ACT_MAX, out=a1)

    def hi_tables(self, a1: np.ndarray, level: int) -> np.ndarray:
        """Tables (N, n, H) of the high part of each token, as float64 (the form the coder takes)."""
        return self.tables(self.hi_gaps(a1, level))

    def lo_tables(self, a1: np.ndarray, level: int, hi: np.ndarray) -> np.ndarray:
        """Tables (N, n, S) of the low part given the high part hi (N, n)."""
        return self.tables(self.lo_gaps(a1, level, hi))

    def tables(self, gaps: np.ndarray) -> np.ndarray:
        """Frequency tables (float64, integer valued) of LUT indices from hi_gaps() or lo_gaps(). The
        tables are a lookup of the indices, so indices can be stored (2 bytes an entry) and looked up
        later, all at once."""
        return np.take(self.lut, gaps)

    def hi_gaps(self, a1: np.ndarray, level: int) -> np.ndarray:
        """LUT indices (N, n, H), int16, of the high part of each token."""
        logits = _matmul(a1, self.whi[level])
        logits += self.bhi[level]
        return self._gaps(logits)

    def lo_gaps(self, a1: np.ndarray, level: int, hi: np.ndarray) -> np.ndarray:
        """LUT indices (N, n, S), int16, of the low part given the high part hi (N, n)."""
        (h, lo), d = self.cfg.split, self.cfg.dim
        flat = hi.reshape(-1)
        # rows sorted by high part (numpy's radix sort), one matmul per high part: each row meets only
        # its own S x D weights (computing all H x S logits and keeping S would cost H times the arithmetic)
        order = np.argsort(flat.astype(np.uint16), kind="stable")
        ends = np.bincount(flat, minlength=h).cumsum().tolist()
        sorted_rows, logits = np.take(a1.reshape(-1, d), order, axis=0), np.empty((len(flat), lo), np.float32)
        for part, (start, end) in enumerate(zip([0] + ends[:-1], ends)):
            if end > start:
                _matmul(sorted_rows[start:end], self.wlo[level, part], out=logits[start:end])
                logits[start:end] += self.blo[level, part]
        gaps = self._gaps(logits)  # row by row: the order of rows does not matter
        if h * lo > self.cfg.vocab:  # codes past K never occur; the decoder refuses them
            gaps[ends[-2] if h > 1 else 0:, self.cfg.vocab - (h - 1) * lo:] = LUT_SIZE  # the floor count 1
        out = np.empty_like(gaps)
        out[order] = gaps
        return out.reshape(*hi.shape, lo)

    @staticmethod
    def _gaps(logits: np.ndarray) -> np.ndarray:
        """LUT index of each logit (..., W), in LUT steps (its layer's scale applied), which it
        overwrites: its distance below the row's largest, rounded down."""
        gap = np.subtract(_row_max(logits), logits, out=logits)
        return np.minimum(np.floor(gap, out=gap), LUT_SIZE - 1, out=gap).astype(np.int16)


def _row_max(x: np.ndarray) -> np.ndarray:
    """max(x, -1) of rows (..., W) a few entries wide (16), keeping the axis: one elementwise maximum per
    column is four times faster than numpy's reduction over a short last axis (an inner loop per row)."""
    top = x[..., :1].copy()
    for column in range(1, x.shape[-1]):
        np.maximum(top, x[..., column: column + 1], out=top)
    return top


def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a (..., K) @ b (K, N), as calls of at most SMALL_GEMM // (K * N) rows of a: small enough that
    OpenBLAS (numpy's usual BLAS) runs each on the calling thread. At these sizes its threads cost
    more than they save, and where another process keeps the cores busy, each call waits for one:
    (16384 x 64) @ (64 x 64) took 4 to 8 ms in one call, 1 ms in calls of 64 rows."""
    rows = a.reshape(-1, a.shape[-1])
    result = np.empty((len(rows), b.shape[-1]), np.float32) if out is None else out  # out: (rows of a, N)
    step = max(1, SMALL_GEMM // b.size)
    for start in range(0, len(rows), step):
        np.matmul(rows[start: start + step], b, out=result[start: start + step])
    return result.reshape(*a.shape[:-1], -1)
