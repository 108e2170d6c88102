"""Rate-distortion training of the photo codec (codec.hyperprior): random crops of photo folders, one
random quality per crop, loss = bits per pixel + lambda[q] * 255^2 * MSE.

Runs for tens of thousands of steps on a CPU, so across sessions: a checkpoint (model, optimiser,
step) is written every few minutes, and on SIGINT / SIGTERM, to a run folder outside the work tree,
and a run resumes from it exactly. Every step's crops, qualities and noise come from generators seeded
by (seed, step), so a resumed run takes the same steps an uninterrupted one would.
"""
from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..codec.hyperprior import PhotoCodec, PhotoConfig

CHECKPOINT = "checkpoint.pt"
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def load_photos(folders: list[Path], min_side: int) -> list[np.ndarray]:
    """Every photo under `folders` (in sorted path order, folder by folder) with both sides at least
    `min_side`, as RGB uint8 (H, W, 3). The order is part of a run: resuming needs the same list."""
    from PIL import Image

    photos = []
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.suffix.lower() in EXTENSIONS:
                with Image.open(p) as img:
                    arr = np.asarray(img.convert("RGB"))
                if min(arr.shape[:2]) >= min_side:
                    photos.append(arr)
    if not photos:
        raise ValueError(f"no photos of at least {min_side}x{min_side} in {', '.join(map(str, folders))}")
    return photos


