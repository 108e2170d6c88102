"""The .vqz byte layout: round trip, overhead, and refusal of damaged or hostile files."""
import pytest

from vqzip.coding import container
from vqzip.errors import FormatError

KEY = bytes(range(32))


def header(**kw):
    base = dict(model_id=0xBEEF, width=32, height=32, mode="RGB", quality=3)
    return container.Header(**{**base, **kw})


def test_round_trip_and_fixed_overhead_at_most_12_bytes():
    data = container.build(header(), b"\x01\x02\x03", KEY)
    f = container.parse(data, KEY)
    assert f.header == header()
    assert f.payload == b"\x01\x02\x03"
    assert f.overhead == len(data) - 3 <= 12


@pytest.mark.parametrize("mode", container.MODES)
def test_modes_and_alpha_section(mode):
    alpha = b"zz" if mode in ("LA", "RGBA") else b""
    data = container.build(header(mode=mode, width=1, height=70000 // 2), b"pay", KEY, alpha)
    f = container.parse(data, KEY)
    assert (f.header.mode, f.alpha, f.payload) == (mode, alpha, b"pay")


def test_trailing_zero_bytes_of_payload_are_dropped():
    data = container.build(header(), b"\x05\x00\x00", KEY)
    assert container.parse(data, KEY).payload == b"\x05"


def test_every_single_bit_flip_is_detected():
    data = container.build(header(), b"\x11\x22\x33\x44\x55", KEY)
    for i in range(len(data) * 8):
        broken = bytearray(data)
        broken[i // 8] ^= 1 << (i % 8)
        with pytest.raises(FormatError):
            container.parse(bytes(broken), KEY)


def test_every_truncation_is_detected():
    data = container.build(header(mode="RGBA"), b"\x11\x22\x33", KEY, b"alpha")
    for n in range(len(data)):
        with pytest.raises(FormatError):
            container.parse(data[:n], KEY)


def test_another_models_digest_fails_the_checksum():
    data = container.build(header(), b"\x01", KEY)
    with pytest.raises(FormatError, match="checksum"):
        container.parse(data, bytes(32))


def test_not_a_vqz_file_and_future_version():
    with pytest.raises(FormatError, match="not a .vqz"):
        container.parse_header(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(FormatError, match="version 10 is not supported .* upgrade vqzip"):
        container.parse_header(b"VQ\x0a" + bytes(10))


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_every_version_round_trips(version: int):
    header = container.Header(0x1234, 32, 32, "RGB", 3, version)
    f = container.parse(container.build(header, b"\x05\x06", b"k"), b"k")
    assert f.header == header and f.payload == b"\x05\x06"


def test_absurd_dimensions_refused_before_allocation():
    # a hand-made header claiming 40000 x 40000 (1.6e9 pixels)
    big = container._varint(40000)
    raw = b"VQ\x01\x00\x01" + big + big + b"\x08" + bytes(8)
    with pytest.raises(FormatError, match="exceeds the limit"):
        container.parse_header(raw)
    with pytest.raises(FormatError):
        header(width=0)
    with pytest.raises(FormatError):
        header(width=container.MAX_SIDE + 1)


def test_metadata_section_round_trips_and_sets_the_high_bit():
    meta = container.Metadata(icc=b"icc" * 50, exif=b"MM\x00*" + bytes(20))
    section = container.pack_metadata(meta)
    data = container.build(header(mode="RGBA", has_metadata=True), b"\x07", KEY, b"alpha", section)
    assert data[2] == 0x80 | container.VERSION
    f = container.parse(data, KEY)
    assert f.header.has_metadata and (f.alpha, f.payload) == (b"alpha", b"\x07")
    assert container.unpack_metadata(f.metadata) == meta
    assert f.overhead == len(data) - 1


def test_no_metadata_costs_nothing():
    """Without metadata the file is what a reader without metadata support wrote: 12 bytes at 32x32."""
    assert container.pack_metadata(container.Metadata()) == b""
    data = container.build(header(), b"\x01\x02\x03", KEY)
    assert data[2] == container.VERSION and container.parse(data, KEY).overhead == 12


@pytest.mark.parametrize("icc,exif", [(b"x", b""), (b"", b"II*\x00"), (b"a" * 1000, b"b" * 1000)])
def test_metadata_entries(icc, exif):
    meta = container.Metadata(icc, exif)
    assert container.unpack_metadata(container.pack_metadata(meta)) == meta


def test_an_older_reader_refuses_a_file_with_metadata_cleanly():
    data = container.build(header(has_metadata=True), b"\x01", KEY, metadata=container.pack_metadata(container.Metadata(b"p")))
    assert data[2] not in (1, 2)  # what a reader of versions 1 and 2 checks before reading on
    with pytest.raises(FormatError, match="version 10 is not supported"):
        container.parse_header(b"VQ\x8a" + bytes(10))  # an unknown payload kind, with metadata


def test_damaged_metadata_sections_are_refused():
    import zlib

    for body in (b"\x01\x05ab", b"\x01\x01a\x01\x01b", b"\x01"):  # runs past its end, repeated tag, no length
        with pytest.raises(FormatError):
            container.unpack_metadata(zlib.compress(body))
    with pytest.raises(FormatError, match="corrupt"):
        container.unpack_metadata(b"not zlib")
    with pytest.raises(FormatError, match="larger"):
        container.unpack_metadata(zlib.compress(b"\x01" + container._varint(1 << 25) + bytes(1 << 25)))
    assert container.unpack_metadata(zlib.compress(b"\x09\x02zz\x01\x01i")) == container.Metadata(icc=b"i")  # unknown tag skipped
    data = container.build(header(has_metadata=True), b"\x01", KEY, metadata=container.pack_metadata(container.Metadata(b"p")))
    for n in range(len(data)):
        with pytest.raises(FormatError):
            container.parse(data[:n], KEY)
    with pytest.raises(ValueError):
        container.build(header(), b"\x01", KEY, metadata=b"x")
