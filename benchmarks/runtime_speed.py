"""Issue #21's bars: whole `vqzip` processes and batch throughput, ONNX Runtime against torch.

    python benchmarks/runtime_speed.py [--runs 5] [--cifar 1024] [--venv] [--out benchmarks/results/runtime_speed.json]

Each command runs `--runs` times as a fresh process (best and median wall clock: start-up included,
which is what a shell loop or a per-request server pays), once with the default engine (ONNX Runtime)
and once with VQZIP_BACKEND=torch:
- `vqzip --help`;
- `vqzip decode` of a 32x32 file (cifar10-rvq, default quality);
- `vqzip encode` and `vqzip decode` of Kodak's kodim01 (768x512) with the model `vqzip encode` picks and
  with photo-hp;
and, in one process per engine, CIFAR-10 test images through api.encode_batch / api.decode_batch in
batches of 256 at the default quality (context prior), 2 threads. Bars (2 cores): decode of a 32x32
file at most 0.5 s, --help at most 0.3 s, Kodak no slower than torch, throughput no lower than torch.
With --venv it also measures a fresh virtualenv with `pip install .` on disk (bar: at most 200 MB);
that needs the package index, or a pip cache holding the dependencies.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vqzip.bench.machine import describe as describe_machine

ROOT = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).parent / "vqzip"  # the console script users run
VQZIP = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "vqzip"]


def timed(cmd: list[str], runs: int, env: dict[str, str], cwd: Path) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return {"best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3)}


def throughput(backend: str, n: int, data: Path) -> dict[str, float]:
    """Images per second through encode_batch and decode_batch, in a fresh process on `backend`."""
    code = f"""
import json, time, numpy as np
from vqzip import api, runtime
from vqzip.training.data import load_cifar10
runtime.set_threads(2)
images = load_cifar10("test", {str(data)!r})[0][:{n}]
m = api.load_model("cifar10-rvq")
api.decode_batch([e.data for e in api.encode_batch(images[:256], m)])  # warm-up
t0 = time.perf_counter(); files = [e.data for s in range(0, len(images), 256) for e in api.encode_batch(images[s:s + 256], m)]
t1 = time.perf_counter(); [api.decode_batch(files[s:s + 256], m) for s in range(0, len(files), 256)]
t2 = time.perf_counter()
n = len(images)
print(json.dumps({{"encode_images_per_s": round(n / (t1 - t0)), "decode_images_per_s": round(n / (t2 - t1))}}))
"""
    env = {**os.environ, "VQZIP_BACKEND": backend, "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def venv_size() -> dict[str, object]:
    """MB on disk of a fresh virtualenv after `pip install .` (the checkout), in all and per package."""
    def mb(p: Path) -> float:
        return round(sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20, 1)

    with tempfile.TemporaryDirectory() as tmp:
        env = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(env / "bin" / "pip"), "install", "-q", str(ROOT)], check=True, cwd=tmp)
        site = next(env.glob("lib/python*/site-packages"))
        parts = {p.name: mb(p) for p in site.iterdir() if p.is_dir() and not p.name.endswith((".dist-info", "__pycache__"))}
        top = dict(sorted(parts.items(), key=lambda kv: -kv[1])[:12])
        models = mb(site / "vqzip" / "models") if (site / "vqzip" / "models").is_dir() else 0.0
        return {"total_mb": mb(env), "vqzip_models_mb": models, "largest_mb": top}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cifar", type=int, default=1024, help="CIFAR-10 test images for the throughput (0 skips)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VQZIP_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "runtime_speed.json")
    ap.add_argument("--venv", action="store_true", help="also measure a fresh virtualenv with pip install .")
    a = ap.parse_args()
    kodak = a.data / "kodak" / "kodim01.png"
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        base = {k: v for k, v in os.environ.items() if k not in ("VQZIP_BACKEND", "OMP_NUM_THREADS")}
        base["OMP_NUM_THREADS"] = "2"
        subprocess.run([*VQZIP, "encode", str(ROOT / "tests" / "data" / "sample32.png"), "-o", str(d / "s32.vqz")],
                       check=True, env=base)
        for backend in ("onnx", "torch"):
            env = {**base, "VQZIP_BACKEND": backend}
            r = rows[backend] = {}
            if backend == "onnx":  # --help runs no network: one row
                r["help"] = timed([*VQZIP, "--help"], a.runs, env, d)
            r["decode_32x32"] = timed([*VQZIP, "decode", "s32.vqz", "-o", "s32.png", "-f"], a.runs, env, d)
            for label, model in (("picked", []), ("photo-hp", ["-m", "photo-hp"])):
                if not kodak.is_file():
                    break
                r[f"kodak_encode_{label}"] = timed([*VQZIP, "encode", str(kodak), *model, "-o", f"k-{label}.vqz", "-f"],
                                                   a.runs, env, d)
                r[f"kodak_decode_{label}"] = timed([*VQZIP, "decode", f"k-{label}.vqz", "-o", f"k-{label}.png", "-f"],
                                                   a.runs, env, d)
            if a.cifar and (a.data / "cifar10").is_dir():
                r["cifar10_batch_256"] = throughput(backend, a.cifar, a.data)
            print(backend, json.dumps(r), flush=True)
    result: dict[str, object] = {"command": f"python benchmarks/runtime_speed.py --runs {a.runs} --cifar {a.cifar}",
              "machine": describe_machine(),
              "loadavg_1min_at_end": os.getloadavg()[0], "python": platform.python_version(),
              "method": "fresh processes, wall clock, best and median of --runs; throughput in one process per "
                        "engine after a warm-up batch; 2 threads (OMP_NUM_THREADS=2)",
              "onnx": rows["onnx"], "torch": rows["torch"]}
    if a.venv:
        result["venv"] = venv_size()
        print("venv", json.dumps(result["venv"]), flush=True)
    elif a.out.is_file() and "venv" in (old := json.loads(a.out.read_text())):
        result["venv"] = old["venv"]  # an earlier run's measurement of the same checkout's install
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
