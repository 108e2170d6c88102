"""Files of every .vqz version ever written keep decoding (tests/data/make_samples.py made them)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqzip import api
from vqzip.bench.metrics import psnr
from vqzip.coding import container

DATA = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize("version", [1, 2])
def test_sample_of_each_version_decodes_to_its_tokens(version: int) -> None:
    data = (DATA / f"sample-v{version}.vqz").read_bytes()
    header, _ = container.parse_header(data)
    assert header.version == version and (header.width, header.height, header.quality) == (32, 32, 3)
    assert np.array_equal(api.file_tokens(data), np.load(DATA / "sample-tokens.npy"))
    original = np.asarray(Image.open(DATA / "sample32.png"))
    assert psnr(original[None], np.asarray(api.decompress(data))[None])[0] > 24


@pytest.mark.parametrize("version", [1, 2])
def test_same_tokens_code_to_the_same_bytes(version: int) -> None:
    """The coder of each version still turns the sample's tokens into the committed payload, byte for
    byte: a faster coder (fewer calls, other batching) must not change a file."""
    data = (DATA / f"sample-v{version}.vqz").read_bytes()
    m = api.load_model("cifar10-rvq")
    tokens = np.load(DATA / "sample-tokens.npy").astype(np.int64)[None]
    coder = m.context if version == 2 else m.prior
    [(payload, _)] = coder.encode(tokens)
    assert payload == container.parse(data, m.key(version)).payload


def test_a_renamed_model_still_decodes_its_files() -> None:
    """The first photo model was shipped as photo-rvq and renamed photo-rvq-v1 when a 6-level model
    took the name; a file names its model by id, so its files must find the renamed one unasked."""
    data = (DATA / "photo-rvq-v1-sample64.vqz").read_bytes()
    header, _ = container.parse_header(data)
    assert header.model_id == api.load_model("photo-rvq-v1").model_id != api.load_model("photo-rvq").model_id
    assert np.array_equal(api.file_tokens(data), np.load(DATA / "photo-rvq-v1-sample64-tokens.npy"))
    original = np.asarray(Image.open(DATA / "sample64.png"))
    assert psnr(original[None], np.asarray(api.decompress(data))[None])[0] > 17  # 19.0 dB when written


def test_the_metadata_sample_decodes_with_its_metadata() -> None:
    """A file with a metadata section (version byte 0x82): the tokens of sample-v2.vqz, and its ICC
    profile and EXIF given back."""
    data = (DATA / "sample-v2-metadata.vqz").read_bytes()
    header, _ = container.parse_header(data)
    assert data[2] == 0x82 and header.version == 2 and header.has_metadata
    assert np.array_equal(api.file_tokens(data), np.load(DATA / "sample-tokens.npy"))
    key = api.load_model("cifar10-rvq").key(2)
    assert container.parse(data, key).payload == container.parse((DATA / "sample-v2.vqz").read_bytes(), key).payload
    img = api.decompress(data)
    assert img.info["icc_profile"] == b"vqzip sample ICC profile " * 8  # as tests/data/make_samples.py wrote them
    assert img.getexif()[0x010F] == "vqzip sample camera" and img.getexif()[0x0112] == 1


@pytest.mark.parametrize("version, model", [(3, "photo-hp-v1"), (4, "photo-cc"), (5, "photo-cb128"), (6, "small-cb"),
                                            (7, "photo-cbr128"), (8, "small-cb2")])
def test_the_photo_codec_samples_decode_to_their_tokens(version: int, model: str) -> None:
    """Version 3 (the photo codec's hyperprior), 4 (the hyperprior in channel-conditional slices), 5
    (the slices in checkerboard halves), 6 (small-cb's checkerboard slices run block by block), 7 and 8
    (5 and 6 under the fine tables): the committed file decodes to the tokens it was made from, and
    those tokens still code to its payload byte for byte."""
    data = (DATA / f"sample-v{version}.vqz").read_bytes()
    header, _ = container.parse_header(data)
    m = api.load_model(model)
    assert header.version == version and header.model_id == m.model_id and (m.prior.context.slices > 1) == (version >= 4)
    assert m.prior.context.checkerboard == (version >= 5) and (m.config.prior_block > 0) == (version in (6, 8))
    stored = np.load(DATA / f"sample-v{version}-tokens.npz")
    y, z = stored["y"].astype(np.int64), stored["z"].astype(np.int64)
    assert np.array_equal(api.file_tokens(data), y)
    coder = api.photo_coder(m, version)
    assert coder.fine == (version >= 7)
    assert container.parse(data, m.key(version)).payload == coder.encode(y[None], z[None])[0][0]
    original = np.asarray(Image.open(DATA / "sample128.png"))
    assert psnr(original[None], np.asarray(api.decompress(data))[None])[0] > 24


def test_the_mean_shifted_sample_decodes_to_its_latents() -> None:
    """Version 9 (7's coding with mean-shifted rounding, photo-cbr128): the committed file decodes to the
    latents the encoder reconstructed from, and the analysis latents it was made from still code to its
    payload byte for byte, with those latents."""
    from vqzip.coding.gaussian import ONE

    data = (DATA / "sample-v9.vqz").read_bytes()
    header, _ = container.parse_header(data)
    m = api.load_model("photo-cbr128")
    assert header.version == 9 and header.model_id == m.model_id and header.quality == 5
    stored = np.load(DATA / "sample-v9-latents.npz")
    y, z, y_hat = stored["y"], stored["z"].astype(np.int64), stored["y_hat"] / ONE
    assert np.array_equal(api.file_tokens(data), y_hat)
    [(payload, _)], again = api.photo_coder(m, 9).encode_latents(y[None], z[None])
    assert payload == container.parse(data, m.key(9)).payload and np.array_equal(again[0], y_hat)
    assert np.abs(y_hat - y).max() <= 0.5 and (y_hat != np.round(y)).any()  # within half a step, not the rounding
    original = np.asarray(Image.open(DATA / "sample128.png"))
    assert psnr(original[None], np.asarray(api.decompress(data))[None])[0] > 24
