"""Whether a grown latent's new channels carry anything yet: for a training checkpoint, the mean |y| and
the share of nonzero tokens of the channels beyond --first (the init's latent) against the old ones,
on one Kodak image at qualities 1, 5 and 9, and the PSNR the reconstruction gains from them.

    python benchmarks/new_latent_usage.py ~/.cache/vqzip/runs/photo-cbr-m256/checkpoint.pt [--first 160]

Why: a channel added silent under a tiny scale can stay at 0 for good (vqzip train --latent-ramp);
this shows it within a minute. Prints; writes nothing.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqzip.codec.config import PhotoConfig
from vqzip.codec.hyperprior import PhotoCodec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--first", type=int, default=160, help="the first new latent channel")
    ap.add_argument("--image", type=Path,
                    default=Path(os.environ.get("VQZIP_DATA", "../shared/data")) / "kodak" / "kodim05.png")
    a = ap.parse_args()
    ck = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    model = PhotoCodec(PhotoConfig.from_dict(ck["config"]))
    model.load_state_dict(ck["model"])
    model.eval()
    x = torch.from_numpy(np.array(Image.open(a.image).convert("RGB"))[None]).permute(0, 3, 1, 2).float() / 255 - 0.5
    print(f"step {ck['step']}, {a.image.name}")
    with torch.no_grad():
        for q in (0, model.qualities // 2, model.qualities - 1):
            y = model.analysis(x, torch.tensor([q]))[0]
            parts = {"old": y[: a.first], "new": y[a.first:]}
            # what the reconstruction owes them: its PSNR with the new channels' tokens, and with them 0
            y_hat = y.round()[None]
            silent = y_hat.clone()
            silent[:, a.first:] = 0
            psnr = [float(-10 * torch.log10((model.synthesis(t, torch.tensor([q])).clamp(-0.5, 0.5) - x).pow(2).mean()))
                    for t in (y_hat, silent)]
            print(f"q{q + 1}: " + ", ".join(f"{k} |y| {v.abs().mean():.3f} nonzero {(v.round() != 0).float().mean():.4f} "
                                            f"max {v.abs().max():.2f}" for k, v in parts.items())
                  + f"; PSNR {psnr[0]:.2f} dB, {psnr[0] - psnr[1]:+.2f} dB from the new channels")


if __name__ == "__main__":
    main()
