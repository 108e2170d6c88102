"""Commands that measure vqzip against other codecs: `bench` and `demo`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import VqzipError
from . import options as opt
from .console import Failure, fail, one_line, out
from .files import write_atomic


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def bench(
    target: Annotated[str, typer.Argument(help="'cifar10' (the 10,000 test images), 'kodak', 'kodak-thumbs' "
                                               "(144 32x32 tiles of Kodak), a folder of images, or the results.json of an "
                                               "earlier run (prints its tables again).")],
    limit: Annotated[int | None, opt.limit("Use only the first N images.")] = None,
    models: Annotated[str | None, typer.Option("--models", help="Comma-separated vqzip models (default: all installed); "
                                                                       "'auto': what vqzip encode picks without -m.")] = None,
    codecs: Annotated[str | None, typer.Option("--codecs", help="Comma-separated references: png,jpeg,webp,avif,jxl "
                                                                "(default: all).")] = None,
    out_dir: Annotated[Path, opt.out("Folder for results.json and rd.png.")] = Path("bench-results"),
    data: Annotated[Path | None, opt.data("Folder holding cifar10/ or kodak/ (default: $VQZIP_DATA, the cache).")] = None,
    quiet: opt.Quiet = False,
) -> None:
    """Bits per image and PSNR of every vqzip model and quality against PNG, JPEG, WebP, AVIF and JPEG XL."""
    from ..bench import run_bench
    from ..training.data import DataNotFound

    if target.endswith(".json"):
        _reprint(Path(target))
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        run_bench(target, limit=limit, models=_names(models), codecs=_names(codecs), out=out_dir, data=data,
                  quiet=quiet, command="vqzip " + " ".join(sys.argv[1:]))
    except (DataNotFound, ValueError, VqzipError, OSError) as exc:
        fail(one_line(exc))


def _reprint(path: Path) -> None:
    """The tables of an earlier bench run, from its results.json (nothing is measured again)."""
    import json

    from ..bench.report import print_tables

    try:
        results = json.loads(path.read_text())
        print_tables(results, out)
    except OSError as exc:
        fail(one_line(exc))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        fail(f"{path} is not the results.json of a vqzip bench run ({one_line(exc)})")


def demo(
    out_dir: Annotated[Path, opt.out("Folder for the demo's files.")] = Path("vqzip-demo"),
    model: Annotated[str | None, opt.model("Model name or path (default: what vqzip encode picks for each "
                                           "image: the photo codec for photos, the small-image model for "
                                           "CIFAR-10).")] = None,
    cifar: Annotated[int, typer.Option("--cifar", min=0, help="CIFAR-10 test images to benchmark "
                                                              "(0 skips; needs the data or a network).")] = 1000,
    data: Annotated[Path | None, opt.data("Folder holding CIFAR-10.")] = None,
    force: opt.Force = False,
) -> None:
    """Show what vqzip does, offline: the built-in sample photo at every quality against JPEG and WebP,
    then (when CIFAR-10 is at hand or downloadable) a short benchmark."""
    import io
    from importlib import resources

    from PIL import Image
    from rich.table import Table

    from .. import api, pick
    from ..training.evaluate import against_references

    sample_png = resources.files("vqzip.assets").joinpath("sample.png").read_bytes()
    sample = Image.open(io.BytesIO(sample_png)).convert("RGB")
    try:
        if model is not None:
            m = small = api.load_model(model)
            rungs = [(m, q) for q in range(1, m.qualities + 1)]
            q_default = m.default_quality
        else:  # what vqzip encode picks: the sample photo's ladder; CIFAR-10's model
            ladder, first = pick.ladder(sample.width, sample.height)
            rungs = [(api.load_model(name), q) for name, q in ladder]
            m, q_default = rungs[first - 1]
            small = api.load_model(pick.pick(32, 32)[0])
    except VqzipError as exc:
        fail(str(exc))
    names = list(dict.fromkeys(r[0].name for r in rungs))
    models = f"model{'s' * (len(names) > 1)} {' then '.join(names)}"
    table = Table(title=f"built-in sample, {sample.width}x{sample.height} ({models}); "
                        "reference sizes are the smallest file reaching at least vqzip's PSNR", title_justify="left")
    columns = ("quality", "model") if len(names) > 1 else ("quality",)
    for col in (*columns, "vqzip bytes", "PSNR dB", "jpeg-420 bytes", "webp bytes"):
        table.add_column(col, justify="right")
    for k, row in enumerate(against_references(sample, rungs, ("jpeg-420", "webp")), 1):
        refs = [f"{row[c]:,}" if row[c] is not None else "not reached" for c in ("jpeg-420", "webp")]
        rung = (str(k), f"{row['model']} {row['quality']}") if len(names) > 1 else (str(row["quality"]),)
        table.add_row(*rung, f"{row['bytes']:,}", f"{row['psnr']:.2f}", *refs)
    out.print(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    default = api.compress(sample, m, q_default)
    try:
        write_atomic(out_dir / "sample.png", sample_png, force)
        write_atomic(out_dir / "sample.vqz", default, force)
        buf = io.BytesIO()
        api.decompress(default).save(buf, "PNG")
        write_atomic(out_dir / "sample-decoded.png", buf.getvalue(), force)
    except Failure as exc:
        fail(str(exc))
    out.print(f"wrote {out_dir}/sample.png, sample.vqz ({len(default):,} bytes, {m.name} quality {q_default}) "
              f"and sample-decoded.png; try: vqzip info {out_dir}/sample.vqz")
    if cifar:
        from ..bench import run_bench
        from ..training.data import DataNotFound, load_cifar10

        try:
            load_cifar10("test", data, download=True)
        except (DataNotFound, OSError, ValueError) as exc:
            out.print(f"CIFAR-10 benchmark skipped: {one_line(exc)}", soft_wrap=True)
            return
        run_bench("cifar10", limit=cifar, models=[small.name], codecs=["png", "jpeg", "webp"], out=out_dir / "cifar10", data=data)
