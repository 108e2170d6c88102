"""Range coding of token sequences with constriction, driven by integer frequency tables.

Tables are integers so that encoder and decoder build bit-identical models on any machine: the float64
view of an integer array is exact, and constriction's (non-"perfect") quantization of it is
deterministic. Tables are either one row shared by every symbol, or one row per symbol.

A payload's length is bounded below by what its symbols cost (see payload_floor): a decoder refuses a
header that claims more tokens than its payload can hold, before it allocates anything for them.
"""
from __future__ import annotations

import math
from typing import Any

import constriction
import numpy as np

from ..errors import FormatError

cmodel = constriction.stream.model  # a Rust extension: its submodules are attributes, not importable
queue = constriction.stream.queue

_FAMILY = cmodel.Categorical(perfect=False)
PRECISION = 24  # bits of constriction's fixed-point probabilities (its Python models' precision)
SLACK_BITS = 64  # what the coder may save against its symbols' cost: the two words of its state


def payload_floor(bits: float) -> int:
    """The fewest payload bytes (trailing zero bytes removed) a decoder accepts for symbols that cost
    at least `bits` in all: range coding them emits at least that many bits, less SLACK_BITS.

    One exception, which the encoder mends: the zero words a run of symbols at the bottom of their
    tables (symbol 0) leaves at the end are dropped with the trailing zero bytes, so such a payload
    can be shorter; TokenEncoder.finish pads it (see there)."""
    return max(0, math.ceil((bits - SLACK_BITS) / 8))


def max_probability(freq: np.ndarray) -> np.ndarray:
    """An upper bound on the probability constriction codes each symbol with, per table (last axis):
    its leaky quantization gives a symbol of count f out of total F at most
    f * (2^PRECISION - K) / F + 2 of 2^PRECISION (with a margin for float rounding)."""
    freq = np.asarray(freq, dtype=np.float64)
    k = freq.shape[-1]
    scale = (2.0 ** PRECISION - k) / freq.sum(-1, keepdims=True)
    return np.minimum((freq * scale * (1 + 1e-9) + 2) / 2.0 ** PRECISION, 1.0)


def min_bits(freq: np.ndarray) -> np.ndarray:
    """The fewest bits any one symbol costs under each table (last axis) once constriction quantizes it."""
    return -np.log2(max_probability(freq).max(-1))


def _probabilities(freq: np.ndarray) -> np.ndarray:
    """Tables as the float64 constriction takes. Integer arrays are checked; float64 arrays are taken
    as they are: callers (the context prior) build them from integers, which float64 holds exactly."""
    if freq.dtype == np.float64:
        return np.ascontiguousarray(freq)
    if freq.dtype.kind not in "iu" or (freq <= 0).any():
        raise ValueError("frequency tables must be positive integers")
    return np.ascontiguousarray(freq, dtype=np.float64)


def categorical(freq: np.ndarray) -> Any:
    """A constriction model of one integer table, built once and reused for many calls (the photo
    codec's tables: table construction, not coding, would otherwise dominate)."""
    return cmodel.Categorical(_probabilities(np.asarray(freq)), perfect=False)


