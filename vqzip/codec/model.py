"""The codec network: encoder -> quantizer -> decoder, with its config and uint8 <-> token helpers."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import CodecConfig
from .nets import Decoder, Encoder
from .quantizers import QuantizerOutput, build_quantizer


class Codec(nn.Module):
    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        net = dict(channels=config.channels, downsamples=config.downsamples, latent_dim=config.latent_dim, blocks=config.blocks)
        self.encoder = Encoder(**net)
        self.decoder = Decoder(**net)
        self.quantizer = build_quantizer(config.quantizer, config.latent_dim, **config.quantizer_args)

    @property
    def stride(self) -> int:
        return self.config.stride

    @property
    def qualities(self) -> int:
        return self.config.qualities

    def levels_for(self, quality: int) -> int:
        return self.config.levels_for(quality)

    def forward(self, x: Tensor, levels: int | Tensor | None = None) -> tuple[Tensor, QuantizerOutput]:
        """x: float images in [-0.5, 0.5], (B, 3, H, W) with H, W multiples of the stride."""
        out = self.quantizer(self.encoder(x), levels)
        return self.decoder(out.z_q), out

    @torch.no_grad()
    def encode_tokens(self, x: Tensor, quality: int) -> Tensor:
        return self.quantizer.tokens(self.encoder(x), self.levels_for(quality) if self.quantizer.progressive else None)

    @torch.no_grad()
    def decode_tokens(self, tokens: Tensor) -> Tensor:
        return self.decoder(self.quantizer.dequantize(tokens))


def to_unit(x_uint8: Tensor) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-0.5, 0.5]."""
    return x_uint8.permute(0, 3, 1, 2).float().div(255.0).sub(0.5)


def to_uint8(x: Tensor) -> Tensor:
    """(B, 3, H, W) float in [-0.5, 0.5] -> (B, H, W, 3) uint8, rounded."""
    return x.add(0.5).mul(255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
