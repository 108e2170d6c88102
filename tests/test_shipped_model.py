"""The shipped default model: installed with the package, codes the sample photo, and on real CIFAR-10
test images its files sit within 1 % (plus a few bytes) of the prior's ideal code length."""
import io
from importlib import resources

import numpy as np
import pytest
from PIL import Image

from vqzip import api, container, zoo
from vqzip.bench.metrics import psnr


@pytest.fixture(scope="module")
def model():
    return api.load_model()


def test_default_model_is_installed_with_a_card(model):
    assert model.name == zoo.DEFAULT_MODEL
    card = model.card
    assert card["qualities"] == model.qualities >= 6
    assert [r["quality"] for r in card["results"]["per_quality"]] == list(range(1, model.qualities + 1))


def test_sample_photo_round_trip_improves_with_quality(model):
    sample = Image.open(io.BytesIO(resources.files("vqzip.assets").joinpath("sample.png").read_bytes())).convert("RGB")
    ref = np.asarray(sample)
    scores, sizes = [], []
    for q in (1, model.default_quality, model.qualities):
        data = api.compress(sample, model, q)
        sizes.append(len(data))
        scores.append(psnr(ref, np.asarray(api.decompress(data))))
    assert sizes == sorted(sizes) and scores == sorted(scores)
    assert scores[1] > 24  # a recognisable photo at the default quality


def test_cifar10_sizes_near_ideal_and_match_the_card(model, real_data):
    from vqzip.data import load_cifar10

    images = load_cifar10("test", real_data)[0][:256]
    static_rows = {r["quality"]: r["static_bytes"] for r in model.card["context_prior"]["results"]["per_quality"]}
    for row in model.card["results"]["per_quality"]:
        for prior in ("static", "context"):  # both coders land within 1 % + 4 bytes of their ideal size
            for e in api.encode_batch(images, model, row["quality"], prior=prior):
                payload = len(container.parse(e.data, model.key(e.data[2])).payload)
                assert payload <= e.ideal_bits / 8 * 1.01 + 4
        static = np.mean([len(e.data) for e in api.encode_batch(images, model, row["quality"], prior="static")])
        assert abs(static - static_rows[row["quality"]]) / static < 0.05
        enc = api.encode_batch(images, model, row["quality"])
        mean_bytes = np.mean([len(e.data) for e in enc])
        assert abs(mean_bytes - row["bytes"]) / row["bytes"] < 0.05  # 256 images vs the card's 10,000
        back = np.stack(api.decode_batch([e.data for e in enc], model))
        assert abs(psnr(images, back).mean() - row["psnr"]) < 0.5
