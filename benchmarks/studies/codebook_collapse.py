"""Study 3 (issue #6): codebook collapse, VQ vs SimVQ (and VQ with k-means init and dead-code restarts).

vqzip's default codec shape (8x8 latent grid, d = 64) on CIFAR-10, one codebook of K in {1024, 8192, 65536}:
  vq                 plain VQ-VAE: codebook learned by its loss (no EMA), random init, no restarts;
  vq_kmeans_restart  the same with k-means init on the first batch and restarts of codes idle for 50 steps;
  simvq              SimVQ: codebook = learned linear map of a frozen random code matrix;
  (vq_ema_kmeans_restart, vqzip's default VQ, with --variants).
Records codebook utilisation over training (share of codes used on the test set after every epoch, and the
share used per training batch) and the final test PSNR. Claim tested: plain VQ collapses (uses a shrinking
share of a large codebook), SimVQ keeps (nearly) all codes in use without restarts, and better use gives
better PSNR at large K.

    python benchmarks/studies/codebook_collapse.py           # the full study (9 runs)
    python benchmarks/studies/codebook_collapse.py --epochs 1 --train-limit 256 --test-limit 256 --quick --out /tmp/s3
"""
from __future__ import annotations

import common

from vqzip.codec.model import CodecConfig

STUDY = "codebook_collapse"
CLAIM = ("Plain VQ uses a shrinking share of a large codebook (collapse); SimVQ keeps nearly every code in use "
         "without k-means or restarts, and better code use gives better reconstructions at large K.")
SIZES = [1024, 8192, 65536]
QUICK_SIZES = [1024]
VARIANTS = {
    "vq": ("vq", {"ema": False, "kmeans_init": False, "restart_after": 0}),
    "vq_kmeans_restart": ("vq", {"ema": False, "kmeans_init": True, "restart_after": 50}),
    "simvq": ("simvq", {}),
    "vq_ema_kmeans_restart": ("vq", {"ema": True, "kmeans_init": True, "restart_after": 50}),
}
DEFAULT_VARIANTS = ["vq", "vq_kmeans_restart", "simvq"]


def specs(args) -> list[common.RunSpec]:
    net = dict(channels=args.channels, downsamples=2, latent_dim=args.latent_dim, blocks=args.blocks)
    out = []
    for k in args.sizes or (QUICK_SIZES if args.quick else SIZES):
        for v in args.variants:
            kind, extra = VARIANTS[v]
            cfg = CodecConfig(**net, quantizer=kind, quantizer_args={"codebook_size": k, **extra})
            out.append(common.RunSpec(f"{v}_K{k}", cfg, {"variant": v, "K": k}))
    return out


def _cap(vectors: int, k: int) -> float:
    """Highest utilisation `vectors` latent vectors can show with K codes."""
    return min(1.0, vectors / k)


def analyse(results: list[dict], budget: dict) -> dict:
    rows = []
    for r in sorted(results, key=lambda r: (r["meta"]["K"], r["meta"]["variant"])):
        k, u = r["meta"]["K"], r["final"]["usage"][0]
        ep = r["curves"]["epochs"]
        rows.append({"variant": r["meta"]["variant"], "K": k, "test_psnr": r["final"]["psnr"], "test_mse": r["final"]["mse"],
                     "utilisation": u["utilisation"], "codes_used": u["used"], "perplexity": u["perplexity"],
                     "utilisation_cap_on_test_set": _cap(budget["test_images"] * 64, k),
                     "utilisation_per_epoch": [e["test_usage"][0]["utilisation"] for e in ep],
                     "peak_utilisation": max((e["test_usage"][0]["utilisation"] for e in ep), default=None),
                     "train_seconds": r["train_seconds"]})
    best = {}
    for row in rows:
        if row["K"] not in best or row["test_psnr"] > best[row["K"]]["test_psnr"]:
            best[row["K"]] = row
    return {"per_run": rows, "best_psnr_per_K": {k: v["variant"] for k, v in best.items()},
            "utilisation_definition": "share of the K codes used at least once when encoding the test set; "
                                      "capped at test_images x 64 / K (see utilisation_cap_on_test_set)"}


