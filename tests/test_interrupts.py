"""Interrupts and full disks (issue #20): SIGINT or SIGTERM in the middle of a many-file run, or a write
that does not fit, leave every finished output complete, no partial or temporary file, a non-zero exit
code and one line on stderr."""
from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqzip import api
from vqzip.cli import files


def vqzip(*args, cwd, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "vqzip", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def one_line(err: bytes) -> str:
    lines = [ln for ln in err.decode().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err.decode()
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def photos(folder: Path, n: int, size: tuple[int, int] = (16, 16)) -> list[str]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return [f"in/{i:04d}.png" for i in range(n)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_in_the_middle_of_a_many_file_run(tmp_path, tiny_env, sig):
    names = photos(tmp_path / "in", 600)
    (tmp_path / "out").mkdir()
    proc = vqzip("encode", *names, "-O", "out", "-m", "tiny-ctx", "--batch", "1", cwd=tmp_path)
    deadline = time.monotonic() + 240
    while len(list((tmp_path / "out").glob("*.vqz"))) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err.decode()
    assert f"interrupted by {signal.Signals(sig).name}" in one_line(err)
    written = sorted((tmp_path / "out").glob("*.vqz"))
    assert 5 <= len(written) < len(names)  # stopped in the middle
    assert not leftovers(tmp_path / "out")
    m = api.load_model("tiny-ctx")
    for path in written:  # every output there is whole
        assert api.decompress(path.read_bytes(), m).size == (16, 16)


def test_signal_while_an_output_is_written_waits_for_it(tmp_path, monkeypatch):
    """A signal that comes in the middle of a write is held until the file is renamed into place."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGXFSZ)}
    files.handle_signals()
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives between the write and the rename
        time.sleep(0.01)
        real_replace(src, dst)

    try:
        monkeypatch.setattr(files.os, "replace", replace)
        with pytest.raises(files.Interrupted) as caught:
            files.write_atomic(tmp_path / "a.vqz", b"whole", force=False)
        assert caught.value.signum == signal.SIGTERM and caught.value.name == "SIGTERM"
        assert (tmp_path / "a.vqz").read_bytes() == b"whole"
        assert not leftovers(tmp_path)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_a_full_disk_removes_the_temporary_file(tmp_path, monkeypatch, code):
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd: int, mode: str) -> None:
            self.f = real_fdopen(fd, mode)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def write(self, data: bytes) -> None:
            self.f.write(data[:3])
            self.f.flush()
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, "fdopen", Full)
    with pytest.raises(files.DiskFull, match=f"cannot write .*a.vqz: {os.strerror(code)}"):
        files.write_atomic(tmp_path / "a.vqz", b"0123456789", force=False)
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(files.os, "fdopen", real_fdopen)
    with pytest.raises(files.Failure) as other:  # any other write error is one file's failure, not the run's
        files.write_atomic(tmp_path / "no" / "a.vqz", b"x", force=False)
    assert not isinstance(other.value, files.DiskFull)


def _file_size_limit(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_file_size_limit_stops_an_encode_run(tmp_path, tiny_env):
    """Under `ulimit -f` a write past the limit gets SIGXFSZ, which would kill the process with its
    temporary file left behind; vqzip ignores it, so the write fails with EFBIG: one line, the run
    stops, the outputs written before are whole."""
    names = photos(tmp_path / "in", 4)
    Image.fromarray((np.random.default_rng(1).random((192, 192, 3)) * 255).astype(np.uint8)).save(tmp_path / "in" / "big.png")
    (tmp_path / "out").mkdir()
    proc = vqzip("encode", *names[:2], "in/big.png", *names[2:], "-O", "out", "-m", "tiny-ctx", "-Q", "3", "--batch", "1",
                 cwd=tmp_path, preexec_fn=_file_size_limit(1500))
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err.decode()
    line = one_line(err)
    assert "cannot write out/big.vqz: File too large; stopped: 2 of 5 files written" in line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0000.vqz", "0001.vqz"]
    m = api.load_model("tiny-ctx")
    for p in (tmp_path / "out").iterdir():
        assert api.decompress(p.read_bytes(), m).size == (16, 16)


def test_file_size_limit_stops_a_decode_run(tmp_path, tiny_env):
    names = photos(tmp_path / "in", 2, (64, 64))
    assert vqzip("encode", *names, "-m", "tiny-ctx", cwd=tmp_path).wait(240) == 0
    (tmp_path / "out").mkdir()
    proc = vqzip("decode", "in/0000.vqz", "in/0001.vqz", "-O", "out", cwd=tmp_path, preexec_fn=_file_size_limit(4000))
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err.decode()
    assert "cannot write out/0000.png: File too large; stopped: 0 of 2 files written" in one_line(err)
    assert not list((tmp_path / "out").iterdir())
