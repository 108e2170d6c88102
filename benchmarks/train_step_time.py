"""Seconds per training step of the photo codec in float32 and in bfloat16 autocast, on this CPU

    python benchmarks/train_step_time.py [--batch 8 --crop 256 --downsamples 4 --channels 96 --latent 160]
        [--slices 1 --context 96 --checkerboard --residual 0] [--layout channels_last|nchw]

Why: bfloat16 halves a step where the CPU has it (AVX512-BF16 / AMX) and is emulated, many times
slower, where it has not (AVX2); training uses it only where hyperprior.native_bf16() says it is
native. Times a forward and backward pass and an Adam step on random crops, five steps per
precision, the first included (it pays for allocation). Prints the times; writes nothing.
"""
from __future__ import annotations

import argparse
import time

import torch

import vqzip.codec.hyperprior as hp
from vqzip.codec.config import PhotoConfig


def step_times(precision: str, args: argparse.Namespace, steps: int) -> list[float]:
    hp.native_bf16 = (lambda: True) if precision == "bfloat16" else (lambda: False)  # what forward() asks
    torch.manual_seed(0)
    model = hp.PhotoCodec(PhotoConfig(channels=args.channels, latent=args.latent, downsamples=args.downsamples,
                                      slices=args.slices, context=args.context, checkerboard=args.checkerboard,
                                      residual=args.residual))
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.rand(args.batch, 3, args.crop, args.crop) - 0.5
    if args.layout == "channels_last":  # what training's crops are (training.rd.crops_for_step)
        x = x.contiguous(memory_format=torch.channels_last)
    q = torch.randint(0, model.qualities, (args.batch,))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = model(x, q)
        loss = out["x_hat"].pow(2).mean() + 1e-4 * out["y_bits"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--downsamples", type=int, default=4)
    ap.add_argument("--channels", type=int, default=96)
    ap.add_argument("--latent", type=int, default=160)
    ap.add_argument("--slices", type=int, default=1)
    ap.add_argument("--context", type=int, default=96)
    ap.add_argument("--checkerboard", action="store_true")
    ap.add_argument("--residual", type=int, default=0, help="residual blocks per place (codec.hyperprior.ResidualBlock)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--layout", choices=["channels_last", "nchw"], default="channels_last",
                    help="memory layout of the crops (training's is channels_last)")
    args = ap.parse_args()
    print(f"bfloat16 native on this CPU: {hp.native_bf16()}")
    for precision in args.precisions:
        times = step_times(precision, args, args.steps)
        print(f"{precision}: {', '.join(f'{t:.2f}' for t in times)} s per step")


if __name__ == "__main__":
    main()
