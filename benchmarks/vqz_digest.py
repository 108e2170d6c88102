"""One SHA-256 over the .vqz files vqzip writes: run it on two commits to check that a change to the
coder (a speed-up, a refactor) leaves every output byte the same.

    python benchmarks/vqz_digest.py [--images 1024] [--kodak 2] [--data ../shared/data] [--models small-cbr ...]

Hashes the files of the first N CIFAR-10 test images (batches of 256) and of the first M Kodak photos,
for both shipped RVQ models (or --models) at their lowest, default and highest quality, plus cifar10-rvq's
per-level ideal bits (rounded to 1e-6) from its context prior, and a second SHA-256 over what those
files decode to (the decoder's tokens and images), to check a change to the decoder the same way.
Prints the two digests; writes nothing.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from vqzip import api
from vqzip.training.data import load_cifar10

ROOT = Path(__file__).resolve().parent
MODELS = ("cifar10-rvq", "photo-rvq")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--kodak", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    args = ap.parse_args()
    images = load_cifar10("test", args.data)[0][: args.images]
    photos = sorted((args.data / "kodak").glob("*.png"))[: args.kodak]
    digest, decoded = hashlib.sha256(), hashlib.sha256()

    def add(files: list[bytes], m: api.LoadedModel) -> None:
        for data in files:
            digest.update(data)
            decoded.update(api.file_tokens(data, m).tobytes())
        for image in api.decode_batch(files, m):
            decoded.update(np.ascontiguousarray(image).tobytes())

    for name in args.models:
        m = api.load_model(name)
        for q in sorted({1, m.default_quality, m.qualities}):
            for start in range(0, len(images), 256):
                add([e.data for e in api.encode_batch(images[start: start + 256], m, q)], m)
            add([api.compress(Image.open(p), m, q) for p in photos], m)
    if MODELS[0] in args.models:
        m = api.load_model(MODELS[0])
        bits = m.context.level_bits(api.image_tokens(images[:256], m, m.qualities))
        digest.update(np.round(bits, 6).tobytes())
    print(f"{digest.hexdigest()}  files ({len(images)} CIFAR-10 images, {len(photos)} Kodak photos, models "
          f"{', '.join(args.models)})")
    print(f"{decoded.hexdigest()}  what they decode to")


if __name__ == "__main__":
    main()
