"""The `vqzip` command: argument parsing, file naming, overwrite rules, exit codes, rich output.

Codec logic lives in vqzip.api; heavy modules (torch) are imported inside the commands that need them,
so `vqzip --help` and `vqzip --version` answer at once.
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console

from . import __version__
from .errors import VqzipError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compress images into .vqz files with a learned discrete-token codec, and back.")
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)
STDIO = "-"
_UMASK = os.umask(0)
os.umask(_UMASK)


class Failure(Exception):
    """A per-file failure: reported as one line, the run goes on, the exit code becomes 1."""


def _error(message: object) -> None:
    """One line on stderr, never wrapped (scripts grep it), markup in the message left alone."""
    err.print("[bold red]error:[/] ", end="")
    err.print(str(message), markup=False, soft_wrap=True)


def _one_line(exc: BaseException) -> str:
    """A multi-line library message (e.g. where CIFAR-10 was looked for) folded onto one line."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def _fail(message: str, code: int = 1) -> None:
    _error(message)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        out.print(f"vqzip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit.")) -> None:
    """vqzip: learned image compression."""


# --- file helpers ----------------------------------------------------------------------------------

def _read(path: str) -> bytes:
    if path == STDIO:
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise Failure(f"{path}: is a directory") from None
    except OSError as exc:
        raise Failure(f"{path}: cannot read ({exc.strerror})") from None


def _refuse_clobber(target: Path | str, force: bool) -> None:
    if str(target) != STDIO and Path(target).exists() and not force:
        raise Failure(f"{target} exists; use -f to overwrite it, or -o to choose another name")


def _write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write via a temporary file in the same folder, then rename: never a half-written or clobbered file."""
    _refuse_clobber(path, force)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or Path("."))
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise Failure(f"cannot write {path}: {exc.strerror}") from None


def _emit(target: Path | str, data: bytes, force: bool) -> None:
    if str(target) == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        _write_atomic(Path(target), data, force)


def _targets(inputs: List[str], output: Optional[str], out_dir: Optional[Path], suffix: str) -> list[Path | str]:
    """Where each input's result goes: -o for one input, -O DIR for many, else beside the input."""
    if output and len(inputs) > 1:
        _fail("-o names one output; use -O DIR for several inputs", 2)
    if output and out_dir:
        _fail("use either -o or -O, not both", 2)
    if out_dir and not out_dir.is_dir():
        _fail(f"{out_dir} is not a folder", 2)
    if output:
        return [output if output == STDIO else Path(output)]
    result: list[Path | str] = []
    for name in inputs:
        if name == STDIO:
            result.append(STDIO if out_dir is None else out_dir / f"stdin{suffix}")
            continue
        p = Path(name)
        result.append((out_dir or p.parent) / (p.stem + suffix))
    if len(set(map(str, result))) < len(result):
        _fail("two inputs would write the same output file; use -O DIR or rename them", 2)
    return result


@contextmanager
def _reporting(quiet: bool) -> Iterator[None]:
    """Show the library's conversion warnings as yellow one-liners (unless quiet)."""
    from .errors import VqzipWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VqzipWarning)
        yield
    for w in caught:
        if issubclass(w.category, VqzipWarning) and not quiet:
            err.print(f"[yellow]warning:[/] {w.message}")


def _progress(quiet: bool, total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, disable=quiet or total < 2, transient=True)


def _summary(verb: str, n: int, failed: int, bytes_in: int, bytes_out: int, quiet: bool) -> None:
    if quiet or n == 0:
        return
    ratio = f"{bytes_in / bytes_out:.1f}x" if bytes_out else "-"
    err.print(f"{verb} {n} file{'s' * (n != 1)}" + (f", {failed} failed" if failed else "") +
              f": {bytes_in:,} bytes in, {bytes_out:,} bytes out ({ratio})")


# --- commands ----------------------------------------------------------------------------------------

