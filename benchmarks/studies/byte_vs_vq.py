"""Study 1 (issue #6): Byte quantization vs VQ by vocabulary size K (the Byte-VAE observation).

Encoder with 256 latent channels and 4x spatial reduction (8x8 latent grid on 32x32 CIFAR-10), Adam,
lr 2e-4, batch 128, 20 epochs by default. Byte (one K-ary scalar per position, `byte` quantizer with
levels=K) against VQ with K codes (vqzip's `vq`: EMA codebook, k-means init, dead-code restarts), both one
token of log2 K bits per position, for K in {512, 256, 32, 8}. Records test MSE/PSNR, per-epoch curves and
code usage. Claim tested: Byte is about as good as VQ, and relatively better as K shrinks.

    python benchmarks/studies/byte_vs_vq.py                  # the full study (8 runs)
    python benchmarks/studies/byte_vs_vq.py --epochs 1 --train-limit 256 --test-limit 256 --quick --out /tmp/s1
"""
from __future__ import annotations

import json
import math

import common
import numpy as np

from vqzip.codec.model import CodecConfig

STUDY = "byte_vs_vq"
CLAIM = "Byte quantization is about as good as VQ at the same vocabulary size K, and relatively better as K shrinks."
KS = [512, 256, 32, 8]
QUICK_KS = [256, 8]


def specs(args) -> list[common.RunSpec]:
    ks = args.ks or (QUICK_KS if args.quick else KS)
    vq_args = json.loads(args.vq_args)
    net = dict(channels=args.channels, downsamples=2, latent_dim=256, blocks=args.blocks)
    out = []
    for k in ks:
        out.append(common.RunSpec(f"byte_K{k}", CodecConfig(**net, quantizer="byte", quantizer_args={"levels": k, "channels": 1}),
                                  {"quantizer": "byte", "K": k}))
        out.append(common.RunSpec(f"vq_K{k}", CodecConfig(**net, quantizer="vq", quantizer_args={"codebook_size": k, **vq_args}),
                                  {"quantizer": "vq", "K": k}))
    return out


def analyse(results: list[dict]) -> dict:
    by = {(r["meta"]["quantizer"], r["meta"]["K"]): r for r in results}
    rows = []
    for k in sorted({r["meta"]["K"] for r in results}, reverse=True):
        b, v = by.get(("byte", k)), by.get(("vq", k))
        row = {"K": k, "bits_per_image": 64 * math.log2(k)}
        for name, r in (("byte", b), ("vq", v)):
            if r:
                u = r["final"]["usage"][0]
                row[name] = {"test_mse": r["final"]["mse"], "test_psnr": r["final"]["psnr"],
                             "utilisation": u["utilisation"], "perplexity": u["perplexity"],
                             "train_seconds": r["train_seconds"]}
        if b and v:
            row["psnr_byte_minus_vq_db"] = b["final"]["psnr"] - v["final"]["psnr"]
        rows.append(row)
    diffs = [(r["K"], r["psnr_byte_minus_vq_db"]) for r in rows if "psnr_byte_minus_vq_db" in r]
    out = {"per_K": rows}
    if len(diffs) >= 2:
        ks, ds = zip(*diffs)
        slope = float(np.polyfit(np.log2(ks), ds, 1)[0])
        out["gap_trend"] = {
            "slope_db_per_doubling_of_K": slope,
            "reading": "negative slope: Byte gains on VQ as K shrinks (the claim); positive: it loses",
            "max_abs_gap_db": float(max(abs(d) for d in ds)),
        }
    return out


