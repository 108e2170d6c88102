"""Arguments and options that several commands take, declared once (typer's `Annotated` form).

A command writes `force: opt.Force = False`: the flags and help live here, the default stays in the
command's signature (so `--epochs` can default to 10 for `train` and 4 for `train-prior`). Where an
option means something slightly different per command (what `-m` or `--data` names there), a function
below gives the same flags with that command's help.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..coding.container import DEFAULT_MAX_PIXELS, MAX_PIXELS

# --- files in, files out (encode, decode, info) ---------------------------------------------------------

Inputs = Annotated[list[str], typer.Argument(help="Input files; '-' reads standard input.", show_default=False)]
OutDir = Annotated[Path | None, typer.Option("-O", "--out-dir", help="Folder for the outputs of many inputs.")]
Force = Annotated[bool, typer.Option("-f", "--force", help="Overwrite existing output files.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Print errors only.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Print one line per file.")]
MaxPixels = Annotated[int, typer.Option(
    "--max-pixels", min=1, max=MAX_PIXELS,
    help=f"Refuse images of more pixels, before decoding any (default {DEFAULT_MAX_PIXELS:,}; "
         f"the format's limit is {MAX_PIXELS:,}).")]


def output(help: str) -> Any:
    """-o / --output: one output file."""
    return typer.Option("-o", "--output", help=help)


def out(help: str) -> Any:
    """--out: where a command that makes several files puts them."""
    return typer.Option("--out", help=help)


def model(help: str) -> Any:
    """-m / --model: a model name or path."""
    return typer.Option("--model", "-m", help=help)


def data(help: str) -> Any:
    """--data: the folder holding the data sets."""
    return typer.Option("--data", help=help)


def limit(help: str) -> Any:
    """--limit: the first N images only."""
    return typer.Option("--limit", min=1, help=help)


# --- training (train, train-prior) ------------------------------------------------------------------------

TrainData = Annotated[Path | None, data("Folder holding CIFAR-10 (default: $VQZIP_DATA, the cache, or download).")]
TrainLimit = Annotated[int | None, limit("Train on the first N images only.")]
Epochs = Annotated[int, typer.Option("--epochs", min=1)]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1)]
Lr = Annotated[float, typer.Option("--lr")]
Seed = Annotated[int, typer.Option("--seed")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
Crop = Annotated[int, typer.Option("--crop", help="Crop size for photo folders.")]


def crops(help: str) -> Any:
    """--crops: how many random crops of a photo folder to train on."""
    return typer.Option("--crops", help=help)


def resume(help: str) -> Any:
    """--resume: continue from the command's checkpoint."""
    return typer.Option("--resume", help=help)


def evaluate(help: str) -> Any:
    """--evaluate/--no-evaluate: measure real files into the model card when done."""
    return typer.Option("--evaluate/--no-evaluate", help=help)
