"""The `vqzip` command: one typer app, its commands grouped by what they work on.

    codec.py    encode, decode, info, models, verify   files in, files out
    tokens.py   tokens, detokenize                     token grids for ML work (sharded under torchrun)
    bench.py    bench, demo                            vqzip against other codecs
    train.py    train, train-prior, export-onnx        making models

Options that several commands take are declared once in `options.py`; what the commands print (one-line
errors, warnings, progress) is in `console.py`; file naming and overwrite rules are in `files.py`, and
`-r` (folders as inputs, mirrored under -O) in `walk.py`.
Codec logic lives in vqzip.api. Heavy modules (torch) are imported inside the commands that need them,
so `vqzip --help` and `vqzip --version` answer at once.
"""
from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import __version__
from . import bench, codec, tokens, train
from .console import error, out
from .files import Interrupted, handle_signals

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compress images into .vqz files with a learned discrete-token codec, and back.")


def _version(value: bool) -> None:
    if value:
        out.print(f"vqzip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """vqzip: learned image compression."""


# The commands, in the order `vqzip --help` lists them.
app.command()(codec.encode)
app.command()(codec.decode)
app.command()(codec.info)
app.command()(codec.models)
app.command()(codec.verify)
app.command()(tokens.tokens)
app.command()(tokens.detokenize)
app.command()(bench.bench)
app.command()(bench.demo)
app.command()(train.train)
app.command("train-prior")(train.train_prior)
app.command("export-onnx")(train.export_onnx)


def main() -> None:
    """The console script `vqzip` (and `python -m vqzip`). SIGINT and SIGTERM end it with one line
    and exit code 128 + the signal (130, 143); outputs finished before are complete, and none is
    left half-written (see files.py)."""
    handle_signals()
    try:
        app()
    except Interrupted as exc:
        error(f"interrupted by {exc.name}; the outputs written so far are complete")
        sys.exit(128 + exc.signum)
