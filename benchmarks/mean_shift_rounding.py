"""What coding each latent as round(y - mean) + mean would buy a hyperprior codec, before any format work.

Today the tokens are round(y): the decoder's synthesis sees integers and each token is coded under its
Gaussian(mean, scale) with a table per fractional mean. CompressAI and Minnen & Singh (2020) code the
residual round(y - mean) under a zero-mean table and hand the synthesis round(y - mean) + mean: where the
entropy model is sure (small scale), the token is 0 and the latent is the predicted mean, not the
nearest integer. This script measures that change on the float model as trained (no retraining, which
would let the synthesis and the context networks adapt to it): slice by slice, and each slice's
checkerboard anchors before the rest, the means come from the latents already rounded, as a decoder
would see them. Bits are the float model's (Gaussian likelihoods of the integer residuals, plus the
side tokens'); PSNR on RGB uint8 per image, averaged; BD-rate of mean-shifted against plain rounding.

    python benchmarks/mean_shift_rounding.py --model photo-cbr128 --images 8       # Kodak
    python benchmarks/mean_shift_rounding.py --model small-cb3 --images 1000       # CIFAR-10 test

Writes benchmarks/results/mean_shift_rounding-<model>.json unless --out says otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqzip import api
from vqzip.bench.datasets import load_target
from vqzip.bench.metrics import bd_rate, psnr
from vqzip.codec.hyperprior import PhotoCodec, anchor_mask, gaussian_likelihood
from vqzip.codec.model import to_uint8, to_unit


def shifted_latents(codec: PhotoCodec, y: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
    """round(y - mean) + mean in the decoder's order: slice by slice, anchors before the rest."""
    y_hat, width = torch.zeros_like(y), codec.context.width
    anchors = anchor_mask(*y.shape[2:]).bool().expand_as(y[:, :width])
    halves = (anchors, ~anchors) if codec.context.spatial else (torch.ones_like(anchors),)
    for s in range(codec.context.slices):
        part = slice(s * width, (s + 1) * width)
        for half in halves:
            mean, _ = codec.entropy_params(z_hat, y_hat)
            y_hat[:, part] = torch.where(half, (y[:, part] - mean[:, part]).round() + mean[:, part], y_hat[:, part])
    return y_hat


def rate_and_psnr(codec: PhotoCodec, images: np.ndarray, quality: int, shifted: bool) -> tuple[float, float]:
    """Mean bits per pixel (float model) and mean PSNR of uint8 images (N, H, W, 3) at `quality`."""
    x, q = to_unit(torch.from_numpy(images.copy())), torch.full((len(images),), quality - 1)
    y = codec.analysis(x, q)
    z_hat = codec.h_a(y).round()
    y_hat = shifted_latents(codec, y, z_hat) if shifted else y.round()
    mean, scale = codec.entropy_params(z_hat, y_hat)
    bits = (-torch.log2(gaussian_likelihood(y_hat - mean, scale)).sum((1, 2, 3))
            - torch.log2(codec.z_density.likelihood(z_hat)).sum((1, 2, 3)))
    back = to_uint8(codec.synthesis(y_hat, q).clamp(-0.5, 0.5)).numpy()
    pixels = images.shape[1] * images.shape[2]
    return float(bits.mean()) / pixels, float(np.mean([psnr(a, b) for a, b in zip(images, back)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="photo-cbr128")
    ap.add_argument("--images", type=int, default=8, help="First N Kodak photos (photo models) or CIFAR-10 test images.")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VQZIP_DATA", "../shared/data")))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    m = api.load_model(args.model)
    codec = m.codec.float().eval()
    small = m.config.prior_block > 0
    if small:  # a block model's context runs per 32x32 block: CIFAR-10 images are one block each
        batches = [np.asarray(load_target("cifar10", args.data, args.images)[1])]
    else:
        files = sorted((args.data / "kodak").glob("*.png"))[: args.images]
        batches = [np.asarray(Image.open(f).convert("RGB"))[None] for f in files]
    rows = []
    for quality in range(1, codec.qualities + 1):
        row: dict[str, float | int] = {"quality": quality}
        for name, shifted in (("round", False), ("shifted", True)):
            per = np.array([rate_and_psnr(codec, b, quality, shifted) for b in batches])
            weights = np.array([len(b) for b in batches], dtype=np.float64)
            row[f"{name}_bpp"], row[f"{name}_psnr"] = (float(v) for v in weights @ per / weights.sum())
        rows.append(row)
        print(json.dumps(row), flush=True)
    bd = bd_rate([r["round_bpp"] for r in rows], [r["round_psnr"] for r in rows],
                 [r["shifted_bpp"] for r in rows], [r["shifted_psnr"] for r in rows])
    result = {"command": "python benchmarks/mean_shift_rounding.py " + " ".join(
                  f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "data")),
              "model": m.name, "model_id": f"{m.model_id:04x}", "images": "cifar10 test" if small else "kodak",
              "n_images": int(sum(len(b) for b in batches)), "per_quality": rows,
              "bd_rate_shifted_vs_round_percent": bd,
              "note": "float model as trained, no retraining; bits are the float Gaussian likelihoods of the "
                      "integer residuals plus the side tokens' (not the integer tables, not a file)"}
    out = args.out or Path(f"benchmarks/results/mean_shift_rounding-{m.name}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"BD-rate, mean-shifted against plain rounding: {bd:+.2f} % -> {out}")


if __name__ == "__main__":
    main()
