"""picflow.core.images: the source image is checked from its bytes before any money is spent on it."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from picflow.core.catalogue import OPERATIONS, InputLimits
from picflow.core.errors import ParamValidationError
from picflow.core.images import MAX_PIXELS, SNIFF_BYTES, inspect_image, inspect_prefix, sniff_content_type
from PIL import Image

TASKPIC = OPERATIONS["segmentation"].input
TENCENT = OPERATIONS["replace_background"].input
HDREDRAW = OPERATIONS["redraw"].input


def image_bytes(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB", **save: object) -> bytes:
    # Noise, so compressed formats have real scan data to truncate.
    image = Image.effect_noise(size, 64).convert(mode) if mode != "1" else Image.new("1", size)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A well-formed PNG that claims ``width`` x ``height`` but holds no pixels: costs bytes, not RAM."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def refused(data: bytes, limits: InputLimits | None = None) -> ParamValidationError:
    fp = io.BytesIO(data)
    with pytest.raises(ParamValidationError) as info:
        inspect_image(fp, limits)
    assert info.value.field == "image"
    assert fp.tell() == 0  # rewound even on failure
    return info.value


# --- accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
        ("GIF", "image/gif"),
    ],
)
def test_inspect_image_each_format_is_identified_from_its_bytes(fmt: str, mime: str) -> None:
    data = image_bytes(fmt, (40, 30))
    info = inspect_image(io.BytesIO(data))
    assert (info.format, info.width, info.height) == (fmt, 40, 30)
    assert info.size_bytes == len(data)
    assert info.content_type == mime


def test_inspect_image_progressive_jpeg_is_accepted() -> None:
    info = inspect_image(io.BytesIO(image_bytes("JPEG", (320, 240), progressive=True)))
    assert (info.width, info.height) == (320, 240)  # the full size, not the 1/8 draft


def test_inspect_image_rewinds_the_file_and_reads_it_from_the_start() -> None:
    fp = io.BytesIO(image_bytes("PNG"))
    fp.seek(17)
    info = inspect_image(fp)
    assert info.format == "PNG"
    assert fp.tell() == 0


def test_inspect_image_exactly_the_byte_limit_is_accepted() -> None:
    data = image_bytes("PNG")
    limits = InputLimits(max_bytes=len(data), formats=frozenset({"PNG"}))
    assert inspect_image(io.BytesIO(data), limits).size_bytes == len(data)


# --- refused -------------------------------------------------------------------------------


def test_inspect_image_empty_is_refused() -> None:
    assert refused(b"").rule == "not empty"


def test_inspect_image_one_byte_over_the_limit_is_refused() -> None:
    data = image_bytes("PNG")
    error = refused(data, InputLimits(max_bytes=len(data) - 1, formats=frozenset({"PNG"})))
    assert str(len(data) - 1) in error.rule


def test_inspect_image_over_16_mb_for_hd_redraw_is_refused_before_decoding() -> None:
    # Not an image at all: the size alone must refuse it.
    assert "bytes" in refused(b"\0" * (16 * 1024 * 1024 + 1), HDREDRAW).rule


@pytest.mark.parametrize(
    "data", [b"hello, world", b"\x89PNX\r\n\x1a\n" + b"\0" * 64, b"%PDF-1.7\n" + b"\0" * 40]
)
def test_inspect_image_unknown_bytes_are_refused(data: bytes) -> None:
    assert refused(data).rule == "a decodable image"


# BMP and TIFF (issue 15, finding 7) passed: their verify() reads the header only.
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF"])
@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9])
def test_inspect_image_truncated_file_is_refused(fmt: str, keep: float) -> None:
    data = image_bytes(fmt, (64, 48))
    assert refused(data[: int(len(data) * keep)]).rule == "a complete image"


def test_inspect_image_truncated_progressive_jpeg_is_refused() -> None:
    data = image_bytes("JPEG", (320, 240), progressive=True)
    assert refused(data[: len(data) * 3 // 4]).rule == "a complete image"


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (50_000, 50_000),  # Pillow's own bomb error (> 2 x its pixel cap)
        (10_000, 10_000),  # Pillow's bomb warning, turned into an error
        (8_000, 6_000),  # under Pillow's cap, over picflow's MAX_PIXELS
    ],
)
def test_inspect_image_decompression_bomb_is_refused_from_its_header(width: int, height: int) -> None:
    data = png_header_only(width, height)
    assert len(data) < 100  # nothing was ever decoded
    error = refused(data)
    assert "pixels" in error.rule or error.rule == "a decodable image"


def test_inspect_image_at_max_pixels_is_accepted() -> None:
    # The same fake header at the cap passes: the refusals above are for size, not for the fake.
    info = inspect_image(io.BytesIO(png_header_only(8_000, MAX_PIXELS // 8_000)))
    assert info.width * info.height == MAX_PIXELS


@pytest.mark.parametrize(
    ("fmt", "limits"),
    [("GIF", TASKPIC), ("GIF", TENCENT), ("GIF", HDREDRAW), ("TIFF", TASKPIC), ("TIFF", HDREDRAW)],
)
def test_inspect_image_format_the_provider_does_not_take_is_refused(fmt: str, limits: InputLimits) -> None:
    error = refused(image_bytes(fmt), limits)
    assert error.rule.startswith("one of")
    assert fmt not in error.rule


def test_inspect_image_tiff_is_taken_by_tencent() -> None:
    assert inspect_image(io.BytesIO(image_bytes("TIFF")), TENCENT).format == "TIFF"


@pytest.mark.parametrize("size", [(3999, 1600), (1600, 3999), (400, 1000), (1000, 400), (501, 501)])
def test_inspect_image_tencent_sides_below_4000_and_ratio_within_2_5_is_accepted(
    size: tuple[int, int],
) -> None:
    info = inspect_image(io.BytesIO(image_bytes("PNG", size, mode="1")), TENCENT)
    assert (info.width, info.height) == size


@pytest.mark.parametrize(
    ("size", "rule"),
    [
        ((4000, 1600), "sides < 4000"),
        ((1600, 4000), "sides < 4000"),
        ((399, 1000), "ratio within 2:5..5:2"),
        ((1000, 399), "ratio within 2:5..5:2"),
    ],
)
def test_inspect_image_tencent_side_or_ratio_outside_the_limits_is_refused(
    size: tuple[int, int], rule: str
) -> None:
    assert refused(image_bytes("PNG", size, mode="1"), TENCENT).rule == rule


def test_inspect_image_side_limit_does_not_apply_to_task_pic() -> None:
    assert inspect_image(io.BytesIO(image_bytes("PNG", (4000, 1000), mode="1")), TASKPIC).width == 4000


# --- sniffing results ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (image_bytes("PNG")[:64], "image/png"),
        (image_bytes("JPEG")[:64], "image/jpeg"),
        (image_bytes("WEBP")[:64], "image/webp"),
        (image_bytes("BMP")[:64], "image/bmp"),
        (image_bytes("TIFF")[:64], "image/tiff"),
        (b"MM\x00*" + b"\0" * 12, "image/tiff"),
        (b"GIF87a" + b"\0" * 8, "image/gif"),
        (image_bytes("GIF")[:64], "image/gif"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "application/postscript"),
        (b"\xc5\xd0\xd3\xc6" + b"\0" * 28, "application/postscript"),  # DOS EPS binary header
    ],
    ids=["png", "jpeg", "webp", "bmp", "tiff-le", "tiff-be", "gif87a", "gif89a", "eps", "eps-dos"],
)
def test_sniff_content_type_known_magic(head: bytes, mime: str) -> None:
    assert sniff_content_type(head) == mime


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello",
        b"<html><body>expired</body></html>",
        b"RIFF\x10\0\0\0WAVEfmt ",
        b'{"err_code": 1}',
        b"%PDF-1.4",
    ],
    ids=["empty", "text", "html", "riff-wave", "json", "pdf"],
)
def test_sniff_content_type_unknown_is_none(head: bytes) -> None:
    assert sniff_content_type(head) is None


def test_a_prefix_judges_what_its_header_proves() -> None:
    limits = OPERATIONS["replace_background"].input
    data = image_bytes("PNG", (64, 48))
    info = inspect_prefix(data[:SNIFF_BYTES], len(data), limits)
    assert info is not None
    assert (info.width, info.height) == (64, 48)
    with pytest.raises(ParamValidationError) as caught:
        inspect_prefix(b"plain text, no image", 20, limits)
    assert caught.value.rule == "a decodable image"


def test_a_prefix_that_cuts_off_the_header_is_no_verdict() -> None:
    # A JPEG whose dimensions (SOF) sit behind a large metadata segment: the prefix proves
    # nothing either way, and Validate reads the whole file.
    data = image_bytes("JPEG", (64, 48), icc_profile=b"\x00" * (300 * 1024))
    assert data.index(b"\xff\xc0") > SNIFF_BYTES
    assert inspect_prefix(data[:SNIFF_BYTES], len(data), OPERATIONS["redraw"].input) is None
    # The same cut on a file that really ends there is a truncated image.
    with pytest.raises(ParamValidationError):
        inspect_prefix(data[:SNIFF_BYTES], SNIFF_BYTES, OPERATIONS["redraw"].input)


# --- bounded memory (issue 17: bench/collect_memory.py) ----------------------------------------


class ReadSizes(io.BytesIO):
    """A file that remembers the largest read asked of it."""

    largest = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.largest = max(self.largest, len(data))
        return data


def one_chunk_png(width: int, height: int) -> bytes:
    """An RGB PNG of noise with all its pixels in one IDAT chunk (as some encoders write it)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\x00" + bytes((x * 7 + y) % 256 for x in range(width * 3)) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows, 0))
        + chunk(b"IEND", b"")
    )


