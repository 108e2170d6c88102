"""Commands on files: `encode`, `decode`, `info`, `models` and `verify`."""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..coding.container import DEFAULT_MAX_PIXELS
from ..errors import LimitError, VqzipError
from . import options as opt
from .console import Failure, err, error, fail, out, print_json, progress, reporting, summary
from .files import STDIO, DiskFull, emit, read, refuse_clobber, targets
from .walk import expand, make_parent, pillow_reads, vqz_file

if TYPE_CHECKING:
    from ..coding.container import Metadata


def _save_format(target: str | Path) -> str | None:
    """Pillow's format name for an output path, or None where Pillow has none. PNG, the default, is
    named directly: asking Pillow for its extensions imports every plugin, 0.1 s of each decode."""
    suffix = Path(target).suffix.lower()
    if str(target) == STDIO or suffix == ".png":
        return "PNG"
    from PIL import Image

    return Image.registered_extensions().get(suffix)


# zlib level 1 for decoded PNGs (OpenCV's default too): on the 24 Kodak PNGs 4x faster to write than
# Pillow's default level 6 for 3 % more bytes (benchmarks/png_level.py), a tenth of a photo's decode
SAVE_OPTIONS: dict[str, dict[str, int]] = {"PNG": {"compress_level": 1}}


def encode(
    inputs: opt.Inputs,
    output: Annotated[str | None, opt.output("Output file for a single input ('-' = stdout).")] = None,
    out_dir: opt.OutDir = None,
    model: Annotated[str | None, opt.model("Model name or path (default: the photo codec for photos, the "
                                           "small-image model for small images).")] = None,
    quality: Annotated[int | None, opt.quality("Quality level, 1 = smallest file (default: the model's middle).")] = None,
    batch: opt.Batch = 64,
    prior: Annotated[str, typer.Option("--prior", help="auto (the model's context prior if it has one), context, "
                                                       "or static (format version 1).")] = "auto",
    size: Annotated[int | None, typer.Option("--size", min=1, help="Target file size in bytes: per image, the "
                                                                    "largest quality whose file fits.")] = None,
    bpp: Annotated[float | None, typer.Option("--bpp",
                                              help="Target bits per pixel (of the whole file): per image, the largest "
                                                   "quality within it.")] = None,
    psnr: Annotated[float | None, typer.Option("--psnr",
                                               help="Target PSNR in dB: per image, the smallest quality that reaches "
                                                    "it.")] = None,
    metadata: opt.Metadata = "all",
    effort: Annotated[int, typer.Option("--effort", min=0, max=200,
                                        help="Photo codec: refine each image's tokens with this many gradient steps "
                                             "(same decoder, smaller files, far slower encoding: see "
                                             "benchmarks/effort.py; needs torch).")] = 0,
    max_pixels: opt.MaxPixels = DEFAULT_MAX_PIXELS,
    recursive: opt.Recursive = False, threads: opt.Threads = None,
    force: opt.Force = False, quiet: opt.Quiet = False, verbose: opt.Verbose = False,
) -> None:
    """Compress images to .vqz (IMG -> IMG.vqz beside it)."""
    from PIL import Image, UnidentifiedImageError

    from .. import zoo

    goals = [name for name, value in (("--size", size), ("--bpp", bpp), ("--psnr", psnr), ("-Q", quality)) if value is not None]
    if len(goals) > 1:
        fail(f"give one of --size, --bpp, --psnr and -Q, not {' and '.join(goals)}", 2)
    targeted = bool(goals) and goals[0] != "-Q"
    if targeted and min(v for v in (size, bpp, psnr) if v is not None) <= 0:
        fail(f"{goals[0]} must be positive", 2)
    inputs, under, skipped = expand(inputs, recursive, pillow_reads, out_dir)
    dests = targets(inputs, output, out_dir, ".vqz", under)
    try:
        if model is not None:  # else each image's own (vqzip.pick), checked as it comes
            zoo.resolve(model)  # a missing model is named at once; loading it waits for an image
        if effort:
            from ..runtime import requires_torch

            requires_torch("--effort")  # its gradient steps run in torch
    except VqzipError as exc:
        fail(str(exc))
    api: Any = None
    failed = bytes_in = bytes_out = done = 0
    with reporting(quiet), progress(quiet, len(inputs)) as bar:
        task = bar.add_task("encoding", total=len(inputs))
        start = 0
        while start < len(inputs):
            # a chunk: up to --batch images, and past the first only while they hold under api.PASS_PIXELS
            # pixels, so a folder of camera photos is held and coded a few at a time, not 64
            end, held = start, 0
            images: list[tuple[Any, int]] = []
            ok: list[int] = []
            while end < len(inputs) and (api is None or api.has_room(len(ok), held, batch)):
                i, end = end, end + 1
                try:
                    data = read(inputs[i])
                    refuse_clobber(dests[i], force)  # before the work, not only at the write
                    img = _open_image(data, max_pixels)  # the header only: size checked, no pixel decoded
                    if api is None:
                        api = _encoder(model, quality, prior)
                    _load_pixels(img, max_pixels)
                    images.append((img, len(data)))
                    ok.append(i)
                    held += img.width * img.height
                except UnidentifiedImageError:
                    failed += 1
                    error(f"{inputs[i]}: not an image Pillow can read")
                except Failure as exc:
                    failed += 1
                    error(exc)
                except (VqzipError, OSError, Image.DecompressionBombError, ValueError) as exc:
                    failed += 1
                    error(f"{inputs[i]}: {exc}")
            pictures: list[Image.Image] = [img for img, _ in images]
            chunk, start = range(start, end), end
            if not pictures:
                bar.advance(task, len(chunk))
                continue
            coded: dict[int, tuple[Any, str, int]] = {}  # (Encoded, model, quality) per picture
            jobs = _jobs(pictures, model, quality, targeted, prior, [inputs[i] for i in ok])
            failed += len(pictures) - sum(map(len, jobs.values()))  # pictures whose -Q no rung has
            for rung, idx in jobs.items():
                part = [pictures[j] for j in idx]
                try:
                    if targeted:
                        results = api.compress_to_target(part, model, size=size, bpp=bpp, psnr=psnr, batch=batch,
                                                         prior=prior, metadata=metadata, names=[inputs[ok[j]] for j in idx])
                        coded.update((j, (r.encoded, r.model, r.quality)) for j, r in zip(idx, results))
                    else:
                        gm = api.load_model(rung[0])
                        qg = api.resolve_quality(gm, rung[1])
                        encs = api.compress_images(part, gm, qg, batch=batch, prior=prior, metadata=metadata, effort=effort,
                                                   max_pixels=max_pixels)
                        coded.update((j, (e, gm.name, qg)) for j, e in zip(idx, encs))
                except VqzipError as exc:
                    failed += len(idx)
                    for j in idx:
                        error(f"{inputs[ok[j]]}: {exc}")
            for j, (i, (img, n_in)) in enumerate(zip(ok, images)):
                if j not in coded:
                    continue
                enc, used, qi = coded[j]
                try:
                    if out_dir is not None:
                        make_parent(dests[i])
                    emit(dests[i], enc.data, force)
                except DiskFull as exc:
                    fail(f"{exc}; stopped: {done} of {len(inputs)} files written")
                except Failure as exc:
                    failed += 1
                    error(exc)
                    continue
                done += 1
                bytes_in, bytes_out = bytes_in + n_in, bytes_out + len(enc.data)
                if verbose:
                    bits = 8 * len(enc.data) / (img.width * img.height)
                    err.print(f"{inputs[i]} -> {dests[i]}: {n_in:,} -> {len(enc.data):,} bytes ({bits:.3f} bpp), "
                              f"model {used} quality {qi}", soft_wrap=True)
            bar.advance(task, len(chunk))
    summary("encoded", done, failed, bytes_in, bytes_out, quiet, skipped)
    if failed:
        raise typer.Exit(1)


