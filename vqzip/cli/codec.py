"""Commands on files: `encode`, `decode`, `info` and `models`."""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from ..coding.container import DEFAULT_MAX_PIXELS
from ..errors import LimitError, VqzipError
from . import options as opt
from .console import Failure, err, error, fail, out, progress, reporting, summary
from .files import STDIO, DiskFull, emit, read, refuse_clobber, targets


def encode(
    inputs: opt.Inputs,
    output: Annotated[str | None, opt.output("Output file for a single input ('-' = stdout).")] = None,
    out_dir: opt.OutDir = None,
    model: Annotated[str | None, opt.model("Model name or path (default: the shipped default).")] = None,
    quality: Annotated[int | None, typer.Option("--quality", "-Q",
                                                help="Quality level, 1 = smallest file (default: the model's middle).")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per network pass.", min=1)] = 64,
    prior: Annotated[str, typer.Option("--prior", help="auto (the model's context prior if it has one), context, "
                                                       "or static (format version 1).")] = "auto",
    max_pixels: opt.MaxPixels = DEFAULT_MAX_PIXELS,
    force: opt.Force = False, quiet: opt.Quiet = False, verbose: opt.Verbose = False,
) -> None:
    """Compress images to .vqz (IMG -> IMG.vqz beside it)."""
    from PIL import Image, UnidentifiedImageError

    from .. import zoo

    dests = targets(inputs, output, out_dir, ".vqz")
    try:
        zoo.resolve(model)  # a missing model is named at once; loading it (torch) waits for an image
    except VqzipError as exc:
        fail(str(exc))
    api: Any = None
    m: Any = None
    failed = bytes_in = bytes_out = done = 0
    with reporting(quiet), progress(quiet, len(inputs)) as bar:
        task = bar.add_task("encoding", total=len(inputs))
        for start in range(0, len(inputs), batch):
            chunk = list(range(start, min(start + batch, len(inputs))))
            images, ok = [], []
            for i in chunk:
                try:
                    data = read(inputs[i])
                    refuse_clobber(dests[i], force)  # before the work, not only at the write
                    img = _open_image(data, max_pixels)  # the header only: size checked, no pixel decoded
                    if m is None:
                        api, m = _encoder(model, quality, prior)
                    _load_pixels(img, max_pixels)
                    images.append((img, len(data)))
                    ok.append(i)
                except UnidentifiedImageError:
                    failed += 1
                    error(f"{inputs[i]}: not an image Pillow can read")
                except Failure as exc:
                    failed += 1
                    error(exc)
                except (VqzipError, OSError, Image.DecompressionBombError, ValueError) as exc:
                    failed += 1
                    error(f"{inputs[i]}: {exc}")
            encoded = api.compress_images([img for img, _ in images], m, quality, batch=batch, prior=prior,
                                          max_pixels=max_pixels) if images else []
            for i, (img, size), enc in zip(ok, images, encoded):
                try:
                    emit(dests[i], enc.data, force)
                except DiskFull as exc:
                    fail(f"{exc}; stopped: {done} of {len(inputs)} files written")
                except Failure as exc:
                    failed += 1
                    error(exc)
                    continue
                done += 1
                bytes_in, bytes_out = bytes_in + size, bytes_out + len(enc.data)
                if verbose:
                    err.print(f"{inputs[i]} -> {dests[i]}: {size:,} -> {len(enc.data):,} bytes "
                              f"({8 * len(enc.data) / (img.width * img.height):.3f} bpp)")
            bar.advance(task, len(chunk))
    summary("encoded", done, failed, bytes_in, bytes_out, quiet)
    if failed:
        raise typer.Exit(1)


def _encoder(model: str | None, quality: int | None, prior: str) -> tuple[Any, Any]:
    """(vqzip.api, the model) once checked against -Q and --prior; a bad one ends the run."""
    from .. import api

    try:
        m = api.load_model(model)
        api.resolve_quality(m, quality)
        api.format_version(m, prior)
    except VqzipError as exc:
        fail(str(exc))
    return api, m


def _open_image(data: bytes, max_pixels: int) -> Any:
    """The image in `data` with its size checked against the limits, its pixels not decoded yet
    (Pillow's Image.open reads the header only), so an oversized image is refused before any work."""
    from PIL import Image

    from ..coding.container import check_pixels

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our check below names --max-pixels
    try:
        img = Image.open(io.BytesIO(data))
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    check_pixels(img.width, img.height, max_pixels)
    return img


def _load_pixels(img: Any, max_pixels: int) -> None:
    """Decode the pixels, with Pillow's own decompression-bomb check (which some formats repeat for
    each frame they read) set to the same limit and made an error, never a warning on stderr."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitError(f"{exc} (--max-pixels)") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def decode(
    inputs: opt.Inputs,
    output: Annotated[str | None, opt.output("Output file for a single input; its extension picks the format "
                                             "('-' = PNG to stdout).")] = None,
    out_dir: opt.OutDir = None,
    model: Annotated[str | None, opt.model("Decode with this model (default: the one the file names).")] = None,
    max_pixels: opt.MaxPixels = DEFAULT_MAX_PIXELS,
    force: opt.Force = False, quiet: opt.Quiet = False, verbose: opt.Verbose = False,
) -> None:
    """Decompress .vqz files to images (IMG.vqz -> IMG.png beside it)."""
    from PIL import Image

    from .. import api

    dests = targets(inputs, output, out_dir, ".png")
    failed = bytes_in = bytes_out = done = 0
    with reporting(quiet), progress(quiet, len(inputs)) as bar:
        task = bar.add_task("decoding", total=len(inputs))
        for name, target in zip(inputs, dests):
            try:
                data = read(name)
                refuse_clobber(target, force)
                img = api.decompress(data, model, max_pixels)
                fmt = "PNG" if str(target) == STDIO else Image.registered_extensions().get(Path(target).suffix.lower())
                if fmt is None:
                    raise Failure(f"{target}: unknown image format {Path(target).suffix!r}; use e.g. .png")
                buf = io.BytesIO()
                try:
                    (img.convert("RGB") if fmt == "JPEG" and img.mode in ("RGBA", "LA") else img).save(buf, format=fmt)
                except (OSError, ValueError, KeyError) as exc:
                    raise Failure(f"{target}: cannot save as {fmt} ({exc})") from None
                emit(target, buf.getvalue(), force)
            except DiskFull as exc:
                fail(f"{exc}; stopped: {done} of {len(inputs)} files written")
            except (Failure, VqzipError) as exc:
                failed += 1
                error(f"{exc if isinstance(exc, Failure) else f'{name}: {exc}'}")
            else:
                done += 1
                bytes_in, bytes_out = bytes_in + len(data), bytes_out + buf.tell()
                if verbose:
                    err.print(f"{name} -> {target}: {img.width}x{img.height} {img.mode}")
            bar.advance(task)
    summary("decoded", done, failed, bytes_in, bytes_out, quiet)
    if failed:
        raise typer.Exit(1)


def info(inputs: opt.Inputs) -> None:
    """Show what a .vqz file holds: model, size, mode, quality, bytes and bits per pixel."""
    from .. import zoo
    from ..coding import container
    from ..errors import ModelNotFound

    failed = 0
    for name in inputs:
        try:
            data = read(name)
            header, _ = container.parse_header(data)
            try:
                path = zoo.find_by_id(header.model_id)
                f = container.parse(data, zoo.checksum_key(path, header.version))
                model, check, payload = path.name[: -len(zoo.SUFFIX)], "ok", len(f.payload)
                overhead = f.overhead
            except ModelNotFound:
                model, check, payload, overhead = "not installed", "not checked (needs the model)", None, None
        except (Failure, VqzipError) as exc:
            failed += 1
            error(f"{exc if isinstance(exc, Failure) else f'{name}: {exc}'}")
            continue
        pixels = header.width * header.height
        out.print(f"[bold]{name}[/]")
        out.print(f"  model      {model} (id {header.model_id:04x})")
        out.print(f"  image      {header.width}x{header.height} {header.mode}, quality {header.quality}")
        out.print(f"  format     version {header.version} ({'context prior' if header.version == 2 else 'static tables'})")
        out.print(f"  bytes      {len(data):,} total" +
                  (f" = {overhead} header/alpha/checksum + {payload:,} payload" if payload is not None else ""))
        out.print(f"  bits/pixel {8 * len(data) / pixels:.4f}")
        out.print(f"  checksum   {check}")
    if failed:
        raise typer.Exit(1)


def models() -> None:
    """List the installed models with their measured bits and PSNR per quality."""
    from rich.table import Table

    from .. import zoo

    names = zoo.available_models()
    if not names:
        fail("no models installed")
    for name in names:
        path = zoo.resolve(name)
        card = zoo.read_card(path)
        title = f"{name}  (id {zoo.model_id(path):04x}, {card.get('quantizer', '?')}, {card.get('summary', '')})"
        table = Table(title=title, title_justify="left")
        static = {r["quality"]: r["static_bytes"]
                  for r in card.get("context_prior", {}).get("results", {}).get("per_quality", [])}
        for col in ("quality", "levels", "bytes/image", "bits/pixel", "PSNR dB") + (("static tables",) if static else ()):
            table.add_column(col, justify="right")
        for row in card.get("results", {}).get("per_quality", []):
            extra = (f"{static[row['quality']]:.1f}",) if static else ()
            table.add_row(str(row["quality"]), str(row["levels"]), f"{row['bytes']:.1f}", f"{row['bpp']:.3f}",
                          f"{row['psnr']:.2f}", *extra)
        out.print(table)
        if card.get("results"):
            out.print(f"  measured on {card['results'].get('dataset', '?')}; default quality {card.get('default_quality', '?')}")
