"""The one interface every quantizer implements, so models, priors and the coder never care which."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    """What a training forward pass needs: the straight-through latent, the tokens and the aux loss."""

    z_q: Tensor  # (B, D, h, w), quantized latent with straight-through gradients to z
    tokens: Tensor  # (B, L, h, w) int64
    loss: Tensor  # scalar auxiliary loss (codebook + commitment), 0 where none
    stats: dict[str, float] = field(default_factory=dict)  # utilisation, perplexity, ...


class Quantizer(nn.Module):
    """Turns a latent grid (B, D, h, w) into integer tokens (B, L, h, w) and back.

    `vocab_sizes[l]` is the alphabet size of level l. `progressive` quantizers (RVQ) can be decoded
    from any prefix of their levels: that prefix length is the quality level.
    """

    dim: int
    vocab_sizes: list[int]
    progressive: bool = False

    @property
    def num_levels(self) -> int:
        return len(self.vocab_sizes)

    def forward(self, z: Tensor, levels: int | Tensor | None = None) -> QuantizerOutput:
        raise NotImplementedError

    @torch.no_grad()
    def tokens(self, z: Tensor, levels: int | None = None) -> Tensor:
        return self.forward(z, levels).tokens

    def dequantize(self, tokens: Tensor) -> Tensor:
        raise NotImplementedError


def straight_through(z: Tensor, z_q: Tensor) -> Tensor:
    """Forward value z_q, gradient of the identity to z."""
    return z + (z_q - z).detach()


def usage_stats(tokens: Tensor, vocab_size: int) -> dict[str, float]:
    """Codebook utilisation (share of codes used in this batch) and perplexity of the code histogram."""
    counts = torch.bincount(tokens.flatten(), minlength=vocab_size).float()
    p = counts / counts.sum().clamp_min(1)
    perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()).item()
    return {"utilisation": (counts > 0).float().mean().item(), "perplexity": perplexity}