Inputs = typer.Argument(..., help="Input files; '-' reads standard input.", show_default=False)
Force = typer.Option(False, "-f", "--force", help="Overwrite existing output files.")
Quiet = typer.Option(False, "-q", "--quiet", help="Print errors only.")
Verbose = typer.Option(False, "-v", "--verbose", help="Print one line per file.")
OutDir = typer.Option(None, "-O", "--out-dir", help="Folder for the outputs of many inputs.")


@app.command()
def encode(
    inputs: List[str] = Inputs,
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Output file for a single input ('-' = stdout)."),
    out_dir: Optional[Path] = OutDir,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name or path (default: the shipped default)."),
    quality: Optional[int] = typer.Option(None, "--quality", "-Q", help="Quality level, 1 = smallest file (default: the model's middle)."),
    batch: int = typer.Option(64, "--batch", help="Images per network pass.", min=1),
    prior: str = typer.Option("auto", "--prior", help="auto (the model's context prior if it has one), context, or static (format version 1)."),
    force: bool = Force, quiet: bool = Quiet, verbose: bool = Verbose,
) -> None:
    """Compress images to .vqz (IMG -> IMG.vqz beside it)."""
    from PIL import Image, UnidentifiedImageError

    from . import api
    from .coding.container import check_size

    targets = _targets(inputs, output, out_dir, ".vqz")
    try:
        m = api.load_model(model)
        api.resolve_quality(m, quality)
        api.format_version(m, prior)
    except VqzipError as exc:
        _fail(str(exc))
    failed = bytes_in = bytes_out = done = 0
    with _reporting(quiet), _progress(quiet, len(inputs)) as bar:
        task = bar.add_task("encoding", total=len(inputs))
        for start in range(0, len(inputs), batch):
            chunk = list(range(start, min(start + batch, len(inputs))))
            images, ok = [], []
            for i in chunk:
                try:
                    data = _read(inputs[i])
                    _refuse_clobber(targets[i], force)  # before the work, not only at the write
                    img = Image.open(io.BytesIO(data))
                    img.load()
                    check_size(img.width, img.height)
                    images.append((img, len(data)))
                    ok.append(i)
                except UnidentifiedImageError:
                    failed += 1
                    _error(f"{inputs[i]}: not an image Pillow can read")
                except Failure as exc:
                    failed += 1
                    _error(exc)
                except (VqzipError, OSError, Image.DecompressionBombError, ValueError) as exc:
                    failed += 1
                    _error(f"{inputs[i]}: {exc}")
            encoded = api.compress_images([img for img, _ in images], m, quality, batch=batch, prior=prior)
            for i, (img, size), enc in zip(ok, images, encoded):
                try:
                    _emit(targets[i], enc.data, force)
                except Failure as exc:
                    failed += 1
                    _error(exc)
                    continue
                done += 1
                bytes_in, bytes_out = bytes_in + size, bytes_out + len(enc.data)
                if verbose:
                    err.print(f"{inputs[i]} -> {targets[i]}: {size:,} -> {len(enc.data):,} bytes "
                              f"({8 * len(enc.data) / (img.width * img.height):.3f} bpp)")
            bar.advance(task, len(chunk))
    _summary("encoded", done, failed, bytes_in, bytes_out, quiet)
    if failed:
        raise typer.Exit(1)


