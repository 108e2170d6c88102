"""The decoder's fuzz campaign (issue #20): a million mutated .vqz files through vqzip.api.decompress.

    python benchmarks/fuzz_decoder.py --inputs 1000000 --workers 2 --state /tmp/vqzip-fuzz.json

Seeded and resumable (vqzip/fuzz.py): run it again with the same --state and it goes on from where it
stopped; input i of a seed is always the same file, so `--replay I` rebuilds it (to --out-input) for a
closer look. When done it writes the summary to --out: inputs, outcomes, crashes (any exception that is
not vqzip's own VqzipError), inputs over 2 s, inputs after which a worker's peak RSS was over 1 GB, and
inputs per second (all workers together, wall clock).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from vqzip import fuzz


def summary(state: dict, args: argparse.Namespace) -> dict:
    stats = state["stats"]
    elapsed = state["elapsed_s"]
    return {
        "command": f"python benchmarks/fuzz_decoder.py --inputs {args.inputs} --workers {args.workers} --seed {args.seed}",
        "seed": state["seed"], "corpus_files": state["corpus_files"], "corpus_sha256": state["corpus_sha256"],
        "inputs": stats["inputs"],
        "crashes": len(stats["crashes"]) if stats["outcomes"].get("crash", 0) <= 100 else stats["outcomes"]["crash"],
        "over_2_s": len(stats["slow"]), "over_1_gb": len(stats["big"]),
        "hangs": stats["outcomes"].get("hang", 0),
        "outcomes": stats["outcomes"],
        "slowest_s": stats["max_seconds"], "slowest_index": stats["max_seconds_index"],
        "peak_worker_rss_mb": stats["max_rss_mb"],
        "elapsed_s": elapsed, "inputs_per_s": round(stats["inputs"] / elapsed, 1) if elapsed else None,
        "decode_seconds": stats["decode_seconds"], "sessions": state.get("sessions", []),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "note": "each input: vqzip.api.decompress with the default limits, in spawned worker processes of one thread "
                "each (torch, ONNX Runtime and numpy's BLAS); crash = any exception that is not a VqzipError; "
                "over_2_s = wall clock (cpu_s beside it: the worker's own CPU time); over_1_gb = inputs whose worker's "
                "peak resident memory while they ran (VmHWM reset at each input's start: its interpreter, numpy, "
                "ONNX Runtime and the one model it keeps loaded, included) passed 1 GB",
        "crash_list": stats["crashes"][:20], "slow_list": stats["slow"][:20], "big_list": stats["big"][:20],
        "refusals": stats["refusals"],
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=None, help="Stop dispatching after this long (resume later).")
    ap.add_argument("--state", type=Path, default=Path("/tmp/vqzip-fuzz-state.json"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fuzz_decoder.json"))
    ap.add_argument("--replay", type=int, default=None, help="Write input I to --out-input and decode it here.")
    ap.add_argument("--out-input", type=Path, default=Path("fuzz-input.vqz"))
    ap.add_argument("--report", action="store_true", help="Write --out from --state as it is (done or not); run nothing.")
    args = ap.parse_args()
    if args.report:
        state = json.loads(args.state.read_text())
        args.out.write_text(json.dumps(summary(state, args), indent=2) + "\n")
        print(f"{state['next_index']:,} inputs reported to {args.out}")
        return
    if args.replay is not None:
        from vqzip import api

        data, ops = fuzz.Mutator(fuzz.seed_corpus(), fuzz.checksum_keys()).input(args.seed, args.replay)
        args.out_input.write_bytes(data)
        print(f"input {args.replay}: {len(data)} bytes, mutations {ops}, written to {args.out_input}")
        api.decompress(data)
        print("decoded")
        return
    state = fuzz.campaign(args.inputs, args.seed, args.workers, args.state, args.chunk, args.seconds)
    if state["next_index"] >= args.inputs:
        result = summary(state, args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k not in ("refusals", "sessions")}, indent=2))
    else:
        print(f"stopped at {state['next_index']:,} of {args.inputs:,}; run again with --state {args.state} to go on")


if __name__ == "__main__":
    main()
