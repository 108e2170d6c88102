"""Peak memory of one `vqzip encode` / `vqzip decode` of several same-size photos against one photo.

A user encodes a camera folder in one command. Same-size images share network passes, and a pass's
memory grows with its pixels, so the passes (and the images the CLI holds at once) are bounded by
pixels (vqzip.api.PASS_PIXELS), not only by --batch: N photos should peak about where one does.
Each command runs as its own process, its peak RSS read from os.wait4 (memory_24mp.run); the
photos are synthetic (memory_24mp.synthetic_photo, a different seed each), so no data is needed.

    python benchmarks/many_photos_memory.py [--count 4] [--width 1500 --height 1000] [--model photo-cbr128]
        [--out benchmarks/results/many_photos_memory.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from memory_24mp import run, synthetic_photo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--width", type=int, default=1500)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--model", default=None, help="model to encode with (default: vqzip encode's own choice)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/many_photos_memory.json"))
    a = ap.parse_args()
    chosen = ["-m", a.model] if a.model else []
    with tempfile.TemporaryDirectory() as tmp:
        srcs = [Path(tmp) / f"photo{i}.png" for i in range(a.count)]
        for i, src in enumerate(srcs):
            synthetic_photo(a.width, a.height, seed=i).save(src, compress_level=1)
        one_s, one_mb = run(["encode", str(srcs[0]), "-o", str(Path(tmp) / "alone.vqz"), "-q", *chosen])
        many_s, many_mb = run(["encode", *map(str, srcs), "-O", str(Path(tmp) / "vqz"), "-q", *chosen])
        coded = sorted((Path(tmp) / "vqz").glob("*.vqz"))
        if len(coded) != a.count:
            raise subprocess.SubprocessError(f"{len(coded)} of {a.count} photos encoded")
        back_s, back_mb = run(["decode", *map(str, coded), "-O", str(Path(tmp) / "png"), "-q"])
    flags = [f"--count {a.count}", f"--width {a.width}", f"--height {a.height}", *([f"--model {a.model}"] if a.model else [])]
    result = {"command": "python benchmarks/many_photos_memory.py " + " ".join(flags),
              "model": a.model or "vqzip encode's choice", "count": a.count, "width": a.width, "height": a.height,
              "encode_one": {"s": round(one_s, 1), "peak_rss_mb": round(one_mb, 1)},
              "encode_all": {"s": round(many_s, 1), "peak_rss_mb": round(many_mb, 1)},
              "decode_all": {"s": round(back_s, 1), "peak_rss_mb": round(back_mb, 1)},
              "note": "each a separate `python -m vqzip` process (default quality, PNG in and out); peak RSS from "
                      "os.wait4 (ru_maxrss); encode_all codes every photo in one command, decode_all decodes them all"}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
