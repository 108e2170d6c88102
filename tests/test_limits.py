"""Limits before work (issue #20): a header's claims are checked before anything is allocated for them.

The decoder refuses an image over --max-pixels, and a header claiming more tokens than its payload can
hold (each coder's min_payload_bits); the encoder checks an image's size from its header, before
Pillow decodes a pixel (and before torch is loaded).
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqzip import api
from vqzip.coding import container
from vqzip.coding.entropy import SLACK_BITS, TokenEncoder, payload_floor
from vqzip.errors import FormatError, LimitError

SHIPPED = [("cifar10-rvq", 1), ("cifar10-rvq", 2), ("photo-rvq", 1), ("photo-rvq", 2), ("photo-rvq-v1", 2),
           ("cifar10-vq", 1), ("cifar10-byte", 1)]


def run(*args, cwd, **env):
    return subprocess.run([sys.executable, "-m", "vqzip", *map(str, args)], cwd=cwd, capture_output=True,
                          env={**os.environ, **env}, timeout=300)


def one_line_error(proc, code=1) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


def png_header(path: Path, width: int, height: int) -> None:
    """A PNG that is all header: its IHDR claims width x height, and it has no pixel data at all. A
    reader that decodes before it checks the size fails on the missing data, not on the size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))


def claim(m: api.LoadedModel, version: int, width: int, height: int, payload: bytes, quality: int = 1,
          mode: str = "RGB") -> bytes:
    """A file with a valid checksum whose header claims width x height, whatever its payload holds."""
    return container.build(container.Header(m.model_id, width, height, mode, quality, version), payload, m.key(version))


# --- the pixel limit ---------------------------------------------------------------------------------


def test_pixel_limit_default_passes_200_megapixels_and_is_named():
    container.check_pixels(20000, 10000)  # a 200-megapixel photo
    message = r"20000x15000 = 300,000,000 pixels exceeds the limit of 250,000,000 pixels \(--max-pixels\)"
    with pytest.raises(LimitError, match=message):
        container.check_pixels(20000, 15000)
    with pytest.raises(LimitError, match="limit of 99 pixels"):
        container.check_pixels(10, 10, max_pixels=99)
    with pytest.raises(FormatError, match="outside 1..65536"):
        container.check_pixels(65537, 1)


def test_decoder_checks_the_pixel_limit_before_it_looks_for_the_model():
    """No model has id ffff: the size is refused first, so no model (no torch work) is needed to refuse it."""
    data = container.build(container.Header(0xFFFF, 16384, 16384, "RGB", 1, 2), b"\x01", bytes(32))
    with pytest.raises(LimitError, match="268,435,456 pixels exceeds the limit of 250,000,000 pixels"):
        api.decompress(data)
    with pytest.raises(LimitError, match="limit of 1,000 pixels"):
        api.file_tokens(container.build(container.Header(0xFFFF, 40, 30, "RGB", 1, 2), b"\x01", bytes(32)),
                        max_pixels=1000)


# --- the payload bound -----------------------------------------------------------------------------


@pytest.mark.parametrize("name,version", SHIPPED, ids=[f"{n}-v{v}" for n, v in SHIPPED])
def test_header_claiming_more_tokens_than_the_payload_holds(name, version):
    """The issue's bombs: a 14-byte file claiming 2048 x 2048, one claiming 65536 x 4096 (over the pixel
    limit; with it raised, the payload bound refuses it), both with valid checksums."""
    m = api.load_model(name)
    for width, height, limit in ((2048, 2048, container.DEFAULT_MAX_PIXELS), (65536, 4096, container.MAX_PIXELS)):
        data = claim(m, version, width, height, b"\x07", quality=m.qualities)
        with pytest.raises(FormatError, match=rf"header claims {width}x{height} at quality {m.qualities} .* takes at "
                                              r"least [\d,]+ payload bytes; the file has 1"):
            api.decompress(data, max_pixels=limit)


