"""Which model and quality code an image when none is named (`vqzip encode` without -m).

Each image gets a ladder of rungs, (model, that model's quality), lowest rate first; -Q picks a rung
and --size / --bpp / --psnr search the rungs. Small images climb the small-image model's own
qualities. Photos, from PHOTO_MIN_SIDE pixels on their short side, climb PHOTO_LADDER: the photo
codec's qualities at low rates, then the high-rate photo codec's (zoo.HIGH_RATE_PHOTO_MODEL), whose finer
token grid (a token per 8x8 pixels against 16x16) needs fewer bits for the same PSNR there.
Both rules are measurements: benchmarks/pick_model.py (the size), benchmarks/photo_ladder.py (the rungs).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .errors import VqzipError
from .zoo import DEFAULT_MODEL, DEFAULT_PHOTO_MODEL, HIGH_RATE_PHOTO_MODEL, TOKEN_MODEL, available_models, load_model

if TYPE_CHECKING:
    from PIL import Image

Rung = tuple[str, int]  # (model name, that model's quality)
K = TypeVar("K")

# Photos at least this many pixels on their short side climb PHOTO_LADDER: on Kodak box-downsampled to
# a short side of 192 px photo-cbr128 needs 5.1 % more bits than small-cb2 for the same PSNR (+5 to +55 %
# from 32 to 160 px), at 256 px 0.4 % more, a tie (benchmarks/pick_model.py,
# results/pick_model-small-cb2.json; against small-cb 1.2 % fewer there: pick_model-small-cb.json).
# Against small-cb3 it needs 5.4 % more at 256 px and 1.1 % more at 384 (pick_model-small-cb3.json), but
# small-cb3's lowest rate is 0.4 bits per pixel there and photo-cbr128's 0.14: the rule stays (README).
PHOTO_MIN_SIDE = 256
# On 32 training photos (cbsd68, 481x321) photo-s8 (stride 8) reaches more PSNR than photo-cbr128 at every
# rate it codes (its lowest, quality 1, is 0.89 bpp, just above photo-cbr128's quality 5): photo-cbr128's
# qualities 1-5, then photo-s8's 1-8 (benchmarks/photo_ladder.py, results/photo_ladder-photo-s8-v2.json;
# with photo-s8-v1, photo-cbr128's 1-6 and its 2-8: results/photo_ladder-photo-s8.json; small-cbr's 4-10
# before photo-s8: results/photo_ladder.json). Empty: every image climbs the small-image model's qualities.
PHOTO_LADDER: tuple[Rung, ...] = tuple((DEFAULT_PHOTO_MODEL, q) for q in range(1, 6)) + \
    tuple((HIGH_RATE_PHOTO_MODEL, q) for q in range(1, 9))
PHOTO_DEFAULT = 5  # the rung -Q defaults to for photos: photo-cbr128's default quality, as before the ladder


def ladder(width: int, height: int, prior: str = "auto") -> tuple[tuple[Rung, ...], int]:
    """The rungs for an image of this size, lowest rate first, and the number (from 1) of the rung -Q
    defaults to. A `prior` other than "auto" chooses how tokens are coded, which only a token model's
    files have: TOKEN_MODEL's qualities."""
    if prior == "auto" and PHOTO_LADDER and min(width, height) >= PHOTO_MIN_SIDE and \
            {name for name, _ in PHOTO_LADDER} <= set(available_models()):
        return PHOTO_LADDER, PHOTO_DEFAULT
    m = load_model(DEFAULT_MODEL if prior == "auto" else TOKEN_MODEL)
    return tuple((m.name, q) for q in range(1, m.qualities + 1)), m.default_quality


def describe() -> str:
    """One line on the rule, for `vqzip models`: which model each photo quality uses."""
    if not PHOTO_LADDER:
        return f"Without -m, every image uses {DEFAULT_MODEL}."
    runs: list[tuple[str, int, int]] = []  # (model, first quality, last quality), in ladder order
    for name, q in PHOTO_LADDER:
        runs = runs[:-1] + [(name, runs[-1][1], q)] if runs and runs[-1][0] == name else runs + [(name, q, q)]
    steps = ", then ".join(f"{name} {lo}-{hi}" for name, lo, hi in runs)
    return (f"Without -m, photos (short side from {PHOTO_MIN_SIDE} px) have qualities 1-{len(PHOTO_LADDER)}: {steps} "
            f"(default {PHOTO_DEFAULT}); smaller images {DEFAULT_MODEL}'s own.")


def pick(width: int, height: int, quality: int | None = None, prior: str = "auto") -> Rung:
    """The rung for an image of this size at `quality` (a rung number; None: the default rung);
    VqzipError when the ladder has no such rung."""
    rungs, default = ladder(width, height, prior)
    q = default if quality is None else int(quality)
    if not 1 <= q <= len(rungs):
        kind = "photos" if rungs == PHOTO_LADDER else f"images of {width}x{height}"
        raise VqzipError(f"quality {q} is outside 1..{len(rungs)} for {kind} when no model is named (-m)")
    return rungs[q - 1]


def by_rung(images: list[Image.Image], quality: int | None = None, prior: str = "auto") -> dict[Rung, list[int]]:
    """The indices of `images` per rung that pick chooses for their sizes."""
    return _grouped(images, lambda img: pick(img.width, img.height, quality, prior))


def by_ladder(images: list[Image.Image], prior: str = "auto") -> dict[tuple[Rung, ...], list[int]]:
    """The indices of `images` per ladder their sizes climb."""
    return _grouped(images, lambda img: ladder(img.width, img.height, prior)[0])


def _grouped(images: list[Image.Image], key: Callable[[Image.Image], K]) -> dict[K, list[int]]:
    groups: dict[K, list[int]] = defaultdict(list)
    for i, img in enumerate(images):
        groups[key(img)].append(i)
    return dict(groups)