def _jobs(pictures: list[Any], model: str | None, quality: int | None, targeted: bool, prior: str,
          names: list[str]) -> dict[tuple[str | None, int | None], list[int]]:
    """The pictures per (model, quality) to code them at: -m's at -Q, or without -m each picture's rung
    at -Q (vqzip.pick; with a target, the search picks the rung: one job). A picture whose ladder has
    no rung -Q gets its one-line error here and no job."""
    if model is not None or targeted:
        return {(model, quality): list(range(len(pictures)))}
    from ..pick import pick

    jobs: dict[tuple[str | None, int | None], list[int]] = {}
    for j, img in enumerate(pictures):
        try:
            rung = pick(img.width, img.height, quality, prior)
        except VqzipError as exc:
            error(f"{names[j]}: {exc}")
            continue
        jobs.setdefault(rung, []).append(j)
    return jobs


def _encoder(model: str | None, quality: int | None, prior: str) -> Any:
    """vqzip.api (numpy and the runtime), imported once an image needs it, with the model -m names checked against
    -Q and --prior (a bad one ends the run); without -m each image's model is checked as it comes."""
    from .. import api

    if model is not None:
        try:
            m = api.load_model(model)
            api.resolve_quality(m, quality)
            api.format_version(m, prior)
        except VqzipError as exc:
            fail(str(exc))
    return api


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
    recursive: opt.Recursive = False, batch: opt.Batch = 64, threads: opt.Threads = None,
    force: opt.Force = False, quiet: opt.Quiet = False, verbose: opt.Verbose = False,
) -> None:
    """Decompress .vqz files to images (IMG.vqz -> IMG.png beside it)."""
    from .. import api
    from ..coding.container import parse_header

    inputs, under, skipped = expand(inputs, recursive, vqz_file, out_dir)
    dests = targets(inputs, output, out_dir, ".png", under)
    failed = bytes_in = bytes_out = done = 0
    with reporting(quiet), progress(quiet, len(inputs)) as bar:
        task = bar.add_task("decoding", total=len(inputs))
        start = 0
        while start < len(inputs):
            # a chunk decoded together: up to --batch files, past the first only while their headers
            # claim under api.PASS_PIXELS pixels (small images share network passes, photos go one by one)
            end, held = start, 0
            ready: list[tuple[int, bytes]] = []
            while end < len(inputs) and api.has_room(len(ready), held, batch):
                i, end = end, end + 1
                try:
                    data = read(inputs[i])
                    refuse_clobber(dests[i], force)
                    header, _ = parse_header(data)
                    ready.append((i, data))
                    held += header.width * header.height
                except (Failure, VqzipError) as exc:
                    failed += 1
                    error(f"{exc if isinstance(exc, Failure) else f'{inputs[i]}: {exc}'}")
            for i, data, img in _decoded(ready, model, max_pixels):
                name, target = inputs[i], dests[i]
                try:
                    if isinstance(img, VqzipError):
                        raise img
                    fmt = _save_format(target)
                    if fmt is None:
                        raise Failure(f"{target}: unknown image format {Path(target).suffix!r}; use e.g. .png")
                    buf = io.BytesIO()
                    kept = {k: img.info[k] for k in ("icc_profile", "exif") if img.info.get(k)}  # the file's metadata
                    flat = img.convert("RGB") if fmt == "JPEG" and img.mode in ("RGBA", "LA") else img
                    try:
                        flat.save(buf, format=fmt, **SAVE_OPTIONS.get(fmt, {}), **kept)
                    except (OSError, ValueError, KeyError) as exc:
                        raise Failure(f"{target}: cannot save as {fmt} ({exc})") from None
                    if out_dir is not None:
                        make_parent(target)
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
            bar.advance(task, end - start)
            start = end
    summary("decoded", done, failed, bytes_in, bytes_out, quiet, skipped)
    if failed:
        raise typer.Exit(1)