def thumbnails(photos: list[np.ndarray], side: int, count: int, seed: int) -> list[np.ndarray]:
    """`count` thumbnails of side x side pixels, made as the kodak-thumbs bench set is made from Kodak:
    a random square crop whose side is k * `side` (k >= 2 at random, up to what the photo holds),
    box-downsampled by k. A function of (photos, side, count, seed) alone."""
    from PIL import Image

    rng = np.random.default_rng([seed, side])
    fit = [p for p in photos if min(p.shape[:2]) >= 2 * side]
    if not fit:
        raise ValueError(f"no photo of at least {2 * side}x{2 * side} to make {side}x{side} thumbnails of")
    out = []
    for i in rng.integers(0, len(fit), count):
        img = fit[i]
        k = int(rng.integers(2, min(img.shape[:2]) // side + 1))
        y, x = rng.integers(0, img.shape[0] - k * side + 1), rng.integers(0, img.shape[1] - k * side + 1)
        out.append(np.asarray(Image.fromarray(img[y: y + k * side, x: x + k * side]).reduce(k)))
    return out


@dataclass
class RDConfig:
    steps: int
    codec: PhotoConfig = field(default_factory=PhotoConfig)
    batch_size: int = 8
    crop: int = 256
    lr: float = 3e-4
    warmup_steps: int = 500
    seed: int = 0
    checkpoint_seconds: float = 300.0
    log_every: int = 25
    compile: bool = False  # torch.compile the training pass: about 15 % faster steps after a minute or two of compiling
    # latent channels ramp_from.. (those a larger --latent added to the init) pay their rate times
    # min(1, step / ramp_steps): silent at first under a tiny scale, a new channel that paid in full
    # could never start to carry anything (any token it sent would cost ~15 bits)
    ramp_from: int = 0
    ramp_steps: int = 0
    mean_shift: bool = False  # train on round(y - mean) + mean, as format version 9 codes (PhotoCodec.forward)

    def __post_init__(self) -> None:
        if self.crop % self.codec.stride:
            raise ValueError(f"--crop {self.crop} is not a multiple of the model's stride, {self.codec.stride} pixels")
        block = self.codec.prior_block * self.codec.latent_stride
        if block and block != self.crop:  # training runs the entropy model on whole crops: they must be its blocks
            raise ValueError(f"--prior-block {self.codec.prior_block} is {block} pixels, not the --crop {self.crop}")


def crops_for_step(photos: list[np.ndarray], step: int, cfg: RDConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The crops (n, 3, crop, crop) in [-0.5, 0.5] and quality indices (n,) of one step, flipped and
    transposed at random: a function of (seed, step) alone."""
    rng = np.random.default_rng([cfg.seed, step])
    crops = []
    for i in rng.integers(0, len(photos), cfg.batch_size):
        img = photos[i]
        y, x = rng.integers(0, img.shape[0] - cfg.crop + 1), rng.integers(0, img.shape[1] - cfg.crop + 1)
        c = img[y: y + cfg.crop, x: x + cfg.crop]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        if rng.random() < 0.5:
            c = c.transpose(1, 0, 2)
        crops.append(np.ascontiguousarray(c))
    # channels-last (what the permuted HWC crops already are): oneDNN's convolutions then take a step of
    # 8 x 256^2 crops at N = 128 in 1.1-1.3 s against 1.5-1.7 s from NCHW (bfloat16, 2 cores;
    # benchmarks/train_step_time.py --channels 128 --layout nchw|channels_last)
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255.0).sub(0.5)
    return x.contiguous(memory_format=torch.channels_last), torch.from_numpy(rng.integers(0, cfg.codec.qualities, cfg.batch_size))


def rate_weight(cfg: RDConfig, step: int) -> torch.Tensor | None:
    """What each latent channel's bits weigh in step `step`'s loss (RDConfig.ramp_from), or None: all 1."""
    if not cfg.ramp_steps or step >= cfg.ramp_steps:
        return None
    weight = torch.ones(cfg.codec.latent)
    weight[cfg.ramp_from:] = step / cfg.ramp_steps
    return weight


def rd_loss(model: PhotoCodec, x: torch.Tensor, q: torch.Tensor,
            forward: Callable[..., dict[str, torch.Tensor]] | None = None,
            weight: torch.Tensor | None = None, mean_shift: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over the batch of bpp + lambda[q] * 255^2 * MSE, and the batch's bpp and PSNR. `forward`
    (default: the model itself) is the training pass to run, e.g. the model compiled; `weight` (M,), if
    given, weighs each latent channel's bits in the loss (rate_weight), not in the bpp it reports;
    `mean_shift`: see PhotoCodec.forward."""
    out = (model if forward is None else forward)(x, q, mean_shift=mean_shift)
    mse = (out["x_hat"] - x).pow(2).mean((1, 2, 3))
    pixels = x.shape[2] * x.shape[3]
    bpp = (out["y_bits"] + out["z_bits"]) / pixels
    paid = bpp if weight is None else (out["y_channel_bits"] @ weight + out["z_bits"]) / pixels
    lambdas = torch.tensor(model.config.lambdas)[q]
    loss = (paid + lambdas * 255**2 * mse).mean()
    return loss, {"loss": loss.item(), "bpp": bpp.mean().item(), "psnr": (-10 * torch.log10(mse)).mean().item()}


def _lr(cfg: RDConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)


def save_checkpoint(path: Path, model: PhotoCodec, opt: torch.optim.Optimizer, step: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "config": model.config.to_dict()}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def train_rd(photos: list[np.ndarray], cfg: RDConfig, run: Path, init: dict[str, torch.Tensor] | None = None,
             on_log: Callable[[dict[str, Any]], None] | None = None) -> PhotoCodec:
    """Train until cfg.steps, resuming from `run`/checkpoint.pt when it exists (else from `init`
    weights, else from scratch). Returns the model; SIGINT / SIGTERM checkpoint and stop early."""
    run.mkdir(parents=True, exist_ok=True)
    ckpt = run / CHECKPOINT
    torch.manual_seed(cfg.seed)  # the initial weights of a run from scratch: part of what makes it repeatable
    model = PhotoCodec(cfg.codec)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step = 0
    if ckpt.is_file():
        state = load_checkpoint(ckpt)
        saved = PhotoConfig.from_dict(state["config"])  # the prior block changes coding, not training (a crop is one block)
        if replace(saved, prior_block=cfg.codec.prior_block) != cfg.codec:
            raise ValueError(f"{ckpt} holds a model of another configuration ({state['config']})")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
    elif init is not None:  # weights the init lacks (new slice context networks) keep their initial values
        model.load_state_dict({**model.state_dict(), **init})
    # compiled with inductor (needs a C++ compiler); the checkpoint still holds `model`'s own weights, and
    # the noise comes from torch's own generator as in eager steps (fallback_random), so a run may switch
    forward: Any = model
    if cfg.compile:
        from torch._inductor import config as inductor

        inductor.fallback_random = True
        forward = torch.compile(model)
    stop = {"now": False}

    def _stop(signum: int, frame: Any) -> None:
        stop["now"] = True

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    log = (run / "log.jsonl").open("a")
    last_save, t0, since = time.time(), time.time(), 0
    acc: dict[str, float] = {}
    model.train()
    try:
        while step < cfg.steps and not stop["now"]:
            x, q = crops_for_step(photos, step, cfg)
            torch.manual_seed(cfg.seed * 1_000_003 + step)
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, step)
            loss, stats = rd_loss(model, x, q, forward, rate_weight(cfg, step), cfg.mean_shift)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step, since = step + 1, since + 1
            for k, v in stats.items():
                acc[k] = acc.get(k, 0.0) + v
            if step % cfg.log_every == 0:  # means over the steps since the last record (fewer after a resume)
                rec = {"step": step, "steps": cfg.steps, "lr": _lr(cfg, step), "s_per_step": (time.time() - t0) / since,
                       **{k: v / since for k, v in acc.items()}}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                if on_log:
                    on_log(rec)
                acc, t0, since = {}, time.time(), 0
            if time.time() - last_save > cfg.checkpoint_seconds:
                save_checkpoint(ckpt, model, opt, step)
                last_save = time.time()
        save_checkpoint(ckpt, model, opt, step)
    finally:
        log.close()
        for s, h in old.items():
            signal.signal(s, h)
    if stop["now"]:
        raise KeyboardInterrupt(f"stopped at step {step}; checkpoint saved in {ckpt}")
    return model.eval()


def coder_tensors(model: PhotoCodec) -> dict[str, np.ndarray]:
    """The integer tables and hyper-synthesis the coder needs, from the float model (see
    coding.gaussian), to store with the weights."""
    from ..coding.gaussian import Z_SUPPORT, HyperpriorCoder

    with torch.no_grad():
        pmf = model.z_density.pmf(Z_SUPPORT).numpy()
    return HyperpriorCoder.tables(pmf, {k: v.numpy() for k, v in model.h_s.state_dict().items()},
                                  {k: v.numpy() for k, v in model.context.state_dict().items()})


def entropy_model_text(c: PhotoConfig) -> str:
    """The model card's description of the entropy model, with the format version its files take."""
    text = "mean-scale hyperprior; integer hyper-synthesis and stored integer Gaussian tables (coding/gaussian.py)"
    if c.slices > 1:
        text += (f"; {c.slices} slices of {c.latent // c.slices} channels, each one's means and scales corrected by "
                 "an integer context network from the slices before")
    if c.checkerboard:
        text += "; each slice coded in two checkerboard halves, the second's corrected from the first's tokens"
    if c.prior_block:
        text += f"; all of it run on each block of {c.prior_block}x{c.prior_block} token positions alone, as on a training crop"
    if c.prior_block:  # version 8: the stored tables with their peaks restored
        return text + "; y coded under the fine tables (format version 8)"
    if c.checkerboard:  # version 9: and each token its offset from its mean
        return text + "; y coded under the fine tables as offsets from their means, round(y - mean) (format version 9)"
    return text + f" (format version {4 if c.slices > 1 else 3})"


def export_photo(model: PhotoCodec, out: Path, card: dict[str, Any], test_images: list[np.ndarray] | None = None,
                 on_image: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write `<out>.safetensors` (weights + coder tables) and `<out>.json` (the model card, with
    bytes, PSNR and MS-SSIM per quality measured on real .vqz files when `test_images` is given)."""
    from ..zoo import load_model, model_id, save_photo_model
    from .evaluate import measure_photos

    model = model.cpu().eval()
    ls, hs = model.config.latent_stride, model.config.stride
    weights = save_photo_model(out.with_suffix(".safetensors"), model, coder_tensors(model))
    card = {**card, "model_id": f"{model_id(weights):04x}", "kind": "hyperprior", "config": model.config.to_dict(),
            "qualities": model.qualities,
            "tokens": {"grid": f"latent channels x H/{ls} x W/{ls} (images padded to a multiple of {hs})",
                       "channels": model.config.latent, "range": "integers, |token| < 32768",
                       "side_tokens": f"{model.config.hyper} channels x H/{hs} x W/{hs}, integers in -64..64"},
            "entropy_model": entropy_model_text(model.config)}
    card.setdefault("default_quality", (model.qualities + 1) // 2)
    if test_images is not None:
        rows = measure_photos(load_model(weights), test_images, on_image=on_image)
        card["results"] = {"dataset": card.get("test_data", "test set"), "images": len(test_images),
                           "method": "mean size of real .vqz files (header + payload + checksum), decoded again; PSNR "
                                     "over RGB uint8 averaged per image; MS-SSIM (pytorch-msssim) on RGB uint8",
                           "per_quality": rows}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, out.with_suffix(".json"))
    return card
