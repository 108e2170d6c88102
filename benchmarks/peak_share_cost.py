"""What the Gaussian tables' peak cap costs a photo codec: the ideal bits of its y tokens under the
stored tables (no symbol above PEAK_SHARE = 63/64 of a table, the bound behind the decoder's payload
check against decompression bombs) against the same tables without the cap, per quality.

    python benchmarks/peak_share_cost.py [--model photo-cc128] [--every 6] [--out benchmarks/results/peak_share_cost.json]

Why: loosening the cap would make near-certain tokens cheaper, at the price of a weaker bound on the
pixels a small file may claim; this says how many bits that would buy. Tokens from the float model's
analysis on every `--every`-th Kodak image, one thread.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vqzip.coding.gaussian as gaussian
from vqzip import zoo


def symbol_costs(tables: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Bits of every symbol of the concatenated tables, and each table's offset."""
    flat = np.concatenate(tables)
    offsets = np.cumsum([0] + [len(t) for t in tables])
    totals = np.repeat(np.add.reduceat(flat, offsets[:-1]).astype(np.float64), np.diff(offsets))
    return -np.log2(flat / totals), offsets[:-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=zoo.DEFAULT_PHOTO_MODEL)
    ap.add_argument("--every", type=int, default=6)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VQZIP_DATA", "../shared/data")) / "kodak")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/peak_share_cost.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    m = zoo.load_model(a.model)
    capped = symbol_costs(gaussian.gaussian_tables())
    cap = gaussian.PEAK_SHARE
    gaussian.PEAK_SHARE = 1 - 1 / gaussian.TABLE_TOTAL  # no cap beyond the tables' integer resolution
    uncapped = symbol_costs(gaussian.gaussian_tables())
    gaussian.PEAK_SHARE = cap
    files = sorted(a.data.glob("*.png"))[:: a.every]
    images = [np.array(Image.open(f).convert("RGB")) for f in files]
    rows = []
    for q in range(m.qualities):
        bits = {"capped": 0.0, "uncapped": 0.0}
        pixels = 0
        for img in images:
            x = torch.from_numpy(img[None]).permute(0, 3, 1, 2).float() / 255 - 0.5
            with torch.no_grad():
                y = m.codec.analysis(x, torch.tensor([q]))
                z = m.codec.h_a(y)
            y_tok = y.round().long().numpy()
            z_tok = z.round().clamp(-gaussian.Z_SUPPORT, gaussian.Z_SUPPORT).long().numpy()
            t, base = m.prior.params(z_tok, y_tok)
            t = t.ravel()
            half = m.prior.half[t]
            sym = np.clip((y_tok - base).ravel(), -half, half) + half
            for name, (cost, offsets) in (("capped", capped), ("uncapped", uncapped)):
                bits[name] += float(cost[offsets[t] + sym].sum())
            pixels += img.shape[0] * img.shape[1]
        row = {"quality": q + 1, "y_bpp_capped": bits["capped"] / pixels, "y_bpp_uncapped": bits["uncapped"] / pixels,
               "saving_percent": 100 * (1 - bits["uncapped"] / bits["capped"])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    a.out.write_text(json.dumps({"command": f"python benchmarks/peak_share_cost.py --model {a.model} --every {a.every}",
                                 "model": a.model, "model_id": f"{m.model_id:04x}", "images": [f.name for f in files],
                                 "peak_share": cap, "per_quality": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
