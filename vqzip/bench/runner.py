"""Orchestration: run every codec curve over the images, measure, aggregate, BD-rate, write reports."""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..runtime import one_thread_children
from . import codecs as refcodecs
from . import metrics
from .datasets import Images, load_target, pixels
from .machine import describe as describe_machine

DEFAULT_WORKERS = 2
# Images per worker task are chosen so one task holds about this many pixels (500 CIFAR images, 1 Kodak image).
CHUNK_PIXELS = 500 * 32 * 32
# Learned-codec batch: this many images per encode_batch/decode_batch call for small images, else 1.
SMALL_BATCH = 256
SMALL_PIXELS = 64 * 64
NET_THREADS = 2  # threads for the networks (ONNX Runtime's, or torch's)

METADATA_NOTE = (
    "Sizes are whole files as written in memory (headers and container included); no metadata is "
    "written: no icc_profile, exif or xmp is passed to any encoder and the source images carry none."
)
PSNR_NOTE = (
    f"PSNR per image on RGB uint8 (MSE over all pixels and the 3 channels, peak 255), then the mean over "
    f"images; an exactly decoded image (PNG) scores {metrics.PSNR_CAP_DB:g} dB instead of infinity."
)
MS_SSIM_NOTE = (
    "MS-SSIM (Wang et al. 2003) by pytorch-msssim in float64 on RGB uint8, data range 255, five scales; per image, "
    "then averaged; not reported (null) for images under 161 pixels on a side."
)
SSIM_NOTE = (
    "SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03, peak 255, 'valid' filtering, "
    "no downsampling; computed on each RGB channel, averaged over the channels, then over images."
)
RATE_NOTE = (
    "bytes = mean file size per image; bits_per_image = 8 * bytes; bpp = total bits / total pixels. "
    "ideal_bits (vqzip only) = mean ideal code length -sum log2 p(token) under the model's prior, "
    "so 8 * bytes - ideal_bits is the range coder's and container's overhead."
)
BD_NOTE = (
    "Bjontegaard delta rate over PSNR, rate = bits per image: log10(rate) fitted as a cubic in PSNR "
    "(numpy.polyfit; degree len-1 for a curve of 2 or 3 points), both fits integrated over the common PSNR "
    "interval, mean difference -> percent; negative = the vqzip curve needs fewer bits. null when the PSNR "
    "ranges do not overlap or a curve has fewer than 2 points. PNG (lossless) is left out."
)


class Encoded(Protocol):
    @property
    def data(self) -> bytes: ...

    @property
    def ideal_bits(self) -> float: ...


class LearnedCodec(Protocol):
    """What the benchmark needs of a learned codec (see `VqzipCodec` for the real one)."""

    @property
    def name(self) -> str: ...  # curve label in the results, e.g. "vqzip:default"

    @property
    def qualities(self) -> int: ...  # quality levels 1..qualities

    def encode(self, images: np.ndarray, quality: int) -> Sequence[Encoded]: ...

    def decode(self, datas: list[bytes]) -> Sequence[np.ndarray]: ...


@dataclass
class Point:
    codec: str
    quality: int
    bytes: float
    bits_per_image: float
    bpp: float
    psnr: float
    ssim: float
    encode_ms: float
    decode_ms: float
    ideal_bits: float | None = None
    msssim: float | None = None  # None where the images are too small for it (CIFAR-10)


# --------------------------------------------------------------------------------------------------
# The vqzip adapter: the only place that touches vqzip.api (and torch).


@dataclass
class VqzipCodec:
    """A vqzip model behind the `LearnedCodec` interface; real `.vqz` bytes through vqzip.api."""

    model: Any
    prior: str = "auto"  # "static": the same tokens coded with the static tables (format version 1)

    @property
    def name(self) -> str:
        return f"vqzip:{self.model.name}" + ("+static" if self.prior == "static" else "")

    @property
    def qualities(self) -> int:
        return int(self.model.qualities)

    def encode(self, images: np.ndarray, quality: int) -> Sequence[Encoded]:
        from vqzip.api import encode_batch

        return encode_batch(images, self.model, quality, prior=self.prior)

    def decode(self, datas: list[bytes]) -> Sequence[np.ndarray]:
        from vqzip.api import decode_batch

        return decode_batch(datas, self.model)


