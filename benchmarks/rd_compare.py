"""One RD plot from the curves of several committed bench runs on the same data set: the new model beside
the old ones and the reference codecs, without running anything again.

    python benchmarks/rd_compare.py benchmarks/results/cifar10-small-cb2/results.json \
        benchmarks/results/cifar10-small-cb/results.json benchmarks/results/cifar10/results.json \
        --codecs vqzip:small-cb2 vqzip:small-cb vqzip:cifar10-rvq webp avif jpeg-420 \
        --out benchmarks/results/cifar10-small-cb2/rd-compare.png

Each codec's curve comes from the first run (in the order given) that has it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vqzip.bench.report import plot_rd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="results.json of bench runs on one data set")
    ap.add_argument("--codecs", nargs="+", required=True, help="the curves to draw, in this order")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    runs = [json.loads(p.read_text()) for p in a.runs]
    if len({r["meta"]["dataset"] for r in runs}) > 1 or len({r["meta"]["n_images"] for r in runs}) > 1:
        raise SystemExit("error: the runs are not on the same data set and number of images")
    points = []
    for codec in a.codecs:
        owner = next((r for r in runs if any(p["codec"] == codec for p in r["points"])), None)
        if owner is None:
            raise SystemExit(f"error: no run has {codec}")
        points += [p for p in owner["points"] if p["codec"] == codec]
    if not plot_rd({"meta": runs[0]["meta"], "points": points}, a.out):
        raise SystemExit("error: matplotlib is not installed (pip install '.[train]')")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
