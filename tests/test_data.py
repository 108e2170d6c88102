"""vqzip.training.data on tiny fake CIFAR-10 copies (10 records per batch file) built in tmp_path."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from vqzip.training import data

N = 10  # records per fake batch file
FILES = [*data.TRAIN_FILES, *data.TEST_FILES]  # record r of the whole fake set is in FILES[r // N]


def fake_image(r: int) -> np.ndarray:
    """A (32, 32, 3) image whose R, G, B planes differ and are not symmetric in x and y."""
    y, x = np.mgrid[0:32, 0:32]
    return np.stack([(7 * y + x + r) % 256, (32 * y + x) // 4, (255 - x - 3 * y) % 256], -1).astype(np.uint8)


def fake_records(i: int) -> tuple[np.ndarray, list[int]]:
    """Planar (N, 3072) pixels and labels of fake batch file i, as CIFAR-10 stores them."""
    rs = range(i * N, (i + 1) * N)
    return np.stack([fake_image(r).transpose(2, 0, 1).ravel() for r in rs]), [r % 10 for r in rs]


def write_bin(folder: Path) -> Path:
    d = folder / data.BIN_DIR
    d.mkdir(parents=True)
    for i, name in enumerate(FILES):
        pixels, labels = fake_records(i)
        (d / name).write_bytes(np.concatenate([np.array(labels, np.uint8)[:, None], pixels], 1).tobytes())
    return d


def write_py(folder: Path) -> Path:
    d = folder / data.PY_DIR
    d.mkdir(parents=True)
    for i, name in enumerate(FILES):
        pixels, labels = fake_records(i)
        batch = {b"batch_label": b"fake", b"labels": labels, b"data": pixels, b"filenames": [b"x.png"] * N}
        # protocol 4 keeps bytes native (no _codecs global) and arrays on numpy's _reconstruct path
        (d / name.removesuffix(".bin")).write_bytes(pickle.dumps(batch, protocol=4))
    return d


def write_tar(folder: Path, name: str, layout_dir: Path) -> Path:
    path = folder / name
    with tarfile.open(path, "w:gz" if name.endswith(".gz") else "w:xz") as tf:
        tf.add(layout_dir, arcname=layout_dir.name)
    return path


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Shrinks batches to N records, isolates env and cache in tmp_path, returns an empty data root."""
    monkeypatch.setattr(data, "BATCH_RECORDS", N)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VQZIP_DATA", raising=False)
    scratch = write_bin(tmp_path / "md5src")
    md5s = {n: hashlib.md5((scratch / n).read_bytes()).hexdigest() for n in FILES}
    monkeypatch.setattr(data, "BIN_MD5", md5s)
    (root := tmp_path / "root").mkdir()
    return root


def check(images: np.ndarray, labels: np.ndarray, split: str) -> None:
    first = 0 if split == "train" else 5 * N
    assert images.shape == ((5 if split == "train" else 1) * N, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [(first + k) % 10 for k in range(len(labels))]
    r = first + 3
    assert images[3, 2, 5].tolist() == [(14 + 5 + r) % 256, (64 + 5) // 4, 255 - 5 - 6]  # R, G, B at y=2, x=5
    assert images[3, 5, 2].tolist() == [(35 + 2 + r) % 256, (160 + 2) // 4, 255 - 2 - 15]
    np.testing.assert_array_equal(images, np.stack([fake_image(first + k) for k in range(len(images))]))


LAYOUTS = ["bin", "py", "cifar10/bin", "cifar10/py", "bin.tar.gz", "bin.tar.xz", "py.tar.gz", "py.tar.xz",
           "cifar10/bin.tar.xz"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_load_with_planar_pixel_order(fake: Path, tmp_path: Path, layout: str) -> None:
    sub, _, kind = layout.rpartition("/")
    where = fake / sub
    kind, _, ext = kind.partition(".")
    made = (write_bin if kind == "bin" else write_py)(tmp_path / "src" if ext else where)
    tarball = None
    if ext:
        where.mkdir(exist_ok=True)
        tarball = write_tar(where, f"cifar-10-{'binary' if kind == 'bin' else 'python'}.{ext}", made)
    for split in ("train", "test"):
        check(*data.load_cifar10(split, data=fake), split)
    if tarball:  # extracted once into the cache: later loads need the tarball no more
        tarball.unlink()
        assert (tmp_path / "cache" / "vqzip" / made.name).is_dir()
        check(*data.load_cifar10("test", data=fake), "test")
        assert [p.name for p in (tmp_path / "cache" / "vqzip").iterdir()] == [made.name]  # no temp left


def test_vqzip_data_env_var_and_root_order(fake: Path, tmp_path: Path, monkeypatch) -> None:
    write_bin(fake)
    monkeypatch.setenv("VQZIP_DATA", str(fake))
    check(*data.load_cifar10("test"), "test")
    assert data.candidate_roots("x") == [Path("x"), fake, tmp_path / "cache" / "vqzip"]


@pytest.mark.parametrize("member", ["../evil", "/tmp/vqzip-test-evil", "link"])
def test_unsafe_tar_member_is_refused(fake: Path, tmp_path: Path, member: str) -> None:
    write_bin(tmp_path / "src")
    with tarfile.open(fake / "cifar-10-binary.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "src" / data.BIN_DIR, arcname=data.BIN_DIR)
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "../../.."
            tf.addfile(info)
        else:
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(data.UnsafeArchive, match="refusing member"):
        data.load_cifar10("test", data=fake)
    assert not list(tmp_path.rglob("*evil*")) and not Path("/tmp/vqzip-test-evil").exists()
    assert list((tmp_path / "cache" / "vqzip").iterdir()) == []  # no half folder, no temp folder


def test_pickle_with_disallowed_global_is_refused(fake: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    write_py(fake)
    (fake / data.PY_DIR / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=4))
    with pytest.raises(data.UnsafePickle, match="refusing global (posix|os|nt).system"):
        data.load_cifar10("test", data=fake)
    assert not marker.exists()


def test_truncated_batch_gives_clear_error(fake: Path) -> None:
    f = write_bin(fake) / "test_batch.bin"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(data.CorruptData, match=r"test_batch\.bin: 30630 bytes, expected 30730 \(truncated"):
        data.load_cifar10("test", data=fake)


def test_tarball_failing_member_md5_is_refused(fake: Path, tmp_path: Path, monkeypatch) -> None:
    write_tar(fake, "cifar-10-binary.tar.gz", write_bin(tmp_path / "src"))
    monkeypatch.setitem(data.BIN_MD5, "test_batch.bin", "0" * 32)
    with pytest.raises(data.CorruptData, match="md5"):
        data.load_cifar10("test", data=fake)
    assert list((tmp_path / "cache" / "vqzip").iterdir()) == []


class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes) -> None:
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body))}


def serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> bytes:
    body = write_tar(tmp_path, "served.tar.gz", write_bin(tmp_path / "src")).read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: FakeResponse(body))
    return body


