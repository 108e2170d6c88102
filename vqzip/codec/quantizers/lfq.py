"""Lookup-free quantization (MAGVIT-v2, Yu et al. 2023): each of `bits` channels quantized to its sign.

The latent is projected to `bits` channels and each is snapped to +1/-1 (straight-through), so the
implicit codebook is {-1, 1}^bits and a token is simply the integer those bits spell. A commitment loss
keeps the projections near +-1; an optional entropy term (per-bit factorised, as the code distribution
of a sign quantizer factorises over bits) pushes for confident bits that are balanced over the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Quantizer, QuantizerOutput, straight_through, usage_stats


def _binary_entropy(p: Tensor) -> Tensor:
    return -(p * p.clamp_min(1e-8).log() + (1 - p) * (1 - p).clamp_min(1e-8).log())


class LFQ(Quantizer):
    powers: Tensor  # a buffer, registered in __init__

    def __init__(self, dim: int, bits: int = 10, entropy_weight: float = 0.0, commitment: float = 0.25) -> None:
        super().__init__()
        if not 1 <= bits <= 62:
            raise ValueError("LFQ needs 1 <= bits <= 62 (tokens are int64)")
        self.dim, self.vocab_sizes = dim, [2 ** bits]
        self.entropy_weight, self.commitment = entropy_weight, commitment
        self.register_buffer("powers", 2 ** torch.arange(bits).view(1, bits, 1, 1), persistent=False)
        self.proj_in = nn.Conv2d(dim, bits, 1)
        self.proj_out = nn.Conv2d(bits, dim, 1)

    def forward(self, z: Tensor, levels: int | Tensor | None = None) -> QuantizerOutput:
        p = self.proj_in(z)
        signs = torch.where(p > 0, 1.0, -1.0).to(p.dtype)
        tokens = ((p > 0).long() * self.powers).sum(1, keepdim=True)
        loss = self.commitment * F.mse_loss(p, signs)
        if self.entropy_weight > 0:
            # P(bit = +1) from the softmax over codes of -||p - c||^2, which factorises into sigmoid(4 p)
            prob = torch.sigmoid(4 * p)
            per_sample = _binary_entropy(prob).sum(1).mean()
            batch = _binary_entropy(prob.mean((0, 2, 3))).sum()
            loss = loss + self.entropy_weight * (per_sample - batch)
        z_q = self.proj_out(straight_through(p, signs))
        return QuantizerOutput(z_q, tokens, loss, usage_stats(tokens, self.vocab_sizes[0]))

    def dequantize(self, tokens: Tensor) -> Tensor:
        bits = torch.div(tokens, self.powers, rounding_mode="floor") % 2
        return self.proj_out((bits * 2 - 1).to(self.proj_out.weight.dtype))
