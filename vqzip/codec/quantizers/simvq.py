"""SimVQ: a VQ whose codebook is a learned linear map of a frozen random code matrix.

Plain VQ updates only the codes that are picked, so unpicked codes die. SimVQ (Zhu et al. 2024) trains
a shared D x D map W instead: codebook = W(C) with C fixed, so every gradient step moves all codes at
once and the whole codebook stays in use without restarts or k-means.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Quantizer, QuantizerOutput, straight_through, usage_stats
from .vq import nearest


class SimVQ(Quantizer):
    codes: Tensor  # a buffer (the frozen codebook C), registered in __init__

    def __init__(self, dim: int, codebook_size: int = 1024, beta: float = 0.25) -> None:
        super().__init__()
        self.dim, self.vocab_sizes, self.beta = dim, [codebook_size], beta
        self.register_buffer("codes", torch.randn(codebook_size, dim) * dim ** -0.5)  # frozen C
        self.proj = nn.Linear(dim, dim, bias=False)  # W, the only trained part

    @property
    def codebook(self) -> Tensor:
        return self.proj(self.codes)

    def forward(self, z: Tensor, levels: int | Tensor | None = None) -> QuantizerOutput:
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        codebook = self.codebook
        idx = nearest(flat.detach(), codebook.detach())
        q = codebook[idx]
        loss = F.mse_loss(q, flat.detach()) + self.beta * F.mse_loss(flat, q.detach())
        z_q = straight_through(flat, q).reshape(b, h, w, d).permute(0, 3, 1, 2)
        return QuantizerOutput(z_q, idx.reshape(b, 1, h, w), loss, usage_stats(idx, self.vocab_sizes[0]))

    def dequantize(self, tokens: Tensor) -> Tensor:
        return self.codebook[tokens[:, 0]].permute(0, 3, 1, 2)
