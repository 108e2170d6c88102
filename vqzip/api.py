"""The library interface: load a model, compress images to .vqz bytes, decompress them back.

Nothing here prints; lossy input conversions are reported with `warnings.warn(..., VqzipWarning)`.
"""
from __future__ import annotations

import os
import warnings
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .codec.model import to_uint8, to_unit
from .coding import container
from .coding.container import DEFAULT_MAX_PIXELS
from .coding.entropy import payload_floor
from .coding.priors import PayloadCoder
from .errors import FormatError, ModelNotFound, VqzipError, VqzipWarning
from .zoo import LoadedModel, available_models, find_by_id, load_model

TILE = 128  # latent positions per tile side: bounds memory for any image size
MARGIN = 8  # latent positions of context around each tile (beyond the networks' receptive field)

__all__ = ["Encoded", "available_models", "compress", "compress_images", "decode_batch", "decompress",
           "decompress_images", "encode_batch", "file_tokens", "image_tokens", "load_model", "resolve_quality", "token_images"]


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


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, grid: tuple[int, int],
          in_scale: int, out_scale: int) -> torch.Tensor:
    """Apply a fully convolutional `fn` tile by tile over a grid of (h, w) latent positions.

    Each tile is computed with MARGIN positions of context and only its centre is kept, so the result
    matches a whole-image pass while memory stays bounded. `x` has `in_scale` pixels per position,
    the output `out_scale`.
    """
    h, w = grid
    out: torch.Tensor | None = None
    for y0 in range(0, h, TILE):
        for x0 in range(0, w, TILE):
            y1, x1 = min(y0 + TILE, h), min(x0 + TILE, w)
            ya, xa, yb, xb = max(0, y0 - MARGIN), max(0, x0 - MARGIN), min(h, y1 + MARGIN), min(w, x1 + MARGIN)
            part = fn(x[..., ya * in_scale: yb * in_scale, xa * in_scale: xb * in_scale])
            s = out_scale
            part = part[..., (y0 - ya) * s: (y1 - ya) * s, (x0 - xa) * s: (x1 - xa) * s]
            if out is None:
                out = part.new_empty(*part.shape[:-2], h * s, w * s)
            out[..., y0 * s: y1 * s, x0 * s: x1 * s] = part
    assert out is not None
    return out