@dataclass
class AutoCodec:
    """What `vqzip encode` does without -m: quality k is rung k of the images' ladder (vqzip.pick),
    photos across two models; every image of the set must climb the same ladder."""

    rungs: tuple[tuple[Any, int], ...]  # the set's ladder: (LoadedModel, quality)

    @classmethod
    def for_images(cls, images: Images) -> AutoCodec:
        from vqzip.api import load_model
        from vqzip.pick import ladder

        ladders = {ladder(im.shape[1], im.shape[0])[0] for im in images}
        if len(ladders) > 1:
            raise ValueError("model 'auto': these images climb different ladders (photos and small images: ladders "
                             "of different lengths); name the models instead")
        return cls(tuple((load_model(name), q) for name, q in ladders.pop()))

    @property
    def name(self) -> str:
        return "vqzip:auto"

    @property
    def qualities(self) -> int:
        return len(self.rungs)

    def encode(self, images: np.ndarray, quality: int) -> Sequence[Encoded]:
        from vqzip.api import encode_batch

        m, q = self.rungs[quality - 1]
        return encode_batch(images, m, q)

    def decode(self, datas: list[bytes]) -> Sequence[np.ndarray]:
        from vqzip.api import decode_batch

        return decode_batch(datas)  # each file names its model


def _model_ids(codec: LearnedCodec) -> dict[str, Any]:
    """The exact weights (and context prior) a vqzip curve was measured with, so results stay
    traceable when a model of the same name is retrained."""
    if isinstance(codec, AutoCodec):
        return {"rungs": [{"model": m.name, "model_id": f"{m.model_id:04x}", "quality": q} for m, q in codec.rungs]}
    model = getattr(codec, "model", None)
    if model is None:
        return {}
    ids = {"model_id": f"{model.model_id:04x}"}
    if getattr(codec, "prior", "auto") != "static" and model.context_path is not None:
        ids["context_prior_sha256"] = hashlib.sha256(model.context_path.read_bytes()).hexdigest()[:16]
    return ids


def load_vqzip_codecs(models: list[str] | None, notes: list[str], images: Images | None = None) -> list[LearnedCodec]:
    """Load the named vqzip models (None: every installed one; 'auto': vqzip encode's own choice for
    `images`, AutoCodec); their networks get NET_THREADS threads."""
    if models is not None and not models:
        return []
    from vqzip.api import available_models, load_model
    from vqzip.runtime import set_threads

    set_threads(NET_THREADS)
    if sys.modules.get("torch") is not None:
        sys.modules["torch"].set_num_threads(NET_THREADS)
    names = list(models) if models is not None else list(available_models())
    if not names:
        notes.append("no vqzip model installed: only reference codecs were measured")
    codecs: list[LearnedCodec] = []
    for n in names:
        if n == "auto":
            if images is None:
                raise ValueError("model 'auto' picks by image size: it needs the images")
            codecs.append(AutoCodec.for_images(images))
            continue
        m = load_model(n)
        codecs.append(VqzipCodec(m))
        if m.context is not None:  # show what the context prior saves over the static tables
            codecs.append(VqzipCodec(m, "static"))
    return codecs


# --------------------------------------------------------------------------------------------------
# Measurement