@app.command()
def decode(
    inputs: List[str] = Inputs,
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Output file for a single input; its extension picks the format ('-' = PNG to stdout)."),
    out_dir: Optional[Path] = OutDir,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Decode with this model (default: the one the file names)."),
    force: bool = Force, quiet: bool = Quiet, verbose: bool = Verbose,
) -> None:
    """Decompress .vqz files to images (IMG.vqz -> IMG.png beside it)."""
    from PIL import Image

    from . import api

    targets = _targets(inputs, output, out_dir, ".png")
    failed = bytes_in = bytes_out = done = 0
    with _reporting(quiet), _progress(quiet, len(inputs)) as bar:
        task = bar.add_task("decoding", total=len(inputs))
        for name, target in zip(inputs, targets):
            try:
                data = _read(name)
                _refuse_clobber(target, force)
                img = api.decompress(data, model)
                fmt = "PNG" if str(target) == STDIO else Image.registered_extensions().get(Path(target).suffix.lower())
                if fmt is None:
                    raise Failure(f"{target}: unknown image format {Path(target).suffix!r}; use e.g. .png")
                buf = io.BytesIO()
                try:
                    (img.convert("RGB") if fmt == "JPEG" and img.mode in ("RGBA", "LA") else img).save(buf, format=fmt)
                except (OSError, ValueError, KeyError) as exc:
                    raise Failure(f"{target}: cannot save as {fmt} ({exc})") from None
                _emit(target, buf.getvalue(), force)
            except (Failure, VqzipError) as exc:
                failed += 1
                _error(f"{exc if isinstance(exc, Failure) else f'{name}: {exc}'}")
            else:
                done += 1
                bytes_in, bytes_out = bytes_in + len(data), bytes_out + buf.tell()
                if verbose:
                    err.print(f"{name} -> {target}: {img.width}x{img.height} {img.mode}")
            bar.advance(task)
    _summary("decoded", done, failed, bytes_in, bytes_out, quiet)
    if failed:
        raise typer.Exit(1)


@app.command()
def info(inputs: List[str] = Inputs) -> None:
    """Show what a .vqz file holds: model, size, mode, quality, bytes and bits per pixel."""
    from . import zoo
    from .coding import container
    from .errors import ModelNotFound

    failed = 0
    for name in inputs:
        try:
            data = _read(name)
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
            _error(f"{exc if isinstance(exc, Failure) else f'{name}: {exc}'}")
            continue
        pixels = header.width * header.height
        out.print(f"[bold]{name}[/]")
        out.print(f"  model      {model} (id {header.model_id:04x})")
        out.print(f"  image      {header.width}x{header.height} {header.mode}, quality {header.quality}")
        out.print(f"  format     version {header.version} ({'context prior' if header.version == 2 else 'static tables'})")
        out.print(f"  bytes      {len(data):,} total" + (f" = {overhead} header/alpha/checksum + {payload:,} payload" if payload is not None else ""))
        out.print(f"  bits/pixel {8 * len(data) / pixels:.4f}")
        out.print(f"  checksum   {check}")
    if failed:
        raise typer.Exit(1)


@app.command()
def models() -> None:
    """List the installed models with their measured bits and PSNR per quality."""
    from rich.table import Table

    from . import zoo

    names = zoo.available_models()
    if not names:
        _fail("no models installed")
    for name in names:
        path = zoo.resolve(name)
        card = zoo.read_card(path)
        title = f"{name}  (id {zoo.model_id(path):04x}, {card.get('quantizer', '?')}, {card.get('summary', '')})"
        table = Table(title=title, title_justify="left")
        static = {r["quality"]: r["static_bytes"] for r in card.get("context_prior", {}).get("results", {}).get("per_quality", [])}
        for col in ("quality", "levels", "bytes/image", "bits/pixel", "PSNR dB") + (("static tables",) if static else ()):
            table.add_column(col, justify="right")
        for row in card.get("results", {}).get("per_quality", []):
            extra = (f"{static[row['quality']]:.1f}",) if static else ()
            table.add_row(str(row["quality"]), str(row["levels"]), f"{row['bytes']:.1f}", f"{row['bpp']:.3f}", f"{row['psnr']:.2f}", *extra)
        out.print(table)
        if card.get("results"):
            out.print(f"  measured on {card['results'].get('dataset', '?')}; default quality {card.get('default_quality', '?')}")


