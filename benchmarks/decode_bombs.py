"""Decompression bombs (issue #20): what a .vqz file under 1 kB can make `vqzip decode` do, whatever
its header says.

For each shipped model and format version, and payloads of 0 and 1,000 bytes (files of at most 1,019
bytes), the script crafts the largest claims the decoder's payload bound lets through (quality 1 and the
highest; a square and a wide grid; RGBA with an opaque alpha plane, so that the plane is allocated
too), with valid checksums, and claims far over it (the issue's 2048 x 2048 and 65536 x 4096). Each
file runs through `vqzip decode` as its own process: that process's peak RSS comes from os.wait4, its
wall time from the parent. Python's start-up with numpy, ONNX Runtime and the model costs a few tenths
of a second by itself (2-3 s when torch ran the networks), so the child also times, with the model
loaded, the decode command's own work (reading the file, every check, decoding tokens and pixels, writing the
PNG): the "work" column.

Payloads. A header at the bound needs a payload that decodes for as long as possible. The script
tries: zero bytes ending in 01, and the start of a real payload (the coder's output for
random tokens of that grid, cut to the size). A payload that decodes all the way is the upper bound
on work, so each case is also run with the payload bound switched off in the child, an empty payload
(which decodes every token, as token 0) and the same claim: "full decode" is what the claim costs if
its payload decoded to the end; no file of that size can make the decoder do more.

Real files too: for each model with a context prior, a white image at the largest size whose file is
still under 1 kB (a uniform image is what the context prior codes most cheaply), encoded by vqzip itself.

The files are made by a child process (it loads the models); this process, which measures, imports
neither vqzip nor torch: a child's ru_maxrss starts from its parent's resident memory at the fork.

    python benchmarks/decode_bombs.py [--out benchmarks/results/decode_bombs.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAYLOADS = (0, 1000)
# the machine, described in a child: this process imports nothing of vqzip (see above)
MACHINE = "import json; from vqzip.bench.machine import describe; print(json.dumps(describe()))"

CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
from vqzip import api, zoo
from vqzip.cli import main
from vqzip.coding import container
if os.environ.get("BOMB_NO_BOUND"):
    api.payload_floor = lambda bits: 0  # the upper bound on work: as if any payload held any claim
data = open(sys.argv[1], "rb").read()
try:
    api.load_model(zoo.find_by_id(container.parse_header(data)[0].model_id))  # start-up, not work
except Exception:
    pass
t1 = time.perf_counter()
sys.argv = ["vqzip", "decode", sys.argv[1], "-o", sys.argv[2], "-f", "-q"]
try:
    main()
    code = 0
except SystemExit as e:
    code = e.code
t2 = time.perf_counter()
with open(os.environ["BOMB_TIMES"], "w") as f:
    json.dump({"startup_s": t1 - t0, "work_s": t2 - t1}, f)
sys.exit(code)
"""


