"""Residual VQ: a stack of VQ codebooks, each quantizing what the previous ones left over.

Quantizer dropout trains every prefix of the stack at once, so one model decodes at 1..N levels:
the number of levels used is the quality knob, and bits grow linearly with it.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
from torch import Tensor, nn

from .base import Quantizer, QuantizerOutput, straight_through
from .vq import VQ, nearest


class RVQ(Quantizer):
    progressive = True

    def __init__(self, dim: int, levels: int = 8, codebook_size: int = 256, dropout: bool = True, **vq_kwargs) -> None:
        super().__init__()
        self.dim, self.vocab_sizes, self.dropout = dim, [codebook_size] * levels, dropout
        self.stages = nn.ModuleList(VQ(dim, codebook_size, **vq_kwargs) for _ in range(levels))

    def forward(self, z: Tensor, levels: int | Tensor | None = None) -> QuantizerOutput:
        """`levels`: an int for all samples, a (B,) tensor per sample, or None (all levels; in
        training with dropout, a random prefix length per sample)."""
        b = z.shape[0]
        if levels is None:
            levels = (torch.randint(1, self.num_levels + 1, (b,), device=z.device)
                      if self.training and self.dropout else self.num_levels)
        per_sample = torch.as_tensor(levels, device=z.device).expand(b).clamp(max=self.num_levels)
        n_run = int(per_sample.max())
        residual, total = z.detach(), torch.zeros_like(z)
        tokens, loss, stats = [], z.new_zeros(()), {}
        for i, stage in enumerate(self.stages[:n_run]):
            out = stage(residual)
            q = out.z_q.detach()
            keep = (per_sample > i).to(z.dtype).view(b, 1, 1, 1)
            total = total + q * keep
            residual = residual - q
            tokens.append(out.tokens)
            loss = loss + out.loss
            if i == 0:
                stats = {f"{k}": v for k, v in out.stats.items()}
        # commitment of the encoder to the quantized sum it actually decodes from
        loss = loss / n_run + 0.25 * torch.mean((z - total.detach()) ** 2)
        return QuantizerOutput(straight_through(z, total), torch.cat(tokens, 1), loss, stats)

    @torch.no_grad()
    def tokens(self, z: Tensor, levels: int | None = None) -> Tensor:
        """The forward pass's tokens (all samples at `levels`) without its losses and statistics."""
        b, d, h, w = z.shape
        residual, tokens = z.permute(0, 2, 3, 1).reshape(-1, d).clone(), []
        for stage in self._vqs(levels or self.num_levels):
            idx = nearest(residual, stage.codebook)
            residual.sub_(stage.codebook[idx])
            tokens.append(idx.reshape(b, 1, h, w))
        return torch.cat(tokens, 1)

    def dequantize(self, tokens: Tensor) -> Tensor:
        return cast(Tensor, sum(stage.dequantize(tokens[:, i : i + 1]) for i, stage in enumerate(self._vqs(tokens.shape[1]))))

    def _vqs(self, n: int) -> Iterable[VQ]:
        """The first n stages, typed as what they are (an nn.ModuleList types its items as plain Modules)."""
        return cast("Iterable[VQ]", self.stages[:n])
