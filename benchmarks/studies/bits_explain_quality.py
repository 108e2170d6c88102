"""Study 2 (issue #6): bits explain quality (the RVQ study).

4x4 latent grid (downsamples=3) with d channels on 32x32 CIFAR-10:
  (a) plain autoencoder, no quantization (`identity` quantizer), d in {4, 8, 16, 32, 64, 128};
  (b) VQ with k in {8, 16, ..., 4096} for d in {4, 16, 64};
  (c) RVQ with d = 64, codebook sizes {2, 8, 64, 1024} and 1..32 codebooks;
  (d) 8x8 grids (downsamples=2, d = 64) at equal total bits: VQ k in {8, 64, 512, 4096}, RVQ sizes {2, 8}.
Total bits per image = latent positions x sum of log2 k. RVQ: by default one model per codebook size with
32 levels, trained with vqzip's quantizer dropout and evaluated at every prefix 1..32 (--rvq-mode separate
trains one model per (size, count) instead). A power law MSE = a * bits^(-b) is fitted by least squares
in log-log space to the quantized points. Claim tested: at equal bits it barely matters how they split
between codebook size and number of codebooks, and one large codebook saturates early.

    python benchmarks/studies/bits_explain_quality.py        # the full grid
    python benchmarks/studies/bits_explain_quality.py --epochs 1 --train-limit 256 --test-limit 256 --quick --out /tmp/s2
"""
from __future__ import annotations

import math
from collections import defaultdict

import common
import numpy as np

from vqzip.codec.model import CodecConfig

STUDY = "bits_explain_quality"
CLAIM = ("At equal total bits per image it barely matters how the bits split between codebook size and number "
         "of codebooks; a single large codebook (plain VQ) saturates early; MSE follows a power law in bits.")
AE_DIMS = [4, 8, 16, 32, 64, 128]
VQ_DIMS = [4, 16, 64]
VQ_KS = [2 ** i for i in range(3, 13)]  # 8 .. 4096
RVQ_SIZES = [2, 8, 64, 1024]
RVQ_LEVELS = 32
RVQ_COUNTS = [1, 2, 4, 8, 16, 32]  # --rvq-mode separate
G8_VQ_KS = [8, 64, 512, 4096]
G8_RVQ_SIZES = [2, 8]
QUICK = dict(ae_dims=[8, 64], vq_dims=[64], vq_ks=[8, 64, 512], rvq_sizes=[8, 1024], g8_vq_ks=[8], g8_rvq_sizes=[8])
AE_X = "unquantized d: plotted at positions x d x 32 bits (float32 latents) and excluded from every fit"



def _log_axes(ax, xlabel: str, ylabel: str) -> None:
    """Log-log axes (bits in powers of two), grid and legend shared by the MSE-vs-bits plots."""
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower left")

def grid(args) -> dict:
    q = QUICK if args.quick else {}
    pick = lambda name, full: getattr(args, name) or q.get(name, full)  # noqa: E731
    return {"ae_dims": pick("ae_dims", AE_DIMS), "vq_dims": pick("vq_dims", VQ_DIMS), "vq_ks": pick("vq_ks", VQ_KS),
            "rvq_dim": 64, "rvq_sizes": pick("rvq_sizes", RVQ_SIZES), "rvq_levels": args.rvq_levels,
            "rvq_mode": args.rvq_mode, "rvq_counts": args.rvq_counts or RVQ_COUNTS,
            "g8_dim": 64, "g8_vq_ks": [] if args.no_8x8 else pick("g8_vq_ks", G8_VQ_KS),
            "g8_rvq_sizes": [] if args.no_8x8 else pick("g8_rvq_sizes", G8_RVQ_SIZES),
            "channels": args.channels, "blocks": args.blocks}