class TokenEncoder:
    def __init__(self) -> None:
        self._coder = queue.RangeEncoder()

    def encode_with(self, symbols: np.ndarray, model: Any) -> None:
        """Append int32 `symbols` (1-D) coded with a model from categorical()."""
        self._coder.encode(symbols, model)

    def encode_rows(self, symbols: np.ndarray, rows: np.ndarray) -> None:
        """Append int32 `symbols` (1-D), symbol i coded with table rows[i] (float64 of integers, as
        from _probabilities): the same code as one categorical() model per symbol."""
        self._coder.encode(symbols, _FAMILY, rows)

    def encode(self, symbols: np.ndarray, freq: np.ndarray) -> None:
        """Append `symbols` (1-D ints) coded with `freq`: shape (K,) shared or (len(symbols), K)."""
        symbols = np.ascontiguousarray(symbols, dtype=np.int32).ravel()
        if symbols.size == 0:
            return
        if freq.ndim == 1:
            self._coder.encode(symbols, cmodel.Categorical(_probabilities(freq), perfect=False))
        else:
            self._coder.encode(symbols, _FAMILY, _probabilities(freq))

    def finish(self, floor_bits: float = 0.0) -> bytes:
        """The payload: little-endian 32-bit words, trailing zero bytes dropped (the decoder reads
        zeros past the end, so they carry no information).

        `floor_bits` is what the symbols cost at the least (the coder's min_payload_bits): a payload
        shorter than payload_floor(floor_bits) plus a byte (a margin against float rounding on other
        machines) is padded to that length. That happens only when the symbols end in a long run of
        symbol 0, whose zero words were dropped: the padding puts them back, then one more zero word,
        then bytes that end in 1. A decoder reads at most one word past the words the encoder wrote
        (two to start, one per renormalisation, as the encoder), so it never reads the padding, and
        every reader decodes a padded payload as it would the unpadded one."""
        words = self._coder.get_compressed().astype("<u4").tobytes()
        payload = words.rstrip(b"\0")
        need = payload_floor(floor_bits) + 1 if floor_bits > SLACK_BITS else 0
        if len(payload) >= need:
            return payload
        padded = words + bytes(4)
        return padded + bytes(max(0, need - len(padded) - 1)) + b"\x01"


class TokenDecoder:
    def __init__(self, payload: bytes) -> None:
        padded = payload + b"\0" * (-len(payload) % 4)
        words = np.frombuffer(padded, dtype="<u4").astype(np.uint32)
        self._coder = queue.RangeDecoder(words)

    def decode_with(self, model: Any, count: int) -> np.ndarray:
        """The next `count` symbols under a model from categorical()."""
        try:
            return np.asarray(self._coder.decode(model, count), dtype=np.int64)
        except Exception as exc:  # constriction raises on exhausted or inconsistent data
            raise FormatError(f"payload cannot be decoded ({exc})") from None

    def decode_rows(self, rows: np.ndarray) -> np.ndarray:
        """The next len(rows) symbols, symbol i under table rows[i] (as in TokenEncoder.encode_rows)."""
        try:
            return np.asarray(self._coder.decode(_FAMILY, rows), dtype=np.int64)
        except Exception as exc:  # constriction raises on exhausted or inconsistent data
            raise FormatError(f"payload cannot be decoded ({exc})") from None

    def decode(self, count: int, freq: np.ndarray) -> np.ndarray:
        """The next `count` symbols under `freq` (as in TokenEncoder.encode)."""
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        try:
            if freq.ndim == 1:
                out = self._coder.decode(cmodel.Categorical(_probabilities(freq), perfect=False), count)
            else:
                out = self._coder.decode(_FAMILY, _probabilities(freq))
        except Exception as exc:  # constriction raises on exhausted or inconsistent data
            raise FormatError(f"payload cannot be decoded ({exc})") from None
        return np.asarray(out, dtype=np.int64)


    def decode_tables(self, freq: np.ndarray) -> np.ndarray:
        """One symbol per row of `freq` (n, K), a C-contiguous float64 array of integer counts: the
        context prior's fast path, which skips the checks of decode()."""
        try:
            return self._coder.decode(_FAMILY, freq)
        except Exception as exc:
            raise FormatError(f"payload cannot be decoded ({exc})") from None


def ideal_bits(symbols: np.ndarray, freq: np.ndarray) -> float:
    """-sum log2 p(symbol) under integer tables (shared (K,) or per symbol (n, K)): the size a perfect
    coder would reach, against which the real payload is measured."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    f = freq.astype(np.float64)
    if f.ndim == 1:
        return float(-np.log2(f[symbols] / f.sum()).sum())
    return float(-np.log2(f[np.arange(len(symbols)), symbols] / f.sum(1)).sum())
