"""A seeded, resumable mutation fuzzer of the .vqz decoder (issue #20).

Input `i` of seed `s` is one file of a seed corpus (valid files of the installed shipped models: both
format versions, five sizes, five colour modes, several qualities; plus the committed samples in
tests/data), mutated by operations that `random.Random(f"{s}:{i}")` alone chooses: header fields
(version, model id, width and height as normal, overlong, over-long and unterminated varints, flags,
the alpha length and contents, zlib bombs, the metadata section and the bit announcing it), the
payload (another file's, random, empty, truncated), then bytes (bit flips, interesting values,
truncation, insertions, deletions, duplications), and for half the inputs the checksum recomputed
with the key of the model the header names, so that they reach the payload decoder. Any input can be
rebuilt from (seed, index), so a run can stop and resume anywhere: `campaign` keeps its progress in a
state file.

Each input goes through vqzip.api.decompress, the path `vqzip decode` takes, with the default limits,
and is classed: `ok` (decoded), `refused` (a VqzipError: one line in the CLI), `crash` (any other
exception), `slow` (over SLOW_S seconds), `big` (its worker's peak resident memory while it ran, over
BIG_MB; a worker that passes it is replaced, so each crossing names its input). Inputs run in worker
processes (multiprocessing, spawned), one thread each, grouped by the model their header names; a
worker keeps one model loaded at a time and measures each input's peak from that input's start
(_start_peak), so the peak is the input's own plus one model's, not every model's the worker met.

    python benchmarks/fuzz_decoder.py --inputs 1000000 --workers 2 --state /tmp/fuzz-state.json

Nothing on the encode and decode path imports this module.
"""
from __future__ import annotations

import gc
import hashlib
import json
import multiprocessing as mp
import os
import random
import re
import resource
import signal
import sys
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from PIL import Image

from .coding import container
from .runtime import one_thread_children
from .zoo import shipped_models

SLOW_S = 2.0
BIG_MB = 1024.0
HANG_S = 60  # a worker's alarm: an input still running then is stopped and counted slow
SIZES = ((1, 1), (7, 5), (32, 32), (33, 17), (48, 40))  # width, height
MODES = ("L", "LA", "RGB", "RGBA", "P")
SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "data"
CHECKSUM_FIXED = 0.5  # share of inputs whose checksum is recomputed
INTERESTING = (0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257,
               1023, 1024, 4095, 4096, 4097, 16383, 16384, 16385, 32767, 32768, 65535, 65536, 65537,
               1 << 20, (1 << 21) - 1, 1 << 21, 1 << 28)


# --- the seed corpus ---------------------------------------------------------------------------------


