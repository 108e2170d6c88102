"""Measure a model the way users meet it: real .vqz files, decoded again, PSNR against the originals."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from PIL import Image

from . import api
from .bench.metrics import psnr
from .zoo import LoadedModel


def measure(m: LoadedModel, images: np.ndarray, qualities: list[int] | None = None, batch: int = 500,
            on_batch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Per quality: mean file bytes, ideal bytes under the prior, bits per pixel, mean PSNR over images."""
    rows = []
    pixels = images.shape[1] * images.shape[2]
    for q in qualities or list(range(1, m.qualities + 1)):
        sizes, ideal, scores = [], [], []
        for start in range(0, len(images), batch):
            chunk = images[start: start + batch]
            enc = api.encode_batch(chunk, m, q)
            back = np.stack(api.decode_batch([e.data for e in enc], m))
            sizes += [len(e.data) for e in enc]
            ideal += [e.ideal_bits / 8 for e in enc]
            scores.append(psnr(chunk, back))
            if on_batch:
                on_batch(len(chunk))
        mean_bytes = float(np.mean(sizes))
        rows.append({"quality": q, "levels": m.codec.levels_for(q), "bytes": mean_bytes,
                     "ideal_payload_bytes": float(np.mean(ideal)), "bpp": 8 * mean_bytes / pixels,
                     "psnr": float(np.concatenate(scores).mean())})
    return rows


def against_references(image: Image.Image, m: LoadedModel, codecs: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per quality on one image: .vqz bytes, PSNR, and for each reference codec the smallest file (over
    its qualities 1..100) that reaches at least that PSNR, or None."""
    from .bench.codecs import REFERENCE, decode_image

    pixels = np.asarray(image.convert("RGB"))
    sweeps = {c: [(len(d), psnr(pixels, decode_image(d))) for d in (REFERENCE[c].encode(pixels, q) for q in range(1, 101))]
              for c in codecs}
    rows = []
    for q in range(1, m.qualities + 1):
        data = api.compress(image, m, q)
        score = float(psnr(pixels, np.asarray(api.decompress(data).convert("RGB"))))
        row: dict[str, Any] = {"quality": q, "bytes": len(data), "psnr": score}
        for c, sweep in sweeps.items():
            row[c] = min((size for size, p in sweep if p >= score), default=None)
        rows.append(row)
    return rows
