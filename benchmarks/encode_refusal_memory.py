"""Limits before work (issue #20): peak memory and time of `vqzip encode` refusing an image too large
for the format or for --max-pixels, which it must do from the image's header, before decoding pixels.

The images are real PNGs of one colour, written here row by row through zlib (a 65537 x 2700 one, a
side over the format's 65536, as in the issue; and a 20000 x 15000 one, 300 megapixels, over the
default --max-pixels of 250,000,000), so they cost little to make and nothing to keep. Each command
runs as its own process; its peak RSS comes from os.wait4 (ru_maxrss). For comparison the script also
measures what decoding each PNG's pixels costs (Pillow's Image.open(...).load() in a process of its
own): what the encoder spent before it checked the size.

    python benchmarks/encode_refusal_memory.py [--out benchmarks/results/encode_refusal_memory.json]
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

CASES = ((65537, 2700), (20000, 15000))


def solid_png(path: Path, width: int, height: int, rgb: tuple[int, int, int] = (90, 140, 200)) -> None:
    """An RGB PNG of one colour, its IDAT streamed row by row (never the whole image in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    z = zlib.compressobj(6)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        for _ in range(height):
            part = z.compress(row)
            if part:
                f.write(chunk(b"IDAT", part))
        f.write(chunk(b"IDAT", z.flush()) + chunk(b"IEND", b""))


def run(args: list[str]) -> dict:
    t0 = time.perf_counter()
    child = subprocess.Popen(args, stderr=subprocess.PIPE)
    err = child.stderr.read().decode() if child.stderr else ""
    _, status, usage = os.wait4(child.pid, 0)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return {"exit": os.waitstatus_to_exitcode(status), "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stderr_lines": len(lines), "message": lines[0] if lines else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/encode_refusal_memory.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in CASES:
            png = Path(tmp) / f"solid-{width}x{height}.png"
            solid_png(png, width, height)
            row = {"image": f"{width}x{height}", "pixels": width * height, "png_bytes": png.stat().st_size,
                   "vqzip_encode": run([sys.executable, "-m", "vqzip", "encode", str(png), "-o", str(Path(tmp) / "x.vqz")]),
                   "pillow_decode_pixels": run([sys.executable, "-c", "import sys; from PIL import Image; "
                                                "Image.MAX_IMAGE_PIXELS = None; Image.open(sys.argv[1]).load()", str(png)])}
            assert not (Path(tmp) / "x.vqz").exists()
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"command": "python benchmarks/encode_refusal_memory.py", "bar_mb": 200,
              "note": "vqzip_encode: the refusal as a user meets it (one process, default model and limits); "
                      "pillow_decode_pixels: what decoding the pixels alone costs, which the encoder did before it "
                      "checked the size; peak RSS of each process from os.wait4",
              "cases": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
