"""The library API on a tiny random model: any size and colour mode round-trips, sizes are honest."""
import io

import numpy as np
import pytest
from PIL import Image

from vqzip import api, zoo
from vqzip.coding import container
from vqzip.errors import FormatError, ModelNotFound, VqzipError, VqzipWarning


@pytest.fixture
def model(tiny_env):
    return api.load_model("tiny-rvq")


def rgb(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(1, 1), (3, 7), (32, 32), (33, 65), (130, 5)])
def test_any_size_round_trips(model, size):
    img = Image.fromarray(rgb(*size))
    back = api.decompress(api.compress(img, model, 1))
    assert back.size == img.size and back.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_colour_modes_come_back(model, mode):
    img = Image.fromarray(rgb(9, 11)).convert(mode)
    if mode in ("LA", "RGBA"):
        alpha = Image.fromarray(np.arange(99, dtype=np.uint8).reshape(9, 11) * 2)
        img.putalpha(alpha)
    back = api.decompress(api.compress(img, model))
    assert back.mode == mode
    if mode in ("LA", "RGBA"):
        assert np.array_equal(np.asarray(back.getchannel("A")), np.asarray(img.getchannel("A")))  # lossless alpha


def test_palette_and_16_bit_convert_with_a_warning(model):
    pal = Image.fromarray(rgb(8, 8)).convert("P")
    with pytest.warns(VqzipWarning, match="palette"):
        assert api.decompress(api.compress(pal, model)).mode == "RGB"
    deep = Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    assert deep.mode.startswith("I;16")
    with pytest.warns(VqzipWarning, match="16-bit"):
        assert api.decompress(api.compress(deep, model)).mode == "L"


def test_an_animation_is_encoded_by_its_first_frame_with_a_warning(model):
    first, second = Image.fromarray(rgb(8, 8, 1)), Image.fromarray(rgb(8, 8, 2))
    buf = io.BytesIO()
    first.save(buf, format="WEBP", save_all=True, append_images=[second], lossless=True)
    anim = Image.open(buf)
    with pytest.warns(VqzipWarning, match="2 frames; only the first"):
        back = api.decompress(api.compress(anim, model))
    assert back.size == first.size


def test_batch_equals_single_and_decoding_is_deterministic(model):
    imgs = np.stack([rgb(32, 32, s) for s in range(5)])
    batch = api.encode_batch(imgs, model, 3)
    single = [api.encode_batch(imgs[i: i + 1], model, 3)[0] for i in range(5)]
    assert [e.data for e in batch] == [e.data for e in single]
    a = api.decode_batch([e.data for e in batch], model)
    b = [api.decode_batch([e.data], model)[0] for e in batch]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_passes_are_bounded_by_pixels_and_batch(model, monkeypatch):
    """Same-size images share a network pass up to PASS_PIXELS pixels (at least one image) and `batch`
    images, encoding and decoding alike (memory grows with a pass; benchmarks/many_photos_memory.py),
    and the files are the same as when coded one at a time."""
    assert api.passes(list(range(10)), 300_000) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]  # 1 Mi pixels
    assert api.passes(list(range(5)), 10 * api.PASS_PIXELS) == [[0], [1], [2], [3], [4]]
    assert api.passes(list(range(5)), 1, batch=2) == [[0, 1], [2, 3], [4]]
    imgs = np.stack([rgb(16, 24, s) for s in range(5)])
    alone = [api.encode_batch(imgs[i: i + 1], model, 2)[0].data for i in range(5)]
    monkeypatch.setattr(api, "PASS_PIXELS", 2 * 16 * 24)
    seen, real = [], api.token_images
    monkeypatch.setattr(api, "token_images", lambda tokens, *a, **k: seen.append(len(tokens)) or real(tokens, *a, **k))
    assert [e.data for e in api.encode_batch(imgs, model, 2)] == alone
    assert len(api.decode_batch(alone)) == 5 and seen == [2, 2, 1]


def test_tiled_large_image_matches_untiled(model, monkeypatch):
    img = rgb(64, 96)
    whole = api.encode_batch(img[None], model, 2)[0].data
    monkeypatch.setattr(api, "TILE_PIXELS", 16)  # force many tiles on a small image (4 positions at stride 4)
    monkeypatch.setattr(api, "MARGIN", 8)
    assert api.encode_batch(img[None], model, 2)[0].data == whole


def test_payload_within_one_percent_of_ideal(model):
    imgs = np.stack([rgb(64, 64, s) for s in range(4)])
    for e in api.encode_batch(imgs, model, 3):
        payload = len(container.parse(e.data, model.digest).payload)
        assert payload <= e.ideal_bits / 8 * 1.01 + 4


