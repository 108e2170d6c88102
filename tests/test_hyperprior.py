"""The photo codec's coding path: exact integer hyper-synthesis, tables, escapes, round trips."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from vqzip import zoo
from vqzip.codec.hyperprior import PhotoCodec, PhotoConfig, gains_for_lambdas, widened_state
from vqzip.coding import gaussian
from vqzip.coding.entropy import payload_floor
from vqzip.coding.gaussian import TOKEN_LIMIT, Z_SUPPORT, HyperpriorCoder, IntegerHyperSynthesis
from vqzip.errors import FormatError, VqzipError, VqzipWarning

TINY = PhotoConfig(channels=8, latent=12, hyper=8, lambdas=(0.01, 0.05))


@pytest.fixture(scope="module")
def tiny() -> tuple[PhotoCodec, HyperpriorCoder]:
    torch.manual_seed(0)
    model = PhotoCodec(TINY).eval()
    return model, HyperpriorCoder(HyperpriorCoder.tables(model.z_density.pmf(Z_SUPPORT).numpy(),
                                                         {k: v.numpy() for k, v in model.h_s.state_dict().items()}))


def _tokens(model: PhotoCodec, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 128, 64, generator=g) - 0.5
    with torch.no_grad():
        y = model.analysis(x, torch.arange(n) % model.qualities) * 20
        z = model.h_a(y) * 5
    return (y.round().clamp(-(TOKEN_LIMIT - 1), TOKEN_LIMIT - 1).long().numpy(),
            z.round().clamp(-Z_SUPPORT, Z_SUPPORT).long().numpy())


def test_round_trip_with_escapes(tiny: tuple[PhotoCodec, HyperpriorCoder]) -> None:
    model, coder = tiny
    y, z = _tokens(model, 3)
    y[0, 0, 0, 0], y[1, 2, 1, 0], y[2, 1, 0, 1] = TOKEN_LIMIT - 1, -(TOKEN_LIMIT - 1), 40  # far outside any table
    coded = coder.encode(y, z)
    y2, z2 = coder.decode([p for p, _ in coded], y.shape[2], y.shape[3], y.shape[1])
    assert (y2 == y).all() and (z2 == z).all()
    for payload, bits in coded:  # the range coder stays within a few bytes of the ideal size
        assert abs(len(payload) - bits / 8) < 8


def test_one_coder_call_per_run_of_tables_codes_what_one_per_table_does(tiny: tuple[PhotoCodec, HyperpriorCoder],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Small images code each run of same-length tables (and z) in one call with a row per token; large
    ones call the coder once per table. Both must write the same bytes, and each must read the other's."""
    model, coder = tiny
    y, z = _tokens(model, 3)
    y[1, 2, 1, 0] = 300  # an escape too
    batched = coder.encode(y, z)
    monkeypatch.setattr(gaussian, "TABLE_ROWS", 0)  # every run and z over the limit: one call per table
    assert coder._z_rows_for(*z.shape[2:]) is None
    assert coder.encode(y, z) == batched
    y2, z2 = coder.decode([p for p, _ in batched], y.shape[2], y.shape[3], y.shape[1])
    assert (y2 == y).all() and (z2 == z).all()


def test_a_batch_codes_each_image_as_it_would_alone(tiny: tuple[PhotoCodec, HyperpriorCoder]) -> None:
    """The coder plans a batch's coding order and table rows for all its images at once: each payload
    must still be the one that image gets alone, and a batch of payloads decode to each image's tokens."""
    model, coder = tiny
    y, z = _tokens(model, 3)
    y[1, 2, 1, 0] = 300  # an escape in one image only
    batched = coder.encode(y, z)
    assert [coder.encode(y[i: i + 1], z[i: i + 1])[0] for i in range(3)] == batched
    y2, z2 = coder.decode([p for p, _ in batched], y.shape[2], y.shape[3], y.shape[1])
    assert (y2 == y).all() and (z2 == z).all()


def _in_fresh_processes(script: str, **arrays: np.ndarray) -> list[np.ndarray]:
    """What `script` (argv: input .npz, threads, batch, output .npy) saves when run in a fresh process
    with 1 thread and batch 1, then with 2 threads and batch 8: the decoder's tables must not depend on
    either."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.npz"
        np.savez(src, **arrays)
        results = []
        for threads, batch in ((1, 1), (2, 8)):
            out = Path(tmp) / f"out{threads}{batch}.npy"
            env = {**os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
            subprocess.run([sys.executable, "-c", script, str(src), str(threads), str(batch), str(out)], check=True, env=env)
            results.append(np.load(out))
    return results


def test_integer_hyper_synthesis_is_exact_across_threads_and_batches(tiny: tuple[PhotoCodec, HyperpriorCoder]) -> None:
    """The decoder's tables must be the encoder's on any machine: the same integers from 1 thread and
    one image at a time as from 2 threads and a batch of 8, checked in fresh processes."""
    model, coder = tiny
    _, z = _tokens(model, 8, seed=1)
    script = (
        "import sys, numpy as np\n"
        "from vqzip.coding.gaussian import IntegerHyperSynthesis\n"
        "d = np.load(sys.argv[1]); threads, batch = int(sys.argv[2]), int(sys.argv[3])\n"
        "from vqzip.coding import gaussian\n"
        "hs = IntegerHyperSynthesis({k: d[k] for k in d.files if k != 'z'})\n"
        "out = []\n"
        "# taps inside the grid, then shifted taps, then the last layer one output channel at a time\n"
        "for grid, floats in ((gaussian.SMALL_GRID, gaussian.OUTPUT_FLOATS), (0, gaussian.OUTPUT_FLOATS), (0, 1)):\n"
        "    gaussian.SMALL_GRID, gaussian.OUTPUT_FLOATS = grid, floats\n"
        "    out += [np.concatenate(hs(d['z'][i:i + batch]), 1) for i in range(0, len(d['z']), batch)]\n"
        "np.save(sys.argv[4], np.concatenate(out))\n")
    results = _in_fresh_processes(script, z=z, **{k[3:]: v for k, v in _hs_tensors(model).items()})
    assert results[0].dtype == np.int32 and (results[0] == results[1]).all()
    direct = np.concatenate(coder.hs(z), 1)
    assert (np.concatenate([direct, direct, direct]) == results[0]).all()


def test_hyper_synthesis_gives_the_same_integers_in_whole_images_or_in_rows(
        tiny: tuple[PhotoCodec, HyperpriorCoder], monkeypatch: pytest.MonkeyPatch) -> None:
    """Small grids go through products over several whole images at a time, large ones through
    shifted taps a few rows of one image at a time: every path must give the same integers."""
    model, coder = tiny
    _, z = _tokens(model, 5, seed=2)
    whole = np.concatenate(coder.hs(z), 1)
    monkeypatch.setattr(gaussian, "ROWS_PER_CHUNK", 3)  # under one image's positions: one image per product
    assert (np.concatenate(coder.hs(z), 1) == whole).all()
    monkeypatch.setattr(gaussian, "SMALL_GRID", 0)  # every grid through the shifted taps, in row chunks
    assert (np.concatenate(coder.hs(z), 1) == whole).all()
    monkeypatch.setattr(gaussian, "ROWS_PER_CHUNK", 1 << 15)
    assert (np.concatenate(coder.hs(z), 1) == whole).all()


@pytest.mark.parametrize("shape", [(1, 7, 5, 9, 3), (3, 4, 1, 1, 2), (2, 3, 1, 6, 4), (2, 6, 12, 4, 5)])
def test_valid_taps_shifted_taps_and_the_definition_give_the_same_integers(shape: tuple[int, ...]) -> None:
    """At the extremes the layer check allows (weights +-WEIGHT_LIMIT, activations +-ACT_LIMIT) the
    two convolutions (small grids: only the taps inside the grid; large: nine shifted products) and a
    direct sum of the definition give the same integers: no partial sum leaves float64's exact range."""
    bsz, c, h, w, cout = shape
    rng = np.random.default_rng(0)
    x = rng.choice([-gaussian.ACT_LIMIT, gaussian.ACT_LIMIT, 0, 1], size=(bsz, c, h, w)).astype(np.float64)
    wt = rng.choice([-gaussian.WEIGHT_LIMIT, gaussian.WEIGHT_LIMIT, -1], size=(c * 9, cout)).astype(np.float64)
    b = rng.integers(-(1 << 40), 1 << 40, size=cout).astype(np.float64)
    taps = gaussian.tap_major(wt.T)
    channels_last = x.transpose(0, 2, 3, 1)
    valid = gaussian.conv3x3(channels_last, taps, b)
    shifted = gaussian.conv3x3_shifted(channels_last, taps, b)
    assert shifted.shape == (bsz, h, w, cout) and np.array_equal(valid, shifted)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    direct = sum(padded[:, ci, i: i + h, j: j + w, None] * wt[ci * 9 + i * 3 + j]
                 for ci in range(c) for i in range(3) for j in range(3)) + b
    assert np.array_equal(valid, direct)


