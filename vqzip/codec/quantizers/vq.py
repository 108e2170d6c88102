"""Vector quantization (VQ-VAE): nearest codebook entry, straight-through gradients.

Codebook learning is either by loss (codebook + beta * commitment) or by EMA updates. The codebook is
initialised by k-means on the first batch it sees, and codes unused for a while are restarted on
random latents of the current batch, the two standard cures for codebook collapse.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Quantizer, QuantizerOutput, straight_through, usage_stats


def kmeans(x: Tensor, k: int, iters: int = 10) -> Tensor:
    """Plain Lloyd k-means on rows of x (N, D); returns (k, D). Samples with replacement if N < k."""
    n = x.shape[0]
    idx = torch.randint(0, n, (k,), device=x.device) if n < k else torch.randperm(n, device=x.device)[:k]
    centers = x[idx].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centers).argmin(1)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1).to(x.dtype)
        centers = torch.where(counts > 0, sums / counts.clamp_min(1), centers)
    return centers


CPU_DISTANCES = 1 << 19  # distances computed at once on a CPU: 2 MB of float32, which stays in cache...
CPU_MIN_ROWS = 256  # ...but at least this many rows, so a large codebook is read once per 256 rows


def nearest(x: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest codebook row for each row of x, by squared L2 distance. |x|^2 is the same
    for every code, so the argmin needs only |c|^2 - 2 x.c: one fused matrix product, no (N, K) sums.
    On CPU the rows go in chunks through one reused buffer (a fresh (N, K) matrix per call costs more
    in page faults and cache misses than the product itself), and numpy's argmin, several times
    faster than torch's there, picks the first index on ties, as torch's does. Traced for ONNX export,
    it is the one product and argmin (ONNX's ArgMin also takes the first index)."""
    with torch.no_grad():
        norms = codebook.pow(2).sum(1)
        if x.device.type != "cpu" or torch.jit.is_tracing():
            return torch.addmm(norms, x, codebook.t(), alpha=-2).argmin(1)
        rows = max(CPU_MIN_ROWS, CPU_DISTANCES // len(codebook))
        out = np.empty(len(x), np.int64)
        buffer = torch.empty(min(rows, len(x)), len(codebook))
        for start in range(0, len(x), rows):
            part = x[start: start + rows]
            distance = torch.addmm(norms, part, codebook.t(), alpha=-2, out=buffer[: len(part)])
            out[start: start + len(part)] = np.argmin(distance.numpy(), 1)
        return torch.from_numpy(out)


def _all_reduce(t: Tensor) -> Tensor:
    """Sum over DDP ranks when training distributed, so every rank keeps the same codebook."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t


class VQ(Quantizer):
    initialised: Tensor  # buffers, registered in __init__
    ema_count: Tensor
    ema_sum: Tensor
    idle_steps: Tensor

    def __init__(self, dim: int, codebook_size: int = 1024, beta: float = 0.25, ema: bool = True,
                 decay: float = 0.99, kmeans_init: bool = True, restart_after: int = 50) -> None:
        super().__init__()
        self.dim, self.vocab_sizes = dim, [codebook_size]
        self.beta, self.ema, self.decay = beta, ema, decay
        self.restart_after = restart_after
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim) * 0.1, requires_grad=not ema)
        self.register_buffer("initialised", torch.tensor(not kmeans_init))
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", self.codebook.data.clone())
        self.register_buffer("idle_steps", torch.zeros(codebook_size, dtype=torch.long))

    @property
    def codebook_size(self) -> int:
        return self.vocab_sizes[0]

    def forward(self, z: Tensor, levels: int | Tensor | None = None) -> QuantizerOutput:
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training:
            self._maybe_init(flat.detach())
        idx = nearest(flat.detach(), self.codebook)
        q = self.codebook[idx]
        if self.training:
            counts = _all_reduce(torch.bincount(idx, minlength=self.codebook_size).to(flat.dtype))
            if self.ema:
                self._ema_update(flat.detach(), idx, counts)
            self._restart_dead(flat.detach(), counts)
        commit = F.mse_loss(flat, q.detach())
        loss = self.beta * commit if self.ema else F.mse_loss(q, flat.detach()) + self.beta * commit
        z_q = straight_through(flat, q).reshape(b, h, w, d).permute(0, 3, 1, 2)
        tokens = idx.reshape(b, 1, h, w)
        return QuantizerOutput(z_q, tokens, loss, usage_stats(idx, self.codebook_size))

    @torch.no_grad()
    def tokens(self, z: Tensor, levels: int | None = None) -> Tensor:
        """The forward pass's tokens without its losses and statistics (the encoder's fast path)."""
        b, d, h, w = z.shape
        return nearest(z.permute(0, 2, 3, 1).reshape(-1, d), self.codebook).reshape(b, 1, h, w)

    def dequantize(self, tokens: Tensor) -> Tensor:
        return self.codebook[tokens[:, 0]].permute(0, 3, 1, 2)

    @torch.no_grad()
    def _maybe_init(self, flat: Tensor) -> None:
        if bool(self.initialised):
            return
        centers = kmeans(flat, self.codebook_size)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(centers, 0)  # rank 0's centers: averaging unmatched k-means centers blurs them
        self.codebook.data.copy_(centers)
        self.ema_sum.copy_(centers)
        self.ema_count.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def reset_ema(self) -> None:
        """Restart the EMA statistics from the current codebook (unit counts), e.g. after loading it."""
        self.ema_count.fill_(1.0)
        self.ema_sum.copy_(self.codebook.data)
        self.idle_steps.zero_()

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, idx: Tensor, counts: Tensor) -> None:
        sums = _all_reduce(torch.zeros_like(self.ema_sum).index_add_(0, idx, flat))
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + self.codebook_size * 1e-5) * n
        self.codebook.data.copy_(self.ema_sum / smoothed.unsqueeze(1))

    @torch.no_grad()
    def _restart_dead(self, flat: Tensor, counts: Tensor) -> None:
        """Move codes idle for `restart_after` steps onto random latents of this batch."""
        if self.restart_after <= 0:
            return
        self.idle_steps.add_(1).masked_fill_(counts > 0, 0)
        dead = (self.idle_steps >= self.restart_after).nonzero().flatten()
        if dead.numel() == 0:
            return
        pick = flat[torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(pick, 0)  # all ranks restart to the same vectors
        self.codebook.data[dead] = pick
        self.ema_sum[dead] = pick
        self.ema_count[dead] = 1.0
        self.idle_steps[dead] = 0
