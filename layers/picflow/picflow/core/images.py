"""Checks on a source image before any money is spent on it.

The type comes from the bytes (Pillow's header parsers), never from a file name or a
declared content type. Decoding is bounded: Pillow reads only headers for the size, and
a pixel cap refuses decompression bombs before any pixel data is decoded. The completeness
checks hold a bounded amount of memory whatever the file's size (a 320 MB result is checked in
1 MiB reads): a PNG's chunks are walked and their CRCs computed as a stream, a progressive
JPEG's markers are walked to its EOI (bench/collect_memory.py, issue 17).
"""

from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import IO

from picflow.core.catalogue import InputLimits, check_image_size
from picflow.core.errors import ParamValidationError

__all__ = ["MAX_PIXELS", "MIME_TYPES", "ImageInfo", "inspect_image", "sniff_content_type"]

# No provider documents more than 4000 px per side; 40 MP leaves room and stops bombs early.
MAX_PIXELS = 40_000_000

MIME_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
}

# Magic numbers for the results we store that Pillow does not read (EPS is PostScript).
_OTHER_MAGIC = ((b"%!PS-Adobe", "application/postscript"), (b"\xc5\xd0\xd3\xc6", "application/postscript"))


@dataclass(frozen=True)
class ImageInfo:
    format: str  # Pillow's name: JPEG, PNG, ...
    width: int
    height: int
    size_bytes: int

    @property
    def content_type(self) -> str:
        return MIME_TYPES.get(self.format, "application/octet-stream")


def _fail(message: str, rule: str) -> ParamValidationError:
    return ParamValidationError(message, field="image", rule=rule)


# Formats whose verify() checks the header only (BMP, TIFF): decoded in full before anything is paid,
# as PNG (verify() checks every chunk's CRC), JPEG (decoded at 1/8 scale) and WebP are checked.
_DECODED_IN_FULL = frozenset({"BMP", "TIFF"})


