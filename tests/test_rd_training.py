"""Rate-distortion training (training/rd.py, `vqzip train --arch hyperprior`): thumbnails, exact
resume, and a small-image codec (stride 8) trained, exported and coded end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqzip.codec.config import PhotoConfig
from vqzip.codec.hyperprior import PhotoCodec
from vqzip.training.rd import RDConfig, thumbnails, train_rd

SMALL = PhotoConfig(channels=8, latent=8, hyper=8, lambdas=(0.01, 0.1), downsamples=3)


def _photos(n: int = 3, h: int = 144, w: int = 160) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_thumbnails_are_box_downsampled_crops_and_repeatable() -> None:
    flat = [np.full((144, 160, 3), v, np.uint8) for v in (10, 200)]
    thumbs = thumbnails(flat, 16, 12, seed=3)
    assert len(thumbs) == 12 and all(t.shape == (16, 16, 3) and t.dtype == np.uint8 for t in thumbs)
    assert {int(t[0, 0, 0]) for t in thumbs} <= {10, 200}  # a box filter keeps a flat photo's value
    noisy = _photos()
    a, b, c = thumbnails(noisy, 16, 5, seed=3), thumbnails(noisy, 16, 5, seed=3), thumbnails(noisy, 16, 5, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert max(float(t.std()) for t in a) < float(noisy[0].std()) / 1.5  # averaged over k x k >= 2 x 2 pixels
    with pytest.raises(ValueError, match="no photo of at least 192x192"):
        thumbnails(noisy, 96, 1, seed=0)


def test_a_resumed_run_takes_the_steps_an_uninterrupted_one_does(tmp_path: Path) -> None:
    photos = _photos()
    cfg = RDConfig(steps=4, codec=SMALL, batch_size=2, crop=32, warmup_steps=2, seed=1)
    straight = train_rd(photos, cfg, tmp_path / "straight")
    train_rd(photos, RDConfig(**{**cfg.__dict__, "steps": 2}), tmp_path / "resumed")
    resumed = train_rd(photos, cfg, tmp_path / "resumed")
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def _vqzip(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vqzip", *args], capture_output=True, text=True, env=env, timeout=600)


def test_train_a_small_image_codec_on_thumbnails_then_code_with_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, p in enumerate(_photos()):
        Image.fromarray(p).save(photos / f"{i}.png")
    models = tmp_path / "models"
    env = {**os.environ, "VQZIP_MODELS": str(models), "OMP_NUM_THREADS": "1"}
    proc = _vqzip("train", str(photos), "--arch", "hyperprior", "--downsamples", "3", "--thumbnails", "32,64",
                  "--crops", "20", "--crop", "32", "--batch-size", "4", "--channels", "8", "--latent", "8",
                  "--hyper", "8", "--lambdas", "0.01,0.1", "--steps", "3", "--out", str(models / "small"),
                  "--run", str(tmp_path / "run"), "--no-evaluate", env=env)
    assert proc.returncode == 0, proc.stderr
    card = json.loads((models / "small.json").read_text())
    assert card["config"]["downsamples"] == 3 and card["qualities"] == 2
    assert card["summary"].startswith("rate-distortion small-image codec")  # `vqzip models` shows it
    assert "H/8 x W/8" in card["tokens"]["grid"] and "20 thumbnails each of 32x32 and 64x64" in card["data"]

    from vqzip import api, zoo
    from vqzip.coding import container

    monkeypatch.setenv("VQZIP_MODELS", str(models))
    m = zoo.load_model("small")
    image = _photos(2, 32, 32)[1]
    assert api.image_tokens(image[None], m, 2).shape == (1, 8, 4, 4)
    data = api.encode_batch(image[None], m, 2)[0].data
    assert api.decode_batch([data], m)[0].shape == (32, 32, 3)

    # trained further with a quality added below: the kept qualities start from their own gains
    proc = _vqzip("train", str(photos), "--arch", "hyperprior", "--downsamples", "3", "--thumbnails", "32",
                  "--crops", "8", "--crop", "32", "--batch-size", "2", "--channels", "8", "--latent", "8",
                  "--hyper", "8", "--lambdas", "0.003,0.01,0.1", "--steps", "1", "--lr", "1e-9", "--init", "small",
                  "--out", str(models / "more"), "--run", str(tmp_path / "run-more"), "--no-evaluate", env=env)
    assert proc.returncode == 0, proc.stderr
    more = zoo.load_model("more")
    assert more.qualities == 3
    assert torch.allclose(more.codec.log_gain[1:], m.codec.log_gain, atol=1e-5)

    # trained further with two channel-conditional slices: they start at zero corrections, files decode
    proc = _vqzip("train", str(photos), "--arch", "hyperprior", "--downsamples", "3", "--thumbnails", "32",
                  "--crops", "8", "--crop", "32", "--batch-size", "2", "--channels", "8", "--latent", "8",
                  "--hyper", "8", "--lambdas", "0.01,0.1", "--slices", "2", "--context", "4", "--lr", "1e-9",
                  "--steps", "2", "--init", "small", "--out", str(models / "sliced"), "--run", str(tmp_path / "run-sliced"),
                  "--no-evaluate", env=env)
    assert proc.returncode == 0, proc.stderr
    sliced = zoo.load_model("sliced")
    assert sliced.prior.context.slices == 2 and "2 channel-conditional slices" in sliced.card["summary"]
    assert torch.allclose(sliced.codec.g_s[0].weight, m.codec.g_s[0].weight, atol=1e-6)
    data = api.encode_batch(image[None], sliced, 2)[0].data
    assert api.decode_batch([data], sliced)[0].shape == (32, 32, 3)

    # and with the checkerboard added (lr 0): its networks start at zero, so the same tokens cost the
    # same bits under the same tables as with the sliced model re-exported as it is (both from its
    # float16 weights), coded in another order (each slice's anchors first; version 5's coding), and
    # fewer under version 7's fine tables (the checkered one trained on mean-shifted latents: lr 0, the same weights)
    for name, extra in (("resliced", []), ("checkered", ["--checkerboard", "--mean-shift"]),
                        ("deeper", ["--residual", "1"])):
        proc = _vqzip("train", str(photos), "--arch", "hyperprior", "--downsamples", "3", "--thumbnails", "32",
                      "--crops", "8", "--crop", "32", "--batch-size", "2", "--channels", "8", "--latent", "8",
                      "--hyper", "8", "--lambdas", "0.01,0.1", "--slices", "2", "--context", "4", *extra,
                      "--lr", "0", "--steps", "1", "--init", "sliced", "--out", str(models / name),
                      "--run", str(tmp_path / f"run-{name}"), "--no-evaluate", env=env)
        assert proc.returncode == 0, proc.stderr
    checkered = zoo.load_model("checkered")
    assert checkered.prior.context.checkerboard and "checkerboard halves" in checkered.card["summary"]
    assert "--mean-shift" in checkered.card["loss"] and "--mean-shift" not in zoo.load_model("resliced").card["loss"]
    resliced = zoo.load_model("resliced")
    plain, again = api.encode_batch(image[None], resliced, 2)[0], api.encode_batch(image[None], checkered, 2)[0]
    assert plain.data[2] == 4 and again.data[2] == 9
    y, z = api.photo_tokens(image[None], checkered, 2)
    [(v5, v5_bits)], [(v4, v4_bits)] = checkered.prior.encode(y, z), resliced.prior.encode(y, z)
    assert v5_bits == pytest.approx(v4_bits) and abs(len(v5) - len(v4)) <= 2
    [(v7, v7_bits)] = api.photo_coder(checkered, 7).encode(y, z)  # the same tokens under the fine tables
    assert v7_bits <= plain.ideal_bits
    v7_file = container.build(container.Header(checkered.model_id, image.shape[1], image.shape[0], "RGB", 2, 7), v7,
                              checkered.key(7))
    assert np.array_equal(api.decode_batch([v7_file], checkered)[0], api.decode_batch([plain.data], resliced)[0])
    # and deeper (--residual 1, lr 0): the new blocks start as the identity, so the same file, byte for
    # byte but the model id and checksum, and the same pixels
    deeper = zoo.load_model("deeper")
    assert deeper.codec.config.residual == 1
    deep = api.encode_batch(image[None], deeper, 2)[0].data
    assert deep[5:-4] == plain.data[5:-4]
    assert np.array_equal(api.decode_batch([deep], deeper)[0], api.decode_batch([plain.data], resliced)[0])
    # and grown (--latent 12 in 3 slices of 4, from 8 in 2, lr 0): the new slice is silent and costs
    # about nothing (a bit or two), so the file holds the same tokens, decodes to the same pixels and is at
    # most one of the range coder's 32-bit words longer; a --latent that does not add whole slices of 4 is refused in one line
    for name, slices, code in (("grown", "3", 0), ("reshaped", "2", 1)):
        proc = _vqzip("train", str(photos), "--arch", "hyperprior", "--downsamples", "3", "--thumbnails", "32",
                      "--crops", "8", "--crop", "32", "--batch-size", "2", "--channels", "8", "--latent", "12",
                      "--hyper", "8", "--lambdas", "0.01,0.1", "--slices", slices, "--context", "4", "--lr", "0",
                      "--steps", "1", "--latent-ramp", "4", "--init", "sliced", "--out", str(models / name),
                      "--run", str(tmp_path / f"run-{name}"), "--no-evaluate", env=env)
        assert proc.returncode == code, proc.stderr
    assert "--latent 12 must add whole slices of its 4 channels to its 8" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    grown = zoo.load_model("grown")
    bigger = api.encode_batch(image[None], grown, 2)[0]
    assert 0 <= bigger.ideal_bits - plain.ideal_bits < 4 and len(bigger.data) - len(plain.data) <= 4
    tokens = api.image_tokens(image[None], grown, 2)
    assert (tokens[:, :8] == api.image_tokens(image[None], resliced, 2)).all() and (tokens[:, 8:] == 0).all()
    decoded = [api.decode_batch([d], m_)[0].astype(int) for d, m_ in ((bigger.data, grown), (plain.data, resliced))]
    assert np.abs(decoded[0] - decoded[1]).max() <= 1

    # trained further wider (--channels 12 from 8): the new channels start silent, so before any
    # update (lr 0) the same tokens code to the same payload as the init re-exported at its own width
    # (both from its float16 weights) and decode to the same pixels, within the float networks'
    # rounding; narrower is refused in one line
    wide_args = ["--crops", "8", "--crop", "32", "--batch-size", "2", "--latent", "8", "--hyper", "8",
                 "--lambdas", "0.01,0.1", "--steps", "1", "--lr", "0", "--init", "small", "--no-evaluate"]
    for name, width in (("same", "8"), ("wide", "12"), ("thin", "6")):
        proc = _vqzip("train", str(photos), "--arch", "hyperprior", "--downsamples", "3", "--thumbnails", "32",
                      "--channels", width, *wide_args, "--out", str(models / name), "--run", str(tmp_path / f"run-{name}"),
                      env=env)
        assert proc.returncode == (1 if name == "thin" else 0), proc.stderr
        assert name != "thin" or "--channels 6 is narrower than its 8" in proc.stderr, proc.stderr
    same, wide = zoo.load_model("same"), zoo.load_model("wide")
    assert wide.codec.config.channels == 12
    with torch.no_grad():
        y = m.codec.analysis(torch.from_numpy(api.to_unit(image[None])).permute(0, 3, 1, 2), torch.tensor([1]))
        z = m.codec.h_a(y)
    y, z = y.round().long().numpy(), z.round().clamp(-64, 64).long().numpy()
    assert wide.prior.encode(y, z)[0][0] == same.prior.encode(y, z)[0][0]
    pixels = [api.token_images(y, model, 32, 32, 2).astype(int) for model in (same, wide)]
    assert np.abs(pixels[0] - pixels[1]).max() <= 1


@pytest.mark.parametrize("args, message", [
    (["--lambdas", "0.01,x"], "--lambdas '0.01,x': expected numbers"),
    (["--lambdas", "0.01,-1"], "each lambda must lie in (0, 10)"),
    (["--lambdas", "0.1,0.01"], "give them in increasing order"),
    (["--slices", "7"], "--slices 7: must divide the 160 latent channels"),
    (["--downsamples", "5"], "--downsamples 5: the photo codec has 1 to 4"),
    (["--crop", "48"], "--crop 48 is not a multiple of the model's stride, 64 pixels"),
    (["--thumbnails", "16,big"], "--thumbnails '16,big': expected sides in pixels"),
    (["--latent-ramp", "10"], "--latent-ramp needs --init of a photo model with fewer latent channels"),
])
def test_bad_rd_options_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_photos(1)[0]).save(photos / "0.png")
    proc = _vqzip("train", str(photos), "--arch", "hyperprior", "--steps", "1", "--out", str(tmp_path / "m"),
                  *args, env={**os.environ, "VQZIP_MODELS": str(tmp_path)})
    assert proc.returncode in (1, 2) and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.json").exists()


def test_new_latent_channels_pay_their_rate_ramped_in() -> None:
    """--latent-ramp: the channels a larger --latent added weigh step / ramp_steps in the loss's rate,
    then fully; the bpp reported is always the true one."""
    from vqzip.training.rd import rate_weight, rd_loss

    codec = PhotoConfig(channels=8, latent=12, hyper=8, lambdas=(0.01, 0.1), downsamples=3, slices=3)
    cfg = RDConfig(steps=10, codec=codec, batch_size=2, crop=32, ramp_from=8, ramp_steps=4)
    assert rate_weight(cfg, 4) is None and rate_weight(RDConfig(steps=1, codec=codec, crop=32), 0) is None
    assert rate_weight(cfg, 1).tolist() == [1.0] * 8 + [0.25] * 4
    torch.manual_seed(0)
    model = PhotoCodec(codec)
    x, q = torch.rand(2, 3, 32, 32) - 0.5, torch.tensor([0, 1])
    results = []
    for weight in (None, rate_weight(cfg, 0)):
        torch.manual_seed(1)  # the same noise
        results.append(rd_loss(model, x, q, weight=weight))
    torch.manual_seed(1)
    out = model(x, q)
    new_bits = out["y_channel_bits"][:, 8:].sum(1) / 32**2
    (full, full_stats), (ramped, ramped_stats) = results
    assert torch.allclose(full - ramped, new_bits.mean(), atol=1e-3) and new_bits.min() > 0.01  # loss ~300: float32
    assert full_stats["bpp"] == pytest.approx(ramped_stats["bpp"])


def test_a_compiled_run_checkpoints_the_model_itself_and_trains_as_eager(tmp_path: Path) -> None:
    """--compile: the checkpoint holds the plain model's weights (an uncompiled run resumes it), and
    the compiled steps move the weights as eager steps do (same crops; noise and float order differ)."""
    photos = _photos()
    cfg = RDConfig(steps=2, codec=SMALL, batch_size=2, crop=32, warmup_steps=1, seed=1)
    eager = train_rd(photos, cfg, tmp_path / "eager")
    compiled = train_rd(photos, RDConfig(**{**cfg.__dict__, "compile": True}), tmp_path / "compiled")
    start = train_rd(photos, RDConfig(**{**cfg.__dict__, "steps": 0}), tmp_path / "start")
    resumed = train_rd(photos, RDConfig(**{**cfg.__dict__, "steps": 3}), tmp_path / "compiled")  # eager, from step 2
    def distance(a: torch.nn.Module, b: torch.nn.Module) -> float:  # over all weights (Adam's first steps are
        # about lr * sign(gradient) each, so single weights with tiny gradients may go either way)
        return sum(float((v - b.state_dict()[k]).pow(2).sum()) for k, v in a.state_dict().items()) ** 0.5

    assert distance(compiled, eager) < 0.1 * distance(eager, start)
    assert set(resumed.state_dict()) == set(eager.state_dict())