def _names(value: Optional[str]) -> Optional[list[str]]:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@app.command()
def bench(
    target: str = typer.Argument(..., help="'cifar10' (the 10,000 test images), 'kodak', a folder of images, "
                                          "or the results.json of an earlier run (prints its tables again)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use only the first N images."),
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated vqzip models (default: all installed)."),
    codecs: Optional[str] = typer.Option(None, "--codecs", help="Comma-separated references: png,jpeg,webp,avif,jxl (default: all)."),
    out_dir: Path = typer.Option(Path("bench-results"), "--out", help="Folder for results.json and rd.png."),
    data: Optional[Path] = typer.Option(None, "--data", help="Folder holding cifar10/ or kodak/ (default: $VQZIP_DATA, the cache)."),
    quiet: bool = Quiet,
) -> None:
    """Bits per image and PSNR of every vqzip model and quality against PNG, JPEG, WebP, AVIF and JPEG XL."""
    from .bench import run_bench
    from .training.data import DataNotFound

    if target.endswith(".json"):
        return _reprint(Path(target))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        run_bench(target, limit=limit, models=_names(models), codecs=_names(codecs), out=out_dir, data=data,
                  quiet=quiet, command="vqzip " + " ".join(sys.argv[1:]))
    except (DataNotFound, ValueError, VqzipError, OSError) as exc:
        _fail(_one_line(exc))


