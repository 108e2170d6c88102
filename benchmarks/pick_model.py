"""Where the photo codec starts to beat the small-image model: the size rule behind api.pick_model.

Kodak's 24 photos, box-downsampled so their short side is S pixels, coded by both models at every
quality (real .vqz files, decoded again); per S, each model's mean bits per pixel and PSNR, and the
BD-rate of the photo codec against the small-image model (negative: the photo codec needs fewer bits
for the same PSNR).

    python benchmarks/pick_model.py [--sizes 64 96 128 192 256] [--out benchmarks/results/pick_model.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from vqzip import api
from vqzip.bench.metrics import bd_rate, psnr
from vqzip.zoo import DEFAULT_MODEL, DEFAULT_PHOTO_MODEL


def thumbnails(folder: Path, side: int) -> list[np.ndarray]:
    out = []
    for p in sorted(folder.glob("*.png")):
        img = Image.open(p).convert("RGB")
        scale = side / min(img.size)
        out.append(np.asarray(img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BOX)))
    return out


def curve(model: str, images: list[np.ndarray]) -> list[dict[str, float]]:
    m = api.load_model(model)
    total = sum(i.shape[0] * i.shape[1] for i in images)
    rows = []
    for q in range(1, m.qualities + 1):
        files = [api.encode_batch(i[None], m, q)[0].data for i in images]
        back = [api.decode_batch([f], m)[0] for f in files]
        rows.append({"quality": q, "bpp": 8 * sum(map(len, files)) / total,
                     "psnr": float(np.mean([psnr(a, b) for a, b in zip(images, back)]))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VQZIP_DATA", "../shared/data")) / "kodak")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 192, 256])
    ap.add_argument("--small", default=DEFAULT_MODEL)
    ap.add_argument("--photo", default=DEFAULT_PHOTO_MODEL)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/pick_model.json"))
    a = ap.parse_args()
    results = {"command": "python benchmarks/pick_model.py " + " ".join(sys.argv[1:]),
               "small_model": a.small, "photo_model": a.photo,
               "small_model_id": f"{api.load_model(a.small).model_id:04x}",
               "photo_model_id": f"{api.load_model(a.photo).model_id:04x}", "sizes": []}
    for side in a.sizes:
        images = thumbnails(a.data, side)
        small, photo = curve(a.small, images), curve(a.photo, images)
        bd = bd_rate([r["bpp"] for r in small], [r["psnr"] for r in small], [r["bpp"] for r in photo], [r["psnr"] for r in photo])
        results["sizes"].append({"short_side": side, "small": small, "photo": photo, "bd_rate_photo_vs_small_percent": bd})
        print(f"short side {side}: BD-rate of {a.photo} against {a.small}: "
              f"{'n/a (no common PSNR range)' if bd is None else f'{bd:+.1f} %'}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