@torch.no_grad()
def image_tokens(images: np.ndarray, m: LoadedModel, quality: int) -> np.ndarray:
    """Tokens (N, L, h, w) of same-size RGB uint8 images (N, H, W, 3), padded to the stride."""
    stride = m.codec.stride
    n, height, width, _ = images.shape
    h, w = -(-height // stride), -(-width // stride)
    padded = np.pad(images, ((0, 0), (0, h * stride - height), (0, w * stride - width), (0, 0)), mode="edge")
    x = torch.from_numpy(padded).permute(0, 3, 1, 2)  # uint8, converted per tile
    fn = lambda t: m.codec.encode_tokens(to_unit(t.permute(0, 2, 3, 1)), quality)  # noqa: E731
    return tiled(fn, x, (h, w), stride, 1).numpy()


@torch.no_grad()
def token_images(tokens: np.ndarray, m: LoadedModel, height: int, width: int) -> np.ndarray:
    """RGB uint8 images (N, height, width, 3) from tokens (N, L, h, w)."""
    t = torch.from_numpy(tokens)
    fn = lambda z: to_uint8(m.codec.decode_tokens(z)).permute(0, 3, 1, 2)  # noqa: E731
    return tiled(fn, t, tokens.shape[-2:], 1, m.codec.stride).permute(0, 2, 3, 1)[:, :height, :width].numpy()


PRIORS = ("auto", "context", "static")


def format_version(m: LoadedModel, prior: str = "auto") -> int:
    """The .vqz version to write: 2 (context prior) when the model has one and `prior` allows it,
    else 1 (static tables)."""
    if prior not in PRIORS:
        raise VqzipError(f"prior must be one of {', '.join(PRIORS)}, not {prior!r}")
    if prior == "context" and m.context is None:
        raise VqzipError(f"model {m.name} has no context prior (train one with 'vqzip train-prior {m.name}')")
    return 2 if m.context is not None and prior != "static" else 1


def _coder(m: LoadedModel, version: int) -> PayloadCoder:
    return m.context if version == 2 else m.prior


def _pack(tokens: np.ndarray, m: LoadedModel, width: int, height: int, modes: list[str], quality: int,
          alphas: list[bytes], version: int) -> list[Encoded]:
    """Range-code same-size token grids (N, L, h, w) into whole .vqz files."""
    key = m.key(version)
    out = []
    for (payload, bits), mode, alpha in zip(_coder(m, version).encode(tokens), modes, alphas):
        header = container.Header(m.model_id, width, height, mode, quality, version)
        out.append(Encoded(container.build(header, payload, key, alpha), bits))
    return out


def encode_batch(images: np.ndarray, model: LoadedModel | str | None = None, quality: int | None = None,
                 prior: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Encoded]:
    """Compress same-size RGB uint8 images (N, H, W, 3) in one network pass. `prior`: "auto" (the
    context prior when the model has one), "context" or "static" (format version 1)."""
    m = _model(model)
    q = resolve_quality(m, quality)
    version = format_version(m, prior)
    container.check_pixels(images.shape[2], images.shape[1], max_pixels)
    tokens = image_tokens(images, m, q)
    return _pack(tokens, m, images.shape[2], images.shape[1], ["RGB"] * len(images), q, [b""] * len(images), version)


def _prepare(img: Image.Image) -> tuple[np.ndarray, str, bytes]:
    """(RGB array, original colour mode, compressed alpha) of any Pillow image, warning on lossy steps."""
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
        warnings.warn(f"{img.mode} image converted to RGB", VqzipWarning, stacklevel=3)
        img = img.convert("RGB")
    mode, alpha = img.mode, b""
    if mode in ("LA", "RGBA"):
        a = np.asarray(img.getchannel("A"))
        alpha = b"" if (a == 255).all() else zlib.compress(a.tobytes(), 9)
    return np.asarray(img.convert("RGB")), mode, alpha


def compress_images(images: list[Image.Image], model: LoadedModel | str | None = None,
                    quality: int | None = None, batch: int = 64, prior: str = "auto",
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Encoded]:
    """Compress Pillow images of any modes and sizes; same-size images share network passes. Sizes
    are checked against the limits (`max_pixels`, the format's) before any pixel is converted."""
    m = _model(model)
    q = resolve_quality(m, quality)
    version = format_version(m, prior)
    for img in images:
        container.check_pixels(img.width, img.height, max_pixels)
    prepared = [_prepare(img) for img in images]
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (rgb, _, _) in enumerate(prepared):
        groups[rgb.shape[:2]].append(i)
    out: dict[int, Encoded] = {}
    for (height, width), idx in groups.items():
        for start in range(0, len(idx), batch):
            chunk = idx[start: start + batch]
            tokens = image_tokens(np.stack([prepared[i][0] for i in chunk]), m, q)
            packed = _pack(tokens, m, width, height, [prepared[i][1] for i in chunk], q, [prepared[i][2] for i in chunk], version)
            for i, e in zip(chunk, packed):
                out[i] = e
    return [out[i] for i in range(len(images))]


def compress(image: Image.Image | np.ndarray, model: LoadedModel | str | None = None, quality: int | None = None,
             prior: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """One image (Pillow, or uint8 array H x W [x 1|3|4]) -> .vqz bytes."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image)
    return compress_images([image], model, quality, prior=prior, max_pixels=max_pixels)[0].data


def _grid(f: container.VqzFile, m: LoadedModel) -> tuple[int, int, int]:
    """(levels, h, w) of the token grid a file's header claims."""
    h, stride = f.header, m.codec.stride
    return m.codec.levels_for(h.quality), -(-h.height // stride), -(-h.width // stride)


def _open(data: bytes, model: LoadedModel | str | None,
          max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[container.VqzFile, LoadedModel]:
    """Parse and check a file before anything is allocated for its image: its size against the limits
    (before the model is even loaded), its checksum, and its claimed token grid against what its
    payload can hold (the coder's min_payload_bits), so a few bytes cannot make the decoder work
    or allocate without bound."""
    header, _ = container.parse_header(data)
    container.check_pixels(header.width, header.height, max_pixels)
    m = _model(model) if model is not None else load_model(find_by_id(header.model_id))
    if m.model_id != header.model_id:
        raise ModelNotFound(f"this file was made by model id {header.model_id:04x}, not by {m.name} ({m.model_id:04x})")
    f = container.parse(data, m.key(header.version))
    if f.header.quality > m.qualities:
        raise FormatError(f"quality {f.header.quality} does not exist in model {m.name}")
    levels, h, w = _grid(f, m)
    need = payload_floor(_coder(m, header.version).min_payload_bits(levels, h, w))
    if len(f.payload) < need:
        raise FormatError(f"header claims {header.width}x{header.height} at quality {header.quality} "
                          f"({levels * h * w:,} tokens), which takes at least {need:,} payload bytes; the file "
                          f"has {len(f.payload):,}")
    return f, m


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
    """RGB arrays for parsed files; files of one model, size and quality share network passes."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (f, m) in enumerate(files):
        groups[(m.path, f.header.width, f.header.height, f.header.quality, f.header.version)].append(i)
    out: dict[int, np.ndarray] = {}
    for (_, width, height, _, version), idx in groups.items():
        f, m = files[idx[0]]
        tokens = _coder(m, version).decode([files[i][0].payload for i in idx], *_grid(f, m))
        for i, img in zip(idx, token_images(tokens, m, height, width)):
            out[i] = img
    return [out[i] for i in range(len(files))]


def file_tokens(data: bytes, model: LoadedModel | str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The token grid (levels, h, w) a .vqz file holds, without running the decoder network."""
    f, m = _open(data, model, max_pixels)
    return _coder(m, f.header.version).decode([f.payload], *_grid(f, m))[0]


def decode_batch(datas: list[bytes], model: LoadedModel | str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> list[np.ndarray]:
    """.vqz files -> RGB uint8 arrays (H, W, 3), whatever their stored colour mode."""
    return _decode([_open(d, model, max_pixels) for d in datas])


def decompress_images(datas: list[bytes], model: LoadedModel | str | None = None,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Image.Image]:
    """.vqz files -> Pillow images in their original colour mode (L, LA, RGB or RGBA). Files over
    the limits (`max_pixels`, or a header claiming more than its payload holds) are refused before
    anything is allocated for them."""
    files = [_open(d, model, max_pixels) for d in datas]
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
        images.append(img)
    return images


def decompress(data: bytes, model: LoadedModel | str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """.vqz bytes -> Pillow image."""
    return decompress_images([data], model, max_pixels)[0]