def _hs_tensors(model: PhotoCodec) -> dict[str, np.ndarray]:
    return {f"hs.{k}": v for k, v in gaussian.export_hyper_synthesis(
        {k: v.numpy() for k, v in model.h_s.state_dict().items()}).items()}


def test_integer_hyper_synthesis_follows_the_float_network(tiny: tuple[PhotoCodec, HyperpriorCoder]) -> None:
    """Fixed point with 8 fraction bits and 12-bit weights: the integer means and log-scales are the
    float network's to within a few hundredths."""
    model, coder = tiny
    _, z = _tokens(model, 2)
    mean, log_scale = coder.hs(z)
    with torch.no_grad():
        fm, fs = model.h_s(torch.from_numpy(z).float())
    assert np.abs(mean / gaussian.ONE - fm.numpy()).max() < 0.05
    assert np.abs(log_scale / gaussian.ONE - fs.numpy()).max() < 0.05


def test_tables_are_valid_and_every_symbol_codable() -> None:
    tables = gaussian.gaussian_tables()
    assert len(tables) == gaussian.SCALES * gaussian.MEAN_STEPS
    for k in (0, gaussian.SCALES // 2, gaussian.SCALES - 1):
        t = tables[k * gaussian.MEAN_STEPS]
        assert (t >= 1).all() and len(t) == 2 * gaussian.table_halfwidth(k) + 1
    # a narrow Gaussian puts as much mass on one symbol as the cap allows
    narrow = tables[0]
    assert narrow.max() / narrow.sum() == pytest.approx(gaussian.PEAK_SHARE, abs=1e-3)


def test_malformed_tables_are_refused(tiny: tuple[PhotoCodec, HyperpriorCoder]) -> None:
    model, _ = tiny
    t = HyperpriorCoder.tables(model.z_density.pmf(Z_SUPPORT).numpy(), {k: v.numpy() for k, v in model.h_s.state_dict().items()})
    bad = dict(t, y_offsets=t["y_offsets"][:-1])
    with pytest.raises(ValueError, match="malformed"):
        HyperpriorCoder(bad)
    huge = dict(t, **{"hs.out.weight": t["hs.out.weight"] * 4})
    with pytest.raises(ValueError, match="exact integer range"):
        IntegerHyperSynthesis({k[3:]: v for k, v in huge.items() if k.startswith("hs.")})


@pytest.mark.parametrize("kind", ["hyperprior", "sliced", "checkerboard"])
def test_damaged_payload_is_a_format_error(tiny: tuple[PhotoCodec, HyperpriorCoder], kind: str) -> None:
    model, coder = {"hyperprior": lambda: tiny, "sliced": _sliced, "checkerboard": _checkered}[kind]()
    y, z = _tokens(model, 1)
    payload, _ = coder.encode(y, z)[0]
    rng = np.random.default_rng(0)
    for _ in range(20):
        damaged = bytearray(payload)
        damaged[rng.integers(len(damaged))] ^= 1 << int(rng.integers(8))
        try:
            coder.decode([bytes(damaged)], y.shape[2], y.shape[3], y.shape[1])
        except FormatError:
            pass  # refusing is fine; any other exception is not


def test_training_pass_gives_rate_and_reconstruction() -> None:
    torch.manual_seed(0)
    model = PhotoCodec(TINY)
    out = model(torch.rand(2, 3, 64, 64) - 0.5, torch.tensor([0, 1]))
    assert out["x_hat"].shape == (2, 3, 64, 64)
    assert (out["y_bits"] > 0).all() and (out["z_bits"] > 0).all()
    (out["y_bits"].sum() + out["x_hat"].square().sum()).backward()
    assert model.log_gain.grad is not None and model.h_s.out.weight.grad is not None


@pytest.fixture(scope="module")
def photo_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with a tiny random photo codec, 'tiny-photo'."""
    from vqzip.training.rd import coder_tensors
    from vqzip.zoo import save_photo_model

    folder = tmp_path_factory.mktemp("photo-models")
    torch.manual_seed(0)
    model = PhotoCodec(TINY).eval()
    save_photo_model(folder / "tiny-photo.safetensors", model, coder_tensors(model))
    (folder / "tiny-photo.json").write_text('{"kind": "hyperprior", "default_quality": 1}')
    return folder


@pytest.fixture
def photo_model(photo_env: Path, monkeypatch: pytest.MonkeyPatch):
    from vqzip import zoo

    monkeypatch.setenv("VQZIP_MODELS", str(photo_env))
    return zoo.load_model("tiny-photo")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = np.stack([np.sin(xx / 7.0), np.cos(yy / 5.0), np.sin((xx + yy) / 11.0)], -1) * 90 + 128
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def test_synthesis_graph_upsamples_without_transposed_convolutions(photo_model) -> None:
    """The exported synthesis computes each 5x5 stride-2 transposed convolution as a 3x3 convolution to
    4x the channels and a depth-to-space (ONNX Runtime's transposed convolution keeps a column buffer
    of C_out x 25 x the input positions): the same image as torch's, within float rounding."""
    import onnx

    from vqzip.runtime import onnx_path

    graph = onnx.load(str(onnx_path(photo_model.path, "synthesis")), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    assert "ConvTranspose" not in ops and ops.count("DepthToSpace") == 4
    y = np.random.default_rng(0).normal(0, 3, (2, TINY.latent, 5, 7)).astype(np.float32)
    q = np.array([0, 1])
    with torch.no_grad():
        expected = photo_model.codec.synthesis(torch.from_numpy(y), torch.from_numpy(q)).numpy()
    assert np.abs(photo_model.nets.run("synthesis", y_hat=y, q=q) - expected).max() < 1e-4


def test_photo_tiles_are_pixels_whatever_the_stride(photo_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """A photo codec's tile is PHOTO_TILE_PIXELS a side at stride 16 and at stride 8 alike (a stride-8
    model ran a Kodak photo in four overlapping tiles, computing 46 % of its positions twice), and an
    image cut into many tiles codes and decodes as in one."""
    from dataclasses import replace
    from types import SimpleNamespace

    from vqzip import api

    for downsamples in (4, 3):
        m = SimpleNamespace(config=replace(TINY, downsamples=downsamples))
        assert api._photo_tile(m) * m.config.latent_stride == api.PHOTO_TILE_PIXELS  # type: ignore[arg-type]
    img = _image(96, 160)
    whole = api.encode_batch(img[None], photo_model, 2)[0].data
    monkeypatch.setattr(api, "PHOTO_TILE_PIXELS", 32)  # 2 positions a side: 3 x 5 tiles
    tiled = api.encode_batch(img[None], photo_model, 2)[0].data
    assert tiled == whole
    assert np.array_equal(api.decode_batch([tiled])[0], np.asarray(api.decompress(whole)))


def test_api_round_trip_writes_version_3(photo_model) -> None:
    from PIL import Image

    from vqzip import api
    from vqzip.coding import container

    img = _image(70, 100)
    data = api.compress(Image.fromarray(img), photo_model, 2)
    header, _ = container.parse_header(data)
    assert header.version == container.HYPERPRIOR_VERSION == 3 and header.quality == 2
    back = api.decompress(data)
    assert back.size == (100, 70) and back.mode == "RGB"
    tokens = api.file_tokens(data)
    assert tokens.shape == (TINY.latent, 128 // 16, 128 // 16)  # padded to a multiple of 64
    assert (tokens == api.image_tokens(img[None], photo_model, 2)[0]).all()
    again = api.token_images(tokens[None], photo_model, 70, 100, quality=2)[0]
    assert np.array_equal(again, np.asarray(back))


def test_token_images_needs_the_quality(photo_model) -> None:
    from vqzip import api
    from vqzip.errors import VqzipError

    tokens = api.image_tokens(_image(64, 64)[None], photo_model, 1)
    with pytest.raises(VqzipError, match="quality"):
        api.token_images(tokens, photo_model, 64, 64)


def test_batched_decode_gives_the_same_tokens(photo_model) -> None:
    """Eight files decoded in one batch give each file's own tokens, as decoded alone."""
    from vqzip import api

    imgs = np.stack([_image(64, 128, seed=s) for s in range(8)])
    files = [e.data for e in api.encode_batch(imgs, photo_model, 2)]
    alone = [api.file_tokens(f) for f in files]
    from vqzip.coding import container

    parsed = [container.parse(f, photo_model.key(3)) for f in files]
    together = api._file_tokens(parsed, photo_model)
    assert all((a == t).all() for a, t in zip(alone, together))
    decoded = api.decode_batch(files)
    single = [api.decode_batch([f])[0] for f in files]
    assert max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(decoded, single)) <= 1


def test_prior_choice_and_version_mismatch_are_refused(photo_model) -> None:
    from vqzip import api
    from vqzip.coding import container
    from vqzip.errors import VqzipError

    with pytest.raises(VqzipError, match="hyperprior"):
        api.encode_batch(_image(64, 64)[None], photo_model, 1, prior="static")
    data = bytearray(api.encode_batch(_image(64, 64)[None], photo_model, 1)[0].data)
    data[2] = 1  # claims static tables: not this model's kind of payload
    with pytest.raises(FormatError, match="does not fit"):
        api.decompress(bytes(data))
    assert container.parse_header(bytes(data))[0].version == 1


def test_cli_encodes_and_decodes_with_the_photo_model(photo_env: Path, tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(_image(80, 96)).save(tmp_path / "a.png")
    env = {**os.environ, "VQZIP_MODELS": str(photo_env)}
    vqzip = [sys.executable, "-m", "vqzip"]
    subprocess.run([*vqzip, "encode", "a.png", "-m", "tiny-photo", "-Q", "2"], cwd=tmp_path, env=env, check=True)
    info = subprocess.run([*vqzip, "info", "a.vqz"], cwd=tmp_path, env=env, check=True, capture_output=True, text=True)
    assert "tiny-photo" in info.stdout
    subprocess.run([*vqzip, "decode", "a.vqz", "-o", "b.png"], cwd=tmp_path, env=env, check=True)
    assert Image.open(tmp_path / "b.png").size == (96, 80)


def test_without_a_model_photos_climb_the_photo_ladder(
        photo_env: Path, tiny_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -m, a photo's -Q picks a rung of PHOTO_LADDER (two models here, as shipped), a small
    image's the small-image model's quality; targets search the ladder across both models."""
    from PIL import Image

    from vqzip import api, pick, zoo
    from vqzip.coding import container

    monkeypatch.setenv("VQZIP_MODELS", os.pathsep.join([str(photo_env), str(tiny_models)]))
    top = zoo.load_model("tiny-rvq").qualities
    monkeypatch.setattr(pick, "PHOTO_LADDER", (("tiny-photo", 1), ("tiny-photo", 2), ("tiny-rvq", top)))
    monkeypatch.setattr(pick, "PHOTO_DEFAULT", 1)
    monkeypatch.setattr(pick, "DEFAULT_MODEL", "tiny-rvq")
    monkeypatch.setattr(pick, "TOKEN_MODEL", "tiny-rvq")
    side = pick.PHOTO_MIN_SIDE
    photo, thumb = Image.fromarray(_image(side, side + 8)), Image.fromarray(_image(side - 1, 200))
    assert pick.pick(side + 8, side) == ("tiny-photo", 1) and pick.pick(side + 8, side, 3) == ("tiny-rvq", top)
    assert pick.pick(200, side - 1) == ("tiny-rvq", zoo.load_model("tiny-rvq").default_quality)
    assert pick.pick(side + 8, side, prior="static")[0] == "tiny-rvq"  # static tables exist for token models only
    with pytest.raises(VqzipError, match=r"quality 4 is outside 1\.\.3 for photos"):
        pick.pick(side + 8, side, 4)
    ids = {name: zoo.load_model(name).model_id for name in ("tiny-photo", "tiny-rvq")}
    files = api.compress_images([photo, thumb, photo])
    assert [container.parse_header(e.data)[0].model_id for e in files] == [ids["tiny-photo"], ids["tiny-rvq"], ids["tiny-photo"]]
    shapes = [np.asarray(api.decompress(e.data)).shape for e in files]
    assert shapes == [(side, side + 8, 3), (side - 1, 200, 3), (side, side + 8, 3)]
    [high] = api.compress_images([photo], quality=3)
    assert container.parse_header(high.data)[0].model_id == ids["tiny-rvq"]
    [t] = api.compress_to_target([photo], size=10**9)
    assert (t.model, t.quality, t.met) == ("tiny-rvq", top, True) and t.data == high.data
    with pytest.warns(VqzipWarning, match=r"out of reach for models tiny-photo and tiny-rvq; its lowest quality, "
                                          r"1 \(tiny-photo quality 1\)"):
        [t] = api.compress_to_target([photo], size=10)
    assert (t.model, t.quality, t.met) == ("tiny-photo", 1, False)


def test_every_table_caps_its_peak_so_a_payload_bounds_its_tokens(tiny: tuple[PhotoCodec, HyperpriorCoder]) -> None:
    """No symbol has more than 63/64 of its table, so each token costs at least 0.0227 bits and a
    payload of B bytes holds a bounded number of tokens (what the decoder checks before decoding)."""
    model, coder = tiny
    for f in [*coder.y_freq, *coder.z_freq]:
        assert f.max() <= gaussian.PEAK_SHARE * f.sum() + 1
    floor = coder.min_payload_bits(TINY.latent, 8, 8)
    assert floor >= TINY.latent * 64 * -np.log2(gaussian.PEAK_SHARE) * 0.999
    y, z = _tokens(model, 1)
    payload, bits = coder.encode(y, z)[0]
    assert 8 * len(payload) >= coder.min_payload_bits(TINY.latent, y.shape[2], y.shape[3]) - 32


def test_fine_tables_restore_each_capped_peak_and_nothing_else(tiny: tuple[PhotoCodec, HyperpriorCoder]) -> None:
    """Versions 7 and 8 code y under the stored tables with each peak raised back to the table's total
    less the other entries (integers only): the capped tables change at their peak, the others not at
    all; z's tables and the payload bound stay."""
    _, coder = tiny
    fine = coder.with_fine_tables()
    assert fine is coder.with_fine_tables() and fine.fine and not coder.fine and fine.with_fine_tables() is fine
    raised = 0
    for old, new in zip(coder.y_freq, fine.y_freq):
        top = int(old.argmax())
        assert (np.delete(new, top) == np.delete(old, top)).all() and old[top] <= new[top] <= 65535
        assert new[top] == old[top] or new.sum() == min(gaussian.TABLE_TOTAL, 65535 + np.delete(old, top).sum())
        raised += int(new[top] > old[top])
    assert raised >= gaussian.MEAN_STEPS  # the narrowest tables, which the cap bit: near certain again
    narrowest = (fine.y_freq[0], fine.y_freq[gaussian.MEAN_STEPS - 1])  # means 1/16 and 15/16 from an integer
    assert all(f.max() / f.sum() > 0.999 > gaussian.PEAK_SHARE for f in narrowest)
    assert fine.z_freq is coder.z_freq and fine.min_payload_bits(12, 8, 8) == coder.min_payload_bits(12, 8, 8)


def test_fine_tables_cost_less_and_pad_a_too_cheap_payload_up_to_the_bound(tiny: tuple[PhotoCodec, HyperpriorCoder]) -> None:
    """Tokens cost no more under the fine tables and round-trip. Where h_s puts every token in the
    narrowest table (its output layer made constant here), zero tokens cost less than the payload bound
    the stored tables guaranteed: the encoder pads that payload so the decoder's check still passes,
    and it decodes to the same tokens."""
    model, coder = tiny
    fine = coder.with_fine_tables()
    y, z = _tokens(model, 2)
    for (coarse_payload, coarse_bits), (fine_payload, fine_bits) in zip(coder.encode(y, z), fine.encode(y, z)):
        assert fine_bits <= coarse_bits and len(fine_payload) <= len(coarse_payload)
    assert (fine.decode([p for p, _ in fine.encode(y, z)], *y.shape[2:], y.shape[1])[0] == y).all()
    tensors = HyperpriorCoder.tables(model.z_density.pmf(Z_SUPPORT).numpy(),
                                     {k: v.numpy() for k, v in model.h_s.state_dict().items()})
    tensors["hs.out.weight"] = np.zeros_like(tensors["hs.out.weight"])
    tensors["hs.out.bias"] = np.r_[np.zeros(TINY.latent), np.full(TINY.latent, -(1 << 40))].astype(np.int64)
    delta = np.zeros(2 * Z_SUPPORT + 1)
    delta[Z_SUPPORT] = 1.0  # z = 0 as certain as the cap lets it be
    tensors["z_tables"] = np.stack([gaussian._frequencies(delta + 1e-12)] * TINY.hyper).astype(np.uint16)
    certain = HyperpriorCoder(tensors)
    h, w = 64, 64
    flat_y, flat_z = np.zeros((1, TINY.latent, h, w), np.int64), np.zeros((1, TINY.hyper, h // 4, w // 4), np.int64)
    assert (certain.params(flat_z, flat_y)[0] == 0).all()  # the narrowest table, mean 1/16 above 0
    floor = payload_floor(certain.min_payload_bits(TINY.latent, h, w))
    [(coarse, coarse_bits)], [(payload, bits)] = certain.encode(flat_y, flat_z), certain.with_fine_tables().encode(flat_y, flat_z)
    assert bits < coarse_bits / 5 and bits < 8 * floor - 64 <= 8 * len(coarse)
    assert len(payload) >= floor + 1  # cheaper than the bound: padded up to it
    y_back, z_back = certain.with_fine_tables().decode([payload], h, w, TINY.latent)
    assert (y_back == flat_y).all() and (z_back == flat_z).all()


def test_effort_refines_tokens_for_the_same_decoder(photo_model) -> None:
    """--effort changes only which tokens are coded: the file decodes with the same model, holds the
    refined tokens, is the same on a second encode, and its tokens never cost more than the plain
    ones (what they buy on real photos is measured by benchmarks/effort.py)."""
    from PIL import Image

    from vqzip import api
    from vqzip.codec.hyperprior import coded_cost

    img = _image(64, 64)
    refined = api.compress_images([Image.fromarray(img)], photo_model, 2, effort=5)[0].data
    assert api.decompress(refined).size == (64, 64)
    assert api.compress_images([Image.fromarray(img)], photo_model, 2, effort=5)[0].data == refined
    y0, z0 = api.photo_tokens(img[None], photo_model, 2)
    y1, z1 = api.photo_tokens(img[None], photo_model, 2, effort=5)
    assert (api.file_tokens(refined) == y1[0]).all()
    x, q = torch.from_numpy(api.to_unit(api._pad(img[None], photo_model.stride))), torch.tensor([1])
    with torch.no_grad():
        costs = [coded_cost(photo_model.codec, x, q, torch.from_numpy(y).float(), torch.from_numpy(z).float())[0]
                 for y, z in ((y0, z0), (y1, z1))]
    assert costs[1] <= costs[0]


def test_photos_climb_the_shipped_ladder_and_small_images_do_not() -> None:
    """Without -m, an image from PHOTO_MIN_SIDE up climbs PHOTO_LADDER (the shipped photo codec, then
    the high-rate one: the rungs benchmarks/photo_ladder.py measured), its default rung the photo
    codec's default quality; a smaller one the small-image model's qualities."""
    from vqzip import pick

    photo, high = zoo.load_model(zoo.DEFAULT_PHOTO_MODEL), zoo.load_model(zoo.HIGH_RATE_PHOTO_MODEL)
    small = zoo.load_model(zoo.DEFAULT_MODEL)
    assert pick.pick(768, 512) == (photo.name, photo.default_quality)
    assert pick.PHOTO_LADDER[pick.PHOTO_DEFAULT - 1] == (photo.name, photo.default_quality)
    for m in (photo, high):  # each model's rungs: its own qualities, rising
        qualities = [q for name, q in pick.PHOTO_LADDER if name == m.name]
        assert qualities == sorted(set(qualities)) and 1 <= qualities[0] and qualities[-1] <= m.qualities
    assert pick.PHOTO_LADDER[0][0] == photo.name and pick.PHOTO_LADDER[-1] == (high.name, high.qualities)
    assert pick.pick(512, pick.PHOTO_MIN_SIDE - 1) == (small.name, small.default_quality)
    assert pick.ladder(512, pick.PHOTO_MIN_SIDE - 1)[0] == tuple((small.name, q) for q in range(1, small.qualities + 1))
    assert f"qualities 1-{len(pick.PHOTO_LADDER)}: {photo.name} 1-" in pick.describe()  # what `vqzip models` prints


def test_rate_targets_work_with_the_photo_codec(photo_model) -> None:
    """--size / --psnr pick a quality of the photo codec too (compress_to_target bisects its 2 here)."""
    from PIL import Image

    from vqzip import api

    img = Image.fromarray(_image(64, 64))
    sizes = [len(api.compress_images([img], photo_model, q)[0].data) for q in (1, 2)]
    chosen = api.compress_to_target([img], photo_model, size=sizes[0])[0]  # the largest quality within q1's size
    assert chosen.met and len(chosen.data) <= sizes[0]
    assert chosen.quality == max(q for q, n in zip((1, 2), sizes) if n <= sizes[0])
    assert api.decompress(chosen.data).size == (64, 64)


def test_gains_for_new_lambdas_keep_old_ones_and_follow_log_lambda() -> None:
    """Training further with other qualities starts each new one from gains interpolated (or
    extrapolated) linearly in log lambda; the qualities kept keep theirs."""
    log_gain = torch.tensor([[0.0, 1.0], [1.0, 3.0]])
    state = {"log_gain": log_gain, "log_inv_gain": -log_gain, "other": torch.ones(3)}
    out = gains_for_lambdas(state, (0.01, 0.04), (0.005, 0.01, 0.02, 0.04, 0.08))
    assert torch.allclose(out["log_gain"], torch.tensor([[-0.5, 0.0], [0.0, 1.0], [0.5, 2.0], [1.0, 3.0], [1.5, 4.0]]))
    assert torch.allclose(out["log_inv_gain"], -out["log_gain"]) and out["other"] is state["other"]


def test_widened_model_codes_and_reconstructs_as_before() -> None:
    """A model grown to more --channels keeps its latents, side latents, tables' parameters and
    reconstructions (the new channels are silent), yet its new weights are trainable (not all zero)."""
    from dataclasses import replace

    narrow_config = replace(TINY, slices=2, context=4)
    torch.manual_seed(1)
    narrow = PhotoCodec(narrow_config).eval()
    with torch.no_grad():  # the last layers of slice contexts start at zero: give them weights to carry over
        for p in narrow.context.parameters():
            p.normal_(0, 0.1)
    torch.manual_seed(2)
    wide = PhotoCodec(replace(narrow_config, channels=13)).eval()
    wide.load_state_dict(widened_state(narrow.state_dict(), wide))
    x, q = torch.rand(2, 3, 64, 64) - 0.5, torch.tensor([0, 1])
    with torch.no_grad():
        y = narrow.analysis(x, q)
        z = narrow.h_a(y)
        torch.testing.assert_close(wide.analysis(x, q), y, rtol=0, atol=1e-6)
        torch.testing.assert_close(wide.h_a(y), z, rtol=0, atol=1e-6)
        for a, b in zip(wide.entropy_params(z.round(), y.round()), narrow.entropy_params(z.round(), y.round())):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        torch.testing.assert_close(wide.synthesis(y.round(), q), narrow.synthesis(y.round(), q), rtol=0, atol=1e-6)
    assert wide.g_s[2].weight[8:].abs().sum() > 0 and wide.g_s[0].weight[:, 8:].abs().sum() == 0
    with pytest.raises(ValueError, match="does not fit"):
        widened_state(wide.state_dict(), narrow)


def test_model_grown_by_latent_slices_codes_and_reconstructs_as_before() -> None:
    """A model given more --latent channels, as whole slices of its width, keeps its tokens, their
    means and scales (as floats and as the coder's integers) and its reconstructions; the new
    channels are 0 and cost almost nothing until trained, yet the weights that read them are trainable."""
    from dataclasses import replace

    from vqzip.codec.hyperprior import NEW_LATENT_LOG2_SCALE
    from vqzip.training.rd import coder_tensors

    narrow, _ = _sliced(config=replace(SLICED, slices=2, checkerboard=True))  # 2 slices of 6
    torch.manual_seed(2)
    wide = PhotoCodec(replace(narrow.config, latent=18, slices=3, channels=10)).eval()
    wide.load_state_dict(widened_state(narrow.state_dict(), wide))
    x, q = torch.rand(2, 3, 64, 64) - 0.5, torch.tensor([0, 1])
    with torch.no_grad():
        y, y_wide = narrow.analysis(x, q), wide.analysis(x, q)
        torch.testing.assert_close(y_wide[:, :12], y, rtol=0, atol=1e-6)
        assert (y_wide[:, 12:] == 0).all()
        z = narrow.h_a(y)
        torch.testing.assert_close(wide.h_a(y_wide), z, rtol=0, atol=1e-6)
        mean, scale = wide.entropy_params(z.round(), y_wide.round())
        for a, b in zip((mean[:, :12], scale[:, :12]), narrow.entropy_params(z.round(), y.round())):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert (mean[:, 12:] == 0).all() and torch.allclose(scale[:, 12:], torch.tensor(2.0**NEW_LATENT_LOG2_SCALE))
        torch.testing.assert_close(wide.synthesis(y_wide.round(), q), narrow.synthesis(y.round(), q), rtol=0, atol=1e-6)
    assert wide.g_s[0].weight[12:].abs().sum() > 0 and wide.g_a[6].weight[12:].abs().sum() == 0
    y_tokens, z_tokens = _tokens(narrow, 2)
    grown = np.concatenate([y_tokens, np.zeros_like(y_tokens[:, :6])], 1)
    narrow_coder, wide_coder = HyperpriorCoder(coder_tensors(narrow)), HyperpriorCoder(coder_tensors(wide))
    for a, b in zip(wide_coder.params(z_tokens, grown), narrow_coder.params(z_tokens, y_tokens)):
        assert (a[:, :12] == b).all()
    extra_bits = np.subtract([b for _, b in wide_coder.encode(grown, z_tokens)],
                             [b for _, b in narrow_coder.encode(y_tokens, z_tokens)])
    assert (extra_bits >= 0).all() and (extra_bits < 0.05 * grown[:, 12:][0].size).all()  # the tables' floor: ~0.02
    with pytest.raises(ValueError, match="cannot grow"):
        widened_state(narrow.state_dict(), PhotoCodec(replace(narrow.config, latent=16, slices=2)))


SLICED = PhotoConfig(channels=8, latent=12, hyper=8, lambdas=(0.01, 0.05), slices=3, context=8)


def _sliced(perturb: bool = True, config: PhotoConfig = SLICED) -> tuple[PhotoCodec, HyperpriorCoder]:
    """A tiny model of three slices; `perturb` gives its context networks (zero at first) random weights."""
    torch.manual_seed(3)
    model = PhotoCodec(config).eval()
    if perturb:
        with torch.no_grad():
            for net in [*model.context.nets, *model.context.spatial]:
                net[2].weight.normal_(0, 0.05)
                net[2].bias.normal_(0, 0.1)
    from vqzip.training.rd import coder_tensors

    return model, HyperpriorCoder(coder_tensors(model))


def _integer_context_in_fresh_processes(model: PhotoCodec, method: str, s: int, **arrays: np.ndarray) -> list[np.ndarray]:
    """`method` ("__call__": slice context, "spatial": checkerboard) of slice `s` of the model's
    IntegerSliceContext on arrays y, mean and log_scale, computed by _in_fresh_processes."""
    from vqzip.training.rd import coder_tensors

    script = (
        "import sys, numpy as np\n"
        "from vqzip.coding.gaussian import IntegerSliceContext\n"
        "d = np.load(sys.argv[1]); batch = int(sys.argv[3])\n"
        "ctx = IntegerSliceContext({k: d[k] for k in d.files if k.startswith(('ctx', 'sp'))})\n"
        f"out = [np.concatenate(getattr(ctx, {method!r})({s}, d['mean'][i:i + batch], d['log_scale'][i:i + batch],\n"
        "                                               d['y'][i:i + batch]), 1) for i in range(0, len(d['y']), batch)]\n"
        "np.save(sys.argv[4], np.concatenate(out))\n")
    layers = {k: v for k, v in coder_tensors(model).items() if k.startswith(("ctx", "sp"))}
    return _in_fresh_processes(script, **arrays, **layers)


def _codes_as_without(model: PhotoCodec, coder: HyperpriorCoder, prefix: str) -> HyperpriorCoder:
    """The model's coder without its integer layers named `prefix`*, after asserting that `coder`
    derives the same tables and costs the same bits: new context networks start at zero corrections."""
    from vqzip.training.rd import coder_tensors

    plain = HyperpriorCoder({k: v for k, v in coder_tensors(model).items() if not k.startswith(prefix)})
    y, z = _tokens(model, 2)
    assert all((a == b).all() for a, b in zip(coder.params(z, y), plain.params(z, y)))
    assert [b for _, b in coder.encode(y, z)] == pytest.approx([b for _, b in plain.encode(y, z)])
    return plain


def _context_inputs(model: PhotoCodec, coder: HyperpriorCoder,
                    integer: Callable[[int, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens y of 8 images in fixed point (y * ONE, what the contexts read) and h_s's integer
    (mean, log_scale) of them, after asserting that `integer(slice, mean, log_scale, fixed)`, the means
    and scales the coder gives each slice, are the float context network's within 0.1."""
    y, z = _tokens(model, 8, seed=1)
    mean, log_scale = coder.hs(z)
    with torch.no_grad():
        fm, fls = model.context(torch.from_numpy(y).float(), *model.h_s(torch.from_numpy(z).float()))
    fixed = y * gaussian.ONE
    parts = [integer(s, mean, log_scale, fixed) for s in range(model.config.slices)]
    im, ils = np.concatenate([m for m, _ in parts], 1), np.concatenate([ls for _, ls in parts], 1)
    assert np.abs(im / gaussian.ONE - fm.numpy()).max() < 0.1 and np.abs(ils / gaussian.ONE - fls.numpy()).max() < 0.1
    return fixed, mean, log_scale


def _round_trip_with_escapes(model: PhotoCodec, coder: HyperpriorCoder) -> tuple[np.ndarray, np.ndarray]:
    """Tokens (y, z) of 3 images with escapes and a clamped context, after asserting that they decode
    to themselves and that each payload is within 8 bytes of its ideal bits."""
    y, z = _tokens(model, 3)
    y[0, 0, 0, 0], y[1, 11, 1, 0], y[2, 5, 0, 1] = TOKEN_LIMIT - 1, -(TOKEN_LIMIT - 1), 40
    coded = coder.encode(y, z)
    y2, z2 = coder.decode([p for p, _ in coded], y.shape[2], y.shape[3], y.shape[1])
    assert (y2 == y).all() and (z2 == z).all()
    for payload, bits in coded:
        assert abs(len(payload) - bits / 8) < 8
    return y, z


def test_sliced_tokens_round_trip_with_escapes() -> None:
    model, coder = _sliced()
    assert coder.context.slices == 3
    y, z = _round_trip_with_escapes(model, coder)


def test_new_slices_start_as_the_hyperprior_alone() -> None:
    """Context networks start at zero corrections: the tables, so the bits, are the hyperprior's."""
    plain = _codes_as_without(*_sliced(perturb=False), "ctx")
    assert plain.context.slices == 1


def test_integer_slice_context_follows_the_float_network_and_is_exact_across_threads_and_batches() -> None:
    model, coder = _sliced()
    y, mean, log_scale = _context_inputs(model, coder, lambda s, m, ls, y: coder.context(s, m, ls, y))
    results = _integer_context_in_fresh_processes(model, "__call__", 2, y=y, mean=mean, log_scale=log_scale)
    assert results[0].dtype == np.int32 and (results[0] == results[1]).all()
    assert (np.concatenate(coder.context(2, mean, log_scale, y), 1) == results[0]).all()


def test_slices_must_divide_the_latent() -> None:
    with pytest.raises(ValueError, match="must divide the 12 latent channels"):
        PhotoConfig(latent=12, slices=5)


CHECKERED = PhotoConfig(**{**SLICED.to_dict(), "checkerboard": True})


def _checkered(perturb: bool = True) -> tuple[PhotoCodec, HyperpriorCoder]:
    """The three-slice model with checkerboard networks (random weights where `perturb`)."""
    return _sliced(perturb, CHECKERED)


def test_checkerboard_tokens_round_trip_with_escapes_and_use_their_anchors() -> None:
    model, coder = _checkered()
    assert coder.context.checkerboard and coder.context.slices == 3
    y, z = _round_trip_with_escapes(model, coder)
    table, _ = coder.params(z, y)  # a slice's anchor tokens change the tables of its other half only
    moved = y.copy()
    moved[:, 4:8][:, :, gaussian.anchors(*y.shape[2:])] += 3
    after, _ = coder.params(z, moved)
    changed = (after != table)[:, 4:8]
    assert changed.any() and not changed[:, :, gaussian.anchors(*y.shape[2:])].any()
    assert (after[:, :4] == table[:, :4]).all()


def test_a_new_checkerboard_starts_as_the_slices_alone() -> None:
    """Checkerboard networks start at zero corrections: the tables, so the bits, are the slices'."""
    plain = _codes_as_without(*_checkered(perturb=False), "sp")
    assert not plain.context.checkerboard and plain.context.slices == 3


def test_integer_checkerboard_follows_the_float_network_and_is_exact_across_threads_and_batches() -> None:
    model, coder = _checkered()
    y, mean, log_scale = _context_inputs(model, coder, lambda s, m, ls, y: coder.context.spatial(
        s, *coder.context(s, m, ls, y), y[:, 4 * s: 4 * s + 4]))
    m1, ls1 = coder.context(1, mean, log_scale, y)
    results = _integer_context_in_fresh_processes(model, "spatial", 1, y=y[:, 4:8], mean=m1, log_scale=ls1)
    assert results[0].dtype == np.int32 and (results[0] == results[1]).all()
    assert (np.concatenate(coder.context.spatial(1, m1, ls1, y[:, 4:8]), 1) == results[0]).all()


def test_api_writes_version_9_for_a_checkerboard_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole-grid checkerboard model codes with mean-shifted rounding (version 9): the file decodes
    to exactly the latents the encoder reconstructed from, each within half a step of the analysis'
    latent and not all at its rounding; the same image's plain tokens under the fine tables (7) and the
    stored ones (5), what such a model wrote before, are still read."""
    from vqzip import api, zoo
    from vqzip.coding import container
    from vqzip.training.rd import coder_tensors

    model, _ = _checkered()
    zoo.save_photo_model(tmp_path / "checkered.safetensors", model, coder_tensors(model))
    (tmp_path / "checkered.json").write_text('{"kind": "hyperprior", "default_quality": 1}')
    monkeypatch.setenv("VQZIP_MODELS", str(tmp_path))
    m = zoo.load_model("checkered")
    assert m.codec.config.checkerboard
    img = _image(70, 100)
    data = api.encode_batch(img[None], m, 2)[0].data
    assert container.parse_header(data)[0].version == container.SHIFTED_CHECKERBOARD_VERSION == 9
    y, z = api.photo_latents(img[None], m, 2)
    [(payload, _)], y_hat = api.photo_coder(m, 9).encode_latents(y, z)
    assert payload == container.parse(data, m.key(9)).payload
    assert np.array_equal(api.file_tokens(data), y_hat[0])
    assert np.abs(y_hat - y).max() <= 0.5 and (y_hat != np.round(y)).any()
    assert (np.asarray(api.decompress(data)) == api.token_images(y_hat, m, 70, 100, 2)[0]).all()
    tokens = api.round_latents(y)
    for older in (container.FINE_CHECKERBOARD_VERSION, container.CHECKERBOARD_VERSION):
        [(payload, _)] = api.photo_coder(m, older).encode(tokens, z)
        file = container.build(container.Header(m.model_id, 100, 70, "RGB", 2, older), payload, m.key(older))
        assert (api.file_tokens(file) == tokens[0]).all()


def test_effort_prices_a_version_9_models_tokens_as_it_codes_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a model that writes version 9, --effort refines the latents under mean-shifted rounding (what
    the file will code): the refined latents never cost more than the plain ones priced that way, and
    the file holds them."""
    from PIL import Image

    from vqzip import api, zoo
    from vqzip.codec.hyperprior import coded_cost
    from vqzip.training.rd import coder_tensors

    model, _ = _checkered()
    zoo.save_photo_model(tmp_path / "checkered.safetensors", model, coder_tensors(model))
    (tmp_path / "checkered.json").write_text('{"kind": "hyperprior", "default_quality": 1}')
    monkeypatch.setenv("VQZIP_MODELS", str(tmp_path))
    m = zoo.load_model("checkered")
    img = _image(64, 64)
    (y0, z0), (y1, z1) = api.photo_latents(img[None], m, 2), api.photo_latents(img[None], m, 2, effort=5)
    assert not np.array_equal(y0, y1)
    x, q = torch.from_numpy(api.to_unit(api._pad(img[None], m.stride))), torch.tensor([1])
    with torch.no_grad():
        costs = [coded_cost(m.codec, x, q, torch.from_numpy(y).float(), torch.from_numpy(z).float(), mean_shift=True)[0]
                 for y, z in ((y0, z0), (y1, z1))]
    assert costs[1] <= costs[0]
    data = api.compress_images([Image.fromarray(img)], m, 2, effort=5)[0].data
    _, y_hat = api.photo_coder(m, 9).encode_latents(y1, z1)
    assert np.array_equal(api.file_tokens(data), y_hat[0])


def test_mean_shifted_latents_round_trip_with_escapes_across_batches() -> None:
    """A mean-shifted coder's payloads decode to the latents it reported, far latents (escapes) and
    clipped offsets included, and a batch codes each image as it codes alone."""
    model, coder = _checkered()
    shifted = coder.with_mean_shift()
    assert shifted.shifted and shifted.fine and not coder.shifted and coder.with_mean_shift() is shifted
    y, z = _tokens(model, 3)
    latents = y + np.random.default_rng(0).uniform(-0.5, 0.5, y.shape)
    latents[0, 0, 0, 0], latents[1, 11, 1, 0], latents[2, 5, 0, 1] = 2.0 * TOKEN_LIMIT, -20000.25, 40.3
    coded, y_hat = shifted.encode_latents(latents, z)
    back, z2 = shifted.decode([p for p, _ in coded], *y.shape[2:], y.shape[1])
    assert np.array_equal(back, y_hat) and (z2 == z).all()
    assert np.abs(y_hat - latents)[latents < TOKEN_LIMIT].max() <= 0.5
    alone = [shifted.encode_latents(latents[i: i + 1], z[i: i + 1]) for i in range(3)]
    assert [p for p, _ in coded] == [c[0][0] for c, _ in alone]
    with pytest.raises(ValueError, match="encode_latents"):
        shifted.encode(y, z)
    # a dead zone rounds offsets towards zero: cheaper tokens, which the decoder reads unchanged
    zoned, y_zoned = shifted.encode_latents(latents, z, deadzone=0.3)
    assert np.array_equal(shifted.decode([p for p, _ in zoned], *y.shape[2:], y.shape[1])[0], y_zoned)
    assert sum(bits for _, bits in zoned) < sum(bits for _, bits in coded)


BLOCKED = PhotoConfig(**{**CHECKERED.to_dict(), "prior_block": 4})


def test_blocks_and_back_are_inverse() -> None:
    x = np.arange(2 * 3 * 8 * 12).reshape(2, 3, 8, 12)
    b = gaussian.to_blocks(x, 4)
    assert b.shape == (12, 3, 4, 4) and (b[1] == x[0, :, 0:4, 4:8]).all() and (b[6] == x[1, :, 0:4, 0:4]).all()
    assert (gaussian.from_blocks(b, 2, 8, 12) == x).all()


def test_a_block_prior_gives_each_block_the_tables_it_gets_as_an_image_of_its_own() -> None:
    """With prior_block, h_s and the contexts see each block alone (as training saw each crop): a grid's
    tables are those of its blocks coded as separate images, not the whole grid's; tokens round-trip."""
    from vqzip.training.rd import coder_tensors

    model, whole = _sliced(config=BLOCKED)
    blocked = HyperpriorCoder(coder_tensors(model), BLOCKED.prior_block)
    y, z = _tokens(model, 2)  # y grids of 8 x 4 positions: two blocks each
    table, base = blocked.params(z, y)
    alone = whole.params(gaussian.to_blocks(z, 1), gaussian.to_blocks(y, 4))
    assert all((got == gaussian.from_blocks(a, 2, 8, 4)).all() for got, a in zip((table, base), alone))
    assert (table != whole.params(z, y)[0]).any()
    _round_trip_with_escapes(model, blocked)


def test_api_writes_version_8_for_a_block_prior_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from vqzip import api, zoo
    from vqzip.coding import container
    from vqzip.errors import VqzipError
    from vqzip.training.rd import coder_tensors

    model, _ = _sliced(config=BLOCKED)
    zoo.save_photo_model(tmp_path / "blocked.safetensors", model, coder_tensors(model))
    (tmp_path / "blocked.json").write_text('{"kind": "hyperprior", "default_quality": 1}')
    monkeypatch.setenv("VQZIP_MODELS", str(tmp_path))
    m = zoo.load_model("blocked")
    assert m.config.prior_block == m.prior.block == 4 and m.stride == 64  # images pad to whole blocks
    img = _image(70, 100)
    data = api.encode_batch(img[None], m, 2)[0].data
    assert container.parse_header(data)[0].version == container.FINE_BLOCK_VERSION == 8
    assert np.asarray(api.decompress(data)).shape == (70, 100, 3)
    assert (api.file_tokens(data) == api.image_tokens(img[None], m, 2)[0]).all()
    with pytest.raises(VqzipError, match="block by block"):
        api.compress_images([Image.fromarray(img)], m, 2, effort=2)
    older = bytearray(data)
    for other in (container.CHECKERBOARD_VERSION, container.FINE_CHECKERBOARD_VERSION):  # claimed as whole-grid coding
        older[2] = other
        with pytest.raises(FormatError, match="does not fit"):
            api.decompress(bytes(older))


def test_a_prior_block_must_be_the_training_crop() -> None:
    from vqzip.training.rd import RDConfig

    with pytest.raises(ValueError, match="must be 0 or a multiple of 4"):
        PhotoConfig(prior_block=2)
    with pytest.raises(ValueError, match="not the --crop 128"):
        RDConfig(steps=1, codec=PhotoConfig(prior_block=4), crop=128)
    assert RDConfig(steps=1, codec=PhotoConfig(prior_block=4), crop=64).crop == 64


def test_residual_blocks_start_as_the_identity_and_export_and_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--residual adds blocks whose last convolution is zero: a model given them computes what it did
    (so --init can deepen a trained model), they train (the zero layer has gradients), and a model with
    them exports its graphs and codes through the API."""
    from vqzip import api, zoo
    from vqzip.training.rd import coder_tensors

    torch.manual_seed(0)
    plain = PhotoCodec(TINY).eval()
    deep = PhotoCodec(PhotoConfig(**{**TINY.to_dict(), "residual": 2})).eval()
    assert len(deep.g_a_blocks) == len(deep.g_s_blocks) == 2 and "residual" not in TINY.to_dict()
    deep.load_state_dict({**deep.state_dict(), **plain.state_dict()})
    x, q = torch.rand(2, 3, 64, 64) - 0.5, torch.tensor([0, 1])
    with torch.no_grad():
        y = plain.analysis(x, q)
        assert torch.equal(deep.analysis(x, q), y) and torch.equal(deep.synthesis(y.round(), q), plain.synthesis(y.round(), q))
    deep.train()
    out = deep(x, q)
    (out["y_bits"].sum() + out["x_hat"].square().sum()).backward()
    assert deep.g_s_blocks["1"][0].conv2.weight.grad.abs().sum() > 0
    with torch.no_grad():  # trained a little: the blocks now change the transforms
        for block in [*deep.g_a_blocks.values(), *deep.g_s_blocks.values()]:
            block[0].conv2.weight.normal_(0, 0.02)
    deep.eval()
    zoo.save_photo_model(tmp_path / "deep.safetensors", deep, coder_tensors(deep))
    (tmp_path / "deep.json").write_text('{"kind": "hyperprior", "default_quality": 1}')
    monkeypatch.setenv("VQZIP_MODELS", str(tmp_path))
    m = zoo.load_model("deep")
    assert m.codec.config.residual == 2
    img = _image(70, 100)
    data = api.encode_batch(img[None], m, 2)[0].data
    assert np.asarray(api.decompress(data)).shape == (70, 100, 3)
    assert (api.file_tokens(data) == api.image_tokens(img[None], m, 2)[0]).all()


def test_weight_shift_is_exact_at_powers_of_two() -> None:
    """The shift of a derived integer layer: the largest s with peak * 2^s <= WEIGHT_LIMIT, also where
    the peak sits on or one ulp beside a power of two (where a log2 may round either way)."""
    for peak in (1.0, 0.5, 4096.0, 3.0, 0.013, 1e-12, float(np.nextafter(1.0, 2.0)), float(np.nextafter(1.0, 0.0))):
        s = gaussian.weight_shift(peak)
        assert np.ldexp(peak, s) <= gaussian.WEIGHT_LIMIT < np.ldexp(peak, s + 1)
    assert gaussian.weight_shift(1.0) == 12 and gaussian.weight_shift(float(np.nextafter(1.0, 2.0))) == 11


def test_a_saved_photo_model_derives_its_integer_layers_from_its_float16_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model file holds h_s and the context networks once, as float16 weights: it stores only the
    Gaussian and z tables of the coder, and loading derives the integer layers from those weights,
    the very ones the coder would get from the torch codec loaded from the same file."""
    from safetensors import safe_open

    from vqzip.training.rd import coder_tensors

    model, _ = _checkered()
    zoo.save_photo_model(tmp_path / "checkered.safetensors", model, coder_tensors(model))
    with safe_open(str(tmp_path / "checkered.safetensors"), "np") as f:
        stored = {k[len(zoo.PHOTO_CODER_PREFIX):]: f.get_tensor(k) for k in f.keys() if k.startswith(zoo.PHOTO_CODER_PREFIX)}
    assert set(stored) == set(gaussian.STORED_TABLES)
    monkeypatch.setenv("VQZIP_MODELS", str(tmp_path))
    m = zoo.load_model("checkered")
    expected = HyperpriorCoder({**coder_tensors(m.codec), **stored})  # the z tables are stored, not re-derived
    y, z = _tokens(m.codec, 4, seed=2)
    assert all((a == b).all() for a, b in zip(m.prior.params(z, y), expected.params(z, y)))
    assert [p for p, _ in m.prior.encode(y, z)] == [p for p, _ in expected.encode(y, z)]


def test_training_with_mean_shifted_rounding_matches_what_version_9_codes() -> None:
    """SliceContext.shifted (training's --mean-shift): every latent within half a step of y, straight
    through (gradient 1), and the means it rounded against are what the contexts give for the result
    (a group's means depend only on the groups before it, as the coder derives them); the loss runs."""
    from vqzip.training.rd import rd_loss

    model, _ = _checkered()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 128, 64, generator=g) - 0.5
    q = torch.tensor([0, 1])
    y = (model.analysis(x, q) * 20).detach().requires_grad_(True)
    mean, log_scale = model.h_s(model.h_a(y).round())
    y_hat, m, ls = model.context.shifted(y, mean, log_scale)
    assert (y_hat - y).abs().max() <= 0.5 + 1e-5 and not torch.equal(y_hat, y.round())
    again = model.context(y_hat, mean, log_scale)
    assert torch.allclose(m, again[0], atol=1e-5) and torch.allclose(ls, again[1], atol=1e-5)
    y_hat.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))
    shifted, stats = rd_loss(model, x, q, mean_shift=True)
    plain, _ = rd_loss(model, x, q)
    assert torch.isfinite(shifted) and shifted.item() != plain.item() and stats["bpp"] > 0