def run(path: Path, out: Path, no_bound: bool = False) -> dict:
    """`vqzip decode path -o out` in a child process: wall time, peak RSS, exit code, the child's
    start-up / work split, its error line."""
    times = path.with_suffix(".times.json")
    env = {**os.environ, "BOMB_TIMES": str(times), **({"BOMB_NO_BOUND": "1"} if no_bound else {})}
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(out)], stderr=subprocess.PIPE, env=env)
    err = child.stderr.read().decode() if child.stderr else ""
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    split = json.loads(times.read_text()) if times.exists() else {}
    times.unlink(missing_ok=True)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return {"exit": os.waitstatus_to_exitcode(status), "process_s": round(wall, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "startup_s": round(split.get("startup_s", float("nan")), 2), "work_s": round(split.get("work_s", float("nan")), 3),
            "stderr_lines": len(lines), "message": lines[0][:160] if lines else ""}


def claim_shape(m, version: int, quality: int, width: int, height: int) -> tuple[int, ...]:
    """The shape a header of this size claims, as the decoder reads it (api._grid): the arguments of
    its coder's min_payload_bits."""
    from types import SimpleNamespace

    from vqzip import api
    from vqzip.coding import container

    header = container.Header(m.model_id, width, height, "RGBA", quality, version)
    return api._grid(SimpleNamespace(header=header), m)  # type: ignore[arg-type]


def largest_grid(m, version: int, quality: int, nbytes: int, wide: bool) -> tuple[int, int]:
    """The largest grid (h, w) of stride-sized cells, of the given shape, whose bound still fits
    `nbytes` of payload."""
    from vqzip import api
    from vqzip.coding import container
    from vqzip.coding.entropy import payload_floor

    coder = api.photo_coder(m, version) if m.is_hyperprior else api.payload_coder(m, version)
    stride = m.codec.stride

    def fits(h: int, w: int) -> bool:
        return payload_floor(coder.min_payload_bits(*claim_shape(m, version, quality, w * stride, h * stride))) <= nbytes
    limit = container.MAX_SIDE // stride
    if wide:
        h = 4
        lo, hi = 1, limit
        while lo < hi:  # widest w with fits(h, w)
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(h, mid) else (lo, mid - 1)
        return (h, lo) if fits(h, lo) else (1, 1)
    side = 1
    while side < limit and fits(side + 1, side + 1):
        side += 1
    return side, side


def payload_variants(m, version: int, levels: int, h: int, w: int, nbytes: int) -> dict[str, bytes]:
    import numpy as np

    rng = np.random.default_rng(0)
    if nbytes == 0:
        return {"empty": b""}
    if m.is_hyperprior:  # the photo codec: no token grid of its own to code here
        return {"zeros-then-01": bytes(nbytes - 1) + b"\x01"}
    coder = m.context if version == 2 else m.prior
    vocab = m.codec.quantizer.vocab_sizes[0]
    hh, ww = min(h, 64), min(w, 64)  # a real payload's start: random tokens of a (smaller) grid, coded
    real = b""
    while len(real) < nbytes:
        [(real, _)] = coder.encode(rng.integers(0, vocab, (1, levels, hh, ww)))
        hh, ww = hh * 2, ww * 2
    cut = real[:nbytes]
    cut = cut[:-1] + bytes([cut[-1] or 1])
    return {"zeros-then-01": bytes(nbytes - 1) + b"\x01", "real-start": cut}


def white_under_1kb(m, quality: int) -> tuple[bytes, int]:
    """The largest white square (a multiple of 64 pixels a side) whose .vqz file is under 1,024 bytes."""
    import numpy as np

    from vqzip import api

    best, side = b"", 0
    for s in range(64, 4097, 64):
        data = api.encode_batch(np.full((1, s, s, 3), 255, np.uint8), m, quality)[0].data
        if len(data) >= 1024:
            break
        best, side = data, s
    return best, side


def craft(folder: Path, models: list[str]) -> None:
    """Write every file to measure, and folder/jobs.json: what each is."""
    import numpy as np

    from vqzip import api
    from vqzip.coding import container

    jobs = []

    def job(data: bytes, meta: dict, no_bound: bool = False) -> None:
        path = folder / f"{len(jobs):04d}.vqz"
        path.write_bytes(data)
        jobs.append({**meta, "file": str(path), "file_bytes": len(data), "no_bound": no_bound})

    for name in models:
        m = api.load_model(name)
        job(api.compress(np.zeros((1, 1, 3), np.uint8), m, 1, prior="auto" if m.is_hyperprior else "static"),
            {"model": name, "case": "baseline: a valid 1x1 file"})
        # a photo codec's claims in the version it writes (an older script used 3 for every photo codec,
        # which models of other versions refused as not theirs before any decoding)
        for version in (api.format_version(m),) if m.is_hyperprior else (1, 2) if m.context is not None else (1,):
            stride = m.codec.stride
            for width, height in ((2048, 2048), (65536, 4096)):
                header = container.Header(m.model_id, width, height, "RGBA", m.qualities, version)
                job(container.build(header, b"\x07", m.key(version), b""),
                    {"model": name, "version": version, "case": f"claim {width}x{height}, quality {m.qualities}, 1 payload byte"})
            for quality in sorted({1, m.qualities}) if version == 1 else (m.qualities,):
                levels = 0 if m.is_hyperprior else m.codec.levels_for(quality)
                for nbytes in PAYLOADS:
                    for wide in (False, True):
                        h, w = largest_grid(m, version, quality, nbytes, wide)
                        width, height = w * stride, h * stride
                        header = container.Header(m.model_id, width, height, "RGBA", quality, version)
                        meta = {"model": name, "version": version, "quality": quality, "payload_bytes": nbytes,
                                "claim": f"{width}x{height}", "pixels": width * height,
                                "tokens": math.prod(claim_shape(m, version, quality, width, height)),
                                "case": "largest claim the bound lets through"}
                        for label, payload in payload_variants(m, version, levels, h, w, nbytes).items():
                            data = container.build(header, payload, m.key(version), b"")
                            assert len(data) < 1024
                            job(data, {**meta, "payload": label})
                        job(container.build(header, b"", m.key(version), b""), {**meta, "payload": "full decode"}, no_bound=True)
            if version >= 2:
                data, side = white_under_1kb(m, 1)
                job(data, {"model": name, "version": version, "quality": 1, "claim": f"{side}x{side}", "pixels": side * side,
                           "case": "real file: the largest white square under 1 kB, as vqzip encodes it"})
    (folder / "jobs.json").write_text(json.dumps(jobs))


def compile_vqzip() -> None:
    """Write vqzip's bytecode, as pip does when it installs a package: where PYTHONDONTWRITEBYTECODE is
    set (as on our machines) a source checkout's children would otherwise each recompile vqzip's
    modules, ~0.07 s that no installed vqzip pays. Found without importing vqzip (see above)."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("vqzip")
    if spec and spec.submodule_search_locations:
        compileall.compile_dir(spec.submodule_search_locations[0], quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/decode_bombs.json"))
    ap.add_argument("--models", help="comma-separated names (default: every shipped model, zoo.shipped_models)")
    ap.add_argument("--craft", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.models is None:
        from vqzip import zoo

        args.models = ",".join(zoo.shipped_models())
    if args.craft:
        return craft(args.craft, args.models.split(","))
    compile_vqzip()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([sys.executable, __file__, "--craft", str(folder), "--models", args.models], check=True)
        jobs = json.loads((folder / "jobs.json").read_text())
        for j in jobs:
            j.update(run(Path(j["file"]), folder / "out.png", j["no_bound"]))
            j.pop("file")
            print(json.dumps(j), flush=True)
    misfits = [j for j in jobs if "does not fit" in j["message"]]
    if misfits:  # a file its model refuses as not its version measures a refusal, not a decode
        raise SystemExit(f"{len(misfits)} crafted files name a format version their model does not read: {misfits[0]}")
    bombs = [j for j in jobs if j["case"] == "largest claim the bound lets through"]
    files = [j for j in bombs if not j["no_bound"]]
    full = [j for j in bombs if j["no_bound"]]
    real = [j for j in jobs if j["case"].startswith("real file")]
    result = {
        "command": " ".join(["python", "benchmarks/decode_bombs.py", *sys.argv[1:]]),
        "max_file_bytes": max(j["file_bytes"] for j in jobs),
        "crafted_files": {"worst_work_s": max(j["work_s"] for j in files), "worst_process_s": max(j["process_s"] for j in files),
                          "worst_peak_rss_mb": max(j["peak_rss_mb"] for j in files)},
        "full_decode_upper_bound": {"worst_work_s": max(j["work_s"] for j in full),
                                    "worst_process_s": max(j["process_s"] for j in full),
                                    "worst_peak_rss_mb": max(j["peak_rss_mb"] for j in full)},
        "real_files_under_1kb": {j["model"]: {k: j[k] for k in ("claim", "file_bytes", "work_s", "process_s", "peak_rss_mb")}
                                 for j in real},
        "baseline": {j["model"]: {k: j[k] for k in ("process_s", "startup_s", "work_s", "peak_rss_mb")}
                     for j in jobs if j["case"].startswith("baseline")},
        "machine": json.loads(subprocess.run([sys.executable, "-c", MACHINE], capture_output=True, text=True,
                                             check=True).stdout),
        "note": "work_s: the decode command's own work in the child with the model already loaded (read, checks, tokens, "
                "network, PNG, write); process_s: the whole process (interpreter, numpy, ONNX Runtime, model, work) "
                "from the parent; "
                "peak_rss_mb: the child's ru_maxrss (os.wait4), the runtime and the model included. full decode: the same claim "
                "with the payload bound switched off and an empty payload, which decodes every token: the most work "
                "any payload of that size could cause. vqzip's bytecode is compiled first, as an install has it. "
                "Run with the machine's other job (a training) paused.",
        "jobs": jobs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "jobs"}, indent=2))


if __name__ == "__main__":
    main()
