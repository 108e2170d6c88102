"""Peak memory and time of `vqzip encode` and `vqzip decode` on a 24-megapixel photo (6000 x 4000).

The bar (issue #2): peak resident memory under 4 GB, which tiling (vqzip.api.TILE_PIXELS, PHOTO_TILE_PIXELS)
guarantees. Each command runs as its own process, exactly as a user runs it, and that process's own
peak RSS is read from its resource usage (os.wait4). The image is synthetic (smooth gradients plus texture), so the script
needs no data.

Usage: python benchmarks/memory_24mp.py [--out benchmarks/results/memory_24mp.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Gradients plus 8x8-pixel noise blocks, built band by band to keep this process small."""
    rng = np.random.default_rng(seed)
    out = np.empty((height, width, 3), np.uint8)
    x = np.arange(width, dtype=np.float32)[None, :, None]
    for y0 in range(0, height, 256):
        y = np.arange(y0, min(y0 + 256, height), dtype=np.float32)[:, None, None]
        base = np.concatenate([x / width + 0 * y, y / height + 0 * x, (x + y) / (width + height)], -1) * 200
        noise = rng.normal(0, 8, (-(-len(y) // 8), -(-width // 8), 3)).repeat(8, 0).repeat(8, 1)[: len(y), :width]
        out[y0: y0 + len(y)] = np.clip(base + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def run(args: list[str]) -> tuple[float, float]:
    """Run `python -m vqzip ARGS`; returns (seconds, the process's peak RSS in MB)."""
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "vqzip", *args])
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, child.args)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--model", default=None, help="model to encode with (default: vqzip encode's own choice)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/memory_24mp.json"))
    args = ap.parse_args()
    chosen = ["-m", args.model] if args.model else []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.png"
        synthetic_photo(args.width, args.height).save(src, compress_level=1)
        encode_s, encode_mb = run(["encode", str(src), "-o", str(Path(tmp) / "big.vqz"), "-q", *chosen])
        decode_s, decode_mb = run(["decode", str(Path(tmp) / "big.vqz"), "-o", str(Path(tmp) / "back.png"), "-q"])
        size = (Path(tmp) / "big.vqz").stat().st_size
    result = {"model": args.model or "vqzip encode's choice",
              "width": args.width, "height": args.height, "bytes": size, "bpp": 8 * size / (args.width * args.height),
              "encode_s": round(encode_s, 1), "decode_s": round(decode_s, 1),
              "encode_peak_rss_mb": round(encode_mb, 1), "decode_peak_rss_mb": round(decode_mb, 1),
              "note": "vqzip encode / decode (default quality) run as separate processes, PNG in and out; "
                      "peak RSS of each process from os.wait4 (ru_maxrss)"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
