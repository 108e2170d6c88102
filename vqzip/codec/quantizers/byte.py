"""Byte quantizer (Byte-VAE): each latent vector squeezed to a few bounded scalars, rounded to integers.

A 1x1 conv maps the D-dim latent to `channels` scalars, a sigmoid bounds them to [0, K-1] and rounding
(straight-through) makes them K-ary symbols: with K=256 and one channel, one byte per position. The range
is fixed by the model, so no side information is sent per image. There is no codebook, hence no aux loss.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Quantizer, QuantizerOutput, straight_through, usage_stats


class ByteQuantizer(Quantizer):
    def __init__(self, dim: int, levels: int = 256, channels: int = 1) -> None:
        super().__init__()
        if levels < 2 or channels < 1:
            raise ValueError("ByteQuantizer needs levels >= 2 and channels >= 1")
        self.dim, self.levels, self.vocab_sizes = dim, levels, [levels] * channels
        self.squeeze = nn.Conv2d(dim, channels, 1)
        self.expand = nn.Conv2d(channels, dim, 1)

    def _expand(self, values: Tensor) -> Tensor:
        """Integer-valued symbols in [0, K-1] -> latent; rescaled to [-1, 1] so the conv sees unit range."""
        return self.expand(values * (2.0 / (self.levels - 1)) - 1.0)

    def forward(self, z: Tensor, levels: int | Tensor | None = None) -> QuantizerOutput:
        v = torch.sigmoid(self.squeeze(z)) * (self.levels - 1)
        # v + (round(v) - v) is exactly round(v) here (|round(v) - v| <= 0.5, v >= 0), so z_q == dequantize(tokens)
        rounded = v.round()
        v_q = straight_through(v, rounded)
        tokens = rounded.detach().long()
        return QuantizerOutput(self._expand(v_q), tokens, z.new_zeros(()), usage_stats(tokens, self.levels))

    @torch.no_grad()
    def tokens(self, z: Tensor, levels: int | None = None) -> Tensor:
        """The forward pass's tokens without its statistics (which an exported graph cannot hold)."""
        return (torch.sigmoid(self.squeeze(z)) * (self.levels - 1)).round().long()

    def dequantize(self, tokens: Tensor) -> Tensor:
        return self._expand(tokens.to(self.expand.weight.dtype))