def specs(args) -> list[common.RunSpec]:
    g = grid(args)
    net4 = dict(channels=g["channels"], blocks=g["blocks"], downsamples=3)
    net8 = dict(channels=g["channels"], blocks=g["blocks"], downsamples=2)
    out = []
    for d in g["ae_dims"]:
        out.append(common.RunSpec(f"ae4x4_d{d}", CodecConfig(**net4, latent_dim=d, quantizer="identity"),
                                  {"family": "ae", "grid": 4, "d": d}))
    for d in g["vq_dims"]:
        for k in g["vq_ks"]:
            cfg = CodecConfig(**net4, latent_dim=d, quantizer="vq", quantizer_args={"codebook_size": k})
            out.append(common.RunSpec(f"vq4x4_d{d}_k{k}", cfg, {"family": "vq", "grid": 4, "d": d, "k": k}))

    def rvq(grid_side: int, net: dict, size: int) -> list[common.RunSpec]:
        d, tag = 64, f"rvq{grid_side}x{grid_side}_d64_k{size}"
        if g["rvq_mode"] == "prefix":
            n = g["rvq_levels"]
            return [common.RunSpec(f"{tag}_L{n}", CodecConfig(**net, latent_dim=d, quantizer="rvq",
                                                              quantizer_args={"levels": n, "codebook_size": size}),
                                   {"family": "rvq", "grid": grid_side, "d": d, "k": size, "mode": "prefix"},
                                   eval_levels=list(range(1, n + 1)))]
        return [common.RunSpec(f"{tag}_n{n}", CodecConfig(**net, latent_dim=d, quantizer="rvq",
                                                          quantizer_args={"levels": n, "codebook_size": size, "dropout": False}),
                               {"family": "rvq", "grid": grid_side, "d": d, "k": size, "mode": "separate"})
                for n in g["rvq_counts"]]

    for size in g["rvq_sizes"]:
        out += rvq(4, net4, size)
    for k in g["g8_vq_ks"]:
        cfg = CodecConfig(**net8, latent_dim=64, quantizer="vq", quantizer_args={"codebook_size": k})
        out.append(common.RunSpec(f"vq8x8_d64_k{k}", cfg, {"family": "vq", "grid": 8, "d": 64, "k": k}))
    for size in g["g8_rvq_sizes"]:
        out += rvq(8, net8, size)
    return out


