"""Datasets: CIFAR-10 (official binary or python layouts, or their tarballs) and folders of images.

CIFAR-10 is looked for in the `data` argument (--data), then $VQZIP_DATA, then the user cache folder
($XDG_CACHE_HOME/vqzip or ~/.cache/vqzip). A tarball found in any of them is extracted once into the
cache folder, so later runs read the extracted files directly.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

PathLike = str | os.PathLike

BIN_DIR = "cifar-10-batches-bin"
PY_DIR = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
# Tarball name -> the folder it unpacks to.
TARBALLS = {
    "cifar-10-binary.tar.gz": BIN_DIR,
    "cifar-10-binary.tar.xz": BIN_DIR,
    "cifar-10-python.tar.gz": PY_DIR,
    "cifar-10-python.tar.xz": PY_DIR,
}
BATCH_RECORDS = 10_000  # images per batch file; checked so a truncated file fails loudly (tests shrink it)
RECORD_BYTES = 1 + 3 * 32 * 32  # label byte, then the R, G and B planes
# md5 of the official binary members; checked once, after extraction, not on every load.
BIN_MD5 = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"


class DataNotFound(FileNotFoundError):
    """No CIFAR-10 copy could be found or fetched; the message says where we looked."""


class CorruptData(ValueError):
    """A CIFAR-10 file is truncated, malformed or fails its md5, so training on it would be wrong."""


class UnsafeArchive(ValueError):
    """A tarball member would land outside the extraction folder, or is a link or device."""


class UnsafePickle(pickle.UnpicklingError):
    """A pickled batch asks for something other than numpy arrays, which could run arbitrary code."""


LOCK_NAME = ".download.lock"


def cache_dir() -> Path:
    """The user cache folder, where tarballs are extracted and downloads go."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vqzip"


def _roots(data: PathLike | None) -> list[tuple[str, Path]]:
    """Candidate roots with where each came from, for the not-found message."""
    given = [("--data", data), ("$VQZIP_DATA", os.environ.get("VQZIP_DATA"))]
    return [(why, Path(p)) for why, p in given if p] + [("cache", cache_dir())]


def candidate_roots(data: PathLike | None = None) -> list[Path]:
    """Where CIFAR-10 may live, in order: --data, $VQZIP_DATA, the user cache folder."""
    return [root for _, root in _roots(data)]


def _candidates(root: Path) -> Iterator[tuple[str, Path]]:
    """(layout, path) to try under one root: extracted folders first (cheap), then tarballs."""
    places = [root, root / "cifar10"]
    for layout in (BIN_DIR, PY_DIR):
        if root.name == layout:  # --data may name the batches folder itself
            yield layout, root
        yield from ((layout, p / layout) for p in places)
    for name, layout in TARBALLS.items():
        if root.name == name:  # ... or the tarball itself
            yield layout, root
        yield from ((layout, p / name) for p in places)


def _names(layout: str, split: str) -> list[str]:
    names = TRAIN_FILES if split == "train" else TEST_FILES
    return names if layout == BIN_DIR else [n.removesuffix(".bin") for n in names]


def _complete(folder: Path, layout: str, splits: Sequence[str] = ("train", "test")) -> bool:
    return all((folder / n).is_file() for s in splits for n in _names(layout, s))


