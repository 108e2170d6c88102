"""`-r/--recursive`: folders among the inputs become the files beneath them that a command takes, each
with its place relative to that folder, so that `-O DIR` can mirror the tree."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .console import Failure
from .files import STDIO


def pillow_reads(path: Path) -> bool:
    """Whether Pillow recognises the file as an image (from its first bytes; nothing is decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return False


def image_name(path: Path) -> bool:
    """Whether the file's extension is one Pillow reads: a cheaper test than pillow_reads (nothing is
    opened), for trees too large to open every file on every process of a sharded run."""
    from PIL import Image

    Image.init()
    return path.suffix.lower() in Image.registered_extensions()


def vqz_file(path: Path) -> bool:
    return path.suffix.lower() == ".vqz"


def expand(inputs: list[str], recursive: bool, take: Callable[[Path], bool],
           out_dir: Path | None = None) -> tuple[list[str], list[Path] | None, int]:
    """With `recursive`, each folder among `inputs` is replaced by the files beneath it that `take`
    accepts, in sorted order (links to folders are not followed, `out_dir` is not entered). Returns the
    inputs, each one's folder relative to the folder it was found in (Path('.') for inputs named
    directly; None without `recursive`), and how many files were passed over."""
    if not recursive:
        return inputs, None, 0
    skip = out_dir.resolve() if out_dir is not None else None
    files: list[str] = []
    under: list[Path] = []
    skipped = 0
    for name in inputs:
        if name == STDIO or not Path(name).is_dir():
            files.append(name)
            under.append(Path("."))
            continue
        root = Path(name)
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if (Path(folder) / d).resolve() != skip)
            for f in sorted(names):
                path = Path(folder) / f
                if path.is_file() and take(path):
                    files.append(str(path))
                    under.append(path.parent.relative_to(root))
                else:
                    skipped += 1
    return files, under, skipped


def make_parent(target: Path | str) -> None:
    """Create the folder a mirrored output goes into."""
    if str(target) == STDIO:
        return
    try:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Failure(f"cannot write {target}: {exc.strerror}") from None
