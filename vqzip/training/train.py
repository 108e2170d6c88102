"""Training loop: CIFAR-10 (or random crops of an image folder) -> a codec checkpoint.

One process on CPU or one GPU; several GPUs with `torchrun` (DistributedDataParallel). A checkpoint is
written after every epoch; `resume=True` continues exactly (model, optimiser, schedule, RNG state).
"""
from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..codec.model import Codec, CodecConfig, to_unit


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    limit: int | None = None  # use only the first N training images
    warmup_steps: int = 200
    codec: CodecConfig = field(default_factory=CodecConfig)
    init: str | None = None  # start from this model's weights (name or path) instead of random ones


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA device is available")
    if name == "cuda" and _dist_world() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def _dist_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, total: int, cfg: Any, floor: float = 0.05) -> float:
    """Linear warm-up over cfg.warmup_steps, then cosine decay from cfg.lr to `floor` of it."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of an MSE measured on [-0.5, 0.5]-scaled (i.e. /255) images."""
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def train(images: np.ndarray, cfg: TrainConfig, checkpoint: Path, resume: bool = False,
          on_step: Callable[[dict[str, Any]], None] | None = None,
          on_epoch: Callable[[int, Codec], None] | None = None) -> Codec:
    """Train a codec on uint8 images (N, H, W, 3) (all the same size; crops for photos).

    `on_step` receives a dict (epoch, step, steps, loss, psnr, utilisation, images_per_s) for progress.
    `on_epoch(epoch, model)` is called (rank 0) after each epoch's checkpoint is written, e.g. to
    evaluate on a test set; it must leave the weights and RNG state alone (use eval mode, no_grad).
    """
    world = _dist_world()
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(cfg.device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    _seed_all(cfg.seed)
    if cfg.limit:
        images = images[: cfg.limit]
    data = torch.from_numpy(images)
    model = Codec(cfg.codec)
    if cfg.init and not (resume and checkpoint.exists()):
        warm_start(model, cfg.init)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = max(1, len(data) // (cfg.batch_size * world))
    total = steps_per_epoch * cfg.epochs
    start_epoch, gen = 0, torch.Generator().manual_seed(cfg.seed)
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"]
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = torch.randperm(len(data), generator=gen)
        flips = torch.rand(len(data), generator=gen) < 0.5
        t0 = time.perf_counter()
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, cfg)
            idx = order[(i * world + rank) * cfg.batch_size: (i * world + rank + 1) * cfg.batch_size]
            x = to_unit(data[idx].to(device))
            x = torch.where(flips[idx].to(device).view(-1, 1, 1, 1), x.flip(-1), x)
            recon, out = net(x)
            mse = F.mse_loss(recon, x)
            loss = mse + out.loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if on_step and rank == 0:
                on_step({"epoch": epoch + 1, "epochs": cfg.epochs, "step": i + 1, "steps": steps_per_epoch,
                         "loss": loss.item(), "psnr": psnr_from_mse(mse.item()),
                         "utilisation": out.stats.get("utilisation", float("nan")),
                         "images_per_s": (i + 1) * cfg.batch_size * world / (time.perf_counter() - t0)})
        if rank == 0:
            save_checkpoint(checkpoint, model, opt, epoch + 1, gen)
            if on_epoch:
                on_epoch(epoch + 1, model)
    if world > 1:
        torch.distributed.barrier()
    return model.cpu().eval()


def warm_start(model: Codec, init: str) -> None:
    """Copy a trained model's weights into `model`, to train it further.

    The architecture must match, except that an RVQ model may gain levels: the new ones start fresh
    (k-means on the first batch). EMA codebook statistics are not stored with a model, so each loaded
    VQ stage restarts them from its codebook with unit counts: the first updates move it smoothly.
    """
    from ..codec.quantizers.vq import VQ
    from ..zoo import TRAINING_ONLY

    weights = {k: v for k, v in check_init(init, model.config).state_dict().items() if not k.endswith(TRAINING_ONLY)}
    model.load_state_dict(weights, strict=False)
    for name, stage in model.named_modules():
        if isinstance(stage, VQ) and f"{name}.codebook" in weights:
            stage.reset_ema()


def check_init(init: str, config: CodecConfig) -> Codec:
    """The model `init` names, if a model of `config` can start from it; else a one-line error."""
    from ..zoo import load_model

    source = load_model(init).codec
    if not _extends(source.config, config):
        raise RuntimeError(f"--init {init}: its architecture {source.config.to_dict()} differs from "
                           f"the one asked for {config.to_dict()}")
    return source


def _extends(old: CodecConfig, new: CodecConfig) -> bool:
    """True if `new` is `old`, or `old` with more RVQ levels."""
    if old.quantizer == new.quantizer == "rvq":
        more = new.quantizer_args.get("levels", 8) >= old.quantizer_args.get("levels", 8)

        def strip(c: CodecConfig) -> dict[str, Any]:
            return {**c.to_dict(), "quantizer_args": {k: v for k, v in c.quantizer_args.items() if k != "levels"}}

        return more and strip(old) == strip(new)
    return old == new


def save_checkpoint(path: Path, model: Codec, opt: torch.optim.Optimizer, epoch: int, gen: torch.Generator) -> None:
    """Atomically write everything needed to resume exactly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                "codec_config": model.config.to_dict()}, tmp)
    os.replace(tmp, path)


def fit_prior(model: Codec, images: np.ndarray, batch: int = 1000) -> Any:
    """Static per-level token histograms over `images` at every level (RVQ tokens of a prefix do not
    depend on how many levels follow, so one pass serves every quality)."""
    from ..coding.priors import StaticPrior

    tokens = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = to_unit(torch.from_numpy(images[start: start + batch]))
            tokens.append(model.quantizer.tokens(model.encoder(x)).numpy())
    return StaticPrior.fit(np.concatenate(tokens), model.quantizer.vocab_sizes)


def export(model: Codec, train_images: np.ndarray, out: Path, card: dict[str, Any],
           test_images: np.ndarray | None = None, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write `<out>.safetensors` (weights + fitted prior) and `<out>.json` (the model card, with the
    measured test-set bytes and PSNR per quality when `test_images` is given)."""
    import json

    from ..zoo import load_model, model_id, save_model
    from .evaluate import measure

    model = model.cpu().eval()
    weights = save_model(out.with_suffix(".safetensors"), model, fit_prior(model, train_images))
    card = {**card, "model_id": f"{model_id(weights):04x}", "quantizer": model.config.quantizer,
            "config": model.config.to_dict(), "vocab_sizes": model.quantizer.vocab_sizes,
            "qualities": model.qualities, "prior": {"kind": "static per-level frequency tables",
                                                    "fitted_on": card.get("data", "training set"),
                                                    "stored_in": weights.name + " (tensors prior.static.<level>)"}}
    card.setdefault("default_quality", (model.qualities + 1) // 2)
    if test_images is not None:
        rows = measure(load_model(weights), test_images, on_batch=on_batch)
        card["results"] = {"dataset": card.get("test_data", "test set"), "images": len(test_images),
                           "method": "mean size of real .vqz files (header + payload + checksum), decoded "
                                     "again; PSNR over RGB uint8, averaged per image", "per_quality": rows}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, out.with_suffix(".json"))
    return card
