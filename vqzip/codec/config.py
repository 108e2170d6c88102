"""What a model is, without its networks: the two configurations and the token layout they imply.

Torch-free on purpose: the runtime (ONNX Runtime, numpy, constriction) needs a model's strides,
qualities and alphabets to parse and check a file before any network runs, and it runs where torch is
not installed. The torch modules (`model.Codec`, `hyperprior.PhotoCodec`) are built from these same
configurations; tests/test_runtime.py checks that `token_layout` agrees with their quantizers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)  # per quality, MSE on [0, 1]


def token_layout(kind: str, args: dict[str, Any]) -> tuple[list[int], bool]:
    """(alphabet size of every token level, whether levels are progressive: decodable from any prefix)
    of a quantizer by its registry name and arguments, with the defaults its constructor has."""
    if kind == "rvq":
        return [int(args.get("codebook_size", 256))] * int(args.get("levels", 8)), True
    if kind in ("vq", "simvq"):
        return [int(args.get("codebook_size", 1024))], False
    if kind == "byte":
        return [int(args.get("levels", 256))] * int(args.get("channels", 1)), False
    if kind == "fsq":
        return [math.prod(args.get("levels", (8, 5, 5, 5)))], False
    if kind == "lfq":
        return [2 ** int(args.get("bits", 10))], False
    raise ValueError(f"quantizer {kind!r} has no token alphabet a file can hold")


@dataclass
class CodecConfig:
    """A token model: encoder -> quantizer -> decoder (codec.model.Codec)."""

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

    @property
    def stride(self) -> int:
        """Pixels per token position on each side."""
        return 2 ** self.downsamples

    @property
    def vocab_sizes(self) -> list[int]:
        return token_layout(self.quantizer, self.quantizer_args)[0]

    @property
    def progressive(self) -> bool:
        return token_layout(self.quantizer, self.quantizer_args)[1]

    @property
    def qualities(self) -> int:
        """Number of quality levels: RVQ prefixes, or 1 for a single-rate quantizer."""
        return len(self.vocab_sizes) if self.progressive else 1

    def levels_for(self, quality: int) -> int:
        """Token levels written at this quality (all levels for single-rate quantizers)."""
        return quality if self.progressive else len(self.vocab_sizes)


@dataclass
class PhotoConfig:
    """The rate-distortion photo codec (codec.hyperprior.PhotoCodec)."""

    channels: int = 96  # N: width of the transforms
    latent: int = 160  # M: latent channels
    hyper: int = 96  # channels of z
    lambdas: tuple[float, ...] = LAMBDAS
    kind: str = "hyperprior"
    downsamples: int = 4  # stride-2 layers of the analysis (of its 4): 4 for photos, fewer for small images
    slices: int = 1  # latent channels coded in this many groups, each conditioned on the ones before
    context: int = 96  # hidden channels of each slice's context network (slices > 1)
    checkerboard: bool = False  # each slice's second half (checkerboard) also conditioned on its first
    residual: int = 0  # residual blocks after each of the transforms' two middle layers (deeper transforms)
    # The entropy model (h_a, h_s, the slice and checkerboard contexts) runs on blocks of this many token
    # positions a side, each as an image of its own, as in training when every crop was one block
    # (small-image models, 32x32 crops): on a whole larger grid it would meet neighbours it never saw.
    # 0: on the whole grid (photo models). Files of such a model are format version 6.
    prior_block: int = 0

    def __post_init__(self) -> None:
        if self.slices < 1 or self.latent % self.slices:
            raise ValueError(f"--slices {self.slices}: must divide the {self.latent} latent channels")
        if self.residual < 0:
            raise ValueError(f"--residual {self.residual}: must be 0 or more")
        if self.prior_block < 0 or self.prior_block % 4:
            raise ValueError(f"prior_block {self.prior_block}: must be 0 or a multiple of 4 (a hyper-latent position)")

    @property
    def latent_stride(self) -> int:
        """Pixels per image-token position."""
        return 1 << self.downsamples

    @property
    def stride(self) -> int:
        """Pixels per hyper-latent position (4x the tokens'), or per prior block where that is larger:
        images are padded to a multiple of this."""
        return max(4, self.prior_block) * self.latent_stride

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("checkerboard", "residual", "prior_block"):  # as models written before these options have it
            if not d[key]:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhotoConfig:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "lambdas" in d:
            d["lambdas"] = tuple(d["lambdas"])
        return cls(**d)

    @property
    def qualities(self) -> int:
        return len(self.lambdas)


def decode_graph(config: CodecConfig, levels: int) -> str:
    """The name of a token model's decode graph for tokens of `levels` levels (codec.graphs)."""
    return f"decode-{levels}" if config.progressive else "decode"


def graph_names(config: CodecConfig | PhotoConfig) -> tuple[str, ...]:
    """Every coding graph a model has (codec.graphs), which vqzip export-onnx writes."""
    if isinstance(config, PhotoConfig):
        return ("analysis", "hyper_analysis", "synthesis")
    levels = range(1, len(config.vocab_sizes) + 1) if config.progressive else [0]
    return ("encode", *(decode_graph(config, n) for n in levels))


def config_from_dict(d: dict[str, Any]) -> CodecConfig | PhotoConfig:
    """The configuration a model file's metadata describes."""
    return PhotoConfig.from_dict(d) if d.get("kind") == "hyperprior" else CodecConfig.from_dict(d)
