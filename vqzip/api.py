"""The library interface: load a model, compress images to .vqz bytes, decompress them back.

Nothing here prints; lossy input conversions are reported with `warnings.warn(..., VqzipWarning)`.
"""
from __future__ import annotations

import math
import os
import warnings
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from PIL import Image

from .coding import container
from .coding.container import DEFAULT_MAX_PIXELS
from .coding.entropy import payload_floor
from .coding.priors import PayloadCoder
from .errors import FormatError, ModelNotFound, VqzipError, VqzipWarning
from .pick import by_ladder, by_rung
from .runtime import requires_torch
from .zoo import LoadedModel, available_models, find_by_id, load_model

if TYPE_CHECKING:
    from .coding.gaussian import HyperpriorCoder

TILE_PIXELS = 512  # a token model's tiles, in pixels per side: bounds memory for any image size and stride
T = TypeVar("T")
PASS_PIXELS = 1 << 20  # same-size images share a network pass up to this many pixels: a pass's memory grows with them
PHOTO_TILE_PIXELS = 768  # a photo codec's tiles, pixels a side (48 positions at stride 16): wide layers at high resolution
MARGIN = 8  # latent positions of context around each tile (beyond the networks' receptive field)

__all__ = ["Encoded", "METADATA", "Targeted", "available_models", "compress", "compress_images", "compress_to_target",
           "decode_batch", "decompress", "decompress_images", "encode_batch", "file_tokens", "image_rgb", "image_tokens",
           "load_model", "resolve_quality", "token_images", "token_info"]


@dataclass(frozen=True)
class Encoded:
    data: bytes  # the whole .vqz file
    ideal_bits: float  # -sum log2 p(token) under the model's prior: what a perfect coder would spend


def _model(model: LoadedModel | str | os.PathLike | None) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def resolve_quality(m: LoadedModel, quality: int | None) -> int:
    """The quality to use (the model's default for None); VqzipError when out of range."""
    q = m.default_quality if quality is None else int(quality)
    if not 1 <= q <= m.qualities:
        raise VqzipError(f"quality {q} is outside 1..{m.qualities} for model {m.name}")
    return q


def tiled(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, grid: tuple[int, int],
          in_scale: int, out_scale: int, tile: int) -> np.ndarray:
    """Apply a fully convolutional `fn` tile by tile over a grid of (h, w) latent positions.

    Each tile (`tile` positions a side) is computed with MARGIN positions of context and only its
    centre is kept, so the result matches a whole-image pass while memory stays bounded. `x` has
    `in_scale` pixels per position, the output `out_scale`.
    """
    h, w = grid
    out: np.ndarray | None = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa, yb, xb = max(0, y0 - MARGIN), max(0, x0 - MARGIN), min(h, y1 + MARGIN), min(w, x1 + MARGIN)
            part = fn(x[..., ya * in_scale: yb * in_scale, xa * in_scale: xb * in_scale])
            s = out_scale
            part = part[..., (y0 - ya) * s: (y1 - ya) * s, (x0 - xa) * s: (x1 - xa) * s]
            if out is None:
                out = np.empty((*part.shape[:-2], h * s, w * s), part.dtype)
            out[..., y0 * s: y1 * s, x0 * s: x1 * s] = part
    assert out is not None
    return out