def _decoded(ready: list[tuple[int, bytes]], model: str | None,
             max_pixels: int) -> list[tuple[int, bytes, Any]]:
    """(index, file, image or its VqzipError) of each file: decoded together (same-size files share
    network passes), or one by one when any of them is refused, so each refusal names its own file."""
    from .. import api

    try:
        return [(i, data, img) for (i, data), img in zip(ready, api.decompress_images([d for _, d in ready], model,
                                                                                         max_pixels))]
    except VqzipError:
        pass
    out: list[tuple[int, bytes, Any]] = []
    for i, data in ready:
        try:
            out.append((i, data, api.decompress(data, model, max_pixels)))
        except VqzipError as exc:
            out.append((i, data, exc))
    return out


CODINGS = {1: "static tables", 2: "context prior", 3: "hyperprior", 4: "hyperprior in slices",  # each version's coding
           5: "hyperprior in checkerboard slices", 6: "hyperprior block by block",
           7: "hyperprior in checkerboard slices, fine tables", 8: "hyperprior block by block, fine tables",
           9: "hyperprior in checkerboard slices, fine tables, mean-shifted tokens"}


def info(inputs: opt.Inputs, as_json: opt.Json = False) -> None:
    """Show what a .vqz file holds: model, size, mode, quality, bytes and bits per pixel."""
    from .. import zoo
    from ..coding import container
    from ..errors import ModelNotFound

    failed, records = 0, []
    for name in inputs:
        try:
            data = read(name)
            header, _ = container.parse_header(data)
            try:
                path = zoo.find_by_id(header.model_id)
                f = container.parse(data, zoo.checksum_key(path, header.version))
                model, payload = path.name[: -len(zoo.SUFFIX)], len(f.payload)
                overhead, meta = f.overhead, container.unpack_metadata(f.metadata)
            except ModelNotFound:
                model, payload, overhead, meta = None, None, None, None
        except (Failure, VqzipError) as exc:
            failed += 1
            error(f"{exc if isinstance(exc, Failure) else f'{name}: {exc}'}")
            continue
        records.append({
            "file": name, "model": model, "model_id": f"{header.model_id:04x}", "width": header.width,
            "height": header.height, "mode": header.mode, "quality": header.quality, "version": header.version,
            "coding": CODINGS.get(header.version, f"version {header.version}"), "bytes": len(data),
            "payload_bytes": payload, "overhead_bytes": overhead,
            "bits_per_pixel": 8 * len(data) / (header.width * header.height), "checksum": "ok" if model else None,
            "metadata": None if meta is None else {"icc_bytes": len(meta.icc), "exif_bytes": len(meta.exif)},
            "has_metadata": header.has_metadata,
        })
        if not as_json:
            _print_info(records[-1], meta)
    if as_json:
        print_json(records)
    if failed:
        raise typer.Exit(1)


