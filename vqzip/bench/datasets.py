"""The images a benchmark runs on: CIFAR-10 test set, the Kodak suite, Kodak thumbnails, or any folder of images."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from vqzip.training.data import DataNotFound, candidate_roots, load_cifar10

# An image set: one (N, H, W, 3) uint8 array when all images share a size, else a list of (H, W, 3) arrays.
Images = np.ndarray | list[np.ndarray]


def _image_files(folder: Path) -> list[Path]:
    exts = {e.lower() for e in Image.registered_extensions()}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # noqa: BLE001 - any decoder error is bad input
        raise ValueError(f"cannot read image {path}: {e}") from None


def _stack_if_uniform(images: list[np.ndarray]) -> Images:
    if len({im.shape for im in images}) == 1:
        return np.stack(images)
    return images


def load_folder(folder: Path, limit: int | None = None) -> Images:
    """Every image file directly in `folder` (sorted by name), converted to RGB."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    files = _image_files(folder)
    if not files:
        raise ValueError(f"no image files in {folder}")
    return _stack_if_uniform([_read_rgb(p) for p in files[:limit]])


def find_kodak(data: str | os.PathLike | None = None) -> Path:
    """The folder holding kodim01..24.png: `kodak/` under --data, $VQZIP_DATA or the cache (or the root itself)."""
    for root in candidate_roots(data):
        for d in (root / "kodak", root):
            if d.is_dir() and any(d.glob("kodim*.png")):
                return d
    raise DataNotFound("Kodak images (kodak/kodim01..24.png) not found; pass --data DIR or set VQZIP_DATA")


def load_kodak(data: str | os.PathLike | None = None, limit: int | None = None) -> Images:
    d = find_kodak(data)
    return _stack_if_uniform([_read_rgb(p) for p in sorted(d.glob("kodim*.png"))[:limit]])


THUMB_TILE = 256  # pixels of Kodak per thumbnail side...
THUMB_SIDE = 32  # ...box-downsampled to this


def kodak_thumbs(data: str | os.PathLike | None = None, limit: int | None = None) -> np.ndarray:
    """Small images that are not CIFAR-10 (issue #18's test set, never trained on): every 256x256 tile
    of each Kodak photo on a 256-pixel grid, in reading order, box-downsampled to 32x32 (the mean of
    each 8x8 block, Pillow's Image.reduce, which rounds): 6 per photo, 144 in all."""
    thumbs = []
    for p in sorted(find_kodak(data).glob("kodim*.png")):
        with Image.open(p) as im:
            rgb = im.convert("RGB")
        for y in range(0, rgb.height - THUMB_TILE + 1, THUMB_TILE):
            for x in range(0, rgb.width - THUMB_TILE + 1, THUMB_TILE):
                tile = rgb.crop((x, y, x + THUMB_TILE, y + THUMB_TILE))
                thumbs.append(np.asarray(tile.reduce(THUMB_TILE // THUMB_SIDE)))
    return np.stack(thumbs[:limit])


def load_target(target: str, data: Path | None, limit: int | None) -> tuple[str, Images]:
    """('cifar10' | 'kodak' | 'kodak-thumbs' | folder) -> (dataset description, images)."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    if target == "cifar10":
        images, _ = load_cifar10("test", data, download=True)  # fetched once where the network allows
        return "cifar10 (test split)", images[:limit]
    if target == "kodak":
        return "kodak", load_kodak(data, limit)
    if target == "kodak-thumbs":
        return "kodak-thumbs (every 256x256 tile of Kodak box-downsampled to 32x32)", kodak_thumbs(data, limit)
    folder = Path(target)
    if folder.is_dir():
        return f"folder {folder}", load_folder(folder, limit)
    raise ValueError(f"unknown benchmark target {target!r}: expected 'cifar10', 'kodak', 'kodak-thumbs' or a folder of images")


def count(images: Images) -> int:
    return len(images)


def pixels(images: Images) -> list[int]:
    return [int(im.shape[0] * im.shape[1]) for im in images]
