"""Which model codes each quality of a photo: the quality rule behind api.PHOTO_LADDER.

The photo codec (4 downsamplings) reaches the lowest rates; the small-image model (3 downsamplings, a
finer token grid) can need fewer bits at high PSNR even on full-size photos. Both code every photo of
a folder at every quality (real .vqz files, decoded again), giving two curves of mean bits per pixel
and mean PSNR. The ladder: the photo codec's qualities up to the first one where the small-image
model's curve (interpolated in log rate) gives more PSNR at the same rate, then the small-image
model's qualities above the last photo rung's rate. Measured on training photos (cbsd68 by default),
never on Kodak, which stays the test.

    python benchmarks/photo_ladder.py [--photos ../shared/data/photos/cbsd68] [--limit 32]
        [--out benchmarks/results/photo_ladder.json]
    python benchmarks/photo_ladder.py --curves benchmarks/results/photo_ladder.json   # the ladder again
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from pick_model import curve
from PIL import Image

from vqzip import api
from vqzip.zoo import DEFAULT_MODEL, DEFAULT_PHOTO_MODEL


def crossover_ladder(photo: list[dict], small: list[dict]) -> list[dict]:
    """The photo curve's points while the small curve, at the same rate, reaches less PSNR (or does not
    reach down to that rate), then the small curve's points beyond the last of them."""
    rates, scores = np.log([r["bpp"] for r in small]), [r["psnr"] for r in small]
    keep: list[dict] = []
    for r in photo:
        if np.log(r["bpp"]) >= rates[0] and r["psnr"] < np.interp(np.log(r["bpp"]), rates, scores):
            break
        keep.append(r)
    last = keep[-1] if keep else {"bpp": 0.0, "psnr": -np.inf}
    return keep + [r for r in small if r["bpp"] > last["bpp"] and r["psnr"] > last["psnr"]]


def main() -> None:
    data = Path(os.environ.get("VQZIP_DATA", "../shared/data"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, default=data / "photos" / "cbsd68")
    ap.add_argument("--limit", type=int, default=None, help="the first N photos (sorted by name)")
    ap.add_argument("--small", default=DEFAULT_MODEL)
    ap.add_argument("--photo", default=DEFAULT_PHOTO_MODEL)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/photo_ladder.json"))
    ap.add_argument("--curves", type=Path, default=None, help="an earlier run's results: its ladder again, nothing coded")
    a = ap.parse_args()
    if a.curves is not None:
        results = json.loads(a.curves.read_text())
        curves = results["curves"]
        results["ladder_command"] = "python benchmarks/photo_ladder.py " + " ".join(sys.argv[1:])
    else:
        paths = sorted(p for p in a.photos.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: a.limit]
        images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        curves = {name: curve(name, images) for name in (a.photo, a.small)}
        results = {"command": "python benchmarks/photo_ladder.py " + " ".join(sys.argv[1:]),
                   "photos": f"{a.photos.name}: {len(images)} images",
                   "sizes": sorted({f"{i.shape[1]}x{i.shape[0]}" for i in images}),
                   "models": {name: f"{api.load_model(name).model_id:04x}" for name in curves}, "curves": curves}
    photo, small = ([{"model": name, **r} for r in curves[name]] for name in results["models"])  # photo model first
    ladder = results["ladder"] = crossover_ladder(photo, small)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    for r in ladder:
        print(f"{r['model']} quality {r['quality']}: {r['bpp']:.3f} bpp, {r['psnr']:.2f} dB")


if __name__ == "__main__":
    main()
