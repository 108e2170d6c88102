"""Token priors: integer frequency tables the range coder uses, identical in encoder and decoder.

For now a static prior: one table per token level, counted on the training set's tokens. Every
symbol gets a count of at least 1, so any token stays codable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .entropy import TokenDecoder, TokenEncoder, ideal_bits

PREFIX = "prior.static."  # tensor names inside the model's safetensors file


@dataclass
class StaticPrior:
    frequencies: list[np.ndarray]  # one int64 table per level, all entries >= 1

    @classmethod
    def fit(cls, tokens: np.ndarray, vocab_sizes: list[int]) -> "StaticPrior":
        """Histogram of tokens (N, L, h, w) per level, plus one (Laplace) so nothing has probability 0."""
        return cls([np.bincount(tokens[:, lvl].ravel(), minlength=k).astype(np.int64) + 1
                    for lvl, k in enumerate(vocab_sizes)])

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> "StaticPrior":
        levels = sorted(int(k[len(PREFIX):]) for k in tensors if k.startswith(PREFIX))
        if levels != list(range(len(levels))) or not levels:
            raise ValueError("model file holds no complete static prior")
        return cls([np.asarray(tensors[f"{PREFIX}{i}"], dtype=np.int64) for i in levels])

    def to_tensors(self) -> dict[str, np.ndarray]:
        return {f"{PREFIX}{i}": f for i, f in enumerate(self.frequencies)}

    def encode(self, tokens: np.ndarray) -> tuple[bytes, float]:
        """Range-code one image's tokens (L, h, w); returns the payload and its ideal size in bits."""
        enc, bits = TokenEncoder(), 0.0
        for lvl in range(tokens.shape[0]):
            enc.encode(tokens[lvl].ravel(), self.frequencies[lvl])
            bits += ideal_bits(tokens[lvl], self.frequencies[lvl])
        return enc.finish(), bits

    def decode(self, payload: bytes, levels: int, h: int, w: int) -> np.ndarray:
        dec = TokenDecoder(payload)
        return np.stack([dec.decode(h * w, self.frequencies[lvl]).reshape(h, w) for lvl in range(levels)])
