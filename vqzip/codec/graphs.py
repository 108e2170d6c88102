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


class _Call(nn.Module):
    """One method (or submodule) of a codec as a module of its own, to trace: forward(*inputs) is
    codec.<name>(*inputs, *extra). The codec is its attribute `c`, so the graph's weights keep their names
    (`c.` + the codec's state_dict keys)."""

    def __init__(self, codec: nn.Module, name: str, *extra: Any) -> None:
        super().__init__()
        self.c, self.name, self.extra = codec, name, extra

    def forward(self, *inputs: Tensor) -> Tensor:
        out: Tensor = getattr(self.c, self.name)(*inputs, *self.extra)
        return out


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
        return {"analysis": Graph(_Call(codec, "analysis"), {"x": x, "q": q}, "y", {"x": hw, "q": n, "y": hw}),
                "hyper_analysis": Graph(_Call(codec, "h_a"), {"y": y}, "z", {"y": hw, "z": hw}),
                "synthesis": Graph(_Call(codec, "synthesis"), {"y_hat": y, "q": q}, "x", {"y_hat": hw, "q": n, "x": hw})}
    x = torch.zeros(1, 3, 4 * codec.stride, 4 * codec.stride)
    encode = _Call(codec, "encode_tokens", codec.qualities)  # the top quality: every level
    out = {"encode": Graph(encode, {"x": x}, "tokens", {"x": hw, "tokens": hw})}
    for levels in range(1, len(codec.quantizer.vocab_sizes) + 1) if codec.config.progressive else [0]:
        tokens = torch.zeros(1, levels or len(codec.quantizer.vocab_sizes), 4, 4, dtype=torch.long)
        decode = _Call(codec, "decode_tokens")
        out[decode_graph(codec.config, levels)] = Graph(decode, {"tokens": tokens}, "x", {"tokens": hw, "x": hw})
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
