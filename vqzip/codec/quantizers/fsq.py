"""Finite scalar quantization (Mentzer et al. 2023): a fixed grid instead of a learned codebook.

The latent is projected to a few channels, each bounded (tanh) to its own number of levels and rounded
(straight-through). The implicit codebook is the product grid, so it cannot collapse and needs no aux
loss; one token per position is the mixed-radix index of the per-channel codes.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import Quantizer, QuantizerOutput, straight_through, usage_stats


class FSQ(Quantizer):
    levels: Tensor  # buffers, registered in __init__
    basis: Tensor

    def __init__(self, dim: int, levels: Sequence[int] = (8, 5, 5, 5), eps: float = 1e-3) -> None:
        super().__init__()
        if not levels or min(levels) < 2:
            raise ValueError("FSQ needs at least one channel, each with >= 2 levels")
        n = len(levels)
        self.dim, self.vocab_sizes, self.eps = dim, [math.prod(levels)], eps
        lv = torch.tensor(list(levels), dtype=torch.long)
        self.register_buffer("levels", lv, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0), persistent=False)
        self.proj_in = nn.Conv2d(dim, n, 1)
        self.proj_out = nn.Conv2d(n, dim, 1)

    def _view(self, t: Tensor) -> Tensor:
        return t.view(1, -1, 1, 1)

    def _bound(self, x: Tensor) -> Tensor:
        """Squash channel i into (-L_i/2, L_i/2); even L gets a half-step offset so rounding gives L values."""
        lv = self._view(self.levels).to(x.dtype)
        half_l = (lv - 1) * (1 + self.eps) / 2
        offset = (self._view(self.levels) % 2 == 0).to(x.dtype) * 0.5
        shift = torch.atanh(offset / half_l)
        return torch.tanh(x + shift) * half_l - offset

    def _decode(self, codes: Tensor) -> Tensor:
        """Integer codes in [-(L//2), L//2 - (1 - L%2)] -> latent, via codes normalised to about [-1, 1]."""
        return self.proj_out(codes / self._view(self.levels // 2).to(codes.dtype))

    def forward(self, z: Tensor, levels: int | Tensor | None = None) -> QuantizerOutput:
        bounded = self._bound(self.proj_in(z))
        rounded = bounded.round()
        codes = straight_through(bounded, rounded)  # value exactly `rounded`: |rounded - bounded| <= 0.5
        digits = rounded.detach().long() + self._view(self.levels // 2)
        tokens = (digits * self._view(self.basis)).sum(1, keepdim=True)
        return QuantizerOutput(self._decode(codes), tokens, z.new_zeros(()), usage_stats(tokens, self.vocab_sizes[0]))

    def dequantize(self, tokens: Tensor) -> Tensor:
        digits = torch.div(tokens, self._view(self.basis), rounding_mode="floor") % self._view(self.levels)
        codes = digits - self._view(self.levels // 2)
        return self._decode(codes.to(self.proj_out.weight.dtype))