def inspect_image(
    fp: IO[bytes], limits: InputLimits | None = None, *, verify: bool = True, what: str = "the operation"
) -> ImageInfo:
    """Identify ``fp`` (seekable) and check it against ``limits`` (``what``'s); rewinds ``fp`` afterwards.

    Raises :class:`ParamValidationError` (field ``image``) for empty, oversized, unknown,
    truncated or out-of-bounds images.
    """
    from PIL import Image, UnidentifiedImageError

    fp.seek(0, 2)
    size = fp.tell()
    fp.seek(0)
    check_image_size(size, None if limits is None else limits.max_bytes, what=what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                fmt = img.format or ""
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise _fail(f"the image has {width * height} pixels", f"at most {MAX_PIXELS} pixels")
                progressive = bool(img.info.get("progressive"))
                if verify and fmt == "JPEG" and progressive:
                    # Decoding a progressive JPEG holds every DCT coefficient of the image, even at
                    # 1/8 scale (232 MB at 40 MP): its markers are walked to the EOI instead.
                    _walk_jpeg(fp)
                elif verify and fmt == "JPEG":
                    # JPEG's verify() reads none of the scan data; decoding at 1/8 scale reads all
                    # of it (a truncated file raises) in 1/64 of the memory of a full decode.
                    img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
                    img.load()
                elif verify and fmt in _DECODED_IN_FULL:
                    img.load()  # verify() reads none of their pixel data: a truncated one raises here
                elif verify and fmt == "PNG":
                    # What Pillow's verify() checks (every chunk's CRC, up to IEND), as a stream:
                    # Pillow reads each chunk whole, and a PNG written as one IDAT chunk is as big.
                    _walk_png(fp)
                elif verify:
                    img.verify()  # walks the data without decoding pixels: catches truncation
    except ParamValidationError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _fail(f"not a readable image: {type(exc).__name__}", "a decodable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _fail(f"corrupt or truncated image: {exc}", "a complete image") from None
    finally:
        fp.seek(0)
    if limits is not None:
        if fmt not in limits.formats:
            raise _fail(f"format {fmt or 'unknown'} is not accepted", f"one of {sorted(limits.formats)}")
        if limits.max_side is not None and max(width, height) >= limits.max_side:
            raise _fail(
                f"{width}x{height} px: each side must be < {limits.max_side}", f"sides < {limits.max_side}"
            )
        ratio = width / height
        if limits.min_ratio is not None and ratio < limits.min_ratio - 1e-9:
            raise _fail(f"aspect ratio {width}:{height} is too narrow", f"ratio within {limits.ratio_text}")
        if limits.max_ratio is not None and ratio > limits.max_ratio + 1e-9:
            raise _fail(f"aspect ratio {width}:{height} is too wide", f"ratio within {limits.ratio_text}")
    return ImageInfo(fmt, width, height, size)


_READ = 1024 * 1024


def _walk_png(fp: IO[bytes]) -> None:
    """Every chunk's CRC from the signature to IEND, read 1 MiB at a time; SyntaxError if not so."""
    fp.seek(8)
    while True:
        head = fp.read(8)
        if len(head) < 8:
            raise SyntaxError("truncated PNG: no IEND chunk")
        length, kind = struct.unpack(">I4s", head)
        crc = zlib.crc32(kind)
        left = length
        while left:
            piece = fp.read(min(left, _READ))
            if not piece:
                raise SyntaxError(f"truncated PNG: its {kind!r} chunk is cut short")
            crc = zlib.crc32(piece, crc)
            left -= len(piece)
        stored = fp.read(4)
        if len(stored) < 4 or struct.unpack(">I", stored)[0] != crc & 0xFFFFFFFF:
            raise SyntaxError(f"broken PNG: the CRC of its {kind!r} chunk does not match")
        if kind == b"IEND":
            return


def _walk_jpeg(fp: IO[bytes]) -> None:
    """A JPEG's segments and entropy-coded scans from SOI to EOI, read 1 MiB at a time; SyntaxError
    when it ends first or a marker is missing where one must be (a cut or garbled file)."""
    fp.seek(0)
    buf = fp.read(_READ)
    if not buf.startswith(b"\xff\xd8"):
        raise SyntaxError("not a JPEG: no SOI")
    pos = 2

    def more() -> None:
        nonlocal buf, pos
        piece = fp.read(_READ)
        if not piece:
            raise SyntaxError("truncated JPEG: no EOI")
        buf = buf[pos:] + piece
        pos = 0

    in_scan = False
    while True:
        if in_scan:
            # Scan data ends at a 0xFF that is not stuffing (FF 00), a restart marker (FF D0-D7)
            # or a fill byte (FF FF).
            at = buf.find(b"\xff", pos)
            if at < 0 or at + 1 >= len(buf):
                pos = len(buf) if at < 0 else at
                more()
                continue
            follower = buf[at + 1]
            if follower == 0x00 or 0xD0 <= follower <= 0xD7:
                pos = at + 2
                continue
            if follower == 0xFF:
                pos = at + 1
                continue
            pos = at
            in_scan = False
        while len(buf) - pos < 2:
            more()
        if buf[pos] != 0xFF:
            raise SyntaxError(f"broken JPEG: a marker expected at byte {fp.tell() - len(buf) + pos}")
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        pos += 2
        if marker == 0xD9:  # EOI
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            continue
        while len(buf) - pos < 2:
            more()
        skip = int.from_bytes(buf[pos : pos + 2], "big")
        if skip < 2:
            raise SyntaxError("broken JPEG: a segment shorter than its length field")
        while len(buf) - pos < skip:
            skip -= len(buf) - pos
            pos = len(buf)
            more()
        pos += skip
        in_scan = marker == 0xDA  # SOS: its entropy-coded data follows


# Enough of a file to reach the dimensions of every accepted format: JPEG's SOF can sit behind
# EXIF (<= 64 KiB) and ICC profile segments.
SNIFF_BYTES = 256 * 1024


def inspect_prefix(
    head: bytes, size: int, limits: InputLimits, *, what: str = "the operation"
) -> ImageInfo | None:
    """Judge a file of ``size`` bytes by its first bytes; None when they cannot tell.

    Decisive: no known image signature, a pixel bomb, a format, size or ratio the operation
    refuses. A header cut off by the prefix itself proves nothing (Validate reads it all).
    """
    import io

    try:
        return inspect_image(io.BytesIO(head), limits, verify=False, what=what)
    except ParamValidationError as exc:
        if len(head) < size and exc.rule == "a complete image":
            return None
        raise


def sniff_content_type(head: bytes) -> str | None:
    """The content type a result's first bytes prove, or None when they prove nothing known."""
    for magic, mime in _OTHER_MAGIC:
        if head.startswith(magic):
            return mime
    signatures = (
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"BM", "image/bmp"),
        (b"II*\x00", "image/tiff"),
        (b"MM\x00*", "image/tiff"),
    )
    for magic, mime in signatures:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None
