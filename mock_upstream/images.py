"""Real output files, derived deterministically from the input image with Pillow.

Same input bytes and parameters give the same output bytes (no timestamps, no randomness other
than hashes of the inputs), so tests can compare sha256. The "AI" is honest image processing:
the foreground is what differs from the border colour, backgrounds are gradients seeded by the
prompt, upscaling is Lanczos. Output sides are capped at `max_side` (4096 by default): an upscale
that would exceed it is reduced to the largest factor that fits.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import Final

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps, UnidentifiedImageError

PNG: Final = "image/png"
JPEG: Final = "image/jpeg"
EPS: Final = "application/postscript"


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can decode."""


def decode(data: bytes) -> Image.Image:
    """Decode and fully load an image, or raise ImageDecodeError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(str(exc)) from exc
    if image.width < 1 or image.height < 1:
        raise ImageDecodeError("empty image")
    return image


def image_format(data: bytes) -> str | None:
    """Pillow's format name (PNG, JPEG, ...) without decoding the pixels."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return str(image.format) if image.format else None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=90)
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


def seed_of(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()


def parse_hex_color(value: str) -> tuple[int, int, int] | None:
    text = value.removeprefix("#")
    if len(text) != 6:
        return None
    try:
        return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
    except ValueError:
        return None


def rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "P", "PA"):
        return flatten(image.convert("RGBA"), (255, 255, 255))
    return image.convert("RGB")


def flatten(image: Image.Image, color: tuple[int, int, int]) -> Image.Image:
    canvas = Image.new("RGB", image.size, color)
    canvas.paste(image.convert("RGB"), mask=image.convert("RGBA").getchannel("A"))
    return canvas


def foreground_mask(image: Image.Image) -> Image.Image:
    """An L mask: 255 where a pixel differs from the border's median colour (or is opaque)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = image.convert("RGBA").getchannel("A")
        low, _high = alpha.getextrema()
        if isinstance(low, int | float) and low < 255:
            return alpha.point(lambda v: 255 if v >= 128 else 0)
    small = rgb(image)
    w, h = small.size
    border = [small.getpixel((x, y)) for x in range(0, w, max(1, w // 16)) for y in (0, h - 1)]
    border += [small.getpixel((x, y)) for y in range(0, h, max(1, h // 16)) for x in (0, w - 1)]
    pixels = [p for p in border if isinstance(p, tuple)]
    median = tuple(sorted(int(p[i]) for p in pixels)[len(pixels) // 2] for i in range(3))
    diff = ImageChops.difference(small, Image.new("RGB", small.size, median)).convert("L")
    mask = diff.point(lambda v: 255 if v > 24 else 0).filter(ImageFilter.MedianFilter(3))
    if mask.getbbox() is None:
        # Nothing stands out: call the central two thirds the foreground.
        mask = Image.new("L", small.size, 0)
        ImageDraw.Draw(mask).rectangle((w // 6, h // 6, w - w // 6 - 1, h - h // 6 - 1), fill=255)
    return mask


def bbox(mask: Image.Image) -> tuple[int, int, int, int]:
    box = mask.getbbox()
    return box if box is not None else (0, 0, mask.width, mask.height)


def cutout(image: Image.Image, mask: Image.Image) -> Image.Image:
    out = rgb(image).convert("RGBA")
    out.putalpha(mask)
    return out


def gradient(size: tuple[int, int], seed: bytes) -> Image.Image:
    """A two-colour vertical gradient picked by the seed (the "generated" background)."""
    top = (seed[0], seed[1], seed[2])
    bottom = (seed[3], seed[4], seed[5])
    column = Image.new("RGB", (1, 256))
    for y in range(256):
        column.putpixel((0, y), tuple(int(top[i] + (bottom[i] - top[i]) * y / 255) for i in range(3)))
    return column.resize(size, Image.Resampling.BILINEAR)


def scaled_size(size: tuple[int, int], factor: float, max_side: int) -> tuple[int, int]:
    factor = min(factor, max_side / max(size))
    return (max(1, round(size[0] * factor)), max(1, round(size[1] * factor)))


def fit_into(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Crop to the target aspect ratio around the centre, then resize to exactly `size`."""
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS)


