"""Encoder and decoder CNNs: fully convolutional, so one model serves any image size.

The first 2x reduction is a pixel (un)shuffle rather than a convolution at full resolution: on a CPU
the full-resolution layers would cost most of the time for little gain.
"""
from __future__ import annotations

from torch import Tensor, nn


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GELU(), nn.Conv2d(ch, ch, 3, padding=1), nn.GELU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _width(channels: int, step: int) -> int:
    """Channels after `step` strided reductions (past the pixel unshuffle): doubling, capped at 4x."""
    return channels * min(2 ** step, 4)


class Encoder(nn.Module):
    """RGB in [-0.5, 0.5] -> latent (B, latent_dim, H / 2**downsamples, W / 2**downsamples)."""

    def __init__(self, channels: int = 48, downsamples: int = 2, latent_dim: int = 64, blocks: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.PixelUnshuffle(2), nn.Conv2d(12, channels, 3, padding=1), ResBlock(channels)]
        for step in range(downsamples - 1):
            layers += [nn.Conv2d(_width(channels, step), _width(channels, step + 1), 4, stride=2, padding=1),
                       ResBlock(_width(channels, step + 1))]
        width = _width(channels, downsamples - 1)
        layers += [ResBlock(width) for _ in range(blocks - 1)]
        layers += [nn.GELU(), nn.Conv2d(width, latent_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Latent grid -> RGB in about [-0.5, 0.5]; mirrors the encoder."""

    def __init__(self, channels: int = 48, downsamples: int = 2, latent_dim: int = 64, blocks: int = 2) -> None:
        super().__init__()
        width = _width(channels, downsamples - 1)
        layers: list[nn.Module] = [nn.Conv2d(latent_dim, width, 1)]
        layers += [ResBlock(width) for _ in range(blocks)]
        for step in reversed(range(downsamples - 1)):
            layers += [nn.ConvTranspose2d(_width(channels, step + 1), _width(channels, step), 4, stride=2, padding=1),
                       ResBlock(_width(channels, step))]
        layers += [nn.GELU(), nn.Conv2d(channels, 12, 3, padding=1), nn.PixelShuffle(2)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
