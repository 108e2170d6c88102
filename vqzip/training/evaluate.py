"""Measure a model the way users meet it: real .vqz files, decoded again, PSNR against the originals."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from .. import api
from ..bench.metrics import psnr
from ..zoo import LoadedModel


def measure(m: LoadedModel, images: np.ndarray, qualities: list[int] | None = None, batch: int = 500,
            on_batch: Callable[[int], None] | None = None, prior: str = "auto") -> list[dict[str, Any]]:
    """Per quality: mean file bytes, ideal bytes under the prior, bits per pixel, mean PSNR over images.
    `prior` as in api.encode_batch."""
    rows = []
    pixels = images.shape[1] * images.shape[2]
    for q in qualities or list(range(1, m.qualities + 1)):
        sizes, ideal, scores = [], [], []
        for start in range(0, len(images), batch):
            chunk = images[start: start + batch]
            enc = api.encode_batch(chunk, m, q, prior=prior)
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


def measure_priors(m: LoadedModel, images: np.ndarray, batch: int = 500, verify: int = 500,
                   on_batch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Per quality: mean bytes of real .vqz files coded with the static tables (version 1) and with
    the context prior (version 2) from the same tokens, and their PSNR. The encoder runs once for all
    qualities (an RVQ prefix does not depend on the levels after it); the first `verify` files of
    each kind are decoded back and must give the same pixels."""
    pixels = images.shape[1] * images.shape[2]
    qualities = list(range(1, m.qualities + 1))
    acc: dict[int, dict[str, list]] = {q: {"static": [], "context": [], "ideal": [], "psnr": []} for q in qualities}
    for start in range(0, len(images), batch):
        chunk = images[start: start + batch]
        tokens = api.image_tokens(chunk, m, m.qualities)
        for q in qualities:
            t = np.ascontiguousarray(tokens[:, : m.codec.levels_for(q)])
            n, h, w = len(chunk), chunk.shape[1], chunk.shape[2]
            files = {v: api.containers(api.payload_coder(m, v).encode(t), m, w, h, ["RGB"] * n, q, [b""] * n, v) for v in (1, 2)}
            back = api.token_images(t, m, h, w)
            if start < verify:
                for v in (1, 2):
                    again = api.decode_batch([e.data for e in files[v][: verify - start]], m)
                    if not all(np.array_equal(a, b) for a, b in zip(again, back)):
                        raise RuntimeError(f"version {v} files of quality {q} do not decode to their tokens' pixels")
            acc[q]["static"] += [len(e.data) for e in files[1]]
            acc[q]["context"] += [len(e.data) for e in files[2]]
            acc[q]["ideal"] += [e.ideal_bits / 8 for e in files[2]]
            acc[q]["psnr"].append(psnr(chunk, back))
        if on_batch:
            on_batch(len(chunk))
    rows = []
    for q in qualities:
        a = acc[q]
        static, context = float(np.mean(a["static"])), float(np.mean(a["context"]))
        rows.append({"quality": q, "levels": m.codec.levels_for(q), "static_bytes": static, "context_bytes": context,
                     "saving_percent": 100 * (1 - context / static), "context_ideal_payload_bytes": float(np.mean(a["ideal"])),
                     "bpp": 8 * context / pixels, "psnr": float(np.concatenate(a["psnr"]).mean())})
    return rows


def measure_photos(m: LoadedModel, images: list[np.ndarray], qualities: list[int] | None = None,
                   on_image: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Per quality over images of any sizes (a photo test set): mean file bytes, bits per pixel over
    all pixels, mean PSNR and MS-SSIM over images, each from a real .vqz file decoded again."""
    from ..bench.metrics import ms_ssim

    total = sum(img.shape[0] * img.shape[1] for img in images)
    stride, cell = m.config.stride, m.config.latent_stride
    padded = [(-(-img.shape[0] // stride) * stride, -(-img.shape[1] // stride) * stride) for img in images]
    tokens = sum(m.config.latent * (h // cell) * (w // cell) for h, w in padded)  # image tokens y, padded grid
    rows = []
    for q in qualities or list(range(1, m.qualities + 1)):
        sizes, scores, ms = [], [], []
        for img in images:
            data = api.encode_batch(img[None], m, q)[0].data
            back = api.decode_batch([data], m)[0]
            sizes.append(len(data))
            scores.append(float(psnr(img, back)))
            ms.append(float(ms_ssim(img, back)[0]))
            if on_image:
                on_image(1)
        rows.append({"quality": q, "bytes": float(np.mean(sizes)), "bpp": 8 * float(np.sum(sizes)) / total,
                     "bits_per_token": 8 * float(np.sum(sizes)) / tokens,
                     "psnr": float(np.mean(scores)), "msssim": None if np.isnan(ms).all() else float(np.nanmean(ms))})
    return rows


def against_references(image: Image.Image, rungs: Sequence[tuple[LoadedModel, int]],
                       codecs: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per rung (model, quality) on one image: .vqz bytes, PSNR, and for each reference codec the smallest
    file (over its qualities 1..100) that reaches at least that PSNR, or None."""
    from ..bench.codecs import REFERENCE, decode_image

    pixels = np.asarray(image.convert("RGB"))
    sweeps = {c: [(len(d), psnr(pixels, decode_image(d))) for d in (REFERENCE[c].encode(pixels, q) for q in range(1, 101))]
              for c in codecs}
    rows = []
    for m, q in rungs:
        data = api.compress(image, m, q)
        score = float(psnr(pixels, np.asarray(api.decompress(data).convert("RGB"))))
        row: dict[str, Any] = {"model": m.name, "quality": q, "bytes": len(data), "psnr": score}
        for c, sweep in sweeps.items():
            row[c] = min((size for size, p in sweep if p >= score), default=None)
        rows.append(row)
    return rows
