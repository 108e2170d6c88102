"""Where outputs go and how they are written: '-' for standard input and output, -o / -O naming,
no file overwritten without -f, and every file written whole or not at all.

Whole or not at all, whatever happens: each output is written to a temporary file beside it and
renamed; a write error (a full disk, a file size limit) removes the temporary file; and SIGINT or
SIGTERM that arrive while an output is being written are held until it is renamed (or removed),
then end the run (Interrupted, which the `vqzip` command turns into one line and exit 128 + signal).
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from .console import Failure, fail

STDIO = "-"
_UMASK = os.umask(0)
os.umask(_UMASK)
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no later output would fit either: stop the run


class DiskFull(Failure):
    """An output did not fit (no space, quota, file size limit): the run stops here."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM. A BaseException, like KeyboardInterrupt, so that no `except Exception`
    swallows it; not a KeyboardInterrupt, so that it reaches vqzip.cli.main with its signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


_held: list[int] | None = None  # signals that arrived while an output was being written


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _held is not None:
        _held.append(signum)
        return
    raise Interrupted(signum)


def handle_signals() -> None:
    """SIGINT and SIGTERM raise Interrupted (held while an output is written); SIGXFSZ is ignored,
    so that a write past the file size limit (ulimit -f) fails with EFBIG instead of killing the
    process with a temporary file left behind."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold SIGINT / SIGTERM for the duration; raise Interrupted for the first that came, after."""
    global _held
    outer, _held = _held, ([] if _held is None else _held)
    try:
        yield
    finally:
        held, _held = _held, outer
        if outer is None and held:
            raise Interrupted(held[0])


def read(path: str) -> bytes:
    """The bytes of a file, or of standard input for '-'."""
    if path == STDIO:
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise Failure(f"{path}: is a directory") from None
    except OSError as exc:
        raise Failure(f"{path}: cannot read ({exc.strerror})") from None


def refuse_clobber(target: Path | str, force: bool) -> None:
    if str(target) != STDIO and Path(target).exists() and not force:
        raise Failure(f"{target} exists; use -f to overwrite it, or -o to choose another name")


def _write_error(path: Path, exc: OSError) -> Failure:
    kind = DiskFull if exc.errno in FULL else Failure
    return kind(f"cannot write {path}: {exc.strerror or exc}")


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write via a temporary file in the same folder, then rename: never a half-written or clobbered
    file, nor a temporary one left behind (signals wait until the file is renamed or removed)."""
    refuse_clobber(path, force)
    with _uninterrupted():
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or Path("."))
        except OSError as exc:
            raise _write_error(path, exc) from None
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _write_error(path, exc) from None
            raise


def emit(target: Path | str, data: bytes, force: bool) -> None:
    """Write to standard output for '-', else atomically to the file."""
    if str(target) == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomic(Path(target), data, force)


def targets(inputs: list[str], output: str | None, out_dir: Path | None, suffix: str,
            under: list[Path] | None = None) -> list[Path | str]:
    """Where each input's result goes: -o for one input, -O DIR for many (in the sub-folder `under[i]`
    of it, mirroring a tree; DIR is created on the first write, as `mkdir -p` would), else beside the input."""
    if output and len(inputs) > 1:
        fail("-o names one output; use -O DIR for several inputs", 2)
    if output and out_dir:
        fail("use either -o or -O, not both", 2)
    if out_dir and out_dir.exists() and not out_dir.is_dir():
        fail(f"{out_dir} is not a folder", 2)
    if output:
        return [output if output == STDIO else Path(output)]
    result: list[Path | str] = []
    for i, name in enumerate(inputs):
        if name == STDIO:
            result.append(STDIO if out_dir is None else out_dir / f"stdin{suffix}")
            continue
        p = Path(name)
        folder = p.parent if out_dir is None else out_dir / under[i] if under else out_dir
        result.append(folder / (p.stem + suffix))
    if len(set(map(str, result))) < len(result):
        fail("two inputs would write the same output file; use -O DIR or rename them", 2)
    return result