@pytest.mark.parametrize("name,version", SHIPPED, ids=[f"{n}-v{v}" for n, v in SHIPPED])
def test_largest_claim_a_payload_allows_passes_the_check(name, version):
    """Just inside the bound, the check lets the file through (it decodes, or fails for what its payload
    holds, never for its size); one position more is refused."""
    m = api.load_model(name)
    coder, stride = (m.context if version == 2 else m.prior), m.codec.stride
    levels = m.codec.levels_for(1)
    payload = b"\x05" * 300
    w = 4  # grid columns; grow the rows until the floor passes 300 bytes
    h = 1
    while payload_floor(coder.min_payload_bits(levels, h + 1, w)) <= len(payload):
        h += 1
    inside = claim(m, version, w * stride, h * stride, payload)
    try:
        api.file_tokens(inside)
    except FormatError as exc:
        assert "header claims" not in str(exc)
    with pytest.raises(FormatError, match="header claims"):
        api.file_tokens(claim(m, version, w * stride, (h + 1) * stride, payload))


def _cheapest_tokens(m: api.LoadedModel, version: int, levels: int, h: int, w: int) -> np.ndarray:
    """Token grids whose tokens cost about the floor: each level's most probable token (static tables),
    or the cheapest token of level 0's group 0 everywhere (context prior)."""
    if version == 1:
        best = [int(np.argmax(f)) for f in m.prior.frequencies[:levels]]
    else:
        k = m.context.config.vocab
        t = np.arange(k).reshape(k, 1, 1, 1)
        (_, _, hi, hi_gaps, lo, lo_gaps), = m.context.model.known_gaps(t, 1)
        bits = [m.context.model.tables(g)[:, 0] for g in (hi_gaps, lo_gaps)]
        cost = sum(np.log2(b.sum(1)) - np.log2(b[np.arange(k), s[:, 0]]) for b, s in zip(bits, (hi, lo)))
        best = [int(np.argmin(cost))] * levels
    return np.broadcast_to(np.array(best)[None, :, None, None], (1, levels, h, w)).copy()


@pytest.mark.parametrize("name,version", SHIPPED, ids=[f"{n}-v{v}" for n, v in SHIPPED])
def test_bound_is_below_what_the_coder_writes(name, version):
    """min_payload_bits is a lower bound on what the range coder emits for any tokens: checked on
    random tokens and on the cheapest tokens the tables allow, unpadded (finish(0))."""
    m = api.load_model(name)
    coder = m.context if version == 2 else m.prior
    rng = np.random.default_rng(0)
    for quality in sorted({1, m.qualities}):
        levels = m.codec.levels_for(quality)
        for h, w in ((1, 1), (5, 7), (24, 24)):
            vocab = m.codec.quantizer.vocab_sizes[0]
            for tokens in (rng.integers(0, vocab, (1, levels, h, w)), _cheapest_tokens(m, version, levels, h, w)):
                with pytest.MonkeyPatch.context() as mp:  # no padding: what the coder itself emits
                    mp.setattr(TokenEncoder, "finish", lambda self, floor_bits=0.0, f=TokenEncoder.finish: f(self))
                    [(payload, _)] = coder.encode(tokens)
                assert 8 * len(payload) >= coder.min_payload_bits(levels, h, w) - SLACK_BITS, (quality, h, w)


@pytest.mark.parametrize("name,version", [("cifar10-rvq", 1), ("cifar10-rvq", 2), ("photo-rvq", 2)])
def test_a_run_of_token_0_is_padded_and_still_decodes(name, version):
    """All-zero tokens code to all-zero words, which the container drops: the encoder pads the payload
    up to the floor so the decoder accepts it, with bytes no decoder reads (garbage there changes nothing)."""
    m = api.load_model(name)
    coder = m.context if version == 2 else m.prior
    levels, h, w = m.codec.levels_for(2), 20, 24
    tokens = np.zeros((1, levels, h, w), np.int64)
    words: list[int] = []
    finish = TokenEncoder.finish

    def counting(self: TokenEncoder, floor_bits: float = 0.0) -> bytes:
        words.append(len(self._coder.get_compressed()))
        return finish(self, floor_bits)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TokenEncoder, "finish", counting)
        [(payload, _)] = coder.encode(tokens)
    assert not payload[: 4 * words[0]].strip(b"\0")  # the coder wrote only zero words
    assert len(payload) >= payload_floor(coder.min_payload_bits(levels, h, w)) + 1
    assert np.array_equal(coder.decode([payload], levels, h, w), tokens)
    data = claim(m, version, w * m.codec.stride, h * m.codec.stride, payload, quality=2)
    assert np.array_equal(api.file_tokens(data), tokens[0])
    # no decoder reads past the coder's words and one zero word: noise there changes nothing
    keep = 4 * words[0] + 4
    noisy = payload[:keep] + np.random.default_rng(1).integers(1, 256, len(payload) - keep, dtype=np.uint8).tobytes()
    assert np.array_equal(coder.decode([noisy], levels, h, w), tokens)


