"""Peak memory and time to encode and decode a 24-megapixel photo (6000 x 4000) with the default model.

The bar (issue #2): peak resident memory under 4 GB, which tiling (vqzip.api.TILE) guarantees.
Usage: python benchmarks/memory_24mp.py [--model NAME] [--out benchmarks/results/memory_24mp.json]
The image is synthetic (smooth gradients plus texture), so the script needs no data.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vqzip import api


def synthetic_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, (x + y) / (width + height)], -1) * 200
    base += rng.normal(0, 8, (height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:height, :width]
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/memory_24mp.json"))
    args = ap.parse_args()
    model = api.load_model(args.model)
    img = synthetic_photo(args.width, args.height)
    before = peak_rss_mb()
    t0 = time.perf_counter()
    data = api.compress(img, model)
    t1 = time.perf_counter()
    back = api.decompress(data, model)
    t2 = time.perf_counter()
    assert back.size == img.size
    result = {"model": model.name, "width": args.width, "height": args.height, "quality": model.default_quality,
              "bytes": len(data), "bpp": 8 * len(data) / (args.width * args.height),
              "encode_s": round(t1 - t0, 2), "decode_s": round(t2 - t1, 2),
              "peak_rss_mb_before_coding": round(before, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
              "note": "peak RSS of the whole process (input image, model and torch included), from getrusage"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