def plot(args, budget, results) -> list[str]:
    plt = common.pyplot()
    names = []
    ks = sorted({r["meta"]["K"] for r in results})
    variants = [v for v in VARIANTS if any(r["meta"]["variant"] == v for r in results)]
    colour = {v: f"C{i}" for i, v in enumerate(VARIANTS)}
    by = {(r["meta"]["variant"], r["meta"]["K"]): r for r in results}
    batch_vectors = budget["batch_size"] * 64

    fig, axes = plt.subplots(2, len(ks), figsize=(max(8.0, 4.6 * len(ks)), 7.5), squeeze=False)
    for j, k in enumerate(ks):
        top, bottom = axes[0, j], axes[1, j]
        for v in variants:
            if (v, k) not in by:
                continue
            r = by[(v, k)]
            ep = r["curves"]["epochs"]
            top.plot([e["epoch"] for e in ep], [e["test_usage"][0]["utilisation"] for e in ep], "o-", color=colour[v], label=v)
            st = r["curves"]["steps"]
            bottom.plot([s["step"] for s in st], [s["batch_utilisation"] for s in st], color=colour[v], lw=1, marker=".", ms=3,
                        label=v)
        top.axhline(_cap(budget["test_images"] * 64, k), color="0.5", ls=":", lw=0.8)
        bottom.axhline(_cap(batch_vectors, k), color="0.5", ls=":", lw=0.8)
        top.set_title(f"K = {k:,}")
        top.set_ylim(0, 1.05)
        bottom.set_ylim(0, 1.05 * _cap(batch_vectors, k))
        top.set_xlabel("epoch")
        bottom.set_xlabel("training step")
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
        if j == 0:
            top.set_ylabel("utilisation on the test set")
            bottom.set_ylabel("utilisation per training batch")
            top.legend(fontsize=8)
    names.append(common.save_figure(fig, args.out / "utilisation_over_training.png",
                                    "Codebook utilisation over training (dotted: the most that set size can show)",
                                    budget, results))

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for v in variants:
        pts = [(k, by[(v, k)]) for k in ks if (v, k) in by]
        a1.plot([k for k, _ in pts], [r["final"]["psnr"] for _, r in pts], "o-", color=colour[v], label=v)
        a2.plot([k for k, _ in pts], [r["final"]["usage"][0]["utilisation"] for _, r in pts], "o-", color=colour[v], label=v)
    for a in (a1, a2):
        a.set_xscale("log", base=2)
        a.set_xlabel("codebook size K")
        a.grid(alpha=0.3)
    a1.set_ylabel("final test PSNR (dB)")
    a2.set_ylabel("final utilisation (test set)")
    a2.set_ylim(0, 1.05)
    a1.legend(fontsize=8)
    names.append(common.save_figure(fig, args.out / "final_psnr_utilisation.png", "Codebook collapse: final PSNR and code use",
                                    budget, results))
    return names


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], STUDY, epochs=20, lr=1e-3)
    p.add_argument("--sizes", type=int, nargs="+", help=f"codebook sizes (default {SIZES}; --quick: {QUICK_SIZES})")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS)
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--channels", type=int, default=48, help="encoder/decoder width (vqzip's default)")
    p.add_argument("--blocks", type=int, default=2)
    args = p.parse_args()
    results, budget = common.run_all(specs(args), args, "codebook collapse")
    plots = plot(args, budget, results) if results else []
    common.write_results(
        args, STUDY, CLAIM, budget,
        {"K": args.sizes or (QUICK_SIZES if args.quick else SIZES), "variants": {v: VARIANTS[v] for v in args.variants},
         "latent_dim": args.latent_dim, "latent_grid": "8x8 (downsamples=2)", "channels": args.channels, "blocks": args.blocks},
        results, analyse(results, budget), plots,
        ["Utilisation on the test set is measured after every epoch; per-batch utilisation (windowed mean over "
         "training steps) can be at most batch_size x 64 / K.",
         "PSNR is 10 log10(1/MSE) of the test set's mean MSE on [0,1]-scaled RGB; reconstructions clamped, not rounded."])


if __name__ == "__main__":
    main()
