"""One RD plot from the curves of several committed bench runs on the same data set: the new model beside
the old ones and the reference codecs, without running anything again.

    python benchmarks/rd_compare.py benchmarks/results/cifar10-small-cb2/results.json \
        benchmarks/results/cifar10-small-cb/results.json benchmarks/results/cifar10/results.json \
        --codecs vqzip:small-cb2 vqzip:small-cb vqzip:cifar10-rvq webp avif jpeg-420 \
        --out benchmarks/results/cifar10-small-cb2/rd-compare.png

Each codec's curve comes from the first run (in the order given) that has it. With --against REF, also
the BD-rate of every vqzip curve against REF over their shared PSNR range, and with --up-to DB over that
range cut at DB (curves that reach different heights, compared over the same range), written to --json
with each point's rate against REF's at the same PSNR (per_point):

    python benchmarks/rd_compare.py benchmarks/results/kodak-auto/results.json \
        benchmarks/results/kodak-photo-cbr128-v7/results.json benchmarks/results/kodak-small-cbr/results.json \
        --codecs vqzip:auto vqzip:photo-cbr128 vqzip:small-cbr webp avif jpeg-420 --against webp --up-to 36.37 \
        --out benchmarks/results/kodak-auto/rd-compare.png --json benchmarks/results/kodak-auto/bd-compare.json

--ladder NAME=MODEL:LO-HI,MODEL:LO-HI,... adds a curve vqzip:NAME made of those qualities of those models'
curves, in that order, numbered from 1: a photo ladder (vqzip.pick) from the runs of its models, whose
files are the ones `vqzip encode` writes at those rungs, without a run of its own (its times are theirs).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vqzip.bench.metrics import bd_rate
from vqzip.bench.report import plot_rd


def bd_table(points: list[dict], against: str, up_to: float | None) -> list[dict]:
    """BD-rate (percent) of each vqzip curve in `points` against the curve `against`, over the shared range
    and, given `up_to`, over that range cut there."""
    def curve(codec: str) -> tuple[list[float], list[float]]:
        rows = sorted((p for p in points if p["codec"] == codec), key=lambda p: p["quality"])
        return [p["bpp"] for p in rows], [p["psnr"] for p in rows]

    ref = curve(against)
    out = []
    for codec in dict.fromkeys(p["codec"] for p in points if p["codec"].startswith("vqzip:")):
        test = curve(codec)
        row = {"codec": codec, "reference": against, "psnr_range_db": [round(max(min(ref[1]), min(test[1])), 2),
                                                                        round(min(max(ref[1]), max(test[1])), 2)],
               "bd_rate_percent": bd_rate(*ref, *test)}
        if up_to is not None:
            row[f"bd_rate_percent_up_to_{up_to:g}_db"] = bd_rate(*ref, *test, up_to=up_to)
        row["per_point"] = [{"bpp": b, "psnr": p, "reference_bpp": rate_at(ref, p),
                             "percent": None if rate_at(ref, p) is None else 100 * (b / rate_at(ref, p) - 1)}
                            for b, p in zip(*test)]
        out.append(row)
    return out


def rate_at(curve: tuple[list[float], list[float]], psnr: float) -> float | None:
    """The bits per pixel a (bpp, PSNR) curve needs for `psnr`, linear in log-rate between its two
    points around it (None outside its range): where on the curve one point of another codec wins or loses."""
    pts = sorted(zip(curve[1], curve[0]))
    for (p0, b0), (p1, b1) in zip(pts, pts[1:]):
        if p0 <= psnr <= p1:
            return float(np.exp(np.log(b0) + (psnr - p0) / (p1 - p0) * (np.log(b1) - np.log(b0))))
    return None


def ladder_points(spec: str, runs: list[dict]) -> list[dict]:
    """The points of a --ladder curve: NAME=MODEL:LO-HI,... (see the module's docstring)."""
    name, _, rungs = spec.partition("=")
    out: list[dict] = []
    for part in rungs.split(","):
        model, _, span = part.rpartition(":")
        lo, _, hi = span.partition("-")
        codec = f"vqzip:{model}"
        owner = next((r for r in runs if any(p["codec"] == codec for p in r["points"])), None)
        if owner is None or not name or not lo.isdigit() or not hi.isdigit():
            raise SystemExit(f"error: --ladder {spec!r}: no run has {codec}, or not NAME=MODEL:LO-HI,...")
        rows = sorted((p for p in owner["points"] if p["codec"] == codec and int(lo) <= p["quality"] <= int(hi)),
                      key=lambda p: p["quality"])
        out += [{**p, "codec": f"vqzip:{name}", "quality": len(out) + i + 1, "rung": f"{model} {p['quality']}"}
                for i, p in enumerate(rows)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="results.json of bench runs on one data set")
    ap.add_argument("--codecs", nargs="+", required=True, help="the curves to draw, in this order")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--against", default=None, help="a reference curve: BD-rates of the vqzip curves against it")
    ap.add_argument("--up-to", type=float, default=None, help="also over the shared range cut at this PSNR")
    ap.add_argument("--json", type=Path, default=None, help="where to write the BD-rates (with --against)")
    ap.add_argument("--ladder", default=None, metavar="NAME=MODEL:LO-HI,...",
                    help="also the curve vqzip:NAME of these models' qualities (list it in --codecs to draw it)")
    a = ap.parse_args()
    runs = [json.loads(p.read_text()) for p in a.runs]
    if len({r["meta"]["dataset"] for r in runs}) > 1 or len({r["meta"]["n_images"] for r in runs}) > 1:
        raise SystemExit("error: the runs are not on the same data set and number of images")
    points = []
    made = ladder_points(a.ladder, runs) if a.ladder else []
    for codec in a.codecs:
        if made and codec == made[0]["codec"]:
            points += made
            continue
        owner = next((r for r in runs if any(p["codec"] == codec for p in r["points"])), None)
        if owner is None:
            raise SystemExit(f"error: no run has {codec}")
        points += [p for p in owner["points"] if p["codec"] == codec]
    if not plot_rd({"meta": runs[0]["meta"], "points": points}, a.out):
        raise SystemExit("error: matplotlib is not installed (pip install '.[train]')")
    print(f"wrote {a.out}")
    if a.against is not None:
        table = bd_table(points, a.against, a.up_to)
        for row in table:
            print(", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "per_point"))
        if a.json is not None:
            command = "python benchmarks/rd_compare.py " + " ".join(sys.argv[1:])
            a.json.write_text(json.dumps({"command": command, "bd_rates": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