def _to_hwc(pixels: np.ndarray) -> np.ndarray:
    """(N, 3072) planar R, G, B rows -> (N, 32, 32, 3)."""
    return np.ascontiguousarray(pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _read_bin(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    expected = BATCH_RECORDS * RECORD_BYTES
    for f in files:
        if (size := f.stat().st_size) != expected:
            raise CorruptData(f"{f}: {size} bytes, expected {expected} (truncated or not CIFAR-10); delete it")
    raw = np.concatenate([np.fromfile(f, dtype=np.uint8).reshape(-1, RECORD_BYTES) for f in files])
    return _to_hwc(raw[:, 1:]), raw[:, 0].astype(np.int64)


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only numpy array reconstruction, so a tampered batch file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise UnsafePickle(f"refusing global {module}.{name}: CIFAR-10 batches hold only numpy arrays")
        return super().find_class(module, name)


def _read_py(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for f in files:
        try:
            with open(f, "rb") as fh:
                batch = _ArrayUnpickler(fh, encoding="bytes").load()
        except UnsafePickle as e:
            raise UnsafePickle(f"{f}: {e}") from None
        except (EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
            raise CorruptData(f"{f}: not a readable CIFAR-10 python batch ({e}); delete it") from None
        batch = batch if isinstance(batch, dict) else {}
        x, y = batch.get(b"data", batch.get("data")), np.asarray(batch.get(b"labels", batch.get("labels")))
        if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.shape == (BATCH_RECORDS, 3072)
                and y.shape == (BATCH_RECORDS,)):
            raise CorruptData(f"{f}: expected {BATCH_RECORDS} uint8 images of 3072 bytes and as many labels")
        images.append(x)
        labels.append(y.astype(np.int64))
    return _to_hwc(np.concatenate(images)), np.concatenate(labels)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify_cifar10(folder: PathLike) -> None:
    """Check a binary batches folder against the official md5s (reads ~180 MB, so not done per load)."""
    for name, want in BIN_MD5.items():
        if (got := _md5(Path(folder) / name)) != want:
            raise CorruptData(f"{Path(folder) / name}: md5 {got}, expected {want}")


def _check_member(tarball: Path, m: tarfile.TarInfo) -> None:
    parts = PurePosixPath(m.name).parts
    if PurePosixPath(m.name).is_absolute() or ".." in parts:
        why = "absolute path" if PurePosixPath(m.name).is_absolute() else "path escapes the target"
    elif not (m.isfile() or m.isdir()):
        why = "links and devices are not allowed"
    else:
        return
    raise UnsafeArchive(f"{tarball}: refusing member {m.name!r} ({why})")


def _safe_extract(tarball: Path, dest: Path) -> None:
    """Stream through the tarball once, checking every member before anything of it is written."""
    safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(tarball, "r|*") as tf:
        for m in tf:
            _check_member(tarball, m)
            if m.isdir():  # made here, not via extract(), so a read-only mode cannot block its files
                (dest / m.name).mkdir(parents=True, exist_ok=True)
            else:
                tf.extract(m, dest, **safe)


def _extract(tarball: Path, layout: str) -> Path:
    """Extract `tarball` into the cache once, via a temp folder renamed at the end (no half folders)."""
    target = cache_dir() / layout
    if _complete(target, layout):
        return target
    if target.exists():
        raise CorruptData(f"{target} exists but is incomplete; delete it so it can be re-extracted")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        print(f"vqzip: extracting {tarball} into {target.parent} (once)", file=sys.stderr)
        _safe_extract(tarball, tmp)
        if not _complete(tmp / layout, layout):
            raise CorruptData(f"{tarball}: holds no complete {layout}/ folder")
        if layout == BIN_DIR:
            verify_cifar10(tmp / layout)
        try:
            (tmp / layout).rename(target)
        except OSError:
            if not _complete(target, layout):  # else another process finished first: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def download_cifar10(dest: PathLike | None = None) -> Path:
    """Fetch the official binary tarball into `dest` (default: the cache), md5-checked; returns its path."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    folder = Path(dest) if dest is not None else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / CIFAR10_URL.rsplit("/", 1)[-1]
    fd, name = tempfile.mkstemp(prefix=".download-", dir=folder)
    md5 = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(CIFAR10_URL, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            columns = (TextColumn("CIFAR-10"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
            with Progress(*columns, transient=True) as bar:
                task = bar.add_task("download", total=total)
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    md5.update(chunk)
                    bar.advance(task, len(chunk))
        if md5.hexdigest() != CIFAR10_MD5:
            raise CorruptData(f"{CIFAR10_URL}: md5 {md5.hexdigest()}, expected {CIFAR10_MD5}; try again")
        os.replace(name, final)
    except (OSError, http.client.HTTPException) as e:
        raise DataNotFound(f"could not download {CIFAR10_URL}: {e}") from None
    finally:
        Path(name).unlink(missing_ok=True)
    return final


def _not_found(data: PathLike | None, tried_download: bool = False) -> str:
    looked = "\n".join(f"  {root}  ({why})" for why, root in _roots(data))
    fetch = "" if tried_download else f", or pass download=True to fetch {CIFAR10_URL} (170 MB, needs network)"
    return (
        f"CIFAR-10 not found. Looked in:\n{looked}\n"
        f"for {BIN_DIR}/ or {PY_DIR}/ (also under cifar10/), or {', '.join(TARBALLS)}.\n"
        f"Provide it with --data DIR or VQZIP_DATA=DIR{fetch}."
    )


def load_cifar10(
    split: str = "train", data: PathLike | None = None, download: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) of the CIFAR-10 `split` ('train' or 'test')."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    for root in candidate_roots(data):
        for layout, path in _candidates(root):
            if path.name in TARBALLS:
                if not path.is_file():
                    continue
                path = _extract(path, layout)
            files = [path / n for n in _names(layout, split)]
            if all(f.is_file() for f in files):
                return (_read_bin if layout == BIN_DIR else _read_py)(files)
    if not download:
        raise DataNotFound(_not_found(data))
    return _read_bin([_download_once(data) / n for n in _names(BIN_DIR, split)])


def _download_once(data: PathLike | None) -> Path:
    """Download and extract CIFAR-10 into the cache, once even when several processes ask at the
    same time (every rank of a `torchrun` job): the first holds a lock, the others wait and reuse."""
    from filelock import FileLock

    folder = cache_dir() / BIN_DIR
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir() / LOCK_NAME)):
        if _complete(folder, BIN_DIR):
            return folder
        try:
            tarball = download_cifar10()
        except DataNotFound as e:
            raise DataNotFound(f"{_not_found(data, tried_download=True)}\n{e}") from None
        folder = _extract(tarball, BIN_DIR)
        tarball.unlink()  # only the vehicle: the extracted folder is what later runs read
    return folder


def load_image_folder(path: PathLike, crop: int | None = None, limit: int | None = None) -> list[np.ndarray]:
    """The images in `path` as RGB uint8 (H, W, 3), in sorted file order; files Pillow can't read are skipped.

    crop: centre-crop each to crop x crop (for same-size batches); limit: keep the first `limit` images.
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of images")
    images: list[np.ndarray] = []
    for f in sorted(folder.iterdir()):
        if limit is not None and len(images) >= limit:
            break
        if not f.is_file():
            continue
        try:
            with Image.open(f) as im:
                img = np.array(im.convert("RGB"))
        except UnidentifiedImageError:
            continue
        if crop is not None:
            h, w = img.shape[:2]
            if h < crop or w < crop:
                raise ValueError(f"{f}: {w}x{h} is smaller than the {crop}x{crop} crop")
            top, left = (h - crop) // 2, (w - crop) // 2
            img = np.ascontiguousarray(img[top : top + crop, left : left + crop])
        images.append(img)
    return images


def random_crops(images: Sequence[np.ndarray], size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` size x size crops (count, size, size, 3), each from a uniformly chosen image and position.

    Fresh patches from a few large photos are how a photo model gets enough varied training data.
    """
    if not images:
        raise ValueError("no images to crop from")
    hs, ws = np.array([im.shape[0] for im in images]), np.array([im.shape[1] for im in images])
    if (hs < size).any() or (ws < size).any():
        raise ValueError(f"image {int(np.argmax((hs < size) | (ws < size)))} is smaller than {size}x{size}")
    which = rng.integers(len(images), size=count)
    ys = (rng.random(count) * (hs[which] - size + 1)).astype(np.int64)
    xs = (rng.random(count) * (ws[which] - size + 1)).astype(np.int64)
    out = np.empty((count, size, size, 3), dtype=images[0].dtype)
    for k, (i, y, x) in enumerate(zip(which, ys, xs)):
        out[k] = images[i][y : y + size, x : x + size]
    return out
