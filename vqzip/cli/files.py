"""Where outputs go and how they are written: '-' for standard input and output, -o / -O naming,
no file overwritten without -f, and every file written whole or not at all."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .console import Failure, fail

STDIO = "-"
_UMASK = os.umask(0)
os.umask(_UMASK)


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


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write via a temporary file in the same folder, then rename: never a half-written or clobbered file."""
    refuse_clobber(path, force)
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
    of it, mirroring a tree), else beside the input."""
    if output and len(inputs) > 1:
        fail("-o names one output; use -O DIR for several inputs", 2)
    if output and out_dir:
        fail("use either -o or -O, not both", 2)
    if out_dir and not out_dir.is_dir():
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
