"""The trainable form of the context prior (coding.context): a float network with fake quantization.

The coder evaluates an integer network (coding.context.IntegerContext), bit-exact on any machine;
training needs gradients, so it runs the same graph in float, with every quantity rounded in the
forward pass onto the grid the integer model uses (straight-through: identity in the backward pass):
embeddings and activations fixed point with 5 fraction bits, weights int8 times a power of two per
layer and level, biases on the grid of their layer's sums. to_integer() then exports exactly those
rounded values. The two must agree (same bags, roundings, scales and clamps), or the prior would be
trained for tables the coder never builds: tests/test_context.py checks that the integer model's bits
match the float model's loss.

Needs torch; the coder (vqzip.coding) does not.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..coding.context import (
    ACT_MAX,
    ACT_SCALE,
    BIAS_LIMIT,
    LUT_ONE,
    LUT_SIZE,
    LUT_STEP,
    ContextConfig,
    column_rows,
    level_bags,
    raster_chunk,
    same_bags,
)


def _fake_quant(x: Tensor, scale: float, limit: int = ACT_MAX) -> Tensor:
    """Round to the fixed-point grid in the forward pass, identity in the backward pass."""
    q = torch.clamp(torch.round(x * scale), -limit, limit) / scale
    return x + (q - x).detach()


def _pow2_scale(w: Tensor) -> float:
    """Largest power of two s with max|w| * s <= 127, so int8 weights lose the least precision
    (below 1 for weights larger than 127)."""
    return float(2.0 ** np.floor(np.log2(ACT_MAX / max(float(w.detach().abs().max()), 1e-8))))


class ContextNet(nn.Module):
    """The trainable (float, fake-quantized) form of the context model."""

    lo_mask: Tensor  # a buffer: -inf where a low part names no code
    train_seconds: float  # set by prior_training.train_context

    def __init__(self, cfg: ContextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        (hi, lo), lv, d = cfg.split, cfg.levels, cfg.dim
        rows = sum(c for _, c in cfg.rows.values())
        self.embed = nn.Parameter(torch.randn(rows, d) * 0.1)
        self.w1 = nn.Parameter(torch.randn(lv, d, d) / d ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(lv, d))
        self.whi = nn.Parameter(torch.randn(lv, hi, d) / d ** 0.5)
        self.bhi = nn.Parameter(torch.zeros(lv, hi))
        self.wlo = nn.Parameter(torch.randn(lv, hi, lo, d) / d ** 0.5)
        self.blo = nn.Parameter(torch.zeros(lv, hi, lo))
        valid = torch.arange(hi * lo).view(hi, lo) < cfg.vocab
        self.register_buffer("lo_mask", torch.where(valid, 0.0, -torch.inf), persistent=False)

    def bags(self, tokens: Tensor, level: int) -> Tensor:
        """Embedding rows (N * h * w, 26 + level) of every position of `level`, teacher-forced: built
        by the coder's own definitions (coding.context, numpy, on the CPU), so training sees exactly
        the context the coder gives each position."""
        t = tokens.cpu().numpy()
        every = raster_chunk(*t.shape[-2:])
        columns = [column_rows(t, self.cfg, lv).reshape(-1, 1) for lv in range(level)]
        bags = np.concatenate([same_bags(t, self.cfg, level, every), level_bags(t, self.cfg, level), *columns], 1)
        return torch.from_numpy(bags).to(tokens.device)

    def hidden(self, tokens: Tensor, level: int) -> Tensor:
        """a1 (N * h * w, D) of every position of `level`, teacher-forced, on the fixed-point grid."""
        a0 = torch.clamp(F.embedding_bag(self.bags(tokens, level), _fake_quant(self.embed, ACT_SCALE), mode="sum"),
                         0, ACT_MAX / ACT_SCALE)
        w1, b1 = _fake_layer(self.w1[level], self.b1[level])
        return _fake_quant(torch.clamp(a0 @ w1.t() + b1, 0, ACT_MAX / ACT_SCALE), ACT_SCALE)

    def log_probs(self, tokens: Tensor, level: int) -> Tensor:
        """Natural log p(token) (N * h * w) of every token of `level`, teacher-forced."""
        a1 = self.hidden(tokens, level)
        t = tokens[:, level].reshape(-1)
        hi, lo = t // self.cfg.split[1], t % self.cfg.split[1]
        whi, bhi = _fake_layer(self.whi[level], self.bhi[level])
        wlo, blo = _fake_layer(self.wlo[level], self.blo[level])
        lp_hi = F.log_softmax(a1 @ whi.t() + bhi, -1).gather(1, hi[:, None])[:, 0]
        every = (a1 @ wlo.flatten(0, 1).t()).view(len(t), *self.cfg.split)  # BLAS beats gathering W per token
        lo_logits = every.gather(1, hi[:, None, None].expand(-1, 1, every.shape[-1]))[:, 0] + blo[hi] + self.lo_mask[hi]
        return lp_hi + F.log_softmax(lo_logits, -1).gather(1, lo[:, None])[:, 0]

    def loss_bits(self, tokens: Tensor, levels: int | None = None) -> Tensor:
        """Mean cross-entropy in bits per token over the first `levels` levels."""
        levels = levels or self.cfg.levels
        total = sum(-self.log_probs(tokens, lv).sum() for lv in range(levels))
        return total / (tokens[:, :levels].numel() * np.log(2))

    def to_integer(self) -> dict[str, np.ndarray]:
        """The integer model: the tensors the coder uses, with their power-of-two scales."""
        out: dict[str, np.ndarray] = {}
        with torch.no_grad():
            out["embed"] = torch.clamp(torch.round(self.embed * ACT_SCALE), -ACT_MAX, ACT_MAX).to(torch.int8).cpu().numpy()
            for name in ("1", "hi", "lo"):
                w, b = getattr(self, "w" + name), getattr(self, "b" + name)
                scales = [_pow2_scale(w[lv]) for lv in range(self.cfg.levels)]
                out["w" + name] = np.stack([torch.clamp(torch.round(w[lv] * s), -ACT_MAX, ACT_MAX).cpu().numpy()
                                            for lv, s in enumerate(scales)]).astype(np.int8)
                out["b" + name] = np.stack([torch.round(b[lv] * s * ACT_SCALE).clamp(-BIAS_LIMIT, BIAS_LIMIT).cpu().numpy()
                                            for lv, s in enumerate(scales)]).astype(np.int32)
                out["shift" + name] = np.array([round(np.log2(s)) for s in scales], dtype=np.int32)
        steps = np.arange(LUT_SIZE, dtype=np.float64) / LUT_STEP
        out["lut"] = np.maximum(1, np.round(LUT_ONE * np.exp(-steps))).astype(np.int32)
        return out


def _fake_layer(w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """int8 weights and int bias, on the grid the integer model uses (scale: a power of two)."""
    s = _pow2_scale(w)
    return _fake_quant(w, s), _fake_quant(b, s * ACT_SCALE, BIAS_LIMIT)