def _pad(images: np.ndarray, stride: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H', W') uint8, edge-padded to multiples of `stride`."""
    _, height, width, _ = images.shape
    h, w = -(-height // stride) * stride, -(-width // stride) * stride
    return np.pad(images, ((0, 0), (0, h - height), (0, w - width), (0, 0)), mode="edge").transpose(0, 3, 1, 2)


def passes(idx: Sequence[T], pixels: int, batch: int | None = None) -> list[Sequence[T]]:
    """`idx` (same-size images of `pixels` each, or their indices) in runs that share a network pass:
    at most `batch` images and PASS_PIXELS pixels, at least one image. Without the pixel bound, four 1.5-megapixel
    photos encoded together peaked at 3.3 GB against 1.0 GB for one (memory grows with a pass)."""
    n = max(1, PASS_PIXELS // max(1, pixels))
    n = min(n, batch) if batch else n
    return [idx[s: s + n] for s in range(0, len(idx), n)]


def has_room(images: int, pixels: int, batch: int) -> bool:
    """Whether a chunk of `images` holding `pixels` takes one more image: fewer than `batch`, and past
    the first only while under PASS_PIXELS (what the CLI reads in before a pass, the rule passes keeps)."""
    return images < batch and (not images or pixels < PASS_PIXELS)


def _photo_tile(m: LoadedModel) -> int:
    """A photo codec's tile side in latent positions: PHOTO_TILE_PIXELS pixels whatever its stride (a
    stride-8 model on a Kodak photo: one tile, not four with 46 % of the positions computed twice)."""
    return max(1, PHOTO_TILE_PIXELS // m.config.latent_stride)


def _token_tile(m: LoadedModel) -> int:
    """A token model's tile side in positions: TILE_PIXELS pixels whatever its stride."""
    return max(1, TILE_PIXELS // m.stride)


def to_unit(x: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) uint8 -> float32 in [-0.5, 0.5], what the networks take."""
    return x.astype(np.float32) / np.float32(255.0) - np.float32(0.5)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) float in [-0.5, 0.5] -> uint8, rounded (half to even, as torch rounds)."""
    return np.clip(np.round((x + np.float32(0.5)) * np.float32(255.0)), 0, 255).astype(np.uint8)


EFFORT_MAX_PIXELS = 1 << 22  # --effort refines images up to 4 megapixels (it needs the whole image's gradients)


def photo_latents(images: np.ndarray, m: LoadedModel, quality: int, effort: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A photo codec's latents of same-size RGB uint8 images (N, H, W, 3): y (N, M, H/s, W/s) as the
    analysis gives them (float32), and z (N, C, H/4s, W/4s), the side tokens their tables come from,
    rounded (s: the model's latent stride, 16 for photos; sizes rounded up to multiples of 4s).
    `effort` > 0 refines them with that many gradient steps per image (codec.hyperprior.refine_latents,
    in torch; images up to EFFORT_MAX_PIXELS)."""
    from .coding.gaussian import Z_SUPPORT, from_blocks, to_blocks

    b = m.config.prior_block  # h_a runs on each block as on a training crop: one z position per block
    if effort > 0 and b:  # refine_latents prices the whole grid at once, which this model's coder never does
        raise VqzipError(f"--effort is for photo codecs; model {m.name} codes its tokens block by block")
    x, q = _pad(images, m.stride), np.full(len(images), quality - 1, np.int64)
    s = m.config.latent_stride
    y = tiled(lambda t: m.nets.run("analysis", x=to_unit(t), q=q), x, (x.shape[2] // s, x.shape[3] // s), s, 1,
              _photo_tile(m))
    z = from_blocks(m.nets.run("hyper_analysis", y=to_blocks(y, b)), len(y), y.shape[2] // 4, y.shape[3] // 4) if b else \
        m.nets.run("hyper_analysis", y=y)
    if effort > 0 and images.shape[1] * images.shape[2] <= EFFORT_MAX_PIXELS:
        torch = requires_torch("--effort")
        from .codec.hyperprior import refine_latents

        ty, tz = refine_latents(m.codec, torch.from_numpy(to_unit(x)), torch.from_numpy(q), torch.from_numpy(y),
                                torch.from_numpy(z).clamp(-Z_SUPPORT, Z_SUPPORT), effort,
                                mean_shift=photo_versions(m)[0] == container.SHIFTED_CHECKERBOARD_VERSION)
        y, z = ty.numpy(), tz.numpy()
    return y, np.clip(np.round(z), -Z_SUPPORT, Z_SUPPORT).astype(np.int64)


def round_latents(y: np.ndarray) -> np.ndarray:
    """A photo codec's tokens: its latents rounded to integers, within the coder's range."""
    from .coding.gaussian import TOKEN_LIMIT

    return np.clip(np.round(y), 1 - TOKEN_LIMIT, TOKEN_LIMIT - 1).astype(np.int64)


def photo_tokens(images: np.ndarray, m: LoadedModel, quality: int, effort: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A photo codec's integer tokens y (its latents rounded) and side tokens z: see photo_latents."""
    y, z = photo_latents(images, m, quality, effort)
    return round_latents(y), z


def image_tokens(images: np.ndarray, m: LoadedModel, quality: int) -> np.ndarray:
    """Tokens (N, L, h, w) of same-size RGB uint8 images (N, H, W, 3), padded to the stride: RVQ
    levels, or, for a photo codec, its M latent channels (integers) on its grid (H/16 x W/16 for photos)."""
    if m.is_hyperprior:
        return photo_tokens(images, m, quality)[0]
    x, levels = _pad(images, m.stride), m.config.levels_for(quality)
    fn = lambda t: m.nets.run("encode", x=to_unit(t))[:, :levels]  # noqa: E731
    return np.ascontiguousarray(tiled(fn, x, (x.shape[2] // m.stride, x.shape[3] // m.stride), m.stride, 1,
                                      _token_tile(m)))


def token_images(tokens: np.ndarray, m: LoadedModel, height: int, width: int, quality: int | None = None) -> np.ndarray:
    """RGB uint8 images (N, height, width, 3) from tokens (N, L, h, w). A photo codec's tokens also
    need the quality they were made at (its gains differ per quality)."""
    if m.is_hyperprior:
        if quality is None:
            raise VqzipError(f"the tokens of model {m.name} decode only with the quality they were made at")
        q = np.full(len(tokens), resolve_quality(m, quality) - 1, np.int64)
        fn = lambda y: to_uint8(m.nets.run("synthesis", y_hat=y.astype(np.float32), q=q))  # noqa: E731
        out = tiled(fn, tokens, tokens.shape[-2:], 1, m.config.latent_stride, _photo_tile(m))
    else:
        from .codec.config import decode_graph

        graph = decode_graph(m.config, tokens.shape[1])
        fn = lambda t: to_uint8(m.nets.run(graph, tokens=np.ascontiguousarray(t, np.int64)))  # noqa: E731
        out = tiled(fn, tokens, tokens.shape[-2:], 1, m.stride, _token_tile(m))
    return out.transpose(0, 2, 3, 1)[:, :height, :width]


def token_info(m: LoadedModel, quality: int) -> dict[str, Any]:
    """What a token grid of this model and quality is, for token files (`vqzip tokens`): the stride
    (pixels per grid position), the levels (channels) per position, and each level's alphabet size
    (`vocab_sizes`; None where the quantizer has no fixed alphabet)."""
    if m.is_hyperprior:  # integer latents without a fixed alphabet, on a grid of latent_stride-pixel cells
        from .coding.gaussian import TOKEN_LIMIT

        return {"stride": m.config.latent_stride, "levels": m.config.latent, "vocab_sizes": None,
                "token_range": [1 - TOKEN_LIMIT, TOKEN_LIMIT - 1]}
    levels = m.config.levels_for(quality)
    return {"stride": m.stride, "levels": levels, "vocab_sizes": list(m.config.vocab_sizes[:levels])}


def image_rgb(img: Image.Image) -> np.ndarray:
    """The RGB uint8 pixels (H, W, 3) the codec sees of any Pillow image: EXIF orientation applied,
    colour mode converted (with a VqzipWarning where that loses something), alpha dropped."""
    return _prepare(img, "none").rgb


PRIORS = ("auto", "context", "static")


def format_version(m: LoadedModel, prior: str = "auto") -> int:
    """The .vqz version to write: 3 for a photo codec (its hyperprior), 4 for one coding its latent in
    channel-conditional slices, 9 for one coding each slice in two checkerboard halves, 8 for one whose
    entropy model runs block by block (prior_block); else 2 (context prior) when the model has one and
    `prior` allows it, else 1 (static tables). (9 superseded 7 and 5, 8 superseded 6, which such models
    still read: photo_versions.)"""
    if prior not in PRIORS:
        raise VqzipError(f"prior must be one of {', '.join(PRIORS)}, not {prior!r}")
    if m.is_hyperprior:
        if prior != "auto":
            raise VqzipError(f"model {m.name} codes with its own hyperprior; --prior {prior} is for token models")
        return photo_versions(m)[0]
    if prior == "context" and m.context is None:
        raise VqzipError(f"model {m.name} has no context prior (train one with 'vqzip train-prior {m.name}')")
    return 2 if m.context is not None and prior != "static" else 1


def photo_versions(m: LoadedModel) -> tuple[int, ...]:
    """The format versions a photo codec reads, the one it writes first: whole-grid checkerboard
    models write mean-shifted rounding (9; benchmarks/results/kodak-photo-cbr128-v9), block models
    their plain rounding under the fine tables (8; mean-shifted rounding did not pay on small-cb3,
    benchmarks/results/mean_shift_rounding-small-cb3.json)."""
    if m.config.prior_block:
        return container.FINE_BLOCK_VERSION, container.BLOCK_VERSION
    if m.prior.context.checkerboard:
        return container.SHIFTED_CHECKERBOARD_VERSION, container.FINE_CHECKERBOARD_VERSION, container.CHECKERBOARD_VERSION
    return (container.SLICED_VERSION if m.prior.context.slices > 1 else container.HYPERPRIOR_VERSION,)


def payload_coder(m: LoadedModel, version: int) -> PayloadCoder:
    """What codes a token model's payload of this format version (1 or 2)."""
    return m.context if version == 2 else m.prior


def photo_coder(m: LoadedModel, version: int) -> HyperpriorCoder:
    """What codes a photo codec's payload of this format version: its stored tables, the fine ones
    (versions 7 and 8), or the fine ones with mean-shifted rounding (9)."""
    coder: HyperpriorCoder = m.prior
    if version == container.SHIFTED_CHECKERBOARD_VERSION:
        return coder.with_mean_shift()
    return coder.with_fine_tables() if version in container.FINE_VERSIONS else coder


def _payloads(images: np.ndarray, m: LoadedModel, quality: int, version: int,
              effort: int = 0) -> tuple[list[tuple[bytes, float]], np.ndarray]:
    """(payload, ideal bits) of each same-size RGB uint8 image (N, H, W, 3), and the latents the
    decoder will give the synthesis (the tokens, or with mean-shifted rounding offset + mean);
    `effort`: see photo_latents (photo codecs only)."""
    if version in container.PHOTO_VERSIONS:
        coder = photo_coder(m, version)
        y, z = photo_latents(images, m, quality, effort)
        if coder.shifted:
            return coder.encode_latents(y, z)
        y = round_latents(y)
        return coder.encode(y, z), y
    tokens = image_tokens(images, m, quality)
    return payload_coder(m, version).encode(tokens), tokens


def containers(coded: list[tuple[bytes, float]], m: LoadedModel, width: int, height: int, modes: list[str],
               quality: int, alphas: list[bytes], version: int, metadata: list[bytes] | None = None) -> list[Encoded]:
    """Whole .vqz files around coded payloads ((payload, ideal bits) per image) of one size; `metadata`:
    each file's container.pack_metadata section (None: none)."""
    key = m.key(version)
    out = []
    metas = metadata if metadata is not None else [b""] * len(modes)
    for (payload, bits), mode, alpha, meta in zip(coded, modes, alphas, metas):
        header = container.Header(m.model_id, width, height, mode, quality, version, bool(meta))
        out.append(Encoded(container.build(header, payload, key, alpha, meta), bits))
    return out


def encode_batch(images: np.ndarray, model: LoadedModel | str | None = None, quality: int | None = None,
                 prior: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Encoded]:
    """Compress same-size RGB uint8 images (N, H, W, 3) in one network pass. `prior`: "auto" (the
    context prior when the model has one), "context" or "static" (format version 1)."""
    m = _model(model)
    q = resolve_quality(m, quality)
    version = format_version(m, prior)
    container.check_pixels(images.shape[2], images.shape[1], max_pixels)
    coded, _ = _payloads(images, m, q, version)
    return containers(coded, m, images.shape[2], images.shape[1], ["RGB"] * len(images), q, [b""] * len(images), version)


METADATA = ("all", "icc", "exif", "none")  # what of the original's metadata a file keeps
ORIENTATION = 0x0112  # the EXIF tag


@dataclass(frozen=True)
class _Prepared:
    rgb: np.ndarray  # (H, W, 3) uint8: what the network codes, and what PSNR is measured against
    mode: str  # the colour mode to give back (container.MODES)
    alpha: bytes = b""  # zlib-compressed alpha plane; b"" = none or fully opaque
    metadata: bytes = b""  # container.pack_metadata section; b"" = none


def _exif_tiff(raw: bytes | None) -> bytes:
    """EXIF bytes as the container stores them: the TIFF structure, without JPEG's `Exif\\0\\0` prefix."""
    if not raw or not isinstance(raw, bytes):
        return b""
    return raw[6:] if raw.startswith(b"Exif\x00\x00") else raw


def _orient(img: Image.Image, keep_exif: bool) -> tuple[Image.Image, bytes]:
    """The image as it displays (its EXIF orientation applied to the pixels) and, if `keep_exif`, its
    EXIF for the container with the orientation reset to 1 (b"" when it has none)."""
    from PIL import ImageOps

    raw = _exif_tiff(img.info.get("exif"))
    try:
        orientation = img.getexif().get(ORIENTATION, 1)
    except Exception:  # Pillow raises many kinds on malformed EXIF; the pixels are still good
        warnings.warn("unreadable EXIF dropped", VqzipWarning, stacklevel=4)
        return img, b""
    if orientation in range(2, 9):
        img = ImageOps.exif_transpose(img)
        if raw and keep_exif:
            exif = Image.Exif()
            exif.load(b"Exif\x00\x00" + raw)
            exif[ORIENTATION] = 1
            raw = _exif_tiff(exif.tobytes())
    return img, raw if keep_exif else b""


def _prepare(img: Image.Image, metadata: str = "all") -> _Prepared:
    """What the coder needs of any Pillow image, warning on lossy steps: the pixels as they display
    (EXIF orientation applied), RGB; the colour mode to give back; alpha; the metadata to keep
    (`metadata`: one of METADATA)."""
    if metadata not in METADATA:
        raise VqzipError(f"metadata must be one of {', '.join(METADATA)}, not {metadata!r}")
    frames = getattr(img, "n_frames", 1)
    if frames > 1:  # an animation or a multi-page TIFF: Pillow opens on the first frame
        warnings.warn(f"image has {frames} frames; only the first is encoded", VqzipWarning, stacklevel=3)
    img, exif = _orient(img, metadata in ("all", "exif"))
    icc = img.info.get("icc_profile") if metadata in ("all", "icc") else None
    icc = icc if isinstance(icc, bytes) else b""
    if img.mode == "P":
        has_alpha = "transparency" in img.info
        warnings.warn(f"palette image converted to {'RGBA' if has_alpha else 'RGB'}", VqzipWarning, stacklevel=3)
        img = img.convert("RGBA" if has_alpha else "RGB")
    elif img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        warnings.warn(f"{img.mode} (16-bit or float) image reduced to 8-bit greyscale", VqzipWarning, stacklevel=3)
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 / 65535.0 if arr.max() > 255 else 1.0
        img = Image.fromarray(np.clip(np.round(arr * scale), 0, 255).astype(np.uint8), "L")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    elif img.mode not in container.MODES:
        warnings.warn(f"{img.mode} image converted to RGB" + (" (its ICC profile dropped)" if icc else ""),
                      VqzipWarning, stacklevel=3)
        img, icc = img.convert("RGB"), b""  # the profile describes the old colour space
    mode, alpha = img.mode, b""
    if mode in ("LA", "RGBA"):
        a = np.asarray(img.getchannel("A"))
        alpha = b"" if (a == 255).all() else zlib.compress(a.tobytes(), 9)
    return _Prepared(np.asarray(img.convert("RGB")), mode, alpha, container.pack_metadata(container.Metadata(icc, exif)))


def _encode(prepared: list[_Prepared], m: LoadedModel, q: int, batch: int, version: int,
            reconstruct: bool = False, effort: int = 0) -> list[tuple[Encoded, np.ndarray | None]]:
    """Prepared images of any sizes -> .vqz files (same-size images share network passes), and with
    `reconstruct` the RGB image each file decodes to (from the same tokens, no range decoding)."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, p in enumerate(prepared):
        groups[p.rgb.shape[:2]].append(i)
    out: dict[int, tuple[Encoded, np.ndarray | None]] = {}
    for (height, width), idx in groups.items():
        for chunk in passes(idx, height * width, batch):
            part = [prepared[i] for i in chunk]
            coded, tokens = _payloads(np.stack([p.rgb for p in part]), m, q, version, effort)
            packed = containers(coded, m, width, height, [p.mode for p in part], q, [p.alpha for p in part], version,
                                [p.metadata for p in part])
            images = token_images(tokens, m, height, width, q) if reconstruct else [None] * len(chunk)
            for i, e, img in zip(chunk, packed, images):
                out[i] = (e, img)
    return [out[i] for i in range(len(prepared))]


def compress_images(images: list[Image.Image], model: LoadedModel | str | None = None,
                    quality: int | None = None, batch: int = 64, prior: str = "auto", metadata: str = "all",
                    effort: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Encoded]:
    """Compress Pillow images of any modes and sizes; same-size images share network passes.
    `model` None: each image's rung at `quality` (vqzip.pick). `metadata`: what of each image's ICC profile and EXIF
    to keep (METADATA). `effort`: gradient steps that refine a photo codec's tokens per image (slower,
    smaller files, same decoder; token models ignore it). Sizes are checked against the limits
    (`max_pixels`, the format's) before any pixel is converted."""
    for img in images:
        container.check_pixels(img.width, img.height, max_pixels)
    if model is None:
        out: dict[int, Encoded] = {}
        for (name, q), idx in by_rung(images, quality, prior).items():
            out.update(zip(idx, compress_images([images[i] for i in idx], name, q, batch, prior, metadata, effort,
                                                max_pixels)))
        return [out[i] for i in range(len(images))]
    m = _model(model)
    q = resolve_quality(m, quality)
    version = format_version(m, prior)
    prepared = [_prepare(img, metadata) for img in images]
    return [e for e, _ in _encode(prepared, m, q, batch, version, effort=effort)]


@dataclass(frozen=True)
class Targeted:
    """One image compressed to a target: the model and quality chosen, its file, and whether the
    target was met."""
    quality: int  # the model's own quality
    encoded: Encoded
    met: bool
    psnr: float | None = None  # dB against the (converted) input, measured for PSNR targets
    model: str = ""  # the model's name

    @property
    def data(self) -> bytes:
        return self.encoded.data


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def compress_to_target(images: list[Image.Image], model: LoadedModel | str | None = None, *, size: int | None = None,
                       bpp: float | None = None, psnr: float | None = None, batch: int = 64, prior: str = "auto",
                       metadata: str = "all", names: list[str] | None = None) -> list[Targeted]:
    """Compress each image at the largest quality whose whole file stays within `size` bytes (or `bpp`
    bits per pixel), or the smallest quality that reaches `psnr` dB against the (converted) RGB input;
    give exactly one target. `model` None: each image searches the rungs of its ladder (vqzip.pick),
    photos across two models, instead of one model's qualities.

    Qualities are monotone in rate, so each image bisects its rungs: about log2(rungs + 1) codings of
    it, every try one coding (and, for PSNR, one decoder pass over the same tokens), the images that
    try the same rung sharing network passes. An image that cannot meet its target gets the nearest
    rung (the lowest for sizes, the highest for PSNR) and a VqzipWarning naming what that reaches;
    `names` label the images in warnings (default "image <index>").
    """
    given = [t for t in (size, bpp, psnr) if t is not None]
    if len(given) != 1:
        raise VqzipError("give exactly one target: size, bpp or psnr")
    if given[0] <= 0:
        raise VqzipError(f"the target must be positive, not {given[0]}")
    names = names if names is not None else [f"image {i}" for i in range(len(images))]
    if model is not None:
        m = _model(model)
        return _to_target(images, [(m, q) for q in range(1, m.qualities + 1)], size, bpp, psnr, batch, prior, metadata, names)
    out: dict[int, Targeted] = {}
    for rungs, idx in by_ladder(images, prior).items():
        out.update(zip(idx, _to_target([images[i] for i in idx], [(load_model(n), q) for n, q in rungs], size, bpp, psnr,
                                       batch, prior, metadata, [names[i] for i in idx])))
    return [out[i] for i in range(len(images))]


def _to_target(images: list[Image.Image], rungs: list[tuple[LoadedModel, int]], size: int | None, bpp: float | None,
               psnr: float | None, batch: int, prior: str, metadata: str, names: list[str]) -> list[Targeted]:
    """compress_to_target over one ladder of (model, quality) rungs, lowest rate first."""
    versions = {m.name: format_version(m, prior) for m, _ in rungs}
    prepared = [_prepare(img, metadata) for img in images]
    for p in prepared:
        container.check_size(p.rgb.shape[1], p.rgb.shape[0])
    top = len(rungs)
    budget = [size if size is not None else math.floor((bpp or 0) * p.rgb.shape[0] * p.rgb.shape[1] / 8)
              for p in prepared]  # bytes per file, for size and bpp targets
    # Bisection on rung numbers (lo, hi): for sizes, lo fits and hi does not; for PSNR, hi meets and lo does
    # not. 0 and top + 1 stand for the rungs beyond the ends, never coded.
    lo, hi = [0] * len(prepared), [top + 1] * len(prepared)
    tried: list[dict[int, tuple[Encoded, float | None]]] = [{} for _ in prepared]
    while True:
        todo: dict[int, list[int]] = defaultdict(list)
        for i in range(len(prepared)):
            if hi[i] - lo[i] > 1:
                todo[(lo[i] + hi[i]) // 2].append(i)
        if not todo:
            break
        for k, idx in sorted(todo.items()):
            m, q = rungs[k - 1]
            for i, (enc, rec) in zip(idx, _encode([prepared[j] for j in idx], m, q, batch, versions[m.name], psnr is not None)):
                db = _psnr(prepared[i].rgb, rec) if rec is not None else None
                tried[i][k] = (enc, db)
                if psnr is None:
                    lo[i], hi[i] = (k, hi[i]) if len(enc.data) <= budget[i] else (lo[i], k)
                else:
                    lo[i], hi[i] = (lo[i], k) if db is not None and db >= psnr else (k, hi[i])
    single = len(versions) == 1
    owner = f"model {rungs[0][0].name}" if single else "models " + " and ".join(versions)
    out = []
    for i, p in enumerate(prepared):
        met = lo[i] >= 1 if psnr is None else hi[i] <= top
        k = (lo[i] if met else 1) if psnr is None else (hi[i] if met else top)
        enc, db = tried[i][k]
        m, q = rungs[k - 1]
        if not met:
            rung = str(q) if single else f"{k} ({m.name} quality {q})"
            pixels = p.rgb.shape[0] * p.rgb.shape[1]
            if psnr is not None:
                reached = f"{psnr:g} dB is out of reach for {owner}; its highest quality, {rung}, reaches {db:.2f} dB"
            elif bpp is not None:
                reached = (f"{bpp:g} bpp is out of reach for {owner}; its lowest quality, {rung}, makes "
                           f"{8 * len(enc.data) / pixels:.3f} bpp ({len(enc.data):,} bytes)")
            else:
                reached = (f"{size:,} bytes is out of reach for {owner}; its lowest quality, {rung}, makes "
                           f"{len(enc.data):,} bytes")
            warnings.warn(f"{names[i]}: {reached}", VqzipWarning, stacklevel=3)
        out.append(Targeted(q, enc, met, db, m.name))
    return out


def compress(image: Image.Image | np.ndarray, model: LoadedModel | str | None = None, quality: int | None = None,
             prior: str = "auto", metadata: str = "all", max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """One image (Pillow, or uint8 array H x W [x 1|3|4]) -> .vqz bytes."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image)
    return compress_images([image], model, quality, prior=prior, metadata=metadata, max_pixels=max_pixels)[0].data


def _grid(f: container.VqzFile, m: LoadedModel) -> tuple[int, int, int]:
    """(levels, h, w) of the token grid a file's header claims: RVQ levels, or a photo codec's latent
    channels on its grid of latent_stride-pixel cells."""
    h, stride = f.header, m.stride
    rows, cols = -(-h.height // stride), -(-h.width // stride)
    if m.is_hyperprior:
        s = stride // m.config.latent_stride
        return m.config.latent, rows * s, cols * s
    return m.config.levels_for(h.quality), rows, cols


def _open(data: bytes, model: LoadedModel | str | None, max_pixels: int = DEFAULT_MAX_PIXELS,
          found: dict[int, LoadedModel] | None = None) -> tuple[container.VqzFile, LoadedModel]:
    """Parse and check a file before anything is allocated for its image: its size against the limits
    (before the model is even loaded), its checksum, and its claimed token grid against what its
    payload can hold (the coder's min_payload_bits), so a few bytes cannot make the decoder work
    or allocate without bound. `found`: the models of the batch's files so far, by id (filled in)."""
    header, _ = container.parse_header(data)
    container.check_pixels(header.width, header.height, max_pixels)
    found = {} if found is None else found
    if model is None and header.model_id not in found:
        found[header.model_id] = load_model(find_by_id(header.model_id))
    m = _model(model) if model is not None else found[header.model_id]
    if m.model_id != header.model_id:
        raise ModelNotFound(f"this file was made by model id {header.model_id:04x}, not by {m.name} ({m.model_id:04x})")
    if (header.version in container.PHOTO_VERSIONS) != m.is_hyperprior or (
            m.is_hyperprior and header.version not in photo_versions(m)):
        raise FormatError(f"format version {header.version} does not fit model {m.name}")
    f = container.parse(data, m.key(header.version))
    if f.header.quality > m.qualities:
        raise FormatError(f"quality {f.header.quality} does not exist in model {m.name}")
    levels, h, w = _grid(f, m)
    coder = photo_coder(m, header.version) if m.is_hyperprior else payload_coder(m, header.version)
    need = payload_floor(coder.min_payload_bits(levels, h, w))
    if len(f.payload) < need:
        raise FormatError(f"header claims {header.width}x{header.height} at quality {header.quality} "
                          f"({levels * h * w:,} tokens), which takes at least {need:,} payload bytes; the file "
                          f"has {len(f.payload):,}")
    return f, m


def _open_all(datas: list[bytes], model: LoadedModel | str | None,
              max_pixels: int) -> list[tuple[container.VqzFile, LoadedModel]]:
    """_open of each file, finding each model id's model once per batch (not once per file)."""
    found: dict[int, LoadedModel] = {}
    return [_open(d, model, max_pixels, found) for d in datas]


def _alpha(f: container.VqzFile) -> np.ndarray | None:
    h = f.header
    if not h.has_alpha:
        return None
    if not f.alpha:
        return np.full((h.height, h.width), 255, np.uint8)
    d = zlib.decompressobj()
    try:
        raw = d.decompress(f.alpha, h.width * h.height + 1)
    except zlib.error:
        raise FormatError("alpha section is corrupt") from None
    if len(raw) != h.width * h.height:
        raise FormatError("alpha section has the wrong size")
    return np.frombuffer(raw, np.uint8).reshape(h.height, h.width)


def _decode(files: list[tuple[container.VqzFile, LoadedModel]]) -> list[np.ndarray]:
    """RGB arrays for parsed files; files of one model, size and quality share network passes (passes)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (f, m) in enumerate(files):
        groups[(m.path, f.header.width, f.header.height, f.header.quality, f.header.version)].append(i)
    out: dict[int, np.ndarray] = {}
    for (_, width, height, quality, _version), group in groups.items():
        m = files[group[0]][1]
        for idx in passes(group, width * height):
            tokens = _file_tokens([files[i][0] for i in idx], m)
            for i, img in zip(idx, token_images(tokens, m, height, width, quality)):
                out[i] = img
    return [out[i] for i in range(len(files))]


def _file_tokens(files: list[container.VqzFile], m: LoadedModel) -> np.ndarray:
    """Tokens (N, L, h, w) of parsed files of one model, size, quality and version (see file_tokens)."""
    payloads = [f.payload for f in files]
    levels, h, w = _grid(files[0], m)
    if files[0].header.version in container.PHOTO_VERSIONS:
        return photo_coder(m, files[0].header.version).decode(payloads, h, w, levels)[0]
    return payload_coder(m, files[0].header.version).decode(payloads, levels, h, w)


def file_tokens(data: bytes, model: LoadedModel | str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The token grid (L, h, w) a .vqz file holds, without running the decoder network: integers, or
    for a format version 9 file (mean-shifted rounding) the latents its synthesis reads, token + mean
    (float64 multiples of 1/256)."""
    f, m = _open(data, model, max_pixels)
    return _file_tokens([f], m)[0]


def decode_batch(datas: list[bytes], model: LoadedModel | str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> list[np.ndarray]:
    """.vqz files -> RGB uint8 arrays (H, W, 3), whatever their stored colour mode."""
    return _decode(_open_all(datas, model, max_pixels))


def decompress_images(datas: list[bytes], model: LoadedModel | str | None = None,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Image.Image]:
    """.vqz files -> Pillow images in their original colour mode (L, LA, RGB or RGBA), with the ICC
    profile and EXIF the file keeps in `img.info["icc_profile"]` and `img.info["exif"]`. Files over
    the limits (`max_pixels`, or a header claiming more than its payload holds) are refused before
    anything is allocated for them."""
    files = _open_all(datas, model, max_pixels)
    images = []
    for (f, _), rgb in zip(files, _decode(files)):
        img = Image.fromarray(rgb, "RGB")
        mode = f.header.mode
        if mode in ("L", "LA"):
            img = img.convert("L")
        alpha = _alpha(f)
        if alpha is not None:
            img = img.convert(mode)
            img.putalpha(Image.fromarray(alpha, "L"))
        meta = container.unpack_metadata(f.metadata)
        if meta.icc:
            img.info["icc_profile"] = meta.icc
        if meta.exif:
            img.info["exif"] = b"Exif\x00\x00" + meta.exif  # as Pillow reads it from JPEG, and every writer takes it
        images.append(img)
    return images


def decompress(data: bytes, model: LoadedModel | str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """.vqz bytes -> Pillow image."""
    return decompress_images([data], model, max_pixels)[0]