def _print_info(r: dict[str, Any], meta: Metadata | None) -> None:
    payload = f" = {r['overhead_bytes']} header/alpha/metadata/checksum + {r['payload_bytes']:,} payload"
    out.print(f"[bold]{r['file']}[/]")
    out.print(f"  model      {r['model'] or 'not installed'} (id {r['model_id']})")
    out.print(f"  image      {r['width']}x{r['height']} {r['mode']}, quality {r['quality']}")
    out.print(f"  format     version {r['version']} ({r['coding']})")
    out.print(f"  bytes      {r['bytes']:,} total" + (payload if r["payload_bytes"] is not None else ""))
    out.print(f"  bits/pixel {r['bits_per_pixel']:.4f}")
    out.print(f"  metadata   {_describe(meta, r['has_metadata'])}")
    out.print(f"  checksum   {r['checksum'] or 'not checked (needs the model)'}")


def _describe(meta: Metadata | None, present: bool) -> str:
    """The metadata line of `info`: what the section holds, or that it is there unread (no model to check it)."""
    if meta is None:
        return "present (not read: needs the model)" if present else "none"
    parts = [f"{what} {len(value):,} bytes" for what, value in (("ICC profile", meta.icc), ("EXIF", meta.exif)) if value]
    return ", ".join(parts) or "none"


