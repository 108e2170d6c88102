"""What a photo codec's hyperprior saves against static tables on the same tokens (issue #18's 25 % bar)

    python benchmarks/hyperprior_gain.py --model small-hp [--fit 5000] [--test 1000] [--dataset cifar10|kodak-thumbs]

The static tables are what a factorized prior (Balle et al. 2017) would code the same integer latents
with: one histogram per latent channel and quality, counted on the tokens of the first N CIFAR-10
training images (add-one smoothed over -T..T; a token beyond pays an Exp-Golomb escape). Both sides
are ideal bits of the payload (no container): the hyperprior's include its side tokens z, the static
tables' nothing but y, so the comparison favours the static tables. Writes
benchmarks/results/hyperprior_gain-<model>-<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from vqzip import api
from vqzip.bench.datasets import kodak_thumbs
from vqzip.training.data import load_cifar10
from vqzip.zoo import load_model

ROOT = Path(__file__).resolve().parent
T = 64  # static tables cover -T..T


def static_bits(fit: np.ndarray, test: np.ndarray) -> float:
    """Ideal bits of `test` tokens (N, M, h, w) under per-channel histograms of `fit` tokens."""
    channels = fit.shape[1]
    fit_c = np.clip(fit, -T - 1, T + 1).transpose(1, 0, 2, 3).reshape(channels, -1) + T + 1
    counts = np.stack([np.bincount(c, minlength=2 * T + 3) for c in fit_c]).astype(np.float64) + 1.0
    logp = -np.log2(counts / counts.sum(1, keepdims=True))
    test_c = test.transpose(1, 0, 2, 3).reshape(channels, -1)
    idx = np.clip(test_c, -T - 1, T + 1) + T + 1
    bits = float(np.take_along_axis(logp, idx, 1).sum())
    excess = np.abs(test_c[np.abs(test_c) > T]) - T  # the ends stand for escapes: Exp-Golomb of the excess
    return bits + float(sum(2 * int(math.log2(e)) + 1 for e in excess))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--fit", type=int, default=5000, help="CIFAR-10 training images the static tables count")
    ap.add_argument("--test", type=int, default=1000, help="test images (the first M; kodak-thumbs has 144)")
    ap.add_argument("--dataset", default="cifar10", choices=["cifar10", "kodak-thumbs"])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    m = load_model(args.model)
    fit_images = load_cifar10("train", args.data)[0][: args.fit]
    test_images = (load_cifar10("test", args.data)[0] if args.dataset == "cifar10" else kodak_thumbs(args.data))[: args.test]
    rows = []
    for q in range(1, m.qualities + 1):
        fit_y = np.concatenate([api.photo_tokens(fit_images[i: i + 256], m, q)[0] for i in range(0, len(fit_images), 256)])
        hp, static = 0.0, 0.0
        for i in range(0, len(test_images), 256):
            y, z = api.photo_tokens(test_images[i: i + 256], m, q)
            hp += sum(bits for _, bits in m.prior.encode(y, z))
            static += static_bits(fit_y, y)
        n = len(test_images)
        rows.append({"quality": q, "hyperprior_bits_per_image": hp / n, "static_bits_per_image": static / n,
                     "saving_percent": 100 * (1 - hp / static)})
        print(f"quality {q}: hyperprior {hp / n:8.1f} bits/image, static tables {static / n:8.1f}: "
              f"{rows[-1]['saving_percent']:.1f} % fewer")
    out = args.out or ROOT / "results" / f"hyperprior_gain-{m.name}-{args.dataset}.json"
    out.write_text(json.dumps({"command": "python benchmarks/hyperprior_gain.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
        "model": m.name, "model_id": f"{m.model_id:04x}", "dataset": args.dataset, "test_images": len(test_images),
        "fit_images": len(fit_images), "static_tables": f"per channel and quality, add-one smoothed over -{T}..{T}, "
        "escapes Exp-Golomb; ideal bits", "per_quality": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
