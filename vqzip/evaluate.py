"""Measure a model the way users meet it: real .vqz files, decoded again, PSNR against the originals."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

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