# --- the encoder: limits before work --------------------------------------------------------------


@pytest.fixture
def work(tmp_path, tiny_env):
    Image.fromarray((np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)).save(tmp_path / "img.png")
    return tmp_path


def test_encode_refuses_a_side_over_the_limit_before_decoding(work):
    png_header(work / "side.png", 65537, 2700)
    assert "65537x2700 outside 1..65536 per side" in one_line_error(run("encode", "side.png", cwd=work))
    png_header(work / "big.png", 20000, 15000)
    line = one_line_error(run("encode", "big.png", cwd=work))
    assert "300,000,000 pixels exceeds the limit of 250,000,000 pixels (--max-pixels)" in line
    assert not list(work.glob("*.vqz"))


def test_encode_refusal_loads_no_torch(work):
    """Refused from the header alone: no model loaded, so no torch (whose import alone is ~220 MB)."""
    png_header(work / "side.png", 65537, 2700)
    code = ("import sys; from vqzip.cli import main; sys.argv = ['vqzip', 'encode', 'side.png']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["1", "False"], proc.stderr


def test_encode_max_pixels_option(work):
    line = one_line_error(run("encode", "img.png", "-m", "tiny-rvq", "--max-pixels", "599", cwd=work))
    assert "img.png: image of 30x20 = 600 pixels exceeds the limit of 599 pixels (--max-pixels)" in line
    assert not (work / "img.vqz").exists()
    assert run("encode", "img.png", "-m", "tiny-rvq", "--max-pixels", "600", cwd=work).returncode == 0
    assert run("encode", "img.png", "--max-pixels", str(container.MAX_PIXELS + 1), cwd=work).returncode == 2


def test_decode_max_pixels_option(work):
    assert run("encode", "img.png", "-m", "tiny-rvq", cwd=work).returncode == 0
    line = one_line_error(run("decode", "img.vqz", "-o", "back.png", "--max-pixels", "599", cwd=work))
    assert "img.vqz: image of 30x20 = 600 pixels exceeds the limit of 599 pixels (--max-pixels)" in line
    assert not (work / "back.png").exists()
    assert run("decode", "img.vqz", "-o", "back.png", "--max-pixels", "600", cwd=work).returncode == 0


def test_decode_bomb_is_one_line(work, tiny_env):
    m = api.load_model("tiny-rvq")
    (work / "bomb.vqz").write_bytes(claim(m, 1, 2048, 2048, b""))
    line = one_line_error(run("decode", "bomb.vqz", cwd=work))
    assert "header claims 2048x2048" in line and "payload bytes; the file has 0" in line
    assert not (work / "bomb.png").exists()


def test_pillows_own_bomb_check_is_a_limit_error():
    """Pillow's DecompressionBombError, and its warning, which some formats raise while loading frames:
    one LimitError naming --max-pixels, never a warning printed on stderr."""
    from vqzip.cli.codec import _load_pixels

    class Frames:
        def __init__(self, exc: type[BaseException]) -> None:
            self.exc = exc

        def load(self) -> None:
            if issubclass(self.exc, Warning):
                warnings.warn("Image size (200 pixels) exceeds limit of 100 pixels", self.exc, stacklevel=2)
            else:
                raise self.exc("Image size (300 pixels) exceeds limit of 200 pixels")

    for exc in (Image.DecompressionBombError, Image.DecompressionBombWarning):
        with pytest.raises(LimitError, match=r"exceeds limit of \d+ pixels.*\(--max-pixels\)"):
            _load_pixels(Frames(exc), 100)
    assert Image.MAX_IMAGE_PIXELS != 100  # restored
