"""A model card's measured curve against the reference curves of a committed bench run: BD-rate and
the rate each reference needs at each of the card's PSNRs (as `vqzip bench` prints them).

    python benchmarks/card_vs_references.py models/photo-hp.json benchmarks/results/kodak/results.json \
        [--cards models/photo-hp-v2.json ...] [--out benchmarks/results/photo-hp-vs-references.json]

Both must be measured on the same images: a run of another image count, or a card of another
results.dataset, is refused. --cards adds other model cards' measured curves as references (an earlier
model of the same kind); with --cards the runs may be left out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vqzip.bench.metrics import bd_rate, rate_at_psnr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("card", type=Path)
    ap.add_argument("runs", type=Path, nargs="*", help="bench results.json files holding the reference curves")
    ap.add_argument("--cards", type=Path, nargs="*", default=[], help="other model cards as references")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    card = json.loads(a.card.read_text())
    rows = card["results"]["per_quality"]
    rates, psnrs = [r["bpp"] for r in rows], [r["psnr"] for r in rows]
    curves: dict[str, tuple[list[float], list[float]]] = {}
    if not a.runs and not a.cards:
        ap.error("give a bench run or --cards to compare with")
    for run in a.runs:
        bench = json.loads(run.read_text())
        if bench["meta"]["n_images"] != card["results"]["images"]:
            raise SystemExit(f"{run}: {bench['meta']['n_images']} images, the card {card['results']['images']}")
        for p in bench["points"]:
            if p["codec"] != "png":
                curves.setdefault(f"{p['codec']} ({run.parent.name})", ([], []))
                curves[f"{p['codec']} ({run.parent.name})"][0].append(p["bpp"])
                curves[f"{p['codec']} ({run.parent.name})"][1].append(p["psnr"])
    for other in a.cards:
        their_card = json.loads(other.read_text())
        if their_card["results"]["dataset"] != card["results"]["dataset"]:
            raise SystemExit(f"{other}: measured on {their_card['results']['dataset']!r}, the card on "
                             f"{card['results']['dataset']!r}")
        theirs = their_card["results"]["per_quality"]
        curves[f"{other.stem} (card)"] = ([r["bpp"] for r in theirs], [r["psnr"] for r in theirs])
    out = {"card": str(a.card), "model_id": card.get("model_id"), "runs": [str(r) for r in a.runs],
           "cards": [str(c) for c in a.cards], "references": {}}
    for name, (r, d) in curves.items():
        equal = []
        for q, bpp, db in zip((row["quality"] for row in rows), rates, psnrs):
            ref = rate_at_psnr(r, d, db)
            equal.append({"quality": q, "bpp": bpp, "psnr": db, "reference_bpp": ref,
                          "more_bits_percent": None if ref is None else 100 * (bpp / ref - 1)})
        bd = bd_rate(r, d, rates, psnrs)
        out["references"][name] = {"bd_rate_percent": bd, "at_equal_psnr": equal}
        print(f"{name:40s} BD-rate {'n/a' if bd is None else f'{bd:+.1f} %'}")
    if a.out:
        a.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
