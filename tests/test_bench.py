"""vqzip bench: reference codecs, metrics, BD-rate and the results schema, on a few tiny synthetic images."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqzip.bench import bd_rate, bench_images, metrics, psnr, rate_at_psnr, run_bench, ssim
from vqzip.bench import codecs as refcodecs
from vqzip.bench.datasets import load_folder
from vqzip.bench.report import equal_psnr
from vqzip.training.data import DataNotFound


def smooth_image(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with a soft blob: easy for every lossy codec."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    c = rng.uniform(0.2, 0.8, size=3)
    blob = np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) * 8)
    img = np.stack([c[0] + 0.3 * x, c[1] + 0.3 * y, c[2] * (0.6 + 0.4 * blob)], axis=-1)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.stack([smooth_image(seed=i) for i in range(4)])


AVAILABLE = [n for n in refcodecs.REFERENCE if refcodecs.unavailable(n) is None]


# -- reference codecs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", AVAILABLE)
def test_reference_codec_round_trip(name: str) -> None:
    refcodecs.single_thread_decoders()
    codec = refcodecs.REFERENCE[name]
    img = smooth_image(40, 48)
    q = codec.qualities[len(codec.qualities) // 2]
    data = codec.encode(img, q)
    assert isinstance(data, bytes) and len(data) > 0
    out = codec.decode(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    if codec.lossless:
        assert np.array_equal(out, img)
    else:
        assert psnr(img, out) > 20


def test_codec_names() -> None:
    assert refcodecs.resolve(["jpeg", "png"]) == ["jpeg-420", "jpeg-444", "png"]
    assert refcodecs.resolve(None)[:1] == ["png"]
    with pytest.raises(ValueError, match="unknown codec"):
        refcodecs.resolve(["gif"])


# -- metrics -------------------------------------------------------------------------------------


def test_ssim_and_psnr_identity() -> None:
    img = smooth_image()
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert psnr(img, img) == 100.0
    noisy = np.clip(img.astype(int) + np.random.default_rng(0).integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    assert 0 < ssim(img, noisy) < 1
    assert 10 < psnr(img, noisy) < 40
    batch = np.stack([img, img])
    assert np.allclose(ssim(batch, np.stack([img, noisy])), [1.0, ssim(img, noisy)])


def test_rate_at_psnr_reads_the_reference_between_its_points() -> None:
    rate, dist = [4.0, 1.0, 2.0], [30.0, 20.0, 25.0]  # unsorted on purpose
    assert rate_at_psnr(rate, dist, 25.0) == pytest.approx(2.0)
    assert rate_at_psnr(rate, dist, 22.5) == pytest.approx(2 ** 0.5)  # log-linear, not linear (1.5)
    assert rate_at_psnr(rate, dist, 30.0) == pytest.approx(4.0)
    assert rate_at_psnr(rate, dist, 31.0) is None and rate_at_psnr(rate, dist, 19.0) is None
    assert rate_at_psnr(rate[:1], dist[:1], 30.0) is None


def test_equal_psnr_compares_each_point_with_each_reference() -> None:
    def pt(codec: str, q: int, bits: float, db: float) -> dict:
        return {"codec": codec, "quality": q, "bits_per_image": bits, "psnr": db}

    results = {"points": [pt("jpeg-420", 10, 100.0, 20.0), pt("jpeg-420", 50, 400.0, 30.0),
                          pt("vqzip:m", 1, 50.0, 20.0), pt("vqzip:m", 2, 300.0, 25.0), pt("vqzip:m", 3, 500.0, 31.0)],
               "bd_rate": [{"codec": "vqzip:m", "reference": "jpeg-420"}]}
    rows = equal_psnr(results)
    assert rows[("vqzip:m", 1)]["jpeg-420"] == pytest.approx(-50.0)  # half of JPEG's 100 bits
    assert rows[("vqzip:m", 2)]["jpeg-420"] == pytest.approx(50.0)  # JPEG needs 200 at 25 dB (log-linear)
    assert rows[("vqzip:m", 3)]["jpeg-420"] is None  # above JPEG's curve
    assert set(rows) == {("vqzip:m", 1), ("vqzip:m", 2), ("vqzip:m", 3)}


def test_bd_rate_known_curves() -> None:
    rate = np.array([1000.0, 1500.0, 2300.0, 3600.0, 5000.0])
    dist = np.array([24.0, 27.5, 30.0, 33.2, 35.0])
    assert bd_rate(rate, dist, rate, dist) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(rate, dist, rate / 2, dist) == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate(rate, dist, rate * 2, dist) == pytest.approx(100.0, abs=1e-6)
    assert bd_rate(rate, dist, rate, dist + 20) is None  # PSNR ranges do not overlap
    assert bd_rate(rate, dist, rate[:1], dist[:1]) is None  # a single point
    # three-point curves: quadratic fits, still exact for a constant rate ratio
    assert bd_rate(rate[:3], dist[:3], rate[:3] / 2, dist[:3]) == pytest.approx(-50.0, abs=1e-6)
    # partial overlap, different PSNR samples: only the shared interval counts (exact for a quadratic log-rate)
    d1, d2 = np.array([22.0, 25, 28, 31, 34]), np.array([27.0, 30, 33, 36, 39])
    lograte = lambda d: 1.0 + 0.06 * d + 0.001 * d**2  # noqa: E731
    assert bd_rate(10 ** lograte(d1), d1, 10 ** lograte(d2) / 2, d2) == pytest.approx(-50.0, abs=1e-6)
    # up_to cuts the shared range: a log-rate gap growing as 0.02 per dB from 27 dB averages 0.02 * 2 up to 31 dB
    gap = lambda d: 0.02 * (d - 27)  # noqa: E731
    expect = (10 ** (0.02 * 2) - 1) * 100
    assert bd_rate(10 ** lograte(d2), d2, 10 ** (lograte(d2) + gap(d2)), d2, up_to=31.0) == pytest.approx(expect, abs=1e-6)
    assert bd_rate(rate, dist, rate, dist, up_to=dist.min()) is None  # nothing left of the range


# -- the whole benchmark -------------------------------------------------------------------------


@dataclass
class _Enc:
    data: bytes
    ideal_bits: float


class FakeLearned:
    """A stand-in learned codec for the tests: JPEG-4:4:4 files whose quality grows with the level."""

    name = "fake"
    qualities = 3

    def encode(self, images: np.ndarray, quality: int) -> list[_Enc]:
        assert images.ndim == 4 and images.dtype == np.uint8
        enc = refcodecs.REFERENCE["jpeg-444"].encode
        out = [enc(im, 30 * quality) for im in images]
        return [_Enc(d, 8.0 * len(d) - 100) for d in out]

    def decode(self, datas: list[bytes]) -> list[np.ndarray]:
        return [refcodecs.decode_image(d) for d in datas]


POINT_KEYS = {"codec", "quality", "bytes", "bits_per_image", "bpp", "psnr", "ssim", "msssim", "encode_ms", "decode_ms",
              "ideal_bits"}


@pytest.mark.parametrize("workers", [0, 2])
def test_results_schema(images: np.ndarray, tmp_path: Path, workers: int) -> None:
    sweep = {"jpeg-420": [20, 60, 80, 95], "webp": [20, 50, 80, 95], "fake": [1, 2, 3]}
    res = bench_images(images, dataset="synthetic", codecs=["png", "jpeg-420", "webp", "jxl"], learned=[FakeLearned()],
                       out=tmp_path, sweep=sweep, workers=workers, quiet=True, command="test")
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == res
    assert (tmp_path / "rd.png").stat().st_size > 1000
    with Image.open(tmp_path / "rd.png") as im:
        assert im.format == "PNG"

    assert set(res) == {"meta", "points", "bd_rate"}
    meta = res["meta"]
    for key in ("command", "dataset", "n_images", "timing", "versions", "metadata", "psnr", "ssim", "codecs", "notes"):
        assert key in meta
    assert meta["n_images"] == 4 and meta["dataset"] == "synthetic" and meta["command"] == "test"

    codecs_seen = [p["codec"] for p in res["points"]]
    assert codecs_seen.count("png") == 1 and codecs_seen.count("jpeg-420") == 4 and codecs_seen.count("webp") == 4
    assert codecs_seen.count("fake") == 3
    jxl_ok = refcodecs.unavailable("jxl") is None
    assert codecs_seen.count("jxl") == (len(refcodecs.REFERENCE["jxl"].qualities) if jxl_ok else 0)
    assert meta["codecs"]["jxl"]["available"] == jxl_ok
    if not jxl_ok:
        assert any("jxl" in n for n in meta["notes"])

    for p in res["points"]:
        assert set(p) == POINT_KEYS
        assert isinstance(p["codec"], str) and isinstance(p["quality"], int)
        for k in ("bytes", "bits_per_image", "bpp", "psnr", "ssim", "encode_ms", "decode_ms"):
            assert isinstance(p[k], float) and np.isfinite(p[k]), (p["codec"], k)
        assert p["bits_per_image"] == pytest.approx(8 * p["bytes"])
        assert p["bpp"] == pytest.approx(p["bits_per_image"] / (32 * 32))
        assert 0 < p["ssim"] <= 1 + 1e-9
        assert (p["ideal_bits"] is None) == (p["codec"] != "fake")
        if p["codec"] == "fake":
            assert p["ideal_bits"] == pytest.approx(p["bits_per_image"] - 100)
        if p["codec"] == "png":
            assert p["psnr"] == 100.0 and p["ssim"] == pytest.approx(1.0)
        else:
            assert 20 < p["psnr"] < 100

    refs = {r["reference"] for r in res["bd_rate"]}
    assert "png" not in refs and {"jpeg-420", "webp"} <= refs
    for r in res["bd_rate"]:
        assert set(r) >= {"codec", "reference", "bd_rate_percent"} and r["codec"] == "fake"
        assert r["bd_rate_percent"] is None or isinstance(r["bd_rate_percent"], float)


def test_run_bench_folder_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (h, w) in enumerate([(24, 32), (32, 24), (24, 32)]):
        Image.fromarray(smooth_image(h, w, seed=i)).save(folder / f"im{i}.png")
    (folder / "notes.txt").write_text("not an image")
    assert len(load_folder(folder)) == 3
    res = run_bench(str(folder), limit=2, models=[], codecs=["png", "jpeg-444"], out=tmp_path / "out", data=None,
                    quiet=True, sweep={"jpeg-444": [50, 90]}, workers=0)
    assert res["meta"]["n_images"] == 2 and len(res["points"]) == 3
    assert sorted(res["meta"]["image_sizes"]) == ["24x32", "32x24"]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        run_bench(str(empty), limit=None, models=[], codecs=None, out=tmp_path / "o", data=None, quiet=True)
    with pytest.raises(ValueError, match="unknown codec"):
        run_bench(str(folder), limit=None, models=[], codecs=["bmp"], out=tmp_path / "o", data=None, quiet=True)
    with pytest.raises(ValueError, match="unknown benchmark target"):
        run_bench(str(tmp_path / "nope"), limit=None, models=[], codecs=None, out=tmp_path / "o", data=None, quiet=True)


def test_kodak_missing_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VQZIP_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFound):
        run_bench("kodak", limit=1, models=[], codecs=["png"], out=tmp_path / "o", data=tmp_path, quiet=True)


def test_run_bench_with_vqzip_model(tiny_env: Path, tmp_path: Path) -> None:
    """The real adapter: .vqz bytes from vqzip.api, decoded again, with ideal code lengths."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(32, 32, seed=i)).save(folder / f"im{i}.png")
    res = run_bench(str(folder), limit=None, models=["tiny-rvq"], codecs=["jpeg-444"], out=tmp_path / "out",
                    data=None, quiet=True, sweep={"jpeg-444": [10, 30, 60, 90]}, workers=0)
    vq = [p for p in res["points"] if p["codec"] == "vqzip:tiny-rvq"]
    assert [p["quality"] for p in vq] == [1, 2, 3]
    for p in vq:
        assert p["bytes"] > 0 and p["ideal_bits"] > 0 and 0 < p["psnr"] < 100
        assert p["bits_per_image"] >= p["ideal_bits"] - 1  # a real coder can't beat the ideal code length
    assert vq[0]["bytes"] <= vq[-1]["bytes"]
    assert [(r["codec"], r["reference"]) for r in res["bd_rate"]] == [("vqzip:tiny-rvq", "jpeg-444")]
    assert "torch" in res["meta"]["versions"]
    from vqzip.zoo import load_model

    [recorded] = res["meta"]["vqzip_models"]  # traceable to the exact weights measured
    assert recorded["model_id"] == f"{load_model('tiny-rvq').model_id:04x}"
    from rich.console import Console

    from vqzip.bench.report import print_tables

    console = Console(record=True, width=200)
    print_tables(res, console)
    text = console.export_text()
    assert "BD-rate" in text and "at the same PSNR" in " ".join(text.split())  # titles wrap to the table
    rows = [line.split("│")[1:-1] for line in text.splitlines()]
    for q in (1, 2, 3):  # the equal-PSNR table's row (codec, q, one cell per reference) for each vqzip point
        assert any(len(r) == 3 and r[:2] == [" vqzip:tiny-rvq ", f" {q} "] and r[2].strip().endswith(("%", "n/a"))
                   for r in rows)


