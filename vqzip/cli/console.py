"""What the commands print: the two consoles, one-line errors, library warnings, progress and summaries."""
from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


class Failure(Exception):
    """A per-file failure: reported as one line, the run goes on, the exit code becomes 1."""


def error(message: object) -> None:
    """One line on stderr, never wrapped (scripts grep it), markup in the message left alone."""
    err.print("[bold red]error:[/] ", end="")
    err.print(str(message), markup=False, soft_wrap=True)


def one_line(exc: BaseException) -> str:
    """A multi-line library message (e.g. where CIFAR-10 was looked for) folded onto one line."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit with `code` (1: the work failed, 2: the command line is wrong)."""
    error(message)
    raise typer.Exit(code)


@contextmanager
def reporting(quiet: bool) -> Iterator[None]:
    """Show the library's warnings (conversions, unreachable targets) as yellow one-liners, never
    wrapped (unless quiet)."""
    from ..errors import VqzipWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VqzipWarning)
        yield
    for w in caught:
        if issubclass(w.category, VqzipWarning) and not quiet:
            err.print("[yellow]warning:[/] ", end="")
            err.print(str(w.message), markup=False, soft_wrap=True)


def progress(quiet: bool, total: int) -> Progress:
    """A bar over files on stderr, shown for two files or more."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, disable=quiet or total < 2, transient=True)


def summary(verb: str, n: int, failed: int, bytes_in: int, bytes_out: int, quiet: bool, skipped: int = 0) -> None:
    """The closing line of encode / decode: files done, skipped (-r: not for this command) and failed,
    bytes in and out."""
    if quiet or (n == 0 and not skipped):
        return
    ratio = f"{bytes_in / bytes_out:.1f}x" if bytes_out else "-"
    err.print(f"{verb} {n} file{'s' * (n != 1)}" + (f", {skipped} skipped" if skipped else "") +
              (f", {failed} failed" if failed else "") + f": {bytes_in:,} bytes in, {bytes_out:,} bytes out ({ratio})")


def print_json(value: object) -> None:
    """Machine-readable output (--json): plain JSON on stdout, no markup, no wrapping."""
    import json

    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    sys.stdout.flush()