def _reprint(path: Path) -> None:
    """The tables of an earlier bench run, from its results.json (nothing is measured again)."""
    import json

    from .bench.report import print_tables

    try:
        results = json.loads(path.read_text())
        print_tables(results, out)
    except OSError as exc:
        _fail(_one_line(exc))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        _fail(f"{path} is not the results.json of a vqzip bench run ({_one_line(exc)})")


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("vqzip-demo"), "--out", help="Folder for the demo's files."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name or path."),
    cifar: int = typer.Option(1000, "--cifar", min=0, help="CIFAR-10 test images to benchmark (0 skips; needs the data or a network)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Folder holding CIFAR-10."),
    force: bool = Force,
) -> None:
    """Show what vqzip does, offline: the built-in sample photo at every quality against JPEG and WebP,
    then (when CIFAR-10 is at hand or downloadable) a short benchmark."""
    import io as _io
    from importlib import resources

    from PIL import Image
    from rich.table import Table

    from . import api
    from .training.evaluate import against_references

    try:
        m = api.load_model(model)
    except VqzipError as exc:
        _fail(str(exc))
    sample_png = resources.files("vqzip.assets").joinpath("sample.png").read_bytes()
    sample = Image.open(_io.BytesIO(sample_png)).convert("RGB")
    table = Table(title=f"built-in sample, {sample.width}x{sample.height} (model {m.name}); "
                        "reference sizes are the smallest file reaching at least vqzip's PSNR", title_justify="left")
    for col in ("quality", "vqzip bytes", "PSNR dB", "jpeg-420 bytes", "webp bytes"):
        table.add_column(col, justify="right")
    for row in against_references(sample, m, ("jpeg-420", "webp")):
        refs = [f"{row[c]:,}" if row[c] is not None else "not reached" for c in ("jpeg-420", "webp")]
        table.add_row(str(row["quality"]), f"{row['bytes']:,}", f"{row['psnr']:.2f}", *refs)
    out.print(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    default = api.compress(sample, m)
    try:
        _write_atomic(out_dir / "sample.png", sample_png, force)
        _write_atomic(out_dir / "sample.vqz", default, force)
        buf = _io.BytesIO()
        api.decompress(default).save(buf, "PNG")
        _write_atomic(out_dir / "sample-decoded.png", buf.getvalue(), force)
    except Failure as exc:
        _fail(str(exc))
    out.print(f"wrote {out_dir}/sample.png, sample.vqz ({len(default):,} bytes, quality {m.default_quality}) "
              f"and sample-decoded.png; try: vqzip info {out_dir}/sample.vqz")
    if cifar:
        from .bench import run_bench
        from .training.data import DataNotFound, load_cifar10

        try:
            load_cifar10("test", data, download=True)
        except (DataNotFound, OSError, ValueError) as exc:
            out.print(f"CIFAR-10 benchmark skipped: {_one_line(exc)}", soft_wrap=True)
            return
        run_bench("cifar10", limit=cifar, models=[m.name], codecs=["png", "jpeg", "webp"], out=out_dir / "cifar10", data=data)


def _quantizer_args(kind: str, codebook_size: int, levels: int, fsq_levels: str, lfq_bits: int) -> dict:
    """The CLI's few shape options, mapped onto each quantizer's own constructor arguments."""
    if kind == "rvq":
        return {"levels": levels, "codebook_size": codebook_size}
    if kind in ("vq", "simvq"):
        return {"codebook_size": codebook_size}
    if kind == "byte":
        return {"levels": codebook_size}
    if kind == "fsq":
        return {"levels": [int(v) for v in fsq_levels.split(",")]}
    if kind == "lfq":
        return {"bits": lfq_bits}
    _fail(f"unknown quantizer {kind!r}; choose rvq, vq, byte, simvq, fsq or lfq", 2)
    return {}


@app.command()
def train(
    dataset: str = typer.Argument(..., help="'cifar10', or a folder of photos (trained on random crops)."),
    out: Path = typer.Option(..., "--out", help="Output stem: writes OUT.safetensors, OUT.json (and OUT.ckpt while training)."),
    quantizer: str = typer.Option("rvq", "--quantizer", help="rvq, vq, byte, simvq, fsq or lfq."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    lr: float = typer.Option(2e-3, "--lr"),
    data: Optional[Path] = typer.Option(None, "--data", help="Folder holding CIFAR-10 (default: $VQZIP_DATA, the cache, or download)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Train on the first N images only."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT.ckpt."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from this model's weights (name or path; same architecture) to train it further."),
    seed: int = typer.Option(0, "--seed"),
    channels: int = typer.Option(48, "--channels", help="Network width."),
    latent_dim: int = typer.Option(64, "--latent-dim"),
    downsamples: int = typer.Option(2, "--downsamples", help="Latent grid = image / 2**downsamples."),
    codebook_size: int = typer.Option(256, "--codebook-size", help="Codebook size (vq, rvq, simvq) or K (byte)."),
    levels: int = typer.Option(10, "--levels", help="RVQ levels (= quality levels)."),
    fsq_levels: str = typer.Option("8,5,5,5", "--fsq-levels"),
    lfq_bits: int = typer.Option(10, "--lfq-bits"),
    crop: int = typer.Option(64, "--crop", help="Crop size for photo folders."),
    crops: int = typer.Option(20000, "--crops", help="Random crops for photo folders (drawn once from --seed; flipped at random every epoch)."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Measure test-set bytes and PSNR into the model card."),
) -> None:
    """Train a codec and write OUT.safetensors + OUT.json (weights, prior tables, model card)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .codec.model import CodecConfig
    from .training.train import TrainConfig, check_init, export, train as run_training

    qargs = _quantizer_args(quantizer, codebook_size, levels, fsq_levels, lfq_bits)
    train_images, test_images, source, test_source = _training_images(dataset, data, crop, crops, seed)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, limit=limit, init=init,
                      codec=CodecConfig(channels=channels, downsamples=downsamples, latent_dim=latent_dim,
                                        quantizer=quantizer, quantizer_args=qargs))
    if init:  # a bad --init fails here, before any progress output
        try:
            check_init(init, cfg.codec)
        except (RuntimeError, VqzipError) as exc:
            _fail(str(exc))
    columns = [TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
               TextColumn("step {task.completed}/{task.total} loss {task.fields[loss]:.4f} PSNR {task.fields[psnr]:.2f} dB "
                          "util {task.fields[util]:.2f} {task.fields[ips]:.0f} img/s"), TimeElapsedColumn()]
    rank = int(os.environ.get("RANK", "0"))  # under torchrun, rank 0 alone reports and exports
    with Progress(*columns, console=err, disable=rank != 0) as bar:
        task = bar.add_task("train", total=1, epoch=0, epochs=epochs, loss=0.0, psnr=0.0, util=0.0, ips=0.0)

        def on_step(s: dict) -> None:
            bar.update(task, completed=s["step"], total=s["steps"], epoch=s["epoch"], loss=s["loss"], psnr=s["psnr"],
                       util=s["utilisation"], ips=s["images_per_s"])
            if s["step"] == s["steps"] and not err.is_terminal:  # logs get one line per epoch
                err.print(f"epoch {s['epoch']}/{s['epochs']}: loss {s['loss']:.4f} PSNR {s['psnr']:.2f} dB "
                          f"util {s['utilisation']:.2f} {s['images_per_s']:.0f} img/s")

        try:
            model = run_training(train_images, cfg, out.with_suffix(".ckpt"), resume=resume, on_step=on_step)
        except (RuntimeError, VqzipError) as exc:
            _fail(str(exc))
    if rank != 0:
        return
    card = {"summary": f"{quantizer} on {source}", "data": source, "test_data": test_source, "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "seed": seed, "limit": limit,
            "command": "vqzip " + " ".join(sys.argv[1:])}
    if init:  # the chain that made this model: what it started from, and how that was made
        from .zoo import load_model

        start = load_model(init)
        card["init"] = {"model": init, "model_id": f"{start.model_id:04x}", "command": start.card.get("command")}
    err.print("fitting the prior on the training set...")
    measured = test_images if evaluate else None
    with Progress(TextColumn("measuring real .vqz files, every quality"), BarColumn(), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("measure", total=model.qualities * len(measured) if measured is not None else 0)
        card = export(model, train_images[:limit] if limit else train_images, out, card, measured,
                      on_batch=lambda n: bar.advance(task, n))
    err.print(f"wrote {out.with_suffix('.safetensors')} and {out.with_suffix('.json')} (model id {card['model_id']})")


def _training_images(dataset: str, data: Optional[Path], crop: int, crops: int, seed: int):
    """(train images, test images or None, source, test source) for 'cifar10' or a photo folder."""
    import numpy as np

    from .training import data as datasets

    try:
        if dataset == "cifar10":
            train_images, _ = datasets.load_cifar10("train", data, download=True)
            test_images, _ = datasets.load_cifar10("test", data, download=True)
            return train_images, test_images, "CIFAR-10 train (50,000 images)", "CIFAR-10 test (10,000 images)"
        if Path(dataset).is_dir():
            photos = datasets.load_image_folder(Path(dataset))
            crops_ = datasets.random_crops(photos, crop, crops, np.random.default_rng(seed))
            return crops_, None, f"{crops} random {crop}x{crop} crops of {dataset}", None
    except (OSError, ValueError) as exc:
        _fail(_one_line(exc))
    _fail(f"{dataset}: not 'cifar10' and not a folder", 2)


@app.command("train-prior")
def train_prior(
    model: str = typer.Argument(..., help="Model name or path; writes NAME.prior.safetensors beside it and updates NAME.json."),
    dataset: str = typer.Option("cifar10", "--dataset", help="'cifar10', or a folder of photos (random crops): the model's own training data."),
    epochs: int = typer.Option(4, "--epochs", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(3e-3, "--lr"),
    dim: int = typer.Option(64, "--dim", help="Width of the context network, 4..195 (wider integer sums would not be exact).",
                            min=4),
    data: Optional[Path] = typer.Option(None, "--data", help="Folder holding CIFAR-10 (default: $VQZIP_DATA, the cache, or download)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Train on the first N images only."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue from NAME.prior.ckpt."),
    seed: int = typer.Option(0, "--seed"),
    crop: int = typer.Option(256, "--crop", help="Crop size for photo folders."),
    crops: int = typer.Option(2000, "--crops", help="Random crops for photo folders."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Measure test-set bytes with both priors into the model card."),
) -> None:
    """Train a learned context prior for a trained model (format version 2: fewer bytes, same tokens)."""
    import json

    import numpy as np
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from . import zoo
    from .coding.context import MAX_DIM
    from .training.evaluate import measure_priors
    from .training.prior_training import PriorTrainConfig, finished_epochs, model_tokens, train_context

    if dim > MAX_DIM:
        _fail(f"--dim {dim} is too wide: at most {MAX_DIM} keeps the prior's integer sums exact", 2)
    try:
        m = zoo.load_model(model)
    except VqzipError as exc:
        _fail(str(exc))
    train_images, test_images, source, test_source = _training_images(dataset, data, crop, crops, seed)
    if limit:
        train_images = train_images[:limit]
    cfg = PriorTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, dim=dim)
    checkpoint = m.path.with_name(m.name + ".prior.ckpt")
    if resume and finished_epochs(checkpoint) >= epochs:  # only the export and the measurement are left
        tokens = np.zeros((0, m.qualities, 1, 1), np.int16)
    else:
        with Progress(TextColumn("tokens of the training images"), BarColumn(), TimeElapsedColumn(), console=err) as bar:
            task = bar.add_task("tokens", total=len(train_images))
            tokens = model_tokens(m, train_images, on_batch=lambda n: bar.advance(task, n))
    columns = [TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
               TextColumn("step {task.completed}/{task.total} {task.fields[bits]:.3f} bits/token {task.fields[ips]:.0f} img/s"),
               TimeElapsedColumn()]
    rank = int(os.environ.get("RANK", "0"))  # under torchrun, rank 0 alone reports and exports
    with Progress(*columns, console=err, disable=rank != 0) as bar:
        task = bar.add_task("train", total=1, epoch=0, epochs=epochs, bits=0.0, ips=0.0)

        def on_step(s: dict) -> None:
            bar.update(task, completed=s["step"], total=s["steps"], epoch=s["epoch"], bits=s["bits"], ips=s["images_per_s"])
            if s["step"] == s["steps"] and not err.is_terminal:  # logs get one line per epoch
                err.print(f"epoch {s['epoch']}/{s['epochs']}: {s['bits']:.3f} bits/token {s['images_per_s']:.0f} img/s")

        try:
            net = train_context(tokens, max(m.codec.quantizer.vocab_sizes), cfg, checkpoint, resume=resume, on_step=on_step)
        except RuntimeError as exc:
            _fail(str(exc))
    path = zoo.save_context(m.path, net.cfg.to_dict(), net.to_integer())
    card = dict(m.card)
    card["context_prior"] = {
        "file": path.name, "config": net.cfg.to_dict(), "data": source, "epochs": epochs, "batch_size": batch_size,
        "lr": lr, "seed": seed, "limit": limit, "train_seconds": round(net.train_seconds),
        "hardware": f"{_device_name(cfg.device)}", "command": "vqzip " + " ".join(sys.argv[1:])}
    if evaluate and test_images is not None:
        m = zoo.load_model(m.path)
        with Progress(TextColumn("measuring real .vqz files, both priors"), BarColumn(), TimeElapsedColumn(), console=err) as bar:
            task = bar.add_task("measure", total=len(test_images))
            rows = measure_priors(m, test_images, on_batch=lambda n: bar.advance(task, n))
        card["context_prior"]["results"] = {
            "dataset": test_source, "images": len(test_images),
            "method": "the same tokens coded with the static tables (format version 1) and with the context prior "
                      "(version 2): mean size of real .vqz files; the first 500 of each decoded back", "per_quality": rows}
        card["results"] = {**card.get("results", {}), "prior": "context (format version 2)",
                           "per_quality": [{"quality": r["quality"], "levels": r["levels"], "bytes": r["context_bytes"],
                                            "ideal_payload_bytes": r["context_ideal_payload_bytes"], "bpp": r["bpp"],
                                            "psnr": r["psnr"]} for r in rows]}
    tmp = m.path.with_name(m.name + ".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, m.path.with_name(m.name + ".json"))
    err.print(f"wrote {path} and {m.name}.json")


def _device_name(device: str) -> str:
    """What the card records as hardware: the GPU's name, or the CPU and torch's thread count."""
    import platform

    import torch

    from .training.train import pick_device

    d = pick_device(device)
    if d.type == "cuda":
        return torch.cuda.get_device_name(d)
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
