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
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer

from .. import __version__
from . import bench, codec, tokens, train
from .console import error, out
from .files import Interrupted, handle_signals

HELP = "Compress images into .vqz files with a learned discrete-token codec, and back."


def _version(value: bool) -> None:
    if value:
        out.print(f"vqzip {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """vqzip: learned image compression."""


# The commands, in the order `vqzip --help` lists them.
COMMANDS: dict[str, Callable[..., Any]] = {
    "encode": codec.encode, "decode": codec.decode, "info": codec.info, "models": codec.models, "verify": codec.verify,
    "tokens": tokens.tokens, "detokenize": tokens.detokenize, "bench": bench.bench, "demo": bench.demo,
    "train": train.train, "train-prior": train.train_prior, "export-onnx": train.export_onnx}


def build_app(names: Iterable[str] = tuple(COMMANDS)) -> typer.Typer:
    """The typer app with these commands. `vqzip X` builds only X's: typer turns every command's
    signature into click options at each start (tens of milliseconds for all twelve, a few for one),
    and the root callback keeps it a group, so `vqzip X ...` parses as with all of them."""
    a = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=HELP)
    a.callback()(_root)
    for name in names:
        a.command(name)(COMMANDS[name])
    return a


app = build_app()


def main() -> None:
    """The console script `vqzip` (and `python -m vqzip`). SIGINT and SIGTERM end it with one line
    and exit code 128 + the signal (130, 143); outputs finished before are complete, and none is
    left half-written (see files.py)."""
    handle_signals()
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        (build_app([name]) if name in COMMANDS else app)()
    except Interrupted as exc:
        error(f"interrupted by {exc.name}; the outputs written so far are complete")
        sys.exit(128 + exc.signum)
