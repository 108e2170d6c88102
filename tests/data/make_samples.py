"""Write the sample .vqz files of each format version that tests/test_format_versions.py decodes.

    python tests/data/make_samples.py

Run once per format version with the shipped default model; the files are committed and must keep
decoding with every later vqzip. `--photo-v1` writes the file of the first photo model instead, which
was shipped as photo-rvq and renamed photo-rvq-v1 when a 6-level photo-rvq replaced it: files name
their model by id, so such a file must still find it. `--metadata` writes sample-v2-metadata.vqz, the
32x32 sample with an ICC profile and EXIF (the metadata section, flagged by the version byte's high bit).
`--photo-hp` writes sample-v3.vqz, a 128x128 crop coded by the photo codec photo-hp (format version 3),
with its image and side tokens; `--photo-cc` sample-v4.vqz, the same crop coded by photo-cc (version 4:
the hyperprior in channel-conditional slices); `--photo-cb` sample-v5.vqz, by photo-cb128 (version 5:
the slices in checkerboard halves); `--small-cb` sample-v6.vqz, by small-cb (version 6: its
hyperprior run block by block); `--photo-cbr` sample-v7.vqz, by photo-cbr128 (version 7: version 5's
coding under the fine tables); `--small-cb2` sample-v8.vqz, by small-cb2 (version 8: version 6's under them);
`--photo-cbr-shifted` sample-v9.vqz, by photo-cbr128 (version 9: version 7's with mean-shifted rounding),
with the analysis' float latents it was coded from and the latents it decodes to.
"""
from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from vqzip import api

HERE = Path(__file__).resolve().parent


def sample() -> Image.Image:
    """A 32x32 crop of the built-in photo: the CIFAR-sized image the samples hold."""
    with resources.files("vqzip.assets").joinpath("sample.png").open("rb") as f:
        return Image.open(f).convert("RGB").crop((64, 40, 96, 72))


def photo_v1_sample() -> None:
    """A 64x64 crop at quality 2 with photo-rvq-v1 (model id 7dc6) and its context prior."""
    with resources.files("vqzip.assets").joinpath("sample.png").open("rb") as f:
        img = Image.open(f).convert("RGB").crop((48, 24, 112, 88))
    img.save(HERE / "sample64.png")
    m = api.load_model("photo-rvq-v1")
    (HERE / "photo-rvq-v1-sample64.vqz").write_bytes(api.compress(img, m, 2))
    np.save(HERE / "photo-rvq-v1-sample64-tokens.npy", api.image_tokens(np.asarray(img)[None], m, 2)[0].astype(np.uint8))


METADATA_ICC = b"vqzip sample ICC profile " * 8
METADATA_MAKE = "vqzip sample camera"


def metadata_sample() -> None:
    """The 32x32 sample at quality 3 with the context prior, carrying an ICC profile and EXIF (a camera
    make, orientation 1): the same tokens as sample-v2.vqz, plus a metadata section."""
    import io

    exif = Image.Exif()
    exif[0x010F] = METADATA_MAKE
    exif[0x0112] = 1
    buf = io.BytesIO()
    sample().save(buf, "PNG", icc_profile=METADATA_ICC, exif=exif)
    data = api.compress(Image.open(buf), api.load_model("cifar10-rvq"), 3)
    assert data[2] == 0x82
    (HERE / "sample-v2-metadata.vqz").write_bytes(data)
    print(f"sample-v2-metadata.vqz: {len(data)} bytes")


def photo_sample(model: str, quality: int, version: int) -> None:
    """A 128x128 crop of the built-in photo coded by a photo codec: sample-v<version>.vqz and its tokens
    (version 3: photo-hp-v1, the hyperprior; version 4: photo-cc, the hyperprior in slices)."""
    with resources.files("vqzip.assets").joinpath("sample.png").open("rb") as f:
        img = Image.open(f).convert("RGB").crop((0, 0, 128, 128))
    if not (HERE / "sample128.png").exists():
        img.save(HERE / "sample128.png")
    m = api.load_model(model)
    data = api.compress(img, m, quality)
    assert data[2] == version
    (HERE / f"sample-v{version}.vqz").write_bytes(data)
    y, z = api.photo_tokens(np.asarray(img)[None], m, quality)
    np.savez_compressed(HERE / f"sample-v{version}-tokens.npz", y=y[0].astype(np.int16), z=z[0].astype(np.int8))
    print(f"sample-v{version}.vqz: {len(data)} bytes")


def shifted_sample() -> None:
    """The 128x128 crop at quality 5 by photo-cbr128 with mean-shifted rounding (version 9): the file, the
    analysis latents y (float32) and side tokens z it was coded from, and the latents it decodes to
    (y_hat, in fixed point: y_hat * ONE, integers)."""
    from vqzip.coding.gaussian import ONE

    with resources.files("vqzip.assets").joinpath("sample.png").open("rb") as f:
        img = Image.open(f).convert("RGB").crop((0, 0, 128, 128))
    m = api.load_model("photo-cbr128")
    data = api.compress(img, m, 5)
    assert data[2] == 9
    (HERE / "sample-v9.vqz").write_bytes(data)
    y, z = api.photo_latents(np.asarray(img)[None], m, 5)
    [(payload, _)], y_hat = api.photo_coder(m, 9).encode_latents(y, z)
    np.savez_compressed(HERE / "sample-v9-latents.npz", y=y[0], z=z[0].astype(np.int8),
                        y_hat=np.round(y_hat[0] * ONE).astype(np.int32))
    print(f"sample-v9.vqz: {len(data)} bytes")


def main() -> None:
    if sys.argv[1:] == ["--photo-cbr-shifted"]:
        return shifted_sample()
    if sys.argv[1:] == ["--photo-hp"]:
        return photo_sample("photo-hp-v1", 4, 3)
    if sys.argv[1:] == ["--photo-cc"]:
        return photo_sample("photo-cc", 5, 4)
    if sys.argv[1:] == ["--photo-cb"]:
        return photo_sample("photo-cb128", 5, 5)
    if sys.argv[1:] == ["--small-cb"]:
        return photo_sample("small-cb", 4, 6)
    if sys.argv[1:] == ["--photo-cbr"]:
        return photo_sample("photo-cbr128", 5, 7)
    if sys.argv[1:] == ["--small-cb2"]:
        return photo_sample("small-cb2", 4, 8)
    if sys.argv[1:] == ["--photo-v1"]:
        return photo_v1_sample()
    if sys.argv[1:] == ["--metadata"]:
        return metadata_sample()
    img = sample()
    img.save(HERE / "sample32.png")
    m = api.load_model("cifar10-rvq")
    for version, prior in ((1, "static"), (2, "context")):
        data = api.compress(img, m, 3, prior=prior)
        assert data[2] == version
        (HERE / f"sample-v{version}.vqz").write_bytes(data)
        print(f"sample-v{version}.vqz: {len(data)} bytes")
    np.save(HERE / "sample-tokens.npy", api.image_tokens(np.asarray(img)[None], m, 3)[0].astype(np.uint8))


if __name__ == "__main__":
    main()