def test_ms_ssim_is_one_for_identical_images_and_undefined_for_small_ones() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 170, 180, 3), dtype=np.uint8)
    noisy = np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    assert metrics.ms_ssim(img, img) == pytest.approx(1.0)
    worse = metrics.ms_ssim(img, noisy)
    assert worse.shape == (2,) and (worse < 0.999).all() and (worse > 0).all()
    assert np.isnan(metrics.ms_ssim(img[:, :32, :32], img[:, :32, :32])).all()


def test_kodak_thumbs_are_box_downsampled_tiles(tmp_path: Path) -> None:
    """kodak-thumbs: every 256x256 tile on a 256-pixel grid, each the rounded mean of its 8x8 blocks."""
    from vqzip.bench.datasets import kodak_thumbs, load_target

    kodak = tmp_path / "kodak"
    kodak.mkdir()
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (512, 768, 3), dtype=np.uint8), rng.integers(0, 256, (768, 512, 3), dtype=np.uint8)]
    for i, arr in enumerate(photos):
        Image.fromarray(arr).save(kodak / f"kodim{i + 1:02d}.png")
    thumbs = kodak_thumbs(tmp_path)
    assert thumbs.shape == (12, 32, 32, 3) and thumbs.dtype == np.uint8
    block_means = photos[0][:256, 256:512].reshape(32, 8, 32, 8, 3).mean((1, 3))
    assert np.abs(thumbs[1].astype(float) - block_means).max() <= 0.5 + 1e-9  # the second tile of the first photo
    name, images = load_target("kodak-thumbs", tmp_path, 5)
    assert name.startswith("kodak-thumbs") and len(images) == 5


