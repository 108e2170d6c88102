"""The .vqz byte layout, versions 1 to 9 (docs/format.md): build, parse, validate. Knows nothing of torch.

The versions share one layout; the version says how the payload was coded: 1 = the model's static
per-level tables, 2 = the model's context prior, 3 to 9 = a photo codec's hyperprior. The version
byte's high bit (METADATA_BIT) says that a metadata section (ICC profile, EXIF) follows the alpha
section; files without one are byte for byte what they were before the section existed.

Every length and size is checked before anything is allocated from it, so a hostile header cannot
make the decoder reserve gigabytes.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from ..errors import FormatError, LimitError

MAGIC = b"VQ"
VERSION = 2  # written when the model has a context prior; version 1 otherwise
HYPERPRIOR_VERSION = 3  # written by the photo codec (codec.hyperprior, coding.gaussian)
SLICED_VERSION = 4  # written by a photo codec whose latent is coded in channel-conditional slices
CHECKERBOARD_VERSION = 5  # ... whose slices are also coded in two checkerboard halves, the second after the first
BLOCK_VERSION = 6  # written by a photo codec whose entropy model runs block by block (PhotoConfig.prior_block)
FINE_CHECKERBOARD_VERSION = 7  # version 5's coding under the fine tables (coding.gaussian.HyperpriorCoder.with_fine_tables)
FINE_BLOCK_VERSION = 8  # version 6's coding under the fine tables
SHIFTED_CHECKERBOARD_VERSION = 9  # version 7's with mean-shifted rounding (coding.gaussian.HyperpriorCoder.with_mean_shift)
FINE_OF = {CHECKERBOARD_VERSION: FINE_CHECKERBOARD_VERSION, BLOCK_VERSION: FINE_BLOCK_VERSION}  # what supersedes what
FINE_VERSIONS = (*FINE_OF.values(), SHIFTED_CHECKERBOARD_VERSION)  # coded under the fine tables
PHOTO_VERSIONS = (HYPERPRIOR_VERSION, SLICED_VERSION, CHECKERBOARD_VERSION, BLOCK_VERSION, *FINE_VERSIONS)
VERSIONS = (1, 2, *PHOTO_VERSIONS)  # read
MODES = ("L", "LA", "RGB", "RGBA")  # index = the 2-bit mode field
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 28  # 268 megapixels
DEFAULT_MAX_PIXELS = 250_000_000  # what readers and writers accept unless told otherwise (--max-pixels)
MAX_QUALITY = 64
CRC_BYTES = 4
METADATA_BIT = 0x80  # in the version byte: a metadata section is present
PAYLOAD_KIND = 0x7F  # the version byte's other bits: how the payload was coded (VERSIONS)
META_ICC, META_EXIF = 1, 2  # entry tags of the metadata section
MAX_METADATA = 1 << 24  # bytes of a decompressed metadata section a reader accepts (16 MiB)


@dataclass(frozen=True)
class Header:
    model_id: int  # 16 bits: first two bytes of the SHA-256 of the model's weights file
    width: int
    height: int
    mode: str  # one of MODES
    quality: int  # 1..64
    version: int = VERSION  # 1: static tables, 2: context prior, 3: hyperprior, 4: in slices, 5: and in checkerboards,
    # 6: hyperprior run block by block, 7 and 8: 5 and 6 under the fine tables
    has_metadata: bool = False  # a metadata section (ICC profile, EXIF) follows the alpha section

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise FormatError(f".vqz version {self.version} is not supported")
        if not 0 <= self.model_id < 1 << 16:
            raise FormatError(f"model id {self.model_id} does not fit 16 bits")
        check_size(self.width, self.height)
        if self.mode not in MODES:
            raise FormatError(f"unsupported colour mode {self.mode!r}")
        if not 1 <= self.quality <= MAX_QUALITY:
            raise FormatError(f"quality {self.quality} outside 1..{MAX_QUALITY}")

    @property
    def has_alpha(self) -> bool:
        return self.mode in ("LA", "RGBA")


@dataclass(frozen=True)
class VqzFile:
    header: Header
    alpha: bytes  # zlib-compressed alpha plane; b"" = fully opaque (or no alpha)
    payload: bytes  # range-coded tokens, trailing zero bytes removed
    size: int  # total bytes of the file
    metadata: bytes = b""  # the zlib-compressed metadata section (see pack_metadata); b"" = none

    @property
    def overhead(self) -> int:
        """Everything but the payload: header, alpha and metadata sections and checksum."""
        return self.size - len(self.payload)


@dataclass(frozen=True)
class Metadata:
    """What a file keeps of the original besides pixels: an ICC profile and EXIF, raw bytes each
    (EXIF as the TIFF structure, without the `Exif\\0\\0` prefix JPEG puts before it); b"" = absent."""
    icc: bytes = b""
    exif: bytes = b""

    def __bool__(self) -> bool:
        return bool(self.icc or self.exif)


def pack_metadata(meta: Metadata) -> bytes:
    """The metadata section's body, zlib-compressed: for each present entry in tag order, a tag byte
    (META_ICC, META_EXIF), a varint length and the bytes. b"" when there is nothing to keep."""
    if not meta:
        return b""
    body = b"".join(bytes([tag]) + _varint(len(value)) + value
                    for tag, value in ((META_ICC, meta.icc), (META_EXIF, meta.exif)) if value)
    return zlib.compress(body, 9)


def unpack_metadata(section: bytes) -> Metadata:
    """The inverse of pack_metadata, decompressing at most MAX_METADATA bytes; entries of unknown tags
    are skipped (a later writer may add some)."""
    if not section:
        return Metadata()
    d = zlib.decompressobj()
    try:
        body = d.decompress(section, MAX_METADATA + 1)
    except zlib.error:
        raise FormatError("metadata section is corrupt") from None
    if len(body) > MAX_METADATA or not d.eof:
        raise FormatError(f"metadata section is larger than {MAX_METADATA} bytes, or truncated")
    entries: dict[int, bytes] = {}
    pos = 0
    while pos < len(body):
        tag = body[pos]
        n, pos = _read_varint(body, pos + 1, 4)
        if pos + n > len(body) or tag in entries:
            raise FormatError("metadata section is malformed")
        entries[tag], pos = body[pos: pos + n], pos + n
    return Metadata(entries.get(META_ICC, b""), entries.get(META_EXIF, b""))


def check_size(width: int, height: int) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise FormatError(f"image size {width}x{height} outside 1..{MAX_SIDE} per side")
    if width * height > MAX_PIXELS:
        raise FormatError(f"image of {width * height:,} pixels exceeds the limit of {MAX_PIXELS:,}, the format's maximum")


def check_pixels(width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse an image of more than `max_pixels` pixels (LimitError), and one outside the format's
    limits (FormatError): what readers and writers check before they allocate anything for it."""
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise FormatError(f"image size {width}x{height} outside 1..{MAX_SIDE} per side")
    if width * height > max_pixels:
        raise LimitError(f"image of {width}x{height} = {width * height:,} pixels exceeds the limit of "
                         f"{max_pixels:,} pixels (--max-pixels)")
    check_size(width, height)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int, max_bytes: int = 4) -> tuple[int, int]:
    value = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise FormatError("file is truncated (inside the header)")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise FormatError("malformed header (varint too long)")


