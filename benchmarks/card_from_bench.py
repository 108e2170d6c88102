"""Copy a model's measured Kodak results from a `vqzip bench` run into its model card.

    python benchmarks/card_from_bench.py photo-rvq benchmarks/results/kodak-photo/results.json

Writes the card's "kodak" section: per quality, bpp with the context prior and with the static tables
(same tokens), PSNR, SSIM and times, what every reference codec in the run needs at that PSNR
(its bpp, interpolated between its points), plus the BD-rates against every reference. The run
must have measured the exact weights the card describes (its model id), or nothing is written.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from vqzip.bench import rate_at_psnr
from vqzip.bench.report import reference_curves
from vqzip.zoo import load_model


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def kodak_section(name: str, model_id: str, results: dict, source: Path) -> dict:
    meta = results["meta"]
    measured = {m["name"]: m.get("model_id") for m in meta["vqzip_models"]}
    if measured.get(f"vqzip:{name}") != model_id:
        raise SystemExit(f"{source} measured {name} as model id {measured.get(f'vqzip:{name}')}, not {model_id}")
    points = {(p["codec"], p["quality"]): p for p in results["points"]}
    curves = dict(sorted(reference_curves(results, "bpp").items()))
    references = list(curves)
    rows = []
    for (codec, q), p in sorted(points.items(), key=lambda kv: kv[0][1]):
        if codec != f"vqzip:{name}":
            continue
        static = points.get((f"vqzip:{name}+static", q))
        rows.append({"quality": q, "bpp": round(p["bpp"], 4), "static_bpp": round(static["bpp"], 4) if static else None,
                     "psnr": round(p["psnr"], 3), "ssim": round(p["ssim"], 4),
                     "encode_ms": round(p["encode_ms"], 1), "decode_ms": round(p["decode_ms"], 1),
                     "reference_bpp_at_same_psnr": {ref: _round(rate_at_psnr(*curves[ref], p["psnr"])) for ref in references}})
    return {"dataset": "Kodak (24 images, 768x512 / 512x768), never used for training or model selection",
            "source": f"{source} ({meta['command']})",
            "method": "bpp of real .vqz files with the context prior (format version 2) and, same tokens, with "
                      "the static tables (format version 1); PSNR over RGB uint8, averaged per image; a reference's "
                      "bpp at the same PSNR is log-linear between its two bracketing points (null outside "
                      "its range)",
            "per_quality": rows,
            "bd_rate": [r for r in results["bd_rate"] if r["codec"] in (f"vqzip:{name}", f"vqzip:{name}+static")]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="model name or path")
    ap.add_argument("results", type=Path, help="results.json of a vqzip bench kodak run that measured it")
    args = ap.parse_args()
    model = load_model(args.model)
    card_path = model.path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["kodak"] = kodak_section(model.name, f"{model.model_id:04x}", json.loads(args.results.read_text()), args.results)
    tmp = card_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, card_path)
    print(f"{card_path}: kodak section from {args.results}")


if __name__ == "__main__":
    main()
