"""What a dead zone in the encoder's rounding buys a mean-shifted photo codec (format version 9).

With mean-shifted rounding each token is round(d), d = y - mean. Rounding d towards zero instead,
sign(d) * floor(|d| + 1/2 - dz), makes more tokens 0 (the cheapest symbol) at a little distortion;
the decoder does not change. This script measures real payload bytes and PSNR for a few dead zones
on photos (by default the training photos of cbsd68, so that the choice is not made on Kodak), at
each quality of the model, from one analysis pass per image and quality, and prints the BD-rate of
each dead zone against none (bytes: the payload plus the container's fixed bytes per file).

    python benchmarks/deadzone.py [--model photo-cbr128] [--data ../shared/data/photos/cbsd68]
        [--limit 12] [--deadzones 0.05 0.1 0.15 0.2] [--out benchmarks/results/deadzone-photo-cbr128.json]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from vqzip import api
from vqzip.bench.metrics import bd_rate
from vqzip.coding import container


def measure(m: api.LoadedModel, images: list[np.ndarray], quality: int, deadzones: list[float]) -> list[dict[str, float]]:
    """Per dead zone (0 first): mean bits per pixel (whole files) and mean PSNR over the images."""
    coder = api.photo_coder(m, container.SHIFTED_CHECKERBOARD_VERSION)
    sums = np.zeros((len(deadzones), 2))
    pixels = sum(img.shape[0] * img.shape[1] for img in images)
    for img in images:
        y, z = api.photo_latents(img[None], m, quality)
        for i, dz in enumerate(deadzones):
            [(payload, _)], y_hat = coder.encode_latents(y, z, dz)
            header = container.Header(m.model_id, img.shape[1], img.shape[0], "RGB", quality,
                                      container.SHIFTED_CHECKERBOARD_VERSION)
            size = len(container.build(header, payload, m.key(container.SHIFTED_CHECKERBOARD_VERSION)))
            back = api.token_images(y_hat, m, img.shape[0], img.shape[1], quality)[0]
            sums[i] += (8 * size, api._psnr(img, back) / len(images))
    return [{"deadzone": dz, "bpp": float(s[0] / pixels), "psnr": float(s[1])} for dz, s in zip(deadzones, sums)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="photo-cbr128")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VQZIP_DATA", "../shared/data")) / "photos" / "cbsd68")
    ap.add_argument("--limit", type=int, default=12, help="the first N images of --data (sorted by name)")
    ap.add_argument("--deadzones", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.2])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    m = api.load_model(args.model)
    if api.photo_versions(m)[0] != container.SHIFTED_CHECKERBOARD_VERSION:
        raise SystemExit(f"{m.name} does not write mean-shifted tokens (format version 9)")
    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif"))
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files[: args.limit]]
    deadzones = [0.0, *args.deadzones]
    rows = []
    for quality in range(1, m.qualities + 1):
        rows.append({"quality": quality, "by_deadzone": measure(m, images, quality, deadzones)})
        print(json.dumps(rows[-1]), flush=True)
    curves = {dz: ([r["by_deadzone"][i]["bpp"] for r in rows], [r["by_deadzone"][i]["psnr"] for r in rows])
              for i, dz in enumerate(deadzones)}
    bd = {str(dz): bd_rate(*curves[0.0], *curves[dz]) for dz in args.deadzones}
    print("BD-rate against no dead zone:", {k: round(v, 2) if v is not None else None for k, v in bd.items()})
    result = {"command": "python benchmarks/deadzone.py " + " ".join(
                  f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                  for k, v in vars(args).items() if k != "out"),
              "model": m.name, "model_id": f"{m.model_id:04x}", "images": [f.name for f in files[: args.limit]],
              "per_quality": rows, "bd_rate_percent_vs_none": bd,
              "note": "real payloads in whole .vqz files (format version 9), PSNR on RGB uint8 per image, averaged"}
    out = args.out or Path(f"benchmarks/results/deadzone-{m.name}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