def plot(args, budget, results) -> list[str]:
    plt = common.pyplot()
    names = []
    by = {(r["meta"]["quantizer"], r["meta"]["K"]): r for r in results}
    ks = sorted({r["meta"]["K"] for r in results})
    colours = {k: plt.cm.viridis(i / max(1, len(ks) - 1)) for i, k in enumerate(ks)}
    style = {"byte": dict(marker="s", ls="--"), "vq": dict(marker="o", ls="-")}

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for q in ("byte", "vq"):
        pts = [(k, by[(q, k)]["final"]["psnr"]) for k in ks if (q, k) in by]
        if pts:
            a1.plot(*zip(*pts), label=q, **style[q])
    a1.set_xscale("log", base=2)
    a1.set_xlabel("vocabulary size K (one token per position, 8x8 grid)")
    a1.set_ylabel("test PSNR (dB)")
    a1.legend()
    a1.grid(alpha=0.3)
    gaps = [(k, by[("byte", k)]["final"]["psnr"] - by[("vq", k)]["final"]["psnr"]) for k in ks
            if ("byte", k) in by and ("vq", k) in by]
    if gaps:
        a2.plot(*zip(*gaps), marker="o", color="C3")
    a2.axhline(0, color="0.5", lw=0.8)
    a2.set_xscale("log", base=2)
    a2.set_xlabel("K")
    a2.set_ylabel("PSNR(Byte) - PSNR(VQ) (dB)")
    a2.set_title("> 0: Byte better", fontsize=9)
    a2.grid(alpha=0.3)
    names.append(common.save_figure(fig, args.out / "psnr_vs_k.png", "Byte vs VQ: test PSNR by vocabulary size", budget, results))

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (q, k), r in sorted(by.items()):
        ep = r["curves"]["epochs"]
        a1.plot([e["epoch"] for e in ep], [e["test_psnr"] for e in ep], color=colours[k], label=f"{q} K={k}", **style[q])
        st = r["curves"]["steps"]
        a2.plot([s["step"] for s in st], [s["train_psnr"] for s in st], color=colours[k], ls=style[q]["ls"], lw=1)
    a1.set_xlabel("epoch")
    a1.set_ylabel("test PSNR (dB)")
    a1.legend(fontsize=7, ncol=2)
    a1.grid(alpha=0.3)
    a2.set_xlabel("training step")
    a2.set_ylabel("training PSNR (dB, windowed mean)")
    a2.grid(alpha=0.3)
    names.append(common.save_figure(fig, args.out / "curves.png", "Byte vs VQ: training curves (solid VQ, dashed Byte)",
                                    budget, results))

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for q in ("vq", "byte"):
        pts = [(k, by[(q, k)]["final"]["usage"][0]) for k in ks if (q, k) in by]
        if pts:
            a1.plot([k for k, _ in pts], [u["utilisation"] for _, u in pts], label=f"{q}: codes used", **style[q])
            a1.plot([k for k, _ in pts], [u["perplexity"] / k for k, u in pts], label=f"{q}: perplexity / K",
                    alpha=0.6, **{**style[q], "marker": "x"})
    a1.set_xscale("log", base=2)
    a1.set_ylim(0, 1.05)
    a1.set_xlabel("K")
    a1.set_ylabel("share of the vocabulary (test set)")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    for k in ks:
        if ("vq", k) in by:
            ep = by[("vq", k)]["curves"]["epochs"]
            a2.plot([e["epoch"] for e in ep], [e["test_usage"][0]["utilisation"] for e in ep], marker="o", color=colours[k],
                    label=f"VQ K={k}")
    a2.set_ylim(0, 1.05)
    a2.set_xlabel("epoch")
    a2.set_ylabel("VQ codebook utilisation (test set)")
    a2.legend(fontsize=8)
    a2.grid(alpha=0.3)
    names.append(common.save_figure(fig, args.out / "utilisation.png", "Byte vs VQ: vocabulary use", budget, results))
    return names


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], STUDY, epochs=20, lr=2e-4)
    p.add_argument("--ks", type=int, nargs="+", help=f"vocabulary sizes (default {KS}; --quick: {QUICK_KS})")
    p.add_argument("--channels", type=int, default=48, help="encoder/decoder width (vqzip's default)")
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--vq-args", default="{}", help="extra VQ constructor args as JSON, e.g. '{\"ema\": false}'")
    args = p.parse_args()
    results, budget = common.run_all(specs(args), args, "byte vs VQ")
    plots = plot(args, budget, results) if results else []
    common.write_results(
        args, STUDY, CLAIM, budget,
        {"K": args.ks or (QUICK_KS if args.quick else KS), "latent_dim": 256, "latent_grid": "8x8 (downsamples=2)",
         "channels": args.channels, "blocks": args.blocks, "byte": "levels=K, channels=1 (one K-ary symbol per position)",
         "vq": {"codebook_size": "K", **{"ema": True, "kmeans_init": True, "restart_after": 50}, **json.loads(args.vq_args)}},
        results, analyse(results), plots,
        ["Both quantizers spend log2 K bits per position (64 positions per image), so each K is an equal-rate pair.",
         "PSNR is 10 log10(1/MSE) of the test set's mean MSE on [0,1]-scaled RGB; reconstructions clamped, not rounded.",
         "Utilisation: share of the K symbols used at least once over the test set at the end of each epoch."])


if __name__ == "__main__":
    main()
