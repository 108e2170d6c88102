"""What `vqzip encode --effort N` buys with the photo codec: the same decoder and format, tokens refined
per image by N gradient steps on rate + lambda * distortion.

On the first --images Kodak photos, at --qualities, real .vqz files decoded again, with effort 0 and N:
mean bits per pixel, PSNR, encode seconds per image, and the BD-rate of effort N against effort 0.

    python benchmarks/effort.py [--effort 10] [--images 6] [--qualities 2 4 6]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqzip import api
from vqzip.bench.metrics import bd_rate, psnr
from vqzip.runtime import set_threads
from vqzip.zoo import DEFAULT_PHOTO_MODEL


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VQZIP_DATA", "../shared/data")) / "kodak")
    ap.add_argument("--model", default=DEFAULT_PHOTO_MODEL)
    ap.add_argument("--effort", type=int, default=10)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--qualities", type=int, nargs="+", default=[2, 4, 6])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/effort.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)  # the refinement's gradient steps
    set_threads(a.threads)  # the networks (ONNX Runtime)
    m = api.load_model(a.model)
    paths = sorted(a.data.glob("*.png"))[: a.images]
    images = [Image.open(p).convert("RGB") for p in paths]
    load_at_start = os.getloadavg()[0]
    pixels = sum(i.width * i.height for i in images)
    curves: dict[int, list[dict[str, float]]] = {}
    for effort in (0, a.effort):
        rows = []
        for q in a.qualities:
            sizes, scores, seconds = [], [], []
            for img in images:
                t0 = time.perf_counter()
                data = api.compress_images([img], m, q, effort=effort)[0].data
                seconds.append(time.perf_counter() - t0)
                sizes.append(len(data))
                scores.append(float(psnr(np.asarray(img), np.asarray(api.decompress(data)))))
            rows.append({"quality": q, "bpp": 8 * sum(sizes) / pixels, "psnr": float(np.mean(scores)),
                         "encode_s_per_image": float(np.mean(seconds))})
            print(json.dumps({"effort": effort, **rows[-1]}), flush=True)
        curves[effort] = rows
    base, refined = curves[0], curves[a.effort]
    bd = bd_rate([r["bpp"] for r in base], [r["psnr"] for r in base], [r["bpp"] for r in refined], [r["psnr"] for r in refined])
    result = {"command": f"python benchmarks/effort.py --model {a.model} --effort {a.effort} --images {a.images} --qualities "
                         + " ".join(map(str, a.qualities)) + f" --threads {a.threads}",
              "model": a.model, "model_id": f"{m.model_id:04x}",
              "images": [p.name for p in paths], "loadavg_1min_at_start": load_at_start,
              "effort_0": base, f"effort_{a.effort}": refined, "bd_rate_percent": bd}
    print(f"BD-rate of --effort {a.effort} against --effort 0: {'n/a' if bd is None else f'{bd:+.1f} %'}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