def models(as_json: opt.Json = False) -> None:
    """List the installed models with their measured bits and PSNR per quality."""
    from rich.table import Table

    from .. import zoo

    names = zoo.available_models()
    if not names:
        fail("no models installed")
    records = []
    for name in names:
        path = zoo.resolve(name)
        card = zoo.read_card(path)
        static = {r["quality"]: r["static_bytes"]
                  for r in card.get("context_prior", {}).get("results", {}).get("per_quality", [])}
        rows = [{k: row.get(k) for k in ("quality", "levels", "bytes", "bpp", "psnr", "msssim")} |
                ({"static_bytes": static[row["quality"]]} if row["quality"] in static else {})
                for row in card.get("results", {}).get("per_quality", [])]
        records.append({"name": name, "model_id": f"{zoo.model_id(path):04x}", "path": str(path),
                        "quantizer": card.get("quantizer"), "kind": card.get("kind", "tokens"), "summary": card.get("summary"),
                        "qualities": card.get("qualities", len(rows) or None), "default_quality": card.get("default_quality"),
                        "vocab_sizes": card.get("vocab_sizes"), "context_prior": zoo.prior_path(path).is_file(),
                        "dataset": card.get("results", {}).get("dataset"), "per_quality": rows})
        if as_json:
            continue
        kind = card.get("quantizer") or card.get("kind", "?")
        title = f"{name}  (id {zoo.model_id(path):04x}, {kind}, {card.get('summary', '')})"
        table = Table(title=title, title_justify="left")
        msssim = any(r.get("msssim") is not None for r in rows)
        for col in ("quality", "levels", "bytes/image", "bits/pixel", "PSNR dB") + (("MS-SSIM",) if msssim else ()) + \
                (("static tables",) if static else ()):
            table.add_column(col, justify="right")
        for row in card.get("results", {}).get("per_quality", []):
            extra = ([f"{row['msssim']:.4f}"] if msssim else []) + ([f"{static[row['quality']]:.1f}"] if static else [])
            table.add_row(str(row["quality"]), str(row.get("levels", "-")), f"{row['bytes']:.1f}", f"{row['bpp']:.3f}",
                          f"{row['psnr']:.2f}", *extra)
        out.print(table)
        if card.get("results"):
            out.print(f"  measured on {card['results'].get('dataset', '?')}; default quality {card.get('default_quality', '?')}")
    if as_json:
        print_json(records)
    else:
        from ..pick import describe

        out.print(describe(), soft_wrap=True)


def verify(
    inputs: opt.Inputs,
    model: Annotated[str | None, opt.model("Decode with this model (default: the one each file names).")] = None,
    recursive: opt.Recursive = False, threads: opt.Threads = None, quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Check that .vqz files decode (header, checksum, payload, pixels), writing nothing (like zstd -t)."""
    from .. import api

    inputs, _, skipped = expand(inputs, recursive, vqz_file)
    done = failed = 0
    with reporting(quiet), progress(quiet, len(inputs)) as bar:
        task = bar.add_task("verifying", total=len(inputs))
        for name in inputs:
            try:
                img = api.decompress(read(name), model)
            except (Failure, VqzipError) as exc:
                failed += 1
                error(f"{exc if isinstance(exc, Failure) else f'{name}: {exc}'}")
            else:
                done += 1
                if verbose:
                    err.print(f"{name}: ok ({img.width}x{img.height} {img.mode})", markup=False)
            bar.advance(task)
    if not quiet and (done or failed or skipped):
        err.print(f"verified {done} file{'s' * (done != 1)}" + (f", {skipped} skipped" if skipped else "") +
                  (f", {failed} failed" if failed else ": all ok"))
    if failed:
        raise typer.Exit(1)
