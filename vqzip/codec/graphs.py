"""The networks a model runs when coding, as named graphs with numpy in and out, for both backends.

One definition serves two uses: `export_onnx` traces these very modules into the `.onnx` files the
torch-free runtime (vqzip.runtime) runs, and `TorchNets` runs them in torch, so the two backends compute
the same functions. Token models have two graphs, photo codecs three:

    encode(x) -> tokens of every level            decode(tokens) -> x, or decode-L(tokens of L levels) -> x
    analysis(x, q) -> y    hyper_analysis(y) -> z    synthesis(y_hat, q) -> x

with x in [-0.5, 0.5] (N, 3, H, W) float32 and q the 0-based quality of each image. A progressive (RVQ)
model has one decode graph per number of levels: a graph of a fixed depth sums just those codebooks,
in the order torch does, which one graph for every depth could only do by masking all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .config import decode_graph
from .hyperprior import PhotoCodec
from .model import Codec


class _Encode(nn.Module):
    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.c = codec

    def forward(self, x: Tensor) -> Tensor:
        return self.c.quantizer.tokens(self.c.encoder(x), None)


class _Decode(nn.Module):
    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.c = codec

    def forward(self, tokens: Tensor) -> Tensor:
        return self.c.decode_tokens(tokens)


class _Analysis(nn.Module):
    def __init__(self, codec: PhotoCodec) -> None:
        super().__init__()
        self.c = codec

    def forward(self, x: Tensor, q: Tensor) -> Tensor:
        return self.c.analysis(x, q)


class _HyperAnalysis(nn.Module):
    def __init__(self, codec: PhotoCodec) -> None:
        super().__init__()
        self.c = codec

    def forward(self, y: Tensor) -> Tensor:
        return self.c.h_a(y)


class _Synthesis(nn.Module):
    def __init__(self, codec: PhotoCodec) -> None:
        super().__init__()
        self.c = codec

    def forward(self, y_hat: Tensor, q: Tensor) -> Tensor:
        return self.c.synthesis(y_hat, q)


@dataclass(frozen=True)
class Graph:
    module: nn.Module
    example: dict[str, Tensor]  # inputs to trace with (any valid shape)
    output: str
    axes: dict[str, dict[int, str]]  # the dynamic axes of inputs and output


def graphs(codec: Codec | PhotoCodec) -> dict[str, Graph]:
    """The coding graphs of a model, by name (see the module docstring)."""
    n, hw = {0: "n"}, {0: "n", 2: "h", 3: "w"}
    if isinstance(codec, PhotoCodec):
        m, s = codec.config.latent, codec.latent_stride
        x, y, q = torch.zeros(1, 3, 4 * s, 4 * s), torch.zeros(1, m, 4, 4), torch.zeros(1, dtype=torch.long)
        return {"analysis": Graph(_Analysis(codec), {"x": x, "q": q}, "y", {"x": hw, "q": n, "y": hw}),
                "hyper_analysis": Graph(_HyperAnalysis(codec), {"y": y}, "z", {"y": hw, "z": hw}),
                "synthesis": Graph(_Synthesis(codec), {"y_hat": y, "q": q}, "x", {"y_hat": hw, "q": n, "x": hw})}
    x = torch.zeros(1, 3, 4 * codec.stride, 4 * codec.stride)
    out = {"encode": Graph(_Encode(codec), {"x": x}, "tokens", {"x": hw, "tokens": hw})}
    for levels in range(1, len(codec.quantizer.vocab_sizes) + 1) if codec.config.progressive else [0]:
        tokens = torch.zeros(1, levels or len(codec.quantizer.vocab_sizes), 4, 4, dtype=torch.long)
        out[decode_graph(codec.config, levels)] = Graph(_Decode(codec), {"tokens": tokens}, "x", {"tokens": hw, "x": hw})
    return out


class TorchNets:
    """The coding graphs run in torch, in float32 as vqzip.runtime.OnnxNets runs them in ONNX Runtime, so
    the two decode a file to within a grey level (bfloat16 would not)."""

    def __init__(self, codec: Codec | PhotoCodec) -> None:
        self.graphs = graphs(codec)

    @torch.no_grad()
    def run(self, graph: str, **inputs: np.ndarray) -> np.ndarray:
        args = [torch.from_numpy(np.ascontiguousarray(inputs[k])) for k in self.graphs[graph].example]
        out: Any = self.graphs[graph].module(*args)
        return out.float().numpy() if out.is_floating_point() else out.numpy()
