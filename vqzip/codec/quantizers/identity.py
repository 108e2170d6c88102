"""No quantization: the latent passes through unchanged (a plain autoencoder, for rate studies).

Tokens are the raw float32 bit patterns of the latent, one level per channel, so `dequantize(tokens)`
gives back exactly the latent and the "rate" is the honest 32 bits per channel and position. It is a
baseline for experiments (e.g. benchmarks/studies/bits_explain_quality.py), not something to export:
a 2**32-symbol alphabet has no usable entropy model.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Quantizer, QuantizerOutput

_WORDS = 2 ** 32


class Identity(Quantizer):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim, self.vocab_sizes = dim, [_WORDS] * dim

    def forward(self, z: Tensor, levels: int | Tensor | None = None) -> QuantizerOutput:
        tokens = z.detach().float().contiguous().view(torch.int32).long() % _WORDS  # uint32 pattern
        _, counts = torch.unique(tokens, return_counts=True)
        p = counts.float() / counts.sum()
        stats = {"utilisation": counts.numel() / _WORDS,
                 "perplexity": math.exp(-(p * p.log()).sum().item())}
        return QuantizerOutput(z, tokens, z.new_zeros(()), stats)

    def dequantize(self, tokens: Tensor) -> Tensor:
        signed = torch.where(tokens >= _WORDS // 2, tokens - _WORDS, tokens)
        return signed.to(torch.int32).view(torch.float32)
