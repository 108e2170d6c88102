"""Measure a photo or small-image codec again, as its card's "results" were measured, and write them in.

    python benchmarks/card_results.py photo-cbr128 ../shared/data/kodak
    python benchmarks/card_results.py small-cb2 cifar10 --data ../shared/data/cifar10

Why: a card's results are measured once, at export (`vqzip train ... --test`). When the coding of an
installed model improves later (the fine tables of format versions 7 and 8 took 1-2 % off photo-cbr128's
and small-cb2's files), its card goes on showing the older files. This measures the same test set the
same way (training.evaluate.measure_photos: real .vqz files of the version vqzip writes today, decoded
again; the first 1,000 CIFAR-10 test images for `cifar10`, as `--test cifar10` does) and replaces the
card's "results", naming the format version and the command. The weights, and so the model id, are not
touched.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from vqzip import api
from vqzip.cli.train import _rd_test_images
from vqzip.training.evaluate import measure_photos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="an installed photo or small-image codec (hyperprior kind)")
    ap.add_argument("test", help="a folder of images, or cifar10")
    ap.add_argument("--data", type=Path, help="CIFAR-10's folder (for cifar10)")
    args = ap.parse_args()
    m = api.load_model(args.model)
    if not m.is_hyperprior:
        raise SystemExit(f"{m.name} is a token model: its card's results come from measure_priors")
    images, source = _rd_test_images(Path(args.test), args.data)  # what `vqzip train --test` measures
    rows = measure_photos(m, images)
    card_path = m.path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["results"] = {"dataset": source, "images": len(images), "format_version": api.format_version(m),
                       "command": f"python benchmarks/card_results.py {args.model} {args.test}"
                                  + (f" --data {args.data}" if args.data else ""),
                       "method": "mean size of real .vqz files (header + payload + checksum), decoded again; PSNR "
                                 "over RGB uint8 averaged per image; MS-SSIM (pytorch-msssim) on RGB uint8",
                       "per_quality": rows}
    tmp = card_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, card_path)
    for r in rows:
        print(f"q{r['quality']}: {r['bytes']:,.1f} B  {r['bpp']:.4f} bpp  {r['psnr']:.3f} dB")


if __name__ == "__main__":
    main()
