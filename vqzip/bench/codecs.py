"""Reference codecs through Pillow: name -> encode(img, q) -> bytes, decode(bytes) -> array, quality sweep.

Every codec writes a whole, standalone file (headers included) into memory with no metadata: no
icc_profile, exif or xmp is passed, and images are built with `Image.fromarray`, so they carry none.
Each encoder and decoder is asked for a single thread; parallelism comes from the benchmark's
process pool instead.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

# AVIF encoder speed (libaom, 0 slowest .. 10 fastest). 6 is Pillow's default; it keeps a full CIFAR-10
# run inside the time budget (see benchmarks/run_bench.sh) and costs a few percent in rate against 4.
AVIF_SPEED = 6
# JPEG XL effort (1 fastest .. 9 slowest); 7 is libjxl's default.
JXL_EFFORT = 7
WEBP_METHOD = 6


@dataclass(frozen=True)
class RefCodec:
    """A reference codec curve: one encoder setting swept over `qualities`."""

    name: str
    settings: str  # human-readable description of the fixed encoder settings
    qualities: tuple[int, ...]  # the default sweep; (0,) for a lossless single point
    lossless: bool
    encode: Callable[[np.ndarray, int], bytes]  # (H, W, 3) uint8, quality -> file bytes

    def decode(self, data: bytes) -> np.ndarray:
        return decode_image(data)


def decode_image(data: bytes) -> np.ndarray:
    """Any Pillow-readable file -> (H, W, 3) uint8."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _save(img: np.ndarray, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format=fmt, **params)
    return buf.getvalue()


def _png(img: np.ndarray, q: int) -> bytes:
    return _save(img, "PNG", optimize=True)


def _jpeg(subsampling: int) -> Callable[[np.ndarray, int], bytes]:
    def enc(img: np.ndarray, q: int) -> bytes:
        return _save(img, "JPEG", quality=q, subsampling=subsampling, optimize=True)

    return enc


def _webp(img: np.ndarray, q: int) -> bytes:
    return _save(img, "WEBP", quality=q, method=WEBP_METHOD)


def _avif(img: np.ndarray, q: int) -> bytes:
    return _save(img, "AVIF", quality=q, speed=AVIF_SPEED, subsampling="4:2:0", max_threads=1)


def _jxl(img: np.ndarray, q: int) -> bytes:
    return _save(img, "JXL", quality=q, effort=JXL_EFFORT, num_threads=1, use_container=False)


def jxl_status() -> str | None:
    """None when a Pillow JPEG XL plugin is importable (and registered), else why not."""
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
        from pillow_jxl import JpegXLImagePlugin
    except ImportError as e:
        return f"no Pillow JPEG XL plugin ({e}); `pip install pillow-jxl-plugin` enables jxl"
    JpegXLImagePlugin.DECODE_THREADS = 1
    return None


def unavailable(name: str) -> str | None:
    """None when codec `name` can run here, else a one-line reason."""
    if name == "webp" and not features.check("webp"):
        return "Pillow built without WebP"
    if name == "avif" and not features.check("avif"):
        return "Pillow built without AVIF"
    if name == "jxl":
        return jxl_status()
    return None


def single_thread_decoders() -> None:
    """Ask the AVIF and JXL decoders for one thread each (called in every worker)."""
    try:
        from PIL import AvifImagePlugin

        AvifImagePlugin.DEFAULT_MAX_THREADS = 1
    except ImportError:
        pass
    jxl_status()


# ~8 qualities per lossy codec, spread so each curve spans low to high rate on CIFAR-10 and Kodak.
REFERENCE: dict[str, RefCodec] = {
    c.name: c
    for c in (
        RefCodec("png", "lossless, optimize=True", (0,), True, _png),
        RefCodec("jpeg-420", "libjpeg(-turbo), 4:2:0 (subsampling=2), optimize=True (optimized Huffman)",
                 (5, 10, 20, 30, 50, 70, 85, 95), False, _jpeg(2)),
        RefCodec("jpeg-444", "libjpeg(-turbo), 4:4:4 (subsampling=0), optimize=True (optimized Huffman)",
                 (5, 10, 20, 30, 50, 70, 85, 95), False, _jpeg(0)),
        RefCodec("webp", f"libwebp lossy, method={WEBP_METHOD}", (5, 15, 30, 50, 65, 80, 90, 98), False, _webp),
        RefCodec("avif", f"libavif/aom, speed={AVIF_SPEED}, 4:2:0, max_threads=1",
                 (10, 25, 40, 50, 60, 70, 80, 90), False, _avif),
        RefCodec("jxl", f"libjxl via pillow-jxl-plugin, effort={JXL_EFFORT}, codestream (no container), 1 thread",
                 (10, 30, 50, 65, 75, 85, 92, 97), False, _jxl),
    )
}

# Names accepted by --codecs: every curve, plus "jpeg" for both JPEG curves.
ALIASES: dict[str, tuple[str, ...]] = {"jpeg": ("jpeg-420", "jpeg-444")}
DEFAULT_CODECS = ("png", "jpeg", "webp", "avif", "jxl")


def resolve(names: list[str] | None) -> list[str]:
    """Expand --codecs names into reference curve names, in a stable order; ValueError on unknown names."""
    out: list[str] = []
    for raw in names if names is not None else DEFAULT_CODECS:
        n = raw.strip().lower()
        if not n:
            continue
        expanded = ALIASES.get(n, (n,))
        for e in expanded:
            if e not in REFERENCE:
                known = ", ".join(sorted({*REFERENCE, *ALIASES}))
                raise ValueError(f"unknown codec {raw!r}; known: {known}")
            if e not in out:
                out.append(e)
    return out