def _crc(body: bytes, key: bytes) -> int:
    """CRC-32 of the file body, seeded with the model's digest: a file only checks out with its model."""
    return zlib.crc32(body, zlib.crc32(key))


def build(header: Header, payload: bytes, key: bytes, alpha: bytes = b"", metadata: bytes = b"") -> bytes:
    """Serialize a .vqz file. `key` is the checksum key of the model (and prior) that coded it (see
    _crc and zoo.LoadedModel.key); `metadata` a pack_metadata section (b"": none, and no byte spent)."""
    if header.has_metadata != bool(metadata):
        raise ValueError("header.has_metadata must say whether a metadata section is given")
    flags = MODES.index(header.mode) | (header.quality - 1) << 2
    parts = [MAGIC, bytes([header.version | (METADATA_BIT if metadata else 0)]), header.model_id.to_bytes(2, "big"),
             _varint(header.width), _varint(header.height), bytes([flags])]
    if header.has_alpha:
        parts += [_varint(len(alpha)), alpha]
    elif alpha:
        raise ValueError("alpha data given for a mode without alpha")
    if metadata:
        parts += [_varint(len(metadata)), metadata]
    body = b"".join(parts) + payload.rstrip(b"\0")
    return body + _crc(body, key).to_bytes(CRC_BYTES, "big")


def parse_header(data: bytes) -> tuple[Header, int]:
    """Read and validate the fixed header; returns it and the offset just past it. No checksum yet:
    that needs the model (see parse)."""
    if len(data) < len(MAGIC) + 1 or data[:2] != MAGIC:
        raise FormatError("not a .vqz file (bad magic bytes)")
    version, has_metadata = data[2] & PAYLOAD_KIND, bool(data[2] & METADATA_BIT)
    if version not in VERSIONS:
        raise FormatError(f".vqz version {version} is not supported (this vqzip reads versions "
                          f"{', '.join(map(str, VERSIONS))}); upgrade vqzip")
    if len(data) < 6:
        raise FormatError("file is truncated (inside the header)")
    model_id = int.from_bytes(data[3:5], "big")
    width, pos = _read_varint(data, 5, 3)
    height, pos = _read_varint(data, pos, 3)
    if pos >= len(data):
        raise FormatError("file is truncated (inside the header)")
    flags = data[pos]
    return Header(model_id, width, height, MODES[flags & 3], (flags >> 2) + 1, version, has_metadata), pos + 1


def parse(data: bytes, key: bytes) -> VqzFile:
    """Parse and verify a whole file against the model digest `key`."""
    header, pos = parse_header(data)
    if len(data) < pos + CRC_BYTES:
        raise FormatError("file is truncated (no checksum)")
    body, crc = data[:-CRC_BYTES], int.from_bytes(data[-CRC_BYTES:], "big")
    if _crc(body, key) != crc:
        raise FormatError("checksum mismatch: the file is damaged, or was made by another model with the same id")
    alpha = b""
    if header.has_alpha:
        n, pos = _read_varint(body, pos, 5)
        if pos + n > len(body):
            raise FormatError("file is truncated (inside the alpha section)")
        alpha, pos = body[pos: pos + n], pos + n
    metadata = b""
    if header.has_metadata:
        n, pos = _read_varint(body, pos, 4)
        if n == 0 or pos + n > len(body):
            raise FormatError("file is truncated (inside the metadata section)")
        metadata, pos = body[pos: pos + n], pos + n
    return VqzFile(header, alpha, body[pos:], len(data), metadata)