def test_download_with_good_md5(fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "CIFAR10_MD5", hashlib.md5(serve(monkeypatch, tmp_path)).hexdigest())
    with pytest.raises(data.DataNotFound):  # no download unless asked for
        data.load_cifar10("test", data=fake)
    check(*data.load_cifar10("test", data=fake, download=True), "test")
    left = sorted(p.name for p in (tmp_path / "cache" / "vqzip").iterdir())
    assert left == sorted([data.BIN_DIR, data.LOCK_NAME])  # tarball gone


def test_concurrent_loads_download_once(fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rank of a torchrun job asks for the data at once: one download, the others wait for it."""
    from concurrent.futures import ThreadPoolExecutor

    body = serve(monkeypatch, tmp_path)
    monkeypatch.setattr(data, "CIFAR10_MD5", hashlib.md5(body).hexdigest())
    calls, real = [], data.download_cifar10

    def slow_download(dest=None):
        calls.append(1)
        time.sleep(0.3)  # long enough for the other loaders to arrive while it runs
        return real(dest)

    monkeypatch.setattr(data, "download_cifar10", slow_download)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: data.load_cifar10("train", data=fake, download=True), range(4)))
    assert len(calls) == 1
    for images, labels in results:
        check(images, labels, "train")


def test_download_with_bad_md5_is_refused(fake: Path, tmp_path: Path, monkeypatch) -> None:
    serve(monkeypatch, tmp_path)
    with pytest.raises(data.CorruptData, match="md5"):
        data.download_cifar10(tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []


def test_no_network_is_data_not_found(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(data.DataNotFound) as err:
        data.load_cifar10("train", data=fake, download=True)
    msg = str(err.value)
    assert str(fake) in msg and "VQZIP_DATA" in msg and data.CIFAR10_URL in msg and "no network" in msg


def test_image_folder_and_random_crops(tmp_path: Path) -> None:
    from PIL import Image

    y, x = np.mgrid[0:40, 0:30]
    rgb = np.stack([y, x, y + x], -1).astype(np.uint8)  # each pixel tells where it is
    Image.fromarray(rgb).save(tmp_path / "b.png")
    Image.fromarray(np.full((20, 24), 7, np.uint8), "L").save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    a, b = data.load_image_folder(tmp_path)
    assert a.shape == (20, 24, 3) and (a == 7).all() and b.dtype == np.uint8
    np.testing.assert_array_equal(b, rgb)
    assert len(data.load_image_folder(tmp_path, limit=1)) == 1
    np.testing.assert_array_equal(data.load_image_folder(tmp_path, crop=16)[1], rgb[12:28, 7:23])

    crops = data.random_crops([b], 8, 5, np.random.default_rng(0))
    assert crops.shape == (5, 8, 8, 3) and crops.dtype == np.uint8
    for c in crops:  # each is a real window of b, found from its top-left pixel
        top, left = int(c[0, 0, 0]), int(c[0, 0, 1])
        np.testing.assert_array_equal(c, b[top : top + 8, left : left + 8])
    with pytest.raises(ValueError, match="smaller"):
        data.random_crops([a], 21, 1, np.random.default_rng(0))


def test_real_cifar10_test_split(real_data: Path) -> None:
    """Uses the real user cache, so the shared tarball is extracted at most once per machine."""
    images, labels = data.load_cifar10("test", data=real_data)
    assert images.shape == (10000, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(labels.tolist()) == set(range(10))
