"""`vqzip decode` of many small files in one command: files per second, the whole process.

What a user storing a dataset as .vqz files pays to get PNGs back. The files are the first --count
CIFAR-10 test images coded with vqzip's default choice at its default quality (made in this process,
not timed); then `vqzip decode *.vqz -O DIR` runs --runs times as a fresh process, start-up included.

    python benchmarks/cli_many_files.py [--count 1000] [--runs 3] [--out benchmarks/results/cli_many_files.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vqzip import api
from vqzip.bench.datasets import load_target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VQZIP_DATA", "../shared/data")))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cli_many_files.json"))
    a = ap.parse_args()
    _, images = load_target("cifar10", a.data, a.count)
    images = np.asarray(images)[: a.count]
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for i, enc in enumerate(api.compress_images([Image.fromarray(im) for im in images])):
            names.append(str(Path(tmp) / f"{i:05d}.vqz"))
            Path(names[-1]).write_bytes(enc.data)
        for r in range(a.runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "vqzip", "decode", *names, "-O", str(Path(tmp) / f"png{r}"), "-q"],
                           check=True)
            seconds.append(time.perf_counter() - t0)
    result = {"command": f"python benchmarks/cli_many_files.py --count {a.count} --runs {a.runs}", "files": len(names),
              "seconds": [round(s, 2) for s in seconds], "files_per_s_best": round(len(names) / min(seconds), 1),
              "cpu_count": os.cpu_count(), "loadavg_1min_at_end": os.getloadavg()[0],
              "note": "whole `python -m vqzip decode FILES -O DIR -q` processes, start-up included; the files are "
                      "CIFAR-10 test images as `vqzip encode` codes them by default"}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
