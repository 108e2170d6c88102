"""Time to encode and decode a Kodak photo with the photo codec, the whole file path, on this machine.

In one process with the model loaded once (what a batch job or a server pays per image): PNG pixels
-> .vqz bytes (`vqzip.compress`) and back (`vqzip.decompress`), mean over the 24 images, at qualities
1, the default and the top (or --qualities: e.g. the rungs the photo ladder climbs with a model), with
the thread count given. The bar (issue #17): 1 s each on 2 cores.

    python benchmarks/photo_speed.py [--model photo-hp] [--qualities 4 7 10] [--threads 2]
        [--out benchmarks/results/photo_speed.json]

The networks run on the default engine (ONNX Runtime); VQZIP_BACKEND=torch times torch's.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

import vqzip
from vqzip.bench.machine import describe as describe_machine
from vqzip.runtime import backend, set_threads
from vqzip.zoo import DEFAULT_PHOTO_MODEL


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VQZIP_DATA", "../shared/data")) / "kodak")
    ap.add_argument("--model", default=DEFAULT_PHOTO_MODEL)
    ap.add_argument("--qualities", type=int, nargs="+", help="default: 1, the model's default and its top")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/photo_speed.json"))
    a = ap.parse_args()
    set_threads(a.threads)
    m = vqzip.load_model(a.model)
    images = [Image.open(p).convert("RGB") for p in sorted(a.data.glob("*.png"))]
    vqzip.decompress(vqzip.compress(images[0], m, 1))  # warm-up: tables, allocator, sessions
    rows = []
    for q in sorted(set(a.qualities or (1, m.default_quality, m.qualities))):
        enc, dec = [], []
        for img in images:
            t0 = time.perf_counter()
            data = vqzip.compress(img, m, q)
            t1 = time.perf_counter()
            vqzip.decompress(data)
            t2 = time.perf_counter()
            enc.append(t1 - t0)
            dec.append(t2 - t1)
        rows.append({"quality": q, "encode_s_mean": float(np.mean(enc)), "encode_s_max": float(np.max(enc)),
                     "decode_s_mean": float(np.mean(dec)), "decode_s_max": float(np.max(dec))})
        print(json.dumps(rows[-1]), flush=True)
    chosen = f" --qualities {' '.join(map(str, a.qualities))}" if a.qualities else ""
    result = {"command": f"python benchmarks/photo_speed.py --model {a.model}{chosen} --threads {a.threads}",
              "model": a.model, "model_id": f"{m.model_id:04x}", "images": len(images), "threads": a.threads,
              "engine": type(m.nets).__name__, "VQZIP_BACKEND": backend(),
              "machine": describe_machine(),
              "loadavg_1min_at_start": os.getloadavg()[0], "per_quality": rows,
              "note": "in-process, model loaded once; a whole `vqzip encode` process adds Python's start-up "
                      "(benchmarks/runtime_speed.py times whole processes)"}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