def points(results: list[dict]) -> list[dict]:
    """One rate point per (run, evaluated level count): bits per image and test MSE."""
    pts = []
    for r in results:
        m, codec = r["meta"], r["identity"]["codec"]
        positions = (32 // 2 ** codec["downsamples"]) ** 2
        if m["family"] == "ae":
            pts.append({"run": r["name"], "family": "ae", "grid": m["grid"], "d": m["d"], "k": None, "levels": None,
                        "bits": positions * m["d"] * 32, "mse": r["final"]["mse"], "psnr": r["final"]["psnr"]})
            continue
        for row in r["final"]["per_levels"]:
            n = row["levels"]
            pts.append({"run": r["name"], "family": m["family"], "grid": m["grid"], "d": m["d"], "k": m["k"], "levels": n,
                        "bits": positions * n * math.log2(m["k"]), "mse": row["mse"], "psnr": row["psnr"]})
    return pts


def analyse(results: list[dict]) -> dict:
    pts = points(results)
    q4 = [p for p in pts if p["family"] != "ae" and p["grid"] == 4]
    fits = {"all_quantized_4x4": common.power_law_fit([p["bits"] for p in q4], [p["mse"] for p in q4])}
    groups = defaultdict(list)
    for p in pts:
        if p["family"] != "ae":
            groups[f"{p['family']}{p['grid']}x{p['grid']}_d{p['d']}" + (f"_k{p['k']}" if p["family"] == "rvq" else "")].append(p)
    for name, g in sorted(groups.items()):
        fits[name] = common.power_law_fit([p["bits"] for p in g], [p["mse"] for p in g])
    rvq4 = [p for p in q4 if p["family"] == "rvq"]
    fits["rvq_4x4_all_sizes"] = common.power_law_fit([p["bits"] for p in rvq4], [p["mse"] for p in rvq4])

    # equal bits, different splits (4x4): how much does MSE vary among configs with identical total bits?
    by_bits = defaultdict(list)
    for p in q4:
        by_bits[round(p["bits"], 6)].append(p)
    equal = []
    for bits, g in sorted(by_bits.items()):
        if len({(p["family"], p["d"], p["k"]) for p in g}) >= 2:
            mses = [p["mse"] for p in g]
            equal.append({"bits": bits, "spread_db": 10 * math.log10(max(mses) / min(mses)),
                          "configs": [{"run": p["run"], "levels": p["levels"], "mse": p["mse"], "psnr": p["psnr"]} for p in g]})
    fit = fits["all_quantized_4x4"]
    for p in pts:
        if fit and p["family"] != "ae":
            p["fit_residual_db"] = 10 * math.log10(p["mse"] / (fit["a"] * p["bits"] ** -fit["b"]))

    # saturation of a single codebook: local log-log slope over the last doubling of k, per d
    saturation = {}
    for d in sorted({p["d"] for p in q4 if p["family"] == "vq"}):
        vq = sorted((p for p in q4 if p["family"] == "vq" and p["d"] == d), key=lambda p: p["bits"])
        if len(vq) >= 2:
            a, b = vq[-2], vq[-1]
            saturation[f"vq4x4_d{d}"] = {"tail_slope": -math.log(b["mse"] / a["mse"]) / math.log(b["bits"] / a["bits"]),
                                        "between_k": [a["k"], b["k"]], "tail_residual_db": b.get("fit_residual_db")}
    # 8x8 vs 4x4 at exactly equal total bits
    pairs = []
    for p in (p for p in pts if p["grid"] == 8):
        same = [o for o in q4 if abs(o["bits"] - p["bits"]) < 1e-6]
        if same:
            pairs.append({"bits": p["bits"], "8x8": {"run": p["run"], "levels": p["levels"], "mse": p["mse"], "psnr": p["psnr"]},
                          "4x4": [{"run": o["run"], "levels": o["levels"], "mse": o["mse"], "psnr": o["psnr"]} for o in same],
                          "psnr_8x8_minus_best_4x4_db": p["psnr"] - max(o["psnr"] for o in same)})
    ae = [{"d": p["d"], "bits_if_float32": p["bits"], "mse": p["mse"], "psnr": p["psnr"]} for p in pts if p["family"] == "ae"]
    return {"fits": fits, "fit_model": "MSE = a * bits^(-b), least squares of log MSE on log bits",
            "equal_bits_4x4": equal,
            "equal_bits_4x4_median_spread_db": float(np.median([e["spread_db"] for e in equal])) if equal else None,
            "vq_saturation": saturation, "grid_8x8_vs_4x4": pairs, "autoencoder": ae, "autoencoder_x_axis": AE_X,
            "points": pts}


def plot(args, budget, results, analysis) -> list[str]:
    plt = common.pyplot()
    pts = analysis["points"]
    names = []
    fit = analysis["fits"].get("all_quantized_4x4")

    def draw_fit(ax, lo, hi):
        if fit:
            xs = np.geomspace(lo, hi, 50)
            ax.plot(xs, fit["a"] * xs ** -fit["b"], "k--", lw=1,
                    label=f"fit (4x4 quantized): MSE = {fit['a']:.3g} bits^-{fit['b']:.3g}, R²={fit['r2']:.3f}")

    fig, ax = plt.subplots(figsize=(10, 6.2))
    q4 = [p for p in pts if p["grid"] == 4 and p["family"] != "ae"]
    vq_d = sorted({p["d"] for p in q4 if p["family"] == "vq"})
    for i, d in enumerate(vq_d):
        s = sorted((p for p in q4 if p["family"] == "vq" and p["d"] == d), key=lambda p: p["bits"])
        ax.plot([p["bits"] for p in s], [p["mse"] for p in s], "o-", color=plt.cm.autumn(i / max(1, len(vq_d))), ms=4,
                label=f"VQ d={d}, k=8..4096")
    sizes = sorted({p["k"] for p in q4 if p["family"] == "rvq"})
    for i, k in enumerate(sizes):
        s = sorted((p for p in q4 if p["family"] == "rvq" and p["k"] == k), key=lambda p: p["bits"])
        ax.plot([p["bits"] for p in s], [p["mse"] for p in s], "-", color=plt.cm.winter(i / max(1, len(sizes) - 1)), lw=1.2,
                marker=".", ms=5, label=f"RVQ d=64, k={k}, 1..{max(p['levels'] for p in s)} codebooks")
    ae = sorted((p for p in pts if p["family"] == "ae"), key=lambda p: p["d"])
    for p in ae:
        ax.plot(p["bits"], p["mse"], "*", color="0.2", ms=11)
        ax.annotate(f"AE d={p['d']}", (p["bits"], p["mse"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axhline(p["mse"], color="0.6", lw=0.6, ls=":")
    if ae:
        ax.plot([], [], "*", color="0.2", label="plain AE, unquantized d (at d x 32 bits/position; dotted: its MSE)")
    allx = [p["bits"] for p in q4]
    if allx:
        draw_fit(ax, min(allx), max(allx))
    _log_axes(ax, "total bits per image (positions x sum of log2 k), 4x4 latent grid", "test MSE ([0,1] RGB)")
    names.append(common.save_figure(fig, args.out / "mse_vs_bits.png", "Bits explain quality: test MSE vs bits (4x4 grid)",
                                    budget, results))

    g8 = [p for p in pts if p["grid"] == 8]
    if g8:
        fig, ax = plt.subplots(figsize=(10, 6))
        for fam, marker in (("vq", "o"), ("rvq", ".")):
            for key in sorted({(p["d"], p["k"]) for p in q4 if p["family"] == fam}):
                s = sorted((p for p in q4 if p["family"] == fam and (p["d"], p["k"]) == key), key=lambda p: p["bits"])
                ax.plot([p["bits"] for p in s], [p["mse"] for p in s], color="0.75", lw=0.8, marker=marker, ms=3)
        ax.plot([], [], color="0.75", marker=".", label="4x4 grid: every VQ / RVQ point above")
        fam_runs = sorted({(p["family"], p["k"]) for p in g8})
        for i, (fam, k) in enumerate(fam_runs):
            s = sorted((p for p in g8 if (p["family"], p["k"]) == (fam, k)), key=lambda p: p["bits"])
            if fam == "vq":
                continue
            ax.plot([p["bits"] for p in s], [p["mse"] for p in s], "-", marker=".", color=f"C{i}", label=f"8x8 RVQ d=64, k={k}")
        v8 = sorted((p for p in g8 if p["family"] == "vq"), key=lambda p: p["bits"])
        if v8:
            ax.plot([p["bits"] for p in v8], [p["mse"] for p in v8], "s-", color="C3",
                    label="8x8 VQ d=64, k=" + ",".join(str(p["k"]) for p in v8))
        for pair in analysis["grid_8x8_vs_4x4"]:
            best = min(pair["4x4"], key=lambda o: o["mse"])
            ax.plot([pair["bits"]] * 2, [pair["8x8"]["mse"], best["mse"]], color="C1", lw=0.8, alpha=0.7)
        ax.plot([], [], color="C1", lw=0.8, label="equal total bits: 8x8 point to best 4x4 point")
        if q4:
            draw_fit(ax, min(p["bits"] for p in q4 + g8), max(p["bits"] for p in q4 + g8))
        _log_axes(ax, "total bits per image (positions x sum of log2 k)", "test MSE")
        names.append(common.save_figure(fig, args.out / "grid_8x8_vs_4x4.png", "8x8 vs 4x4 latent grids at equal total bits",
                                        budget, results))

    eq = analysis["equal_bits_4x4"]
    if eq:
        fig, ax = plt.subplots(figsize=(10, 4.5))
        for e in eq:
            for c in e["configs"]:
                fam = "vq" if c["run"].startswith("vq") else "rvq"
                ax.plot(e["bits"], c["mse"], "o" if fam == "vq" else ".", color="C3" if fam == "vq" else "C0", ms=5)
            spread = [min(c["mse"] for c in e["configs"]), max(c["mse"] for c in e["configs"])]
            ax.plot([e["bits"]] * 2, spread, color="0.6", lw=0.8)
        ax.plot([], [], "o", color="C3", label="VQ (one codebook)")
        ax.plot([], [], ".", color="C0", label="RVQ (several codebooks)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("total bits per image (only bit counts reached by >= 2 different splits)")
        ax.set_ylabel("test MSE")
        ax.set_title(f"median spread at equal bits: {analysis['equal_bits_4x4_median_spread_db']:.2f} dB", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        names.append(common.save_figure(fig, args.out / "equal_bits_spread.png", "Equal bits, different splits (4x4 grid)",
                                        budget, results))
    return names


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], STUDY, epochs=20, lr=1e-3)
    p.add_argument("--ae-dims", type=int, nargs="+", help=f"plain-AE latent dims (default {AE_DIMS})")
    p.add_argument("--vq-dims", type=int, nargs="+", help=f"VQ latent dims (default {VQ_DIMS})")
    p.add_argument("--vq-ks", type=int, nargs="+", help="VQ codebook sizes (default 8 16 .. 4096)")
    p.add_argument("--rvq-sizes", type=int, nargs="+", help=f"RVQ codebook sizes (default {RVQ_SIZES})")
    p.add_argument("--rvq-levels", type=int, default=RVQ_LEVELS, help="codebooks of each prefix-mode RVQ model")
    p.add_argument("--rvq-mode", choices=["prefix", "separate"], default="prefix",
                   help="prefix: one quantizer-dropout model per size, evaluated at 1..levels codebooks; "
                        "separate: one model per (size, count), no dropout")
    p.add_argument("--rvq-counts", type=int, nargs="+", help=f"codebook counts in separate mode (default {RVQ_COUNTS})")
    p.add_argument("--g8-vq-ks", type=int, nargs="+", help=f"8x8-grid VQ codebook sizes (default {G8_VQ_KS})")
    p.add_argument("--g8-rvq-sizes", type=int, nargs="+", help=f"8x8-grid RVQ codebook sizes (default {G8_RVQ_SIZES})")
    p.add_argument("--no-8x8", action="store_true", help="leave out the 8x8-grid runs")
    p.add_argument("--channels", type=int, default=48, help="encoder/decoder width (vqzip's default)")
    p.add_argument("--blocks", type=int, default=2)
    args = p.parse_args()
    results, budget = common.run_all(specs(args), args, "bits explain quality")
    analysis = analyse(results)
    plots = plot(args, budget, results, analysis) if results else []
    common.write_results(
        args, STUDY, CLAIM, budget, {**grid(args), "latent_grids": {"4x4": "downsamples=3", "8x8": "downsamples=2"},
                                     "vq_args": "vqzip defaults: EMA codebook, k-means init, "
                                                "dead-code restarts after 50 idle steps"},
        results, analysis, plots,
        [f"Plain autoencoder points: {AE_X}.",
         "RVQ prefix mode: one model per codebook size trained with quantizer dropout (a random prefix per sample), "
         "evaluated at every prefix; each prefix is one rate point. --rvq-mode separate trains dedicated models instead.",
         "8x8 grids have 4x the positions, so equal total bits means a quarter of the bits per position; pairs with "
         "exactly equal bits are listed under analysis.grid_8x8_vs_4x4.",
         "MSE on [0,1]-scaled RGB of the test set, reconstructions clamped, not rounded."])


if __name__ == "__main__":
    main()
