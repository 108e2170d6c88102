"""Speed of vqzip with its context prior, end to end and the prior alone (issue #5's targets).

    python benchmarks/prior_speed.py [--model cifar10-rvq] [--images 2000] [--kodak-model photo-rvq]

CIFAR-10 test images are coded in batches of 256 (as `vqzip encode` does with many inputs); Kodak
images one at a time. Writes benchmarks/results/prior_speed-<CPU capability>.json (e.g. -avx2,
-avx512). Targets on 2 CPU cores: 1,000 CIFAR-10 images/s encoding, 300/s decoding, a Kodak image in
under 2 s each way.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqzip import api
from vqzip.training.data import load_cifar10

ROOT = Path(__file__).resolve().parent
BATCH = 256


class _Timer:
    """`with _Timer() as t:` ... then t.seconds."""

    def __enter__(self) -> _Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def cifar(model: str, count: int, data: Path | None) -> list[dict]:
    m = api.load_model(model)
    images = load_cifar10("test", data)[0][:count]
    batches = [images[i: i + BATCH] for i in range(0, len(images), BATCH)]
    rows = []
    for q in sorted({1, m.default_quality, m.qualities}):
        for prior in ("context", "static"):
            with _Timer() as t_enc:
                files = [[e.data for e in api.encode_batch(b, m, q, prior=prior)] for b in batches]
            with _Timer() as t_dec:
                for f in files:
                    api.decode_batch(f, m)
            tokens = [api.image_tokens(b, m, q) for b in batches]
            coder = m.context if prior == "context" else m.prior
            with _Timer() as t_penc:
                payloads = [[p for p, _ in coder.encode(t)] for t in tokens]
            with _Timer() as t_pdec:
                for p in payloads:
                    coder.decode(p, q, 8, 8)
            enc, dec, penc, pdec = (len(images) / t.seconds for t in (t_enc, t_dec, t_penc, t_pdec))
            rows.append({"quality": q, "prior": prior, "bytes": float(np.mean([len(d) for f in files for d in f])),
                         "encode_images_per_s": round(enc), "decode_images_per_s": round(dec),
                         "prior_only_encode_images_per_s": round(penc), "prior_only_decode_images_per_s": round(pdec)})
            print(rows[-1], flush=True)
    return rows


def kodak(model: str, folder: Path) -> list[dict]:
    m = api.load_model(model)
    paths = sorted(folder.glob("*.png"))
    rows = []
    for q in sorted({1, m.default_quality, m.qualities}):
        enc, dec, sizes = [], [], []
        for p in paths:
            img = Image.open(p)
            t0 = time.perf_counter()
            data = api.compress(img, m, q)
            t1 = time.perf_counter()
            api.decompress(data)
            dec.append(time.perf_counter() - t1)
            enc.append(t1 - t0)
            sizes.append(len(data))
        rows.append({"quality": q, "version": data[2], "bpp": float(np.mean(sizes)) * 8 / (768 * 512),
                     "encode_s_mean": float(np.mean(enc)), "encode_s_max": float(np.max(enc)),
                     "decode_s_mean": float(np.mean(dec)), "decode_s_max": float(np.max(dec))})
        print(rows[-1], flush=True)
    return rows


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cifar10-rvq")
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--kodak-model", default="cifar10-rvq")
    ap.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, help="default: results/prior_speed-<CPU capability>.json, since "
                    "speeds differ between machines with and without AVX-512")
    args = ap.parse_args()
    torch.set_num_threads(2)
    isa = torch.backends.cpu.get_cpu_capability()
    args.out = args.out or ROOT / "results" / f"prior_speed-{isa.lower()}.json"
    results = {"machine": f"{cpu_name()}, {os.cpu_count()} CPUs, torch threads 2, torch CPU capability {isa}",
               "torch": torch.__version__,
               "command": "python benchmarks/prior_speed.py " + " ".join(f"--{k.replace('_', '-')} {v}"
                                                                          for k, v in vars(args).items()
                                                                          if k not in ("data", "out")),
               "cifar10": {"model": args.model, "images": args.images, "batch": BATCH,
                           "rows": cifar(args.model, args.images, args.data)},
               "kodak": {"model": args.kodak_model, "rows": kodak(args.kodak_model, args.data / "kodak")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