def _distortion(originals: Sequence[np.ndarray], decoded: Sequence[np.ndarray],
                codec: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image PSNR, SSIM and MS-SSIM (NaN for images too small for it); batched when all images
    share one shape."""
    if len(decoded) != len(originals):
        raise RuntimeError(f"{codec}: decoded {len(decoded)} images for {len(originals)}")
    for o, d in zip(originals, decoded):
        if np.shape(d) != o.shape:
            raise RuntimeError(f"{codec}: decoded shape {np.shape(d)} != original {o.shape}")
    if len({o.shape for o in originals}) == 1:
        a, b = np.stack(originals), np.stack([np.asarray(d, dtype=np.uint8) for d in decoded])
        return np.atleast_1d(metrics.psnr(a, b)), np.atleast_1d(metrics.ssim(a, b)), metrics.ms_ssim(a, b)
    return (np.array([metrics.psnr(o, d) for o, d in zip(originals, decoded)]),
            np.array([metrics.ssim(o, d) for o, d in zip(originals, decoded)]),
            np.concatenate([metrics.ms_ssim(o, np.asarray(d, dtype=np.uint8)) for o, d in zip(originals, decoded)]))


_IMAGES: Images | None = None


def _init_worker(images: Images) -> None:
    global _IMAGES
    _IMAGES = images
    refcodecs.single_thread_decoders()


def _ref_chunk(name: str, quality: int, lo: int, hi: int) -> tuple:
    """Encode+decode images lo..hi with one reference codec setting, timing each call (one thread)."""
    codec = refcodecs.REFERENCE[name]
    assert _IMAGES is not None
    originals = [_IMAGES[i] for i in range(lo, hi)]
    sizes, enc_ms, dec_ms, decoded = [], [], [], []
    for img in originals:
        t0 = time.perf_counter()
        data = codec.encode(img, quality)
        t1 = time.perf_counter()
        out = codec.decode(data)
        t2 = time.perf_counter()
        sizes.append(len(data))
        enc_ms.append((t1 - t0) * 1e3)
        dec_ms.append((t2 - t1) * 1e3)
        decoded.append(out)
    ps, ss, ms = _distortion(originals, decoded, name)
    return name, quality, lo, np.array(sizes), ps, ss, ms, np.array(enc_ms), np.array(dec_ms)


def _chunks(n: int, pix: list[int]) -> list[tuple[int, int]]:
    per = max(1, min(n, CHUNK_PIXELS // max(1, int(np.mean(pix)))))
    return [(lo, min(n, lo + per)) for lo in range(0, n, per)]


class _Acc:
    """Per-image measurements of one curve point, filled chunk by chunk."""

    def __init__(self, n: int) -> None:
        self.sizes, self.psnr, self.ssim, self.msssim = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        self.enc, self.dec = np.zeros(n), np.zeros(n)
        self.ideal: np.ndarray | None = None

    def put(self, lo: int, sizes, ps, ss, ms, enc, dec, ideal=None) -> None:
        hi = lo + len(sizes)
        self.sizes[lo:hi], self.psnr[lo:hi], self.ssim[lo:hi], self.msssim[lo:hi] = sizes, ps, ss, ms
        self.enc[lo:hi], self.dec[lo:hi] = enc, dec
        if ideal is not None:
            if self.ideal is None:
                self.ideal = np.zeros(len(self.sizes))
            self.ideal[lo:hi] = ideal

    def point(self, codec: str, quality: int, total_pixels: int) -> Point:
        b = float(self.sizes.mean())
        return Point(codec, int(quality), b, 8 * b, float(8 * self.sizes.sum() / total_pixels),
                     float(self.psnr.mean()), float(self.ssim.mean()), float(self.enc.mean()), float(self.dec.mean()),
                     None if self.ideal is None else float(self.ideal.mean()),
                     None if np.isnan(self.msssim).all() else float(np.nanmean(self.msssim)))


def _run_reference(images: Images, jobs: list[tuple[str, int]], workers: int, advance: Callable[[int], None]) -> list[Point]:
    n, pix = len(images), pixels(images)
    accs = {job: _Acc(n) for job in jobs}
    tasks = [(name, q, lo, hi) for name, q in jobs for lo, hi in _chunks(n, pix)]

    def collect(res: tuple) -> None:
        name, q, lo, sizes, ps, ss, ms, enc, dec = res
        accs[(name, q)].put(lo, sizes, ps, ss, ms, enc, dec)
        advance(len(sizes))

    if workers <= 0:
        global _IMAGES
        saved = _IMAGES
        _init_worker(images)
        try:
            for t in tasks:
                collect(_ref_chunk(*t))
        finally:
            _IMAGES = saved
    elif tasks:
        # spawn: workers start clean (no inherited torch/OpenMP state), of one thread each (the pool starts
        # its processes inside the block); the images are pickled once per worker.
        with one_thread_children(), ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                                        initializer=_init_worker, initargs=(images,)) as pool:
            pending, queue = set(), iter(tasks)
            for t in queue:  # keep at most 2 tasks per worker in flight
                pending.add(pool.submit(_ref_chunk, *t))
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        collect(f.result())
            for f in pending:
                collect(f.result())
    total = sum(pix)
    return [accs[job].point(job[0], job[1], total) for job in jobs]


def _batches(images: Images, batch_size: int | None) -> Iterator[tuple[list[int], np.ndarray]]:
    """Index lists and stacked arrays of same-size images, at most batch_size per batch."""
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(im.shape, []).append(i)
    for shape, idx in groups.items():
        bs = batch_size or (SMALL_BATCH if shape[0] * shape[1] <= SMALL_PIXELS else 1)
        for k in range(0, len(idx), bs):
            sel = idx[k:k + bs]
            if isinstance(images, np.ndarray):
                yield sel, images[sel[0]:sel[-1] + 1] if sel == list(range(sel[0], sel[-1] + 1)) else images[sel]
            else:
                yield sel, np.stack([images[i] for i in sel])


def _run_learned(images: Images, codec: LearnedCodec, qualities: Sequence[int], batch_size: int | None,
                 advance: Callable[[int], None]) -> list[Point]:
    n, total = len(images), sum(pixels(images))
    points = []
    for q in qualities:
        acc = _Acc(n)
        sizes, ideal, ps, ss, ms, enc, dec = (np.zeros(n) for _ in range(7))
        for sel, batch in _batches(images, batch_size):
            t0 = time.perf_counter()
            encoded = list(codec.encode(batch, q))
            t1 = time.perf_counter()
            decoded = list(codec.decode([e.data for e in encoded]))
            t2 = time.perf_counter()
            if len(encoded) != len(sel):
                raise RuntimeError(f"{codec.name}: encoded {len(encoded)} images for {len(sel)}")
            p, s, m = _distortion(list(batch), decoded, codec.name)
            sizes[sel] = [len(e.data) for e in encoded]
            ideal[sel] = [float(e.ideal_bits) for e in encoded]
            ps[sel], ss[sel], ms[sel] = p, s, m
            enc[sel] = (t1 - t0) * 1e3 / len(sel)
            dec[sel] = (t2 - t1) * 1e3 / len(sel)
            advance(len(sel))
        acc.put(0, sizes, ps, ss, ms, enc, dec, ideal)
        points.append(acc.point(codec.name, q, total))
    return points


def bd_rates(points: list[Point], learned: list[str], references: list[str]) -> list[dict]:
    """BD-rate of every learned curve against every lossy reference curve (see metrics.bd_rate)."""
    def curve(name: str) -> tuple[list[float], list[float]]:
        ps = [p for p in points if p.codec == name]
        return [p.bits_per_image for p in ps], [p.psnr for p in ps]

    out = []
    for c in learned:
        r2, d2 = curve(c)
        for ref in references:
            if refcodecs.REFERENCE[ref].lossless:
                continue
            r1, d1 = curve(ref)
            lo, hi = (max(min(d1), min(d2)), min(max(d1), max(d2))) if d1 and d2 else (0.0, 0.0)
            out.append({"codec": c, "reference": ref, "bd_rate_percent": metrics.bd_rate(r1, d1, r2, d2),
                        "psnr_overlap_db": [round(lo, 3), round(hi, 3)] if hi > lo else None})
    return out


# --------------------------------------------------------------------------------------------------


def _versions(learned_used: bool) -> dict[str, str | None]:
    from importlib import metadata

    from PIL import __version__ as pil_version
    from PIL import features

    def dist(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    v: dict[str, str | None] = {"python": platform.python_version(), "numpy": np.__version__, "pillow": pil_version}
    for feat in ("libjpeg_turbo", "jpg", "webp", "avif", "zlib"):
        try:
            v[feat if feat.startswith("lib") else f"lib{feat}"] = features.version(feat)
        except Exception:  # noqa: BLE001
            v[feat if feat.startswith("lib") else f"lib{feat}"] = None
    try:
        from PIL import _avif

        v["avif_codecs"] = _avif.codec_versions()
    except Exception:  # noqa: BLE001
        pass
    v["pillow-jxl-plugin"] = dist("pillow-jxl-plugin")
    v["vqzip"] = dist("vqzip")
    if learned_used and sys.modules.get("torch") is not None:
        v["torch"] = sys.modules["torch"].__version__
    return v


def _progress(quiet: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("image-points"), TimeElapsedColumn(), TimeRemainingColumn(), disable=quiet, transient=False,
                    console=Console(stderr=True))


def bench_images(images: Images, *, dataset: str, codecs: list[str] | None = None, learned: Sequence[LearnedCodec] = (),
                 out: Path, sweep: dict[str, Sequence[int]] | None = None, workers: int = DEFAULT_WORKERS,
                 batch_size: int | None = None, quiet: bool = False, command: str | None = None,
                 notes: list[str] | None = None) -> dict:
    """Benchmark already loaded images; write `out`/results.json and `out`/rd.png; return the results dict.

    codecs: reference codec names (see codecs.resolve; None = all); learned: loaded learned codecs;
    sweep: optional {curve name: qualities} overriding the default sweeps (to shrink a run).
    """
    from rich.console import Console

    from . import report

    t_start = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    notes = list(notes or [])
    sweep = dict(sweep or {})
    names = refcodecs.resolve(codecs)
    n = len(images)
    if n == 0:
        raise ValueError("no images to benchmark")
    unavailable = {name: why for name in names if (why := refcodecs.unavailable(name))}
    for name, why in unavailable.items():
        notes.append(f"{name} unavailable: {why}")
    if why := metrics.ms_ssim_missing():
        notes.append(why)
    runnable = [nm for nm in names if nm not in unavailable]
    ref_jobs = [(nm, int(q)) for nm in runnable for q in sweep.get(nm, refcodecs.REFERENCE[nm].qualities)]
    learned = list(learned)
    learned_q = {c.name: [int(q) for q in sweep.get(c.name, range(1, c.qualities + 1))] for c in learned}
    if not ref_jobs and not learned:
        raise ValueError("nothing to benchmark: no available codec and no vqzip model selected")

    total = n * (len(ref_jobs) + sum(len(v) for v in learned_q.values()))
    # the table goes to stdout, the progress bar to stderr; at least 120 columns when not a terminal
    console = Console(quiet=quiet, width=None if sys.stdout.isatty() else 120)
    points: list[Point] = []
    with _progress(quiet) as progress:
        task = progress.add_task(f"bench {dataset}", total=total)

        def advance(k: int) -> None:
            progress.advance(task, k)

        if ref_jobs:
            progress.update(task, description=f"reference codecs ({workers or 1} proc)")
            points += _run_reference(images, ref_jobs, workers, advance)
        for c in learned:
            progress.update(task, description=c.name)
            points += _run_learned(images, c, learned_q[c.name], batch_size, advance)

    pix = pixels(images)
    shapes = sorted({f"{im.shape[1]}x{im.shape[0]}" for im in images})
    small = all(p <= SMALL_PIXELS for p in pix)
    results: dict[str, Any] = {
        "meta": {
            "command": command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "dataset": dataset,
            "n_images": n,
            "image_sizes": shapes,
            "pixels_per_image": float(np.mean(pix)),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_s": None,
            "cpu_count": os.cpu_count(),
            "machine": describe_machine(),
            "loadavg_1min_at_start": load_start,
            "timing": {
                "reference": (f"wall clock (time.perf_counter) around each single-image call, in {max(workers, 1)} "
                              f"{'worker processes running side by side' if workers > 1 else 'process'}, one codec "
                              "thread each; encode = Image.fromarray + save to memory, decode = Image.open + "
                              "convert('RGB') + to array; ms = mean over images; PSNR/SSIM are computed outside the timed calls"),
                "vqzip": (f"wall clock around each encode_batch / decode_batch call in the main process, network threads "
                          f"= {NET_THREADS}, batch size {batch_size or (SMALL_BATCH if small else 1)} "
                          "(same-size images only), nothing else of the benchmark running; ms = batch time / batch size, "
                          "averaged over images"),
                "workers": workers,
            },
            "metadata": METADATA_NOTE,
            "psnr": PSNR_NOTE,
            "ssim": SSIM_NOTE,
            "msssim": MS_SSIM_NOTE,
            "rate": RATE_NOTE,
            "bd_rate": BD_NOTE,
            "codecs": {nm: {"settings": refcodecs.REFERENCE[nm].settings,
                            "qualities": [q for c, q in ref_jobs if c == nm] if nm in runnable else [],
                            "available": nm not in unavailable, "note": unavailable.get(nm)} for nm in names},
            "vqzip_models": [{"name": c.name, "qualities": learned_q[c.name], **_model_ids(c)} for c in learned],
            "versions": _versions(bool(learned)),
            "notes": notes,
        },
        "points": [asdict(p) for p in points],
        "bd_rate": bd_rates(points, [c.name for c in learned], runnable),
    }
    results["meta"]["wall_s"] = round(time.perf_counter() - t_start, 2)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, out / "results.json")
    plotted = report.plot_rd(results, out / "rd.png")
    if not quiet:
        report.print_tables(results, console)
        plot = f" and {out / 'rd.png'}" if plotted else " (no rd.png: the plot needs matplotlib, pip install 'vqzip[train]')"
        console.print(f"wrote {out / 'results.json'}{plot}", markup=False)
    return results


def run_bench(target: str, *, limit: int | None, models: list[str] | None, codecs: list[str] | None, out: Path,
              data: Path | None, quiet: bool = False, sweep: dict[str, Sequence[int]] | None = None,
              learned: Sequence[LearnedCodec] | None = None, workers: int = DEFAULT_WORKERS,
              batch_size: int | None = None, command: str | None = None) -> dict:
    """`vqzip bench TARGET`: TARGET is 'cifar10' (test split), 'kodak', 'kodak-thumbs' (datasets.kodak_thumbs)
    or a folder of images.

    models: vqzip model names (None = every installed model, [] = none); codecs: reference codec names
    (None = png, jpeg (4:2:0 and 4:4:4), webp, avif, jxl); learned: extra, already loaded learned codecs.
    Writes out/results.json and out/rd.png and returns the results dict. ValueError on bad input;
    vqzip.training.data.DataNotFound when the dataset is missing. Reference codecs run in `workers` spawned
    processes (0 = in this process), so a calling script needs the `if __name__ == "__main__":` guard.
    """
    refcodecs.resolve(codecs)  # fail on unknown names before loading anything
    dataset, images = load_target(target, data, limit)
    notes: list[str] = []
    all_learned = list(learned or []) + load_vqzip_codecs(models, notes, images)
    return bench_images(images, dataset=dataset, codecs=codecs, learned=all_learned, out=Path(out), sweep=sweep,
                        workers=workers, batch_size=batch_size, quiet=quiet, command=command, notes=notes)
