"""A training checkpoint of the photo codec against a shipped photo model, during training: the float
model's coded bpp (rounded latents, as coded), PSNR and rate-distortion loss on some Kodak images (or
the PNGs of any --data folder) at the reference's qualities 1, 4 and 8 or --qualities: the checkpoint's
quality of the same lambda where it has one (its qualities may be a subset of the reference's, or go
beyond them), else the one as far from its top (when it has qualities added below).

    python benchmarks/checkpoint_vs_model.py ~/.cache/vqzip/runs/photo-cc/checkpoint.pt [--ref photo-hp] [--every 6]
        [--qualities 1 4 8 9] [--mean-shift] [--real]

Why: the card's real-file measurement of every quality takes minutes; this takes one, on one thread,
so the curve can be followed while the run trains. Prints; writes nothing. --real measures the reference by
its real .vqz files instead (as vqzip writes them, decoded again): for a checkpoint that codes otherwise
than its init, e.g. a block model (--prior-block) trained on as a whole-grid one.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqzip import api, zoo
from vqzip.codec.config import PhotoConfig
from vqzip.codec.hyperprior import PhotoCodec, coded_cost


def measure(model: PhotoCodec, q: int, files: list[Path], mean_shift: bool) -> tuple[float, float, float]:
    """(bpp, PSNR, bpp + lambda * 255^2 * MSE), means over the images."""
    bpp = mse = 0.0
    for f in files:
        img = np.array(Image.open(f).convert("RGB"))
        x = torch.from_numpy(img[None]).permute(0, 3, 1, 2).float() / 255 - 0.5
        with torch.no_grad():
            qq = torch.tensor([q])
            y = model.analysis(x, qq)
            cost, t = coded_cost(model, x, qq, y, model.h_a(y), mean_shift)
        lam = model.config.lambdas[q] * 255**2
        bpp += float(cost - t["distortion"]) / len(files)
        mse += float(t["distortion"] / lam) / len(files)
    return bpp, 10 * float(np.log10(1 / mse)), bpp + model.config.lambdas[q] * 255**2 * mse


def measure_files(name: str, q: int, files: list[Path]) -> tuple[float, float, float]:
    """measure()'s (bpp, PSNR, RD loss) of a shipped model's real files at quality index q."""
    m = zoo.load_model(name)
    bpp = mse = 0.0
    for f in files:
        img = np.array(Image.open(f).convert("RGB"))
        data = api.compress(img, m, q + 1)
        out = np.asarray(api.decompress(data, m), dtype=np.float64)
        bpp += 8 * len(data) / (img.shape[0] * img.shape[1]) / len(files)
        mse += float(np.mean((out / 255 - img / 255) ** 2)) / len(files)
    return bpp, 10 * float(np.log10(1 / mse)), bpp + m.codec.config.lambdas[q] * 255**2 * mse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--ref", default="photo-hp")
    ap.add_argument("--every", type=int, default=6, help="every n-th image (6: 4 of Kodak's)")
    ap.add_argument("--qualities", type=int, nargs="+", default=[1, 4, 8], help="the reference's qualities")
    ap.add_argument("--mean-shift", action="store_true", help="round both as format version 9 codes: round(y - mean) + mean")
    ap.add_argument("--real", action="store_true", help="the reference by its real files (measure_files)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VQZIP_DATA", "../shared/data")) / "kodak")
    a = ap.parse_args()
    torch.set_num_threads(1)
    ck = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    model = PhotoCodec(PhotoConfig.from_dict(ck["config"]))
    model.load_state_dict(ck["model"])
    ref = zoo.load_model(a.ref).codec
    model.eval(), ref.eval()
    shift = model.qualities - ref.qualities

    def matching(q: int) -> int:
        lam = ref.config.lambdas[q]
        return model.config.lambdas.index(lam) if lam in model.config.lambdas else q + shift

    files = sorted(a.data.glob("*.png"))[:: a.every]
    print(f"step {ck['step']}, {len(files)} images of {a.data}")
    for q in (q - 1 for q in a.qualities):
        b1, p1, l1 = measure(model, matching(q), files, a.mean_shift)
        b0, p0, l0 = measure_files(a.ref, q, files) if a.real else measure(ref, q, files, a.mean_shift)
        print(f"{a.ref} q{q + 1} (lambda {ref.config.lambdas[q]}): checkpoint {b1:.4f} bpp {p1:.2f} dB, "
              f"{a.ref} {b0:.4f} bpp {p0:.2f} dB, RD loss {100 * (l1 / l0 - 1):+.2f} %", flush=True)


if __name__ == "__main__":
    main()
