"""What zlib level `vqzip decode` should write PNGs at: bytes and write time of every PNG in a folder
(default: the 24 Kodak photos) re-saved by Pillow at levels 1, 3, 6 (Pillow's default) and 9.

    python benchmarks/png_level.py [--data ../shared/data] [--out benchmarks/results/png_level.json]

Why: writing the PNG is a tenth of a photo's decode at level 6; vqzip decode writes level 1
(vqzip.cli.codec.SAVE_OPTIONS). Times are the best of 3 writes to memory, one thread.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

from PIL import Image

from vqzip.bench.machine import describe as describe_machine

LEVELS = (1, 3, 6, 9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VQZIP_DATA", "../shared/data")))
    ap.add_argument("--folder", default="kodak", help="a folder of PNGs under --data")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    files = sorted((args.data / args.folder).glob("*.png"))
    if not files:
        raise SystemExit(f"no PNGs in {args.data / args.folder}")
    total = {lvl: {"bytes": 0, "seconds": 0.0} for lvl in LEVELS}
    for f in files:
        with Image.open(f) as im:
            im.load()
            for lvl in LEVELS:
                best = float("inf")
                for _ in range(3):
                    buf = io.BytesIO()
                    t = time.perf_counter()
                    im.save(buf, "PNG", compress_level=lvl)
                    best = min(best, time.perf_counter() - t)
                total[lvl]["bytes"] += buf.tell()
                total[lvl]["seconds"] += best
    ref = total[6]
    rows = {str(lvl): {"bytes": t["bytes"], "ms_per_image": round(1000 * t["seconds"] / len(files), 1),
                       "bytes_vs_level6_pct": round(100 * (t["bytes"] / ref["bytes"] - 1), 2),
                       "speedup_vs_level6": round(ref["seconds"] / t["seconds"], 2)} for lvl, t in total.items()}
    for lvl, r in rows.items():
        print(f"level {lvl}: {r['bytes']:,} B ({r['bytes_vs_level6_pct']:+.2f} %), {r['ms_per_image']} ms an image "
              f"({r['speedup_vs_level6']}x level 6)")
    if args.out:
        args.out.write_text(json.dumps({"command": f"python benchmarks/png_level.py --folder {args.folder} --out {args.out}",
                                        "folder": args.folder, "images": len(files), "levels": rows,
                                        "machine": describe_machine()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