def test_inspect_image_png_in_one_big_idat_chunk_is_checked_in_bounded_reads() -> None:
    # GIVEN a 3 MB PNG whose pixels are one IDAT chunk (Pillow's verify() read it whole)
    data = one_chunk_png(1024, 1024)
    fp = ReadSizes(data)
    # WHEN it is checked  THEN it is accepted, and no read asked for more than 1 MiB
    assert inspect_image(fp).format == "PNG"
    assert fp.largest <= 1024 * 1024 < len(data)


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9, 0.999])
def test_inspect_image_truncated_one_chunk_png_is_refused(keep: float) -> None:
    data = one_chunk_png(256, 256)
    assert refused(data[: int(len(data) * keep)]).rule == "a complete image"


def test_inspect_image_png_with_a_corrupt_byte_fails_its_crc() -> None:
    data = bytearray(one_chunk_png(256, 256))
    data[len(data) // 2] ^= 0xFF
    assert refused(bytes(data)).rule == "a complete image"


def test_inspect_image_progressive_jpeg_is_walked_not_decoded_in_bounded_reads() -> None:
    # GIVEN a progressive JPEG (decoding one holds every DCT coefficient, even at 1/8 scale)
    data = image_bytes("JPEG", (1600, 1200), progressive=True, quality=95)
    fp = ReadSizes(data)
    # WHEN it is checked  THEN it is accepted from its markers, read in pieces of at most 1 MiB
    assert inspect_image(fp).format == "JPEG"
    assert fp.largest <= 1024 * 1024


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9, 0.999])
def test_inspect_image_truncated_progressive_jpeg_at_any_point_is_refused(keep: float) -> None:
    data = image_bytes("JPEG", (320, 240), progressive=True)
    assert refused(data[: int(len(data) * keep)]).rule == "a complete image"