def _image(width: int, height: int, mode: str, seed: int) -> Image.Image:
    """A smooth gradient with noise, in `mode` (P: a palette image, which vqzip codes as RGB)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width, 1), y * 255 / max(height, 1), (x + y) * 127 / max(width + height, 1)], -1)
    rgb = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    if mode == "P":
        return img.quantize(16)
    img = img.convert(mode)
    if mode in ("LA", "RGBA"):
        img.putalpha(Image.fromarray((rng.random((height, width)) * 255).astype(np.uint8)))
    return img


def seed_corpus(models: tuple[str, ...] | None = None) -> list[bytes]:
    """Valid files of each installed model of `models` (default: every shipped model), of each format
    version it writes: five sizes, each in another of five colour modes and at quality 1, the default
    or the highest in turn, and one file of each older version it reads; then the committed samples
    (tests/data/*.vqz) when the source tree is at hand."""
    from . import api

    files, j = [], 0
    installed = set(api.available_models())
    for name in models if models is not None else shipped_models():
        if name not in installed:
            continue
        m = api.load_model(name)
        priors = ("auto",) if m.is_hyperprior else ("static", "context") if m.context is not None else ("static",)
        for prior in priors:
            for width, height in SIZES:
                quality = (1, m.default_quality, m.qualities)[j % 3]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    files.append(api.compress(_image(width, height, MODES[j % len(MODES)], j), m, quality, prior=prior))
                j += 1
        if m.is_hyperprior:  # the older versions such a model still reads (5, 6: its stored tables), one file each
            for version in api.photo_versions(m)[1:]:
                img = np.asarray(_image(*SIZES[j % len(SIZES)], "RGB", j))
                y, z = api.photo_tokens(img[None], m, m.default_quality)
                header = container.Header(m.model_id, img.shape[1], img.shape[0], "RGB", m.default_quality, version)
                files.append(container.build(header, api.photo_coder(m, version).encode(y, z)[0][0], m.key(version)))
                j += 1
    return files + [p.read_bytes() for p in sorted(SAMPLES.glob("*.vqz"))]


def checksum_keys() -> dict[tuple[int, int], bytes]:
    """The checksum key of every installed model id and the versions it reads."""
    from . import zoo

    keys: dict[tuple[int, int], bytes] = {}
    for name in zoo.available_models():
        path = zoo.resolve(name)
        for version in container.VERSIONS:
            try:
                keys.setdefault((zoo.model_id(path), version), zoo.checksum_key(path, version))
            except Exception:  # no context prior: no version-2 key
                pass
    return keys


def corpus_digest(corpus: list[bytes]) -> str:
    h = hashlib.sha256()
    for data in corpus:
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


# --- mutations --------------------------------------------------------------------------------------


_varint = container._varint  # the writer the format uses


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A varint of any length (mutations make long ones), unlike the container's bounded reader."""
    value = shift = 0
    while True:
        byte = data[pos]
        value, pos, shift = value | (byte & 0x7F) << shift, pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def split(data: bytes) -> dict[str, bytes]:
    """The fields of a valid file: magic, version, id, width, height, flags, alpha_len, alpha,
    meta_len, meta (the metadata section), payload, crc."""
    header, pos = container.parse_header(data)
    _, w_end = _read_varint(data, 5)
    _, h_end = _read_varint(data, w_end)
    fields = {"magic": data[:2], "version": data[2:3], "id": data[3:5], "width": data[5:w_end],
              "height": data[w_end:h_end], "flags": data[h_end:pos], "alpha_len": b"", "alpha": b"",
              "meta_len": b"", "meta": b""}
    for present, length, body in ((header.has_alpha, "alpha_len", "alpha"), (header.has_metadata, "meta_len", "meta")):
        if present:
            n, end = _read_varint(data, pos)
            fields[length], fields[body], pos = data[pos:end], data[end:end + n], end + n
    fields["payload"], fields["crc"] = data[pos:-4], data[-4:]
    return fields


def _number(rng: random.Random) -> int:
    if rng.random() < 0.7:
        return rng.choice(INTERESTING) + rng.choice((-1, 0, 0, 0, 1))
    return rng.randrange(1 << rng.choice((8, 16, 21, 28)))


def _encode_number(rng: random.Random, n: int) -> bytes:
    """n as a varint: usually plain, else overlong (extra zero groups), unterminated or oversized."""
    n = max(0, n)
    plain = _varint(n)
    kind = rng.random()
    if kind < 0.7:
        return plain
    if kind < 0.8:
        return plain[:-1] + bytes([plain[-1] | 0x80]) + b"\x00"  # overlong: a zero group more
    if kind < 0.9:
        return plain[:-1] + bytes([plain[-1] | 0x80])  # unterminated: the next field's byte continues it
    return bytes([0xFF] * rng.randint(3, 6)) + b"\x01"  # longer than any reader allows


@cache
def _zlib_zeros(n: int) -> bytes:
    """n zero bytes, zlib-compressed: a bomb, made once (compressing 20 MB took a sixth of the fuzzer's time)."""
    return zlib.compress(bytes(n))


def _mutate_field(rng: random.Random, f: dict[str, bytes], corpus: list[bytes], ids: list[int]) -> str:
    name = rng.choice(("version", "id", "width", "height", "flags", "alpha", "payload", "payload", "size", "metadata"))
    if name == "version":
        f["version"] = bytes([rng.choice((0, *container.VERSIONS, max(container.VERSIONS) + 1, 255, rng.randrange(256),
                                          f["version"][0] ^ container.METADATA_BIT))])  # every version read, and the next
    elif name == "metadata":  # the section (after the alpha one), and the version byte's bit that announces it
        choice = rng.random()
        if choice < 0.3:
            f["meta"] = _zlib_zeros(rng.choice((1, 1000, 1 << 20, (1 << 24) + 1)))  # up to past the cap
        elif choice < 0.5:
            f["meta"] = rng.randbytes(rng.randrange(64))
        elif choice < 0.8:
            tag, n = rng.choice((1, 2, 3, 0, 255)), rng.choice((0, 1, 5, 1000, 1 << 30))
            f["meta"] = zlib.compress(bytes([tag]) + _varint(n) + rng.randbytes(rng.randrange(64)))
        else:
            f["meta_len"] = _encode_number(rng, _number(rng))
        if choice < 0.8:
            f["meta_len"] = _varint(len(f["meta"]))
        f["version"] = bytes([f["version"][0] | container.METADATA_BIT])
    elif name == "id":
        f["id"] = (rng.choice(ids) if ids and rng.random() < 0.7 else rng.randrange(1 << 16)).to_bytes(2, "big")
    elif name in ("width", "height"):
        f[name] = _encode_number(rng, _number(rng))
    elif name == "size":  # both sides at once, scaled up: the decompression bombs
        scale = rng.choice((2, 4, 16, 64, 256, 1024, 4096))
        for side in ("width", "height"):
            f[side] = _varint(min(container.MAX_SIDE, max(1, _read_varint(f[side] + b"\x00", 0)[0] * scale)))
    elif name == "flags":
        old = f["flags"][0] if f["flags"] else 0
        f["flags"] = bytes([rng.choice((rng.randrange(256), old ^ rng.randrange(4), (old & 3) | rng.randrange(64) << 2))])
    elif name == "alpha":
        choice = rng.random()
        if choice < 0.3:
            f["alpha_len"] = _encode_number(rng, _number(rng))
        elif choice < 0.5:
            f["alpha"] = rng.randbytes(rng.randrange(64))
        elif choice < 0.7:
            f["alpha"] = _zlib_zeros(rng.choice((1, 100, 10_000, 1_000_000, 20_000_000)))  # a zlib bomb
        else:
            f["alpha"] = zlib.compress(rng.randbytes(rng.randrange(1, 4096)))
        if choice >= 0.3:
            f["alpha_len"] = _varint(len(f["alpha"]))
            if not f["alpha_len"] or f["flags"] and f["flags"][0] & 3 in (0, 2):  # give the mode an alpha channel
                f["flags"] = bytes([(f["flags"][0] if f["flags"] else 0) | 1])
    else:  # payload
        choice = rng.random()
        if choice < 0.3:
            f["payload"] = split(rng.choice(corpus))["payload"]
        elif choice < 0.5:
            f["payload"] = rng.randbytes(rng.randrange(1200))
        elif choice < 0.6:
            f["payload"] = b""
        elif choice < 0.7:
            f["payload"] = bytes(rng.randrange(1200)) + bytes([rng.randrange(1, 256)])
        elif choice < 0.85:
            f["payload"] = f["payload"][: rng.randrange(len(f["payload"]) + 1)]
        else:
            f["payload"] += rng.randbytes(rng.randrange(1, 256))
    return name


def _mutate_bytes(rng: random.Random, data: bytearray) -> str:
    op = rng.choice(("flip", "flip", "set", "truncate", "insert", "delete", "duplicate"))
    if not data:
        return op
    at = rng.randrange(len(data))
    if op == "flip":
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif op == "set":
        data[at] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, rng.randrange(256)))
    elif op == "truncate":
        del data[at:]
    elif op == "insert":
        data[at:at] = rng.randbytes(rng.randint(1, 16))
    elif op == "delete":
        del data[at: at + rng.randint(1, 16)]
    else:
        data[at:at] = data[at: at + rng.randint(1, 64)]
    return op


class Mutator:
    """Input `index` of seed `seed`: a function of (corpus, seed, index) alone."""

    def __init__(self, corpus: list[bytes], keys: dict[tuple[int, int], bytes]) -> None:
        self.corpus, self.keys = corpus, keys
        self.ids = sorted({mid for mid, _ in keys})

    def input(self, seed: int, index: int) -> tuple[bytes, str]:
        """The input and the names of the mutations that made it."""
        rng = random.Random(f"{seed}:{index}")
        base = rng.choice(self.corpus)
        ops: list[str] = []
        if rng.random() < 0.8:
            f = split(base)
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                ops.append(_mutate_field(rng, f, self.corpus, self.ids))
            data = bytearray(b"".join(f.values()))
        else:
            data = bytearray(base)
        if rng.random() < 0.5:
            for _ in range(rng.choice((1, 1, 2, 4))):
                ops.append(_mutate_bytes(rng, data))
        if rng.random() < CHECKSUM_FIXED and len(data) >= 9:
            key = self.keys.get((int.from_bytes(data[3:5], "big"), data[2] & container.PAYLOAD_KIND))
            if key is None and self.keys:
                key = self.keys[rng.choice(sorted(self.keys))]
            if key is not None:
                body = bytes(data[:-4])
                data[-4:] = zlib.crc32(body, zlib.crc32(key)).to_bytes(4, "big")
                ops.append("crc")
        return bytes(data), "+".join(ops) or "none"


# --- running inputs ---------------------------------------------------------------------------------


@dataclass
class Stats:
    inputs: int = 0
    outcomes: Counter = field(default_factory=Counter)  # ok (decoded), refused, crash, hang (stopped at HANG_S)
    refusals: Counter = field(default_factory=Counter)  # refusal messages, numbers masked
    crashes: list[dict[str, Any]] = field(default_factory=list)  # index, error, mutations, input (hex)
    slow: list[dict[str, Any]] = field(default_factory=list)  # index, seconds, mutations
    big: list[dict[str, Any]] = field(default_factory=list)  # index, peak RSS MB, mutations
    max_seconds: float = 0.0
    max_seconds_index: int = -1
    max_rss_mb: float = 0.0
    decode_seconds: float = 0.0  # time spent in the decoder, all inputs together

    def add(self, other: Stats) -> None:
        self.inputs += other.inputs
        self.outcomes.update(other.outcomes)
        self.refusals.update(other.refusals)
        self.crashes += other.crashes
        self.slow += other.slow
        self.big += other.big
        if other.max_seconds > self.max_seconds:
            self.max_seconds, self.max_seconds_index = other.max_seconds, other.max_seconds_index
        self.max_rss_mb = max(self.max_rss_mb, other.max_rss_mb)
        self.decode_seconds += other.decode_seconds

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "outcomes": dict(self.outcomes), "crashes": self.crashes[:100],
                "slow": self.slow[:100], "big": self.big[:100], "max_seconds": round(self.max_seconds, 4),
                "max_seconds_index": self.max_seconds_index, "max_rss_mb": round(self.max_rss_mb, 1),
                "decode_seconds": round(self.decode_seconds, 2),
                "refusals": dict(self.refusals.most_common())}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stats:
        return cls(d["inputs"], Counter(d["outcomes"]), Counter(d["refusals"]), d["crashes"], d["slow"], d["big"],
                   d["max_seconds"], d["max_seconds_index"], d["max_rss_mb"], d.get("decode_seconds", 0.0))


class _Hang(BaseException):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Hang


def _category(message: str) -> str:
    """A refusal's message with its numbers (sizes, counts, hex model ids) masked: refusals by kind."""
    return re.sub(r"\b[0-9a-f]*\d[0-9a-f,.x]*\b", "N", message.split(" (")[0].split(";")[0])[:90]


_WHO = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)  # Linux: the process's peak too, without
# summing every thread's times (RUSAGE_SELF costs up to a millisecond with torch's thread pool about)


def _start_peak() -> None:
    """Reset this process's peak resident memory (VmHWM) to what it holds now (Linux 4.0+; elsewhere the
    peak stays the process's whole peak), so the next _rss_mb() is the peak since this call."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _rss_mb() -> float:
    """This process's peak resident memory so far, in MB: VmHWM where Linux gives it (the peak of this
    address space alone), else ru_maxrss (which a child keeps from its parent across fork and exec, so
    a worker spawned by a large process would start over BIG_MB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(_WHO).ru_maxrss / 1024


def _model_order(data: bytes) -> bytes:
    """Inputs sorted by this key (model id, then version byte) decode one model after another, so a
    worker loads each model about once a chunk and keeps one at a time."""
    return data[3:5] + data[2:3] if len(data) >= 5 else b""


def run_inputs(mutator: Mutator, seed: int, indices: Sequence[int],
               decode: Callable[[bytes], Any] | None = None) -> tuple[Stats, list[int]]:
    """Run the inputs of `indices`, grouped by the model their header names; returns their stats and
    the indices not run: none, or those left when an input took this process's peak memory over BIG_MB
    (its caller starts a fresh process for them). An input's outcome does not depend on the order."""
    from . import api, zoo
    from .errors import VqzipError

    decode = decode or api.decompress
    stats = Stats()
    inputs = sorted(((index, *mutator.input(seed, index)) for index in indices), key=lambda t: _model_order(t[1]))
    previous = signal.signal(signal.SIGALRM, _alarm)
    model = b""
    try:
        for done, (index, data, ops) in enumerate(inputs, 1):
            if _model_order(data)[:2] != model:  # another model: drop the last one (and its runtime's arenas)
                model = _model_order(data)[:2]
                zoo._load.cache_clear()
                gc.collect()
            _start_peak()
            outcome, detail = "ok", ""
            signal.alarm(HANG_S)
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    decode(data)
            except VqzipError as exc:
                outcome, detail = "refused", f"{type(exc).__name__}: {_category(str(exc))}"
            except _Hang:
                outcome = "hang"
            except Exception as exc:
                outcome, detail = "crash", f"{type(exc).__name__}: {exc}"[:500]
            finally:
                seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
                signal.alarm(0)
            stats.inputs += 1
            stats.outcomes[outcome] += 1
            stats.decode_seconds += seconds
            if seconds > stats.max_seconds:
                stats.max_seconds, stats.max_seconds_index = seconds, index
            rss = _rss_mb()
            stats.max_rss_mb = max(stats.max_rss_mb, rss)
            if outcome == "crash":
                stats.crashes.append({"index": index, "error": detail, "mutations": ops, "input": data.hex()[:8192]})
            elif outcome == "refused":
                stats.refusals[detail] += 1
            if seconds > SLOW_S:
                # cpu_s: this thread's CPU time; far below `seconds`, the worker waited for a core
                stats.slow.append({"index": index, "seconds": round(seconds, 3), "cpu_s": round(cpu, 3), "mutations": ops,
                                   "outcome": outcome})
            if rss > BIG_MB:
                stats.big.append({"index": index, "rss_mb": round(rss, 1), "mutations": ops, "outcome": outcome})
                return stats, sorted(i for i, _, _ in inputs[done:])
    finally:
        signal.signal(signal.SIGALRM, previous)
    return stats, []


def _worker(corpus: list[bytes], seed: int, tasks: Any, results: Any) -> None:
    import queue

    from .runtime import set_threads

    set_threads(1)
    if sys.modules.get("torch") is not None:
        sys.modules["torch"].set_num_threads(1)
    mutator = Mutator(corpus, checksum_keys())
    parent = os.getppid()
    while True:
        try:
            task = tasks.get(timeout=5)
        except queue.Empty:
            if os.getppid() != parent:  # the campaign is gone
                return
            continue
        if task is None:
            return
        start, stop, indices = task
        stats, left = run_inputs(mutator, seed, indices if indices is not None else range(start, stop))
        results.put((start, stop, left, stats.to_dict(), os.getpid()))
        if left:  # its peak memory is spent: a new worker runs the rest
            return


# --- a campaign: workers, a state file, resumption -------------------------------------------------


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, path)


def campaign(total: int, seed: int = 0, workers: int = 1, state_path: Path | None = None, chunk: int = 2000,
             seconds: float | None = None, corpus: list[bytes] | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run inputs up to index `total` (or for `seconds`), resuming from `state_path` if it exists;
    returns the state (also written to `state_path` after every chunk, in index order)."""
    corpus = corpus if corpus is not None else seed_corpus()
    digest = corpus_digest(corpus)
    state: dict[str, Any] = {"seed": seed, "corpus_files": len(corpus), "corpus_sha256": digest, "next_index": 0,
                             "elapsed_s": 0.0, "stats": Stats().to_dict(), "sessions": []}
    if state_path is not None and state_path.exists():
        state = json.loads(state_path.read_text())
        if (state["seed"], state["corpus_sha256"]) != (seed, digest):
            raise ValueError(f"{state_path} is of another seed or corpus; remove it to start afresh")
    stats = Stats.from_dict(state["stats"])
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    start_time, started = time.monotonic(), state["next_index"]
    done_chunks: dict[int, tuple[int, Stats]] = {}  # chunk start -> (stop, stats), finished out of order
    partial: dict[int, Stats] = {}  # chunk start -> stats of a chunk whose worker left part of it
    queue: list[tuple[int, int, list[int] | None]] = []  # chunks, or a chunk's indices left to run
    next_chunk, in_flight = state["next_index"], 0
    procs: list[Any] = []

    def spawn() -> None:
        with one_thread_children():  # a worker of one thread (see there), whatever this process uses
            p = ctx.Process(target=_worker, args=(corpus, seed, tasks, results), daemon=True)
            p.start()
        procs.append(p)

    def feed() -> None:
        nonlocal next_chunk, in_flight
        while in_flight < 2 * workers and (queue or next_chunk < total):
            if seconds is not None and time.monotonic() - start_time > seconds and not queue:
                return
            if queue:
                task = queue.pop(0)
            else:
                task, next_chunk = (next_chunk, min(next_chunk + chunk, total), None), min(next_chunk + chunk, total)
            tasks.put(task)
            in_flight += 1

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)  # like Ctrl-C: what is saved stays, the workers go
    for _ in range(workers):
        spawn()
    feed()
    finished, last_chunk = False, start_time
    try:
        while in_flight:
            start, stop, left, part, _ = results.get()
            in_flight -= 1
            chunk_stats = partial.pop(start, Stats())
            chunk_stats.add(Stats.from_dict(part))
            if left:  # a worker passed the memory bar and left: the rest of its chunk, and a new worker
                partial[start] = chunk_stats
                queue.insert(0, (start, stop, left))
                spawn()
            else:
                done_chunks[start] = (stop, chunk_stats)
            while state["next_index"] in done_chunks:
                stop, chunk_stats = done_chunks.pop(state["next_index"])
                stats.add(chunk_stats)
                state["next_index"] = stop
            state["stats"] = stats.to_dict()
            last_chunk = time.monotonic()
            if state_path is not None:
                _save(state_path, {**state, "elapsed_s": round(state["elapsed_s"] + last_chunk - start_time, 1)})
            done = state["next_index"] - started
            rate = done / max(time.monotonic() - start_time, 1e-9)
            log(f"{state['next_index']:,} inputs ({rate:,.0f}/s this session): {dict(stats.outcomes)}")
            feed()
        finished = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join(timeout=30 if finished else 0)
            if p.is_alive():
                p.kill()
        # this session, also when stopped (Ctrl-C, SIGTERM): up to its last chunk in index order, the
        # work after that is done again on resuming
        elapsed = last_chunk - start_time
        state["elapsed_s"] = round(state["elapsed_s"] + elapsed, 1)
        if state["next_index"] > started:
            state["sessions"] = state.get("sessions", []) + [{
                "from": started, "to": state["next_index"], "seconds": round(elapsed, 1), "workers": workers,
                "inputs_per_s": round((state["next_index"] - started) / max(elapsed, 1e-9), 1)}]
        if state_path is not None:
            _save(state_path, state)
    return state