def test_run_bench_auto_climbs_what_encode_picks(tiny_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--models auto: quality k is rung k of the images' ladder (vqzip.pick), the rungs recorded; a set
    whose images climb ladders of different lengths is refused."""
    from vqzip import pick

    monkeypatch.setattr(pick, "PHOTO_MIN_SIDE", 32)
    monkeypatch.setattr(pick, "PHOTO_LADDER", (("tiny-rvq", 1), ("tiny-rvq", 3)))
    monkeypatch.setattr(pick, "DEFAULT_MODEL", "tiny-rvq")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(smooth_image(32, 32, seed=i)).save(folder / f"im{i}.png")
    res = run_bench(str(folder), limit=None, models=["auto", "tiny-rvq"], codecs=["png"], out=tmp_path / "out",
                    data=None, quiet=True, workers=0)
    auto = {p["quality"]: p["bytes"] for p in res["points"] if p["codec"] == "vqzip:auto"}
    own = {p["quality"]: p["bytes"] for p in res["points"] if p["codec"] == "vqzip:tiny-rvq"}
    assert auto == {1: own[1], 2: own[3]}  # the rungs' files are the model's own at those qualities
    recorded = next(r for r in res["meta"]["vqzip_models"] if r["name"] == "vqzip:auto")
    assert [(r["model"], r["quality"]) for r in recorded["rungs"]] == [("tiny-rvq", 1), ("tiny-rvq", 3)]
    Image.fromarray(smooth_image(16, 16, seed=5)).save(folder / "small.png")  # below PHOTO_MIN_SIDE: 3 rungs, not 2
    with pytest.raises(ValueError, match="ladders of different lengths"):
        run_bench(str(folder), limit=None, models=["auto"], codecs=["png"], out=tmp_path / "o2", data=None, quiet=True,
                  workers=0)