# ---- task/pic -------------------------------------------------------------------------------
Outputs = dict[str, tuple[bytes, str]]


def segmentation(
    image: Image.Image, *, output_type: int, crop: bool, fmt: str, bg: tuple[int, int, int]
) -> tuple[Outputs, tuple[int, int, int, int], tuple[int, int]]:
    """Cutout (PNG with alpha or JPG on `bg`) and/or mask; returns files, foreground box, size."""
    mask = foreground_mask(image)
    box = bbox(mask)
    out = cutout(image, mask)
    if crop:
        out, mask = out.crop(box), mask.crop(box)
    files: Outputs = {}
    if output_type in (1, 2):
        files["image"] = (
            (encode(flatten(out, bg), "JPEG"), JPEG) if fmt == "jpg" else (encode(out, "PNG"), PNG)
        )
    if output_type in (1, 3):
        files["mask"] = (encode(mask, "PNG"), PNG)
    return files, box, out.size


def idphoto(
    image: Image.Image, *, size: tuple[int, int], fmt: str, bg: tuple[int, int, int]
) -> tuple[Outputs, tuple[int, int, int, int]]:
    """The subject framed to exactly `size`: transparent PNG, or JPG on `bg`."""
    mask = foreground_mask(image)
    x0, y0, x1, y1 = bbox(mask)
    # Frame the subject with a margin, then fit to the requested aspect ratio.
    mx, my = (x1 - x0) // 8, (y1 - y0) // 8
    frame = (max(0, x0 - mx), max(0, y0 - my), min(image.width, x1 + mx), min(image.height, y1 + my))
    person = fit_into(cutout(image, mask).crop(frame), size)
    photo = flatten(person, bg) if fmt == "jpg" else person
    data = encode(photo, "JPEG") if fmt == "jpg" else encode(photo, "PNG")
    return {"image": (data, JPEG if fmt == "jpg" else PNG)}, bbox(person.getchannel("A"))


def background(
    image: Image.Image, *, prompt: str, batch_size: int
) -> tuple[list[bytes], tuple[int, int, int, int]]:
    """`batch_size` PNGs: the foreground pasted on prompt-seeded gradients."""
    mask = foreground_mask(image)
    subject = cutout(image, mask)
    images = []
    for index in range(batch_size):
        canvas = gradient(image.size, seed_of("background", prompt, index))
        canvas.paste(subject, mask=mask)
        images.append(encode(canvas, "PNG"))
    return images, bbox(mask)


# ---- HD redraw ------------------------------------------------------------------------------
def upscale(image: Image.Image, factor: float, max_side: int, *, sharpen: bool) -> Image.Image:
    out = rgb(image).resize(scaled_size(image.size, factor, max_side), Image.Resampling.LANCZOS)
    return out.filter(ImageFilter.UnsharpMask(radius=2, percent=80)) if sharpen else out


def quantize(image: Image.Image, colors: int) -> Image.Image:
    return rgb(image).quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def eps(image: Image.Image, colors: int, *, cells: int = 48) -> bytes:
    """A small valid EPS: the quantized image as a grid of filled rectangles."""
    w, h = image.size
    scale = cells / max(w, h)
    gw, gh = max(1, round(w * scale)), max(1, round(h * scale))
    grid = quantize(image.resize((gw, gh), Image.Resampling.BOX), colors).convert("RGB")
    cell_w, cell_h = w / gw, h / gh
    lines = [
        "%!PS-Adobe-3.0 EPSF-3.0",
        f"%%BoundingBox: 0 0 {w} {h}",
        "%%Creator: mock_upstream",
        "%%Pages: 1",
        "%%EndComments",
        "/r { newpath moveto dup 0 rlineto exch 0 exch rlineto neg 0 rlineto closepath fill } bind def",
    ]
    for y in range(gh):
        for x in range(gw):
            red, green, blue = grid.getpixel((x, y))  # type: ignore[misc]
            lines.append(f"{red / 255:.3f} {green / 255:.3f} {blue / 255:.3f} setrgbcolor")
            lines.append(f"{cell_h:.2f} {cell_w:.2f} {x * cell_w:.2f} {h - (y + 1) * cell_h:.2f} r")
    lines += ["showpage", "%%EOF", ""]
    return "\n".join(lines).encode("ascii")


