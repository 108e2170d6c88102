"""Token priors: integer frequency tables the range coder uses, identical in encoder and decoder.

- StaticPrior: one table per token level, counted on the training set's tokens (format version 1).
- ContextPrior: a table per token from the integer context model in context.py (format version 2).

Both code a batch of same-size images, each into its own payload, level by level (level 0 first), so
a file of quality q holds levels 0..q-1. Every table entry is at least 1: any token stays codable.

Each also bounds what its payloads can hold (min_payload_bits, the `PayloadCoder` protocol below), so
the decoder refuses a header that claims more tokens than the payload can code before it allocates
anything for them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from ..errors import FormatError
from .entropy import TokenDecoder, TokenEncoder, ideal_bits, max_probability, min_bits

PREFIX = "prior.static."  # tensor names inside the model's safetensors file
CONTEXT_PREFIX = "prior.context."  # tensor names inside the model's companion .prior.safetensors file
MAX_ROWS = 1 << 14  # token tables computed at once (float32 logits, x K x 4 bytes): bounds memory on large images
PENDING_ENTRIES = 1 << 22  # table entries (x 2 bytes, 8 MB) held back so the coder is called once per image for many levels
TABLE_ENTRIES = 1 << 17  # table entries (x 8 bytes, 1 MB) looked up at once: the coder reads them from cache


class PayloadCoder(Protocol):
    """What vqzip.api asks of the coder of a format version's payloads (StaticPrior: version 1,
    ContextPrior: version 2). `levels, h, w` are decode()'s shape arguments: the token grid a header
    claims.

    min_payload_bits(levels, h, w) is a lower bound on the bits any payload coding such a grid costs
    (the sum over its tokens of the fewest bits each can cost under the coder's tables). The decoder
    refuses a payload shorter than entropy.payload_floor(bound) before it allocates anything for the
    grid, and encode() must never write a shorter one (TokenEncoder.finish(bound) pads), so the bound
    caps how much any payload can make the decoder do."""

    def encode(self, tokens: np.ndarray) -> list[tuple[bytes, float]]: ...

    def decode(self, payloads: list[bytes], levels: int, h: int, w: int) -> np.ndarray: ...

    def min_payload_bits(self, levels: int, h: int, w: int) -> float: ...


@dataclass
class StaticPrior:
    frequencies: list[np.ndarray]  # one int64 table per level, all entries >= 1

    @classmethod
    def fit(cls, tokens: np.ndarray, vocab_sizes: list[int]) -> StaticPrior:
        """Histogram of tokens (N, L, h, w) per level, plus one (Laplace) so nothing has probability 0."""
        return cls([np.bincount(tokens[:, lvl].ravel(), minlength=k).astype(np.int64) + 1
                    for lvl, k in enumerate(vocab_sizes)])

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> StaticPrior:
        levels = sorted(int(k[len(PREFIX):]) for k in tensors if k.startswith(PREFIX))
        if levels != list(range(len(levels))) or not levels:
            raise ValueError("model file holds no complete static prior")
        return cls([np.asarray(tensors[f"{PREFIX}{i}"], dtype=np.int64) for i in levels])

    def to_tensors(self) -> dict[str, np.ndarray]:
        return {f"{PREFIX}{i}": f for i, f in enumerate(self.frequencies)}

    @cached_property
    def level_floors(self) -> list[float]:
        """The fewest bits one token of each level can cost: -log2 of the largest probability its
        table gives any token (as constriction quantizes it)."""
        return [float(min_bits(f)) for f in self.frequencies]

    def min_payload_bits(self, levels: int, h: int, w: int) -> float:
        """The fewest bits `levels` levels of an h x w token grid can cost (PayloadCoder)."""
        return h * w * math.fsum(self.level_floors[:levels])

    def encode(self, tokens: np.ndarray) -> list[tuple[bytes, float]]:
        """Range-code each image's tokens (N, L, h, w), level by level in raster order; returns
        (payload, ideal size in bits) per image."""
        out = []
        floor = self.min_payload_bits(*tokens.shape[1:])
        for image in tokens:
            enc, bits = TokenEncoder(), 0.0
            for lvl in range(image.shape[0]):
                enc.encode(image[lvl].ravel(), self.frequencies[lvl])
                bits += ideal_bits(image[lvl], self.frequencies[lvl])
            out.append((enc.finish(floor), bits))
        return out

    def level_bits(self, tokens: np.ndarray) -> np.ndarray:
        """Ideal bits (N, L) of each image's tokens (N, L, h, w), level by level."""
        n = len(tokens)
        return np.stack([-np.log2(f[tokens[:, lvl].reshape(n, -1)] / f.sum()).sum(1)
                         for lvl, f in zip(range(tokens.shape[1]), self.frequencies)], 1)

    def decode(self, payloads: list[bytes], levels: int, h: int, w: int) -> np.ndarray:
        """Tokens (N, levels, h, w) of same-shape payloads."""
        def one(payload: bytes) -> np.ndarray:
            dec = TokenDecoder(payload)
            return np.stack([dec.decode(h * w, self.frequencies[lvl]).reshape(h, w) for lvl in range(levels)])
        return np.stack([one(p) for p in payloads]).reshape(len(payloads), levels, h, w)


class ContextPrior:
    """Per-token tables from the integer context model. Positions of a level are coded group by
    group (context.schedule); within a group every table depends only on earlier groups and
    coarser levels, so a group is evaluated in one batch across images and positions."""

    def __init__(self, config: Any, tensors: dict[str, np.ndarray]) -> None:
        from .context import ContextConfig, IntegerContext

        self.config = config if isinstance(config, ContextConfig) else ContextConfig.from_dict(config)
        self.model = IntegerContext(self.config, tensors)

    @classmethod
    def from_tensors(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> ContextPrior:
        return cls(config, {k[len(CONTEXT_PREFIX):]: v for k, v in tensors.items() if k.startswith(CONTEXT_PREFIX)})

    def _batches(self, n: int, h: int, w: int) -> Iterator[slice]:
        """Slices of images coded together: at most MAX_ROWS tables per block (or span) at once. Each
        image has its own stream, so how images are batched never changes a byte."""
        from .context import BLOCK

        step = max(1, MAX_ROWS // min(h * w, BLOCK))
        return (slice(s, min(s + step, n)) for s in range(0, n, step))

    @cached_property
    def floors(self) -> tuple[float, float]:
        """(fewest bits a token of level 0, group 0 can cost; fewest bits any token can cost).

        A level-0 position of group 0 sees no token at all (its same-level neighbours come later, it
        has no coarser level), so every such position, on any grid, gets the same tables: the first
        number is the least, over all K tokens, of -log2 p(hi) - log2 p(lo | hi) under them. Any other
        token's tables depend on what was decoded before; all that bounds them is the LUT: the most
        probable symbol gets at most LUT[0], every other one at least 1. That floor is tiny (about
        0.0007 bits a token), so it is the group-0 tokens, 1 in 16 of level 0, that bound a payload."""
        k, (hi_size, lo_size) = self.config.vocab, self.config.split
        t = np.arange(k).reshape(k, 1, 1, 1)  # K images of 1 x 1: each token once at level 0, group 0
        (_, _, hi, hi_gaps, lo, lo_gaps), = self.model.known_gaps(t, 1)
        rows = np.arange(k)
        p_hi = max_probability(self.model.tables(hi_gaps)[:, 0])[rows, hi[:, 0]]
        p_lo = max_probability(self.model.tables(lo_gaps)[:, 0])[rows, lo[:, 0]]
        group0 = float((-np.log2(p_hi) - np.log2(p_lo)).min())
        top, least = float(self.model.lut.max()), float(self.model.lut.min())
        any_token = sum(float(min_bits(np.array([top] + [least] * (n - 1)))) for n in (hi_size, lo_size))
        return group0, any_token

    def min_payload_bits(self, levels: int, h: int, w: int) -> float:
        """The fewest bits `levels` levels of an h x w token grid can cost (PayloadCoder): its
        level-0 tokens of group 0 (rows and columns 0 mod 4) at `floors[0]` each, all others at
        `floors[1]`."""
        group0, any_token = self.floors
        first = -(-h // 4) * -(-w // 4) if levels else 0
        return first * group0 + (levels * h * w - first) * any_token

    def level_bits(self, tokens: np.ndarray) -> np.ndarray:
        """Ideal bits (N, L) of each image's tokens (N, L, h, w), level by level."""
        n, levels, h, w = tokens.shape
        bits = np.zeros((n, levels))
        tables = self.model.tables
        for part in self._batches(n, h, w):
            t = np.ascontiguousarray(tokens[part], dtype=np.int64)
            for lvl, _, hi, hi_gaps, lo, lo_gaps in self.model.known_gaps(t, levels):
                bits[part, lvl] += _ideal_bits(hi, tables(hi_gaps)) + _ideal_bits(lo, tables(lo_gaps))
        return bits

    def encode(self, tokens: np.ndarray) -> list[tuple[bytes, float]]:
        """Per image: level by level, block by block (context.schedule), the high parts of a block's
        tokens, then their low parts."""
        n, levels, h, w = tokens.shape
        out: list[tuple[bytes, float]] = []
        floor = self.min_payload_bits(levels, h, w)
        for part in self._batches(n, h, w):
            t = np.ascontiguousarray(tokens[part], dtype=np.int64)
            encoders, bits = [TokenEncoder() for _ in range(len(t))], np.zeros(len(t))
            pending: list[tuple[np.ndarray, np.ndarray]] = []  # (symbols (N, n), LUT indices (N, n, K))
            for _, blocks, hi, hi_gaps, lo, lo_gaps in self.model.known_gaps(t, levels):
                start = 0
                for length in blocks:
                    cut = slice(start, start + length)
                    pending += [(hi[:, cut], hi_gaps[:, cut]), (lo[:, cut], lo_gaps[:, cut])]
                    start = cut.stop
                if sum(g.size for _, g in pending) >= PENDING_ENTRIES:
                    bits += _code_in_order(encoders, pending, self.model.tables)
            bits += _code_in_order(encoders, pending, self.model.tables)
            out += [(e.finish(floor), float(b)) for e, b in zip(encoders, bits)]
        return out

    def decode(self, payloads: list[bytes], levels: int, h: int, w: int) -> np.ndarray:
        """Block by block in the encoder's order (context.schedule): each block's tables depend only
        on tokens of earlier blocks and coarser levels, which are written into the context source
        as they are decoded."""
        from .context import bag_source, block_sources, padded_cell

        out, size, blocks = [], self.config.split[1], block_sources(h, w)
        for part in self._batches(len(payloads), h, w):
            decoders = [TokenDecoder(p) for p in payloads[part]]
            t = np.zeros((len(decoders), levels, h, w), np.int64)
            cells = t.reshape(len(t), levels, h * w)  # a view of t: position-indexed
            for lvl in range(levels):
                source = bag_source(t, self.config, lvl)
                for block in blocks:
                    a1 = self.model.block_hidden(source, t, lvl, block)
                    hi = np.stack([d.decode_tables(f) for d, f in zip(decoders, self.model.hi_tables(a1, lvl))]).astype(np.int64)
                    lo = np.stack([d.decode_tables(f) for d, f in zip(decoders, self.model.lo_tables(a1, lvl, hi))])
                    code = hi * size + lo
                    if int(code.max()) >= self.config.vocab:  # before it reaches a context bag
                        raise FormatError("payload decodes to a token outside the model's vocabulary")
                    source[:, padded_cell(*np.divmod(block.flat, w), w)] = code
                    cells[:, lvl, block.flat] = code
            out.append(t)
        return np.concatenate(out) if out else np.zeros((0, levels, h, w), np.int64)


def _code_in_order(encoders: list[TokenEncoder], pending: list[tuple[np.ndarray, np.ndarray]],
                   tables: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Code each image's symbols of `pending` (symbols (N, n), LUT indices (N, n, K)) in order, with
    one coder call per image for each run of tables of equal width K: the bytes are those of a call
    per entry (a range coder's output depends only on the sequence of symbols and tables), the Python
    overhead a fraction of it. Tables are looked up a few images at a time, so they are still in
    cache when coded. Empties `pending`; returns the ideal bits (N,) of what it coded."""
    start, bits = 0, np.zeros(len(encoders))
    while start < len(pending):
        end = start + 1
        while end < len(pending) and pending[end][1].shape[-1] == pending[start][1].shape[-1]:
            end += 1
        run = pending[start:end]
        step = max(1, TABLE_ENTRIES // sum(g[0].size for _, g in run))
        for first in range(0, len(encoders), step):
            images = slice(first, first + step)
            for piece in _pieces(run, TABLE_ENTRIES):
                symbols = np.concatenate([s[images] for s, _ in piece], 1)
                freq = tables(np.concatenate([g[images] for _, g in piece], 1))
                bits[images] += _ideal_bits(symbols, freq)
                for e, s, f in zip(encoders[images], symbols, freq):
                    e.encode(s, f)
        start = end
    pending.clear()
    return bits


def _pieces(run: list[tuple[np.ndarray, np.ndarray]], limit: int) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """Consecutive parts of `run` with at most `limit` table entries per image (or one part): a
    large image's tables are looked up and coded a piece at a time."""
    piece: list[tuple[np.ndarray, np.ndarray]] = []
    size = 0
    for part in run:
        if piece and size + part[1][0].size > limit:
            yield piece
            piece, size = [], 0
        piece.append(part)
        size += part[1][0].size
    if piece:
        yield piece


def _ideal_bits(symbols: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """-sum log2 p per image of symbols (N, n) under tables (N, n, K)."""
    k = freq.shape[-1]
    hit = freq.reshape(-1)[np.arange(0, freq.size, k).reshape(symbols.shape) + symbols]
    return (np.log2(freq @ np.ones(k)) - np.log2(hit)).sum(1)
