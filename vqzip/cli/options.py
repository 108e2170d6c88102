"""Arguments and options that several commands take, declared once (typer's `Annotated` form).

A command writes `force: opt.Force = False`: the flags and help live here, the default stays in the
command's signature (so `--epochs` can default to 10 for `train` and 4 for `train-prior`). Where an
option means something slightly different per command (what `-m` or `--data` names there), a function
below gives the same flags with that command's help.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from ..coding.container import DEFAULT_MAX_PIXELS, MAX_PIXELS

# --- files in, files out (encode, decode, info) ---------------------------------------------------------

Inputs = Annotated[list[str], typer.Argument(help="Input files; '-' reads standard input.", show_default=False)]
OutDir = Annotated[Path | None, typer.Option("-O", "--out-dir",
                                              help="Folder for the outputs of many inputs (created if missing).")]
Recursive = Annotated[bool, typer.Option("-r", "--recursive",
                                         help="Take folders: every file beneath them that this command reads; the "
                                              "rest is counted as skipped. -O DIR mirrors the tree; without -O each "
                                              "output goes beside its input.")]
Force = Annotated[bool, typer.Option("-f", "--force", help="Overwrite existing output files.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Print errors only.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Print one line per file.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (a list, one object per item) instead of text.")]
Metadata = Annotated[Literal["all", "icc", "exif", "none"],
                     typer.Option("--metadata", help="What to keep of each image's metadata (its ICC colour profile, its "
                                                     "EXIF): written back on decode. The EXIF orientation is applied "
                                                     "to the pixels whatever this says.")]


Batch = Annotated[int, typer.Option("--batch", help="Images per network pass.", min=1)]


def all_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def apply_threads(n: int | None) -> int:
    """Use `n` threads (None: $OMP_NUM_THREADS where set, as torchrun sets it, else all cores): the
    OpenMP / BLAS variables, which numpy's BLAS reads when it is first imported (the commands import it
    after this runs), ONNX Runtime's sessions and, where loaded, torch.set_num_threads. Returns the number."""
    from ..runtime import THREAD_VARS, set_threads

    if n is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        n = int(env) if env.isdigit() and int(env) > 0 else all_cores()
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    set_threads(n)
    if sys.modules.get("torch") is not None:  # else a command that imports torch later gives it the same number
        sys.modules["torch"].set_num_threads(n)
    return n


def _threads(value: int | None) -> int | None:
    apply_threads(value)
    return value


Threads = Annotated[int | None, typer.Option("-j", "--threads", min=1, callback=_threads, show_default=False,
                                             help="Threads for the networks and numpy (default: $OMP_NUM_THREADS if set, "
                                                  "else all cores).")]


def quality(help: str) -> Any:
    """-Q / --quality: a quality level of the model."""
    return typer.Option("--quality", "-Q", help=help)
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