def test_quality_out_of_range_and_wrong_model(model, tiny_env):
    with pytest.raises(VqzipError, match="quality"):
        api.compress(rgb(4, 4), model, 99)
    data = api.compress(rgb(4, 4), model)
    forged = data[:3] + bytes([data[3] ^ 0xFF]) + data[4:]
    with pytest.raises(ModelNotFound, match="model id"):
        api.decompress(forged)


def test_quality_controls_size_and_fidelity(model):
    img = Image.open(io.BytesIO(_smooth_png()))
    sizes = [len(api.compress(img, model, q)) for q in (1, 2, 3)]
    assert sizes[0] < sizes[1] < sizes[2]


def _smooth_png() -> bytes:
    y, x = np.mgrid[0:48, 0:48]
    arr = np.stack([x * 5, y * 5, (x + y) * 2], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def ctx_model(tiny_env):
    return api.load_model("tiny-ctx")


@pytest.mark.parametrize("size", [(1, 1), (33, 65), (130, 5)])
def test_context_prior_writes_version_2_with_the_same_pixels(ctx_model, size):
    img = rgb(*size, seed=3)
    v2 = api.compress(img, ctx_model, 3)
    v1 = api.compress(img, ctx_model, 3, prior="static")
    assert (v2[2], v1[2]) == (2, 1)  # the version byte
    # same tokens, so the same decoded pixels, whichever prior coded them
    assert np.array_equal(np.asarray(api.decompress(v2)), np.asarray(api.decompress(v1)))


def test_context_prior_batches_like_single_images(ctx_model):
    imgs = np.stack([rgb(16, 24, seed=s) for s in range(5)])
    batch = [e.data for e in api.encode_batch(imgs, ctx_model, 3)]
    assert batch == [api.encode_batch(imgs[i: i + 1], ctx_model, 3)[0].data for i in range(5)]
    assert all(np.array_equal(a, b) for a, b in zip(api.decode_batch(batch), api.decode_batch(batch[::-1])[::-1]))


def test_prior_choice_errors(model, ctx_model):
    with pytest.raises(VqzipError, match="no context prior"):
        api.compress(rgb(8, 8), model, 1, prior="context")
    with pytest.raises(VqzipError, match="prior must be"):
        api.compress(rgb(8, 8), ctx_model, 1, prior="best")
    assert api.compress(rgb(8, 8), model, 1)[2] == 1  # no context prior: version 1


def test_version_2_needs_its_exact_prior(ctx_model, tiny_env, monkeypatch, tmp_path):
    import shutil

    data = api.compress(rgb(8, 8), ctx_model, 2)
    copy = tmp_path / "models"
    copy.mkdir()
    shutil.copy(tiny_env / "tiny-ctx.safetensors", copy)
    monkeypatch.setenv("VQZIP_MODELS", str(copy))
    zoo._load.cache_clear()
    with pytest.raises(ModelNotFound, match="context prior"):
        api.decompress(data)
    prior = (tiny_env / "tiny-ctx.prior.safetensors").read_bytes()
    (copy / "tiny-ctx.prior.safetensors").write_bytes(prior[:-1] + bytes([prior[-1] ^ 1]))  # another prior
    zoo._load.cache_clear()
    zoo.digest.cache_clear()
    with pytest.raises(FormatError, match="checksum"):
        api.decompress(data)
    zoo._load.cache_clear()


def test_a_model_installed_later_is_found(model, tiny_env, monkeypatch, tmp_path):
    """find_by_id keeps each folder's ids while the folder is unchanged; a model copied in is found."""
    import shutil

    data = api.compress(rgb(8, 8), model, 1)
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("VQZIP_MODELS", str(folder))
    with pytest.raises(ModelNotFound, match="not installed"):
        api.decompress(data)
    shutil.copy(tiny_env / "tiny-rvq.safetensors", folder)
    assert api.decompress(data).size == (8, 8)


def test_find_by_id_hashes_only_the_model_its_card_names(tiny_env, monkeypatch, tmp_path):
    """A card naming the id is checked first (one model hashed, not every installed one); a card that
    names a wrong id, or none, is only a hint: the search over every model's digest still finds it."""
    import json
    import shutil

    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(tiny_env / "tiny-rvq.safetensors", folder / f"{name}.safetensors")
        with open(folder / f"{name}.safetensors", "ab") as f:
            f.write(name.encode())  # three different digests: only the digests are read here
    ids = {n: zoo.model_id(folder / f"{n}.safetensors") for n in "abc"}
    (folder / "c.json").write_text(json.dumps({"model_id": f"{ids['c']:04x}"}))
    (folder / "a.json").write_text(json.dumps({"model_id": f"{ids['c']:04x}"}))  # a wrong claim
    monkeypatch.setenv("VQZIP_MODELS", str(folder))
    zoo.digest.cache_clear()
    hashed = []
    real = zoo.digest.__wrapped__
    monkeypatch.setattr(zoo, "digest", lambda p: hashed.append(p.name) or real(p))
    assert zoo.find_by_id(ids["c"]).name == "c.safetensors" and sorted(hashed) == ["a.safetensors", "c.safetensors"]
    hashed.clear()
    assert zoo.find_by_id(ids["b"]).name == "b.safetensors" and "b.safetensors" in hashed


def test_a_batch_finds_each_files_model_once(model, monkeypatch):
    """Decoding many files without -m resolves each model id once per batch and reads the installed
    cards once per folder listing, not once per file (it was 2.5 ms a file with 17 cards)."""
    datas = [api.compress(rgb(8, 8, seed=i), model, 1) for i in range(5)]
    reads, finds = [], []
    real_read, real_find = zoo.read_card, zoo.find_by_id
    monkeypatch.setattr(zoo, "read_card", lambda p: reads.append(p.name) or real_read(p))
    monkeypatch.setattr(api, "find_by_id", lambda mid: finds.append(mid) or real_find(mid))
    zoo._claims_in.cache_clear()
    assert len(api.decode_batch(datas)) == 5 and finds == [model.model_id]
    assert len(reads) == len(set(reads)) > 0
    reads.clear()
    assert [im.size for im in api.decompress_images(datas)] == [(8, 8)] * 5 and reads == []


def test_measure_priors_matches_real_files(ctx_model):
    from vqzip.training.evaluate import measure, measure_priors

    imgs = np.stack([rgb(16, 24, seed=s) for s in range(6)])
    rows = measure_priors(ctx_model, imgs, batch=4, verify=6)
    for row, static, context in zip(rows, measure(ctx_model, imgs, prior="static"), measure(ctx_model, imgs, prior="context")):
        assert row["static_bytes"] == static["bytes"] and row["context_bytes"] == context["bytes"]
        assert row["psnr"] == pytest.approx(static["psnr"]) and row["psnr"] == pytest.approx(context["psnr"])


def _with_metadata(arr: np.ndarray, orientation: int = 1, icc: bytes = b"profile" * 40) -> Image.Image:
    """An image as Pillow opens it from a PNG carrying an ICC profile and EXIF (a camera make, an orientation)."""
    exif = Image.Exif()
    exif[0x010F] = "vqzip test camera"
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", exif=exif, icc_profile=icc)
    img = Image.open(io.BytesIO(buf.getvalue()))
    img.load()
    return img


def test_icc_and_exif_are_kept_and_given_back(model):
    img = _with_metadata(rgb(12, 10))
    data = api.compress(img, model, 1)
    assert data[2] & container.METADATA_BIT
    back = api.decompress(data)
    assert back.info["icc_profile"] == img.info["icc_profile"]
    assert back.getexif()[0x010F] == "vqzip test camera"
    icc_only = api.decompress(api.compress(img, model, 1, metadata="icc"))
    assert "icc_profile" in icc_only.info and "exif" not in icc_only.info
    exif_only = api.decompress(api.compress(img, model, 1, metadata="exif"))
    assert "icc_profile" not in exif_only.info and "exif" in exif_only.info
    with pytest.raises(VqzipError, match="metadata must be"):
        api.compress(img, model, 1, metadata="some")


def test_no_metadata_no_cost(model):
    """Without metadata (none there, or --metadata none) a file is byte for byte what it was before
    metadata existed: 12 bytes of overhead at 32x32."""
    plain = api.compress(rgb(32, 32), model, 1)
    stripped = api.compress(_with_metadata(rgb(32, 32)), model, 1, metadata="none")
    assert plain == stripped and plain[2] == 1
    f = container.parse(plain, model.digest)
    assert f.overhead == 12 and not f.metadata


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_to_the_pixels(model, orientation):
    """The decoded image looks the way the original displayed: same tokens as the transposed image, and
    its EXIF says orientation 1 (so viewers do not turn it again), other tags kept."""
    from PIL import ImageOps

    img = _with_metadata(rgb(6, 14), orientation)
    shown = ImageOps.exif_transpose(img)
    data = api.compress(img, model, 2)
    back = api.decompress(data)
    assert back.size == shown.size == ((6, 14) if orientation in (6, 8) else (14, 6))
    assert np.array_equal(api.file_tokens(data), api.file_tokens(api.compress(np.asarray(shown), model, 2)))
    assert back.getexif()[0x0112] == 1 and back.getexif()[0x010F] == "vqzip test camera"
    assert api.decompress(api.compress(img, model, 2, metadata="none")).size == shown.size  # orientation applied anyway


def test_a_converted_colour_space_drops_its_profile(model):
    cmyk = Image.fromarray(rgb(8, 8)).convert("CMYK")
    cmyk.info["icc_profile"] = b"a CMYK profile"
    with pytest.warns(VqzipWarning, match="ICC profile dropped"):
        data = api.compress(cmyk, model, 1)
    assert "icc_profile" not in api.decompress(data).info


DATA = __import__("pathlib").Path(__file__).resolve().parent / "data"


def _samples() -> list[Image.Image]:
    """Real photos the shipped model codes well (its PSNR rises with quality, as targets assume)."""
    big = Image.open(DATA / "sample64.png")
    return [Image.open(DATA / "sample32.png"), big, big.crop((0, 0, 40, 24)), big.crop((10, 20, 50, 44))]


def test_size_and_bpp_targets_pick_the_largest_quality_that_fits(model):
    imgs = [Image.fromarray(rgb(20, 30, s)) for s in range(3)] + [Image.open(io.BytesIO(_smooth_png()))]
    sizes = [[len(api.compress(img, model, q)) for q in (1, 2, 3)] for img in imgs]
    for budget_of in (lambda s: s[1], lambda s: s[1] - 1, lambda s: s[2] + 100, lambda s: s[0]):
        for img, s in zip(imgs, sizes):
            [t] = api.compress_to_target([img], model, size=budget_of(s))
            expect = max(q for q in (1, 2, 3) if s[q - 1] <= budget_of(s))
            assert (t.quality, t.met, len(t.data)) == (expect, True, s[expect - 1])
    [t] = api.compress_to_target([imgs[0]], model, bpp=8 * sizes[0][1] / 600)
    assert t.quality == 2 and t.data == api.compress(imgs[0], model, 2)


def test_an_unreachable_size_warns_and_gives_the_smallest_file(model):
    with pytest.warns(VqzipWarning, match=r"photo\.png: 10 bytes is out of reach .* quality, 1, makes 32 bytes"):
        [t] = api.compress_to_target([Image.fromarray(rgb(20, 30))], model, size=10, names=["photo.png"])
    assert (t.quality, t.met) == (1, False) and len(t.data) == 32


def test_psnr_target_picks_the_smallest_quality_that_reaches_it():
    m = api.load_model("cifar10-rvq")
    imgs = _samples()
    rgbs = [np.asarray(img.convert("RGB")) for img in imgs]
    scores = [[api._psnr(r, api.decode_batch([api.compress(img, m, q)], m)[0]) for q in range(1, 11)]
              for img, r in zip(imgs, rgbs)]
    assert all(s == sorted(s) for s in scores)  # monotone, as the search assumes
    for target in (20.0, 26.0, 30.5):
        got = api.compress_to_target(imgs, m, psnr=target)
        for t, s, r in zip(got, scores, rgbs):
            assert t.met and t.quality == 1 + next(q for q, db in enumerate(s) if db >= target)
            assert t.psnr == pytest.approx(api._psnr(r, api.decode_batch([t.data], m)[0]))  # what the file decodes to
    reached = r"60 dB is out of reach for model cifar10-rvq; its highest quality, 10, reaches 3\d\.\d\d dB"
    with pytest.warns(VqzipWarning, match=reached):
        [t] = api.compress_to_target(imgs[:1], m, psnr=60)
    assert (t.quality, t.met) == (10, False)


def test_targets_are_searched_in_batches(model, monkeypatch):
    """Images trying the same quality share a network pass: 8 images of one size, 3 qualities, take at
    most 3 encoder passes (2 rounds of bisection), not 16."""
    calls = []
    real = api.image_tokens
    monkeypatch.setattr(api, "image_tokens", lambda *a: calls.append(1) or real(*a))
    imgs = [Image.fromarray(rgb(16, 16, s)) for s in range(8)]
    got = api.compress_to_target(imgs, model, size=10_000)
    assert [t.quality for t in got] == [3] * 8 and len(calls) == 2
    calls.clear()
    got = api.compress_to_target(imgs, model, size=len(api.compress(imgs[0], model, 2)))
    assert len(calls) <= 3


def test_target_errors(model):
    with pytest.raises(VqzipError, match="exactly one"):
        api.compress_to_target([Image.fromarray(rgb(4, 4))], model, size=10, psnr=30)
    with pytest.raises(VqzipError, match="positive"):
        api.compress_to_target([Image.fromarray(rgb(4, 4))], model, bpp=0)
