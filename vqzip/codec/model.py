"""The codec network: encoder -> quantizer -> decoder, with its config and uint8 <-> token helpers."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .nets import Decoder, Encoder
from .quantizers import QuantizerOutput, build_quantizer


@dataclass
class CodecConfig:
    channels: int = 48
    downsamples: int = 2
    latent_dim: int = 64
    blocks: int = 2
    quantizer: str = "rvq"
    quantizer_args: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodecConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


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
        return 2 ** self.config.downsamples

    @property
    def qualities(self) -> int:
        """Number of quality levels: RVQ prefixes, or 1 for a single-rate quantizer."""
        return self.quantizer.num_levels if self.quantizer.progressive else 1

    def levels_for(self, quality: int) -> int:
        """Token levels written at this quality (all levels for single-rate quantizers)."""
        return quality if self.quantizer.progressive else self.quantizer.num_levels

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
