"""Time to build the context prior's coding order for one large token grid, as an encode or a decode
of a 24-megapixel photo does once (with the default stride 4, a 6000x4000 photo is a 1500x1000 grid).

    python benchmarks/coding_order_time.py [--height 1000] [--width 1500]

Prints seconds for context.schedule (the blocks in coding order) and the number of blocks. Run it on
two commits (PYTHONPATH=<checkout>) to compare; writes nothing.
"""
from __future__ import annotations

import argparse
import time

from vqzip.coding import context


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--width", type=int, default=1500)
    args = ap.parse_args()
    start = time.perf_counter()
    blocks = context.schedule(args.height, args.width)
    print(f"schedule({args.height}, {args.width}): {len(blocks)} blocks in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
