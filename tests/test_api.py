"""The library API on a tiny random model: any size and colour mode round-trips, sizes are honest."""
import io

import numpy as np
import pytest
from PIL import Image

from vqzip import api, container
from vqzip.errors import ModelNotFound, VqzipError, VqzipWarning


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


def test_batch_equals_single_and_decoding_is_deterministic(model):
    imgs = np.stack([rgb(32, 32, s) for s in range(5)])
    batch = api.encode_batch(imgs, model, 3)
    single = [api.encode_batch(imgs[i: i + 1], model, 3)[0] for i in range(5)]
    assert [e.data for e in batch] == [e.data for e in single]
    a = api.decode_batch([e.data for e in batch], model)
    b = [api.decode_batch([e.data], model)[0] for e in batch]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_tiled_large_image_matches_untiled(model, monkeypatch):
    img = rgb(64, 96)
    whole = api.encode_batch(img[None], model, 2)[0].data
    monkeypatch.setattr(api, "TILE", 4)  # force many tiles on a small image
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