def expand(image: Image.Image, top: float, bottom: float, left: float, right: float) -> Image.Image:
    """Grow the canvas by the given fractions of each side, filling with mirrored edges."""
    src = rgb(image)
    w, h = src.size
    t, b, lft, rgt = round(h * top), round(h * bottom), round(w * left), round(w * right)
    canvas = Image.new("RGB", (w + lft + rgt, h + t + b))
    mirrored = ImageOps.mirror(src)
    flipped = ImageOps.flip(src)
    canvas.paste(flipped, (lft, t - h))
    canvas.paste(flipped, (lft, t + h))
    canvas.paste(mirrored, (lft - w, t))
    canvas.paste(mirrored, (lft + w, t))
    canvas.paste(src, (lft, t))
    return canvas


def seamless(image: Image.Image, fit: float, direction: int) -> Image.Image:
    """Blend the image with its half-offset copy so opposite edges meet (the tileable look)."""
    w, h = image.size
    dx = w // 2 if direction in (0, 2) else 0
    dy = h // 2 if direction in (0, 1) else 0
    shifted = ImageChops.offset(image, dx, dy)
    return Image.blend(image, shifted, alpha=fit / 2)


def grid(tile: Image.Image, direction: int) -> Image.Image:
    """2x2 for all-round, 1x2 (stacked) for vertical, 2x1 (side by side) for horizontal."""
    cols, rows = {0: (2, 2), 1: (1, 2), 2: (2, 1)}[direction]
    canvas = Image.new("RGB", (tile.width * cols, tile.height * rows))
    for cx in range(cols):
        for cy in range(rows):
            canvas.paste(tile, (cx * tile.width, cy * tile.height))
    return canvas


def aspect_crop(image: Image.Image, ratio: tuple[int, int]) -> Image.Image:
    w, h = image.size
    target = ratio[0] / ratio[1]
    size = (w, max(1, round(w / target))) if w / h < target else (max(1, round(h * target)), h)
    return fit_into(rgb(image), size)


def edit(image: Image.Image, prompt: str, version: str) -> Image.Image:
    """A prompt-seeded colour transform standing in for the AI edit."""
    seed = seed_of("edit", prompt, version)
    src = rgb(image)
    tinted = ImageOps.colorize(ImageOps.grayscale(src), (seed[0] // 3, seed[1] // 3, seed[2] // 3), "white")
    return Image.blend(src, tinted, 0.5)


# ---- Tencent ReplaceBackground -------------------------------------------------------------
def replace_background(
    product: Image.Image,
    mask: Image.Image,
    *,
    prompt: str,
    size: tuple[int, int],
    logo: Image.Image | None,
    logo_rect: tuple[int, int, int, int] | None,
    add_logo: bool,
) -> bytes:
    """The product (cut out by `mask`) centred on a prompt-seeded background at `size`, as JPG."""
    canvas = gradient(size, seed_of("replace_background", prompt))
    subject = cutout(product, mask)
    subject.thumbnail((size[0] * 4 // 5, size[1] * 4 // 5), Image.Resampling.LANCZOS)
    canvas.paste(subject, ((size[0] - subject.width) // 2, (size[1] - subject.height) // 2), subject)
    if add_logo:
        if logo is not None:
            x, y, w, h = logo_rect or (size[0] - 120, size[1] - 50, 100, 30)
            mark = rgb(logo).resize((max(1, w), max(1, h)))
            canvas.paste(mark, (x, y))
        else:
            # The default mark ("图片由 AI 生成") as a label box; CJK fonts are not bundled.
            draw = ImageDraw.Draw(canvas)
            x1, y1 = size[0] - 10, size[1] - 10
            draw.rectangle((x1 - 110, y1 - 26, x1, y1), fill=(0, 0, 0))
            draw.text((x1 - 104, y1 - 20), "AI generated", fill=(255, 255, 255))
    return encode(canvas, "JPEG")
