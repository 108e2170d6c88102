"""Training the context prior of a trained codec on its own tokens (`vqzip train-prior`).

The codec is frozen: its tokens of the training images are computed once, then the context model
(context_net.ContextNet) learns p(token | context) by cross-entropy, teacher-forced over every level and
position. Same rules as codec training: progress callback, a checkpoint every epoch, exact resume,
seeded runs, CPU or CUDA. The exported integer model is what the coder uses.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..coding.context import ContextConfig
from .context_net import ContextNet
from .train import lr_at, pick_device


@dataclass
class PriorTrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    device: str = "auto"
    dim: int = 64
    warmup_steps: int = 100


def model_tokens(m: Any, images: np.ndarray, batch: int = 250, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """All-level tokens (N, L, h, w) of same-size uint8 images under a loaded model."""
    from ..api import image_tokens

    out = []
    for start in range(0, len(images), batch):
        out.append(image_tokens(images[start: start + batch], m, m.qualities).astype(np.int16))
        if on_batch:
            on_batch(len(out[-1]))
    return np.concatenate(out)


def train_context(tokens: np.ndarray, vocab: int, cfg: PriorTrainConfig, checkpoint: Path, resume: bool = False,
                  on_step: Callable[[dict[str, Any]], None] | None = None) -> ContextNet:
    """Fit a ContextNet to tokens (N, L, h, w); `on_step` gets epoch, step, steps, bits, images_per_s."""
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    net = ContextNet(ContextConfig(levels=tokens.shape[1], vocab=vocab, dim=cfg.dim)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    data = torch.from_numpy(tokens.astype(np.int64))
    steps_per_epoch = max(1, len(data) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    start_epoch, gen, seconds = 0, torch.Generator().manual_seed(cfg.seed), 0.0
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["config"] != net.cfg.to_dict():
            raise RuntimeError(f"{checkpoint} was made with another prior config; delete it or drop --resume")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, seconds = state["epoch"], state.get("seconds", 0.0)
        gen.set_state(state["generator"])
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        order = torch.randperm(len(data), generator=gen)
        t0 = time.perf_counter()
        for i in range(steps_per_epoch):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * steps_per_epoch + i, total, cfg, floor=0.02)
            batch = data[order[i * cfg.batch_size: (i + 1) * cfg.batch_size]].to(device)
            loss = net.loss_bits(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if on_step:
                on_step({"epoch": epoch + 1, "epochs": cfg.epochs, "step": i + 1, "steps": steps_per_epoch,
                         "bits": loss.item(), "images_per_s": (i + 1) * cfg.batch_size / (time.perf_counter() - t0)})
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_suffix(checkpoint.suffix + ".tmp")
        seconds += time.perf_counter() - t0
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1, "seconds": seconds,
                    "generator": gen.get_state(), "config": net.cfg.to_dict()}, tmp)
        os.replace(tmp, checkpoint)
    net.train_seconds = seconds  # wall time of all epochs, resumed ones included
    return net.cpu().eval()


def finished_epochs(checkpoint: Path) -> int:
    """Epochs a prior checkpoint holds (0 if none): a finished run needs no training tokens."""
    if not checkpoint.exists():
        return 0
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"])


def code_lengths(prior: Any, tokens: np.ndarray, batch: int = 500) -> np.ndarray:
    """Ideal bits per image and level (N, L) of tokens under a prior's exact integer tables, with
    every level's tables computed once (quality q's bits are the sum over the first q levels)."""
    return np.concatenate([prior.level_bits(tokens[s: s + batch]) for s in range(0, len(tokens), batch)])
