"""Benchmark reports: rich tables on the console, results.json, and the rate-distortion plot rd.png."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.markup import escape

from .metrics import PSNR_CAP_DB, rate_at_psnr


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")


def _f(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def print_tables(results: dict[str, Any], console) -> None:
    from rich.table import Table

    meta = results["meta"]
    t = Table(title=f"{meta['dataset']}: {meta['n_images']} images ({', '.join(meta['image_sizes'][:3])}"
                    f"{', ...' if len(meta['image_sizes']) > 3 else ''})")
    for col in ("codec", "q", "bytes", "bits/img", "bpp", "PSNR dB", "SSIM", "MS-SSIM", "enc ms", "dec ms", "ideal bits"):
        t.add_column(col, justify="left" if col == "codec" else "right")
    prev = None
    for p in results["points"]:
        if prev is not None and p["codec"] != prev:
            t.add_section()
        prev = p["codec"]
        psnr = "lossless" if p["psnr"] >= PSNR_CAP_DB else f"{p['psnr']:.2f}"
        t.add_row(p["codec"], str(p["quality"]), f"{p['bytes']:.1f}", f"{p['bits_per_image']:.0f}", f"{p['bpp']:.3f}",
                  psnr, f"{p['ssim']:.4f}", _f(p.get("msssim"), ".4f"),
                  f"{p['encode_ms']:.3f}", f"{p['decode_ms']:.3f}", _f(p["ideal_bits"], ".0f"))
    console.print(t)
    if results["bd_rate"]:
        b = Table(title="BD-rate vs PSNR (negative = fewer bits)")
        for col in ("codec", "reference", "BD-rate", "PSNR overlap dB"):
            b.add_column(col, justify="left" if col in ("codec", "reference") else "right")
        for r in results["bd_rate"]:
            v, ov = r["bd_rate_percent"], r.get("psnr_overlap_db")
            b.add_row(r["codec"], r["reference"], "n/a" if v is None else f"{v:+.1f} %",
                      "none" if ov is None else f"{ov[0]:.1f} - {ov[1]:.1f}")
        console.print(b)
        _print_equal_psnr_table(results, console)
    _print_prior_table(results, console)
    for note in meta["notes"]:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    console.print(f"[dim]{meta['metadata']}[/dim]")


def reference_curves(results: dict[str, Any], rate: str) -> dict[str, tuple[list[float], list[float]]]:
    """(rates, PSNRs) of each lossy reference codec of a bench run (those it computed BD-rates
    against), in first-seen order; `rate` is the point field to use ("bits_per_image" or "bpp")."""
    references = dict.fromkeys(r["reference"] for r in results["bd_rate"])
    return {ref: ([p[rate] for p in results["points"] if p["codec"] == ref],
                  [p["psnr"] for p in results["points"] if p["codec"] == ref]) for ref in references}


def equal_psnr(results: dict[str, Any]) -> dict[tuple[str, int], dict[str, float | None]]:
    """For each vqzip point: how many more bits (percent, negative = fewer) it needs than each lossy
    reference at the same PSNR, or None where that PSNR is outside the reference's curve. BD-rate
    averages a range; this shows where along it a curve wins or loses."""
    curves = reference_curves(results, "bits_per_image")
    references = list(curves)
    out = {}
    for p in results["points"]:
        if p["codec"].startswith("vqzip:"):
            rates = {ref: rate_at_psnr(*curves[ref], p["psnr"]) for ref in references}
            out[(p["codec"], p["quality"])] = {ref: None if r is None else 100.0 * (p["bits_per_image"] / r - 1)
                                               for ref, r in rates.items()}
    return out


def _print_equal_psnr_table(results: dict[str, Any], console) -> None:
    from rich.table import Table

    rows = equal_psnr(results)
    if not rows:
        return
    references = list(next(iter(rows.values())))
    t = Table(title="vqzip bits vs each reference at the same PSNR",
              caption="negative = fewer bits than the reference; n/a = outside its PSNR range")
    for col in ("codec", "q", *references):
        t.add_column(col, justify="left" if col == "codec" else "right")
    prev = None
    for (codec, q), diffs in rows.items():
        if prev is not None and codec != prev:
            t.add_section()
        prev = codec
        t.add_row(codec, str(q), *("n/a" if d is None else f"{d:+.0f} %" for d in diffs.values()))
    console.print(t)


def _print_prior_table(results: dict[str, Any], console) -> None:
    """For each vqzip model with a context prior: bytes under both priors (same tokens, same PSNR),
    the saving, and images per second each way."""
    from rich.table import Table

    points = {(p["codec"], p["quality"]): p for p in results["points"]}
    models = [c for c, q in points if c.startswith("vqzip:") and (c + "+static", q) in points]
    if not models:
        return
    t = Table(title="vqzip context prior vs static tables (same tokens, same PSNR)")
    for col in ("model", "q", "static bytes", "context bytes", "saving", "encode img/s", "decode img/s"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for (codec, q), p in points.items():
        if codec in models:
            s = points[(codec + "+static", q)]
            t.add_row(codec, str(q), f"{s['bytes']:.1f}", f"{p['bytes']:.1f}", f"{100 * (1 - p['bytes'] / s['bytes']):.1f} %",
                      _per_second(p["encode_ms"]), _per_second(p["decode_ms"]))
    console.print(t)


def _per_second(ms: float) -> str:
    """Images per second, readable for thumbnails (600) and photos (0.46) alike."""
    rate = 1e3 / ms
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.2g}"


def plot_rd(results: dict[str, Any], path: Path) -> bool:
    """PSNR against bits per image, one line with markers per lossy curve; PNG as a vertical line.
    False (nothing drawn) where matplotlib, which `pip install .` leaves out, is not installed."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    meta = results["meta"]
    curves: dict[str, list[dict]] = {}
    for p in results["points"]:
        curves.setdefault(p["codec"], []).append(p)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    markers = "os^vD<>pXh*"
    lossy = 0
    for i, (name, pts) in enumerate(curves.items()):
        pts = sorted(pts, key=lambda p: p["bits_per_image"])
        if all(p["psnr"] >= PSNR_CAP_DB for p in pts):  # lossless: a rate, no distortion to plot
            x = pts[0]["bits_per_image"]
            ax.axvline(x, color="grey", linestyle="--", linewidth=1, label=f"{name} (lossless): {x:,.0f} bits")
            continue
        vq = name.startswith("vqzip")
        ax.plot([p["bits_per_image"] for p in pts], [p["psnr"] for p in pts], marker=markers[i % len(markers)],
                linewidth=2.4 if vq else 1.4, markersize=6 if vq else 4, label=name, zorder=3 if vq else 2)
        lossy += 1
    ax.set_xscale("log")
    ticks = LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0))
    ax.xaxis.set_major_locator(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("bits per image (whole file, log scale)")
    ax.set_ylabel("PSNR (dB, RGB, mean over images)")
    ax.set_title(f"Rate-distortion on {meta['dataset']}, {meta['n_images']} images")
    ax.grid(True, which="major", alpha=0.5)
    ax.grid(True, which="minor", alpha=0.15)
    if len(meta["image_sizes"]) == 1:  # a bpp axis on top when every image has the same size
        pix = meta["pixels_per_image"]
        sec = ax.secondary_xaxis("top", functions=(lambda b: b / pix, lambda r: r * pix))
        sec.set_xlabel(f"bits per pixel ({meta['image_sizes'][0]})")
        sec.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
        sec.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        sec.xaxis.set_minor_formatter(NullFormatter())
    if curves:
        ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
