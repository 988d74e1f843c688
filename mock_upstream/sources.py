"""Source images: fetched over HTTP, or bundled samples for the documents' placeholder hosts.

The documents' examples use example.com, xxx.com and www.xxx.com; those hosts resolve to the
generated sample images in `samples/` (by file stem: `.../product.jpg` gives `product.jpg`,
`.../mask.jpg` gives `mask.png`, anything else `image.png`), so the examples run offline.
Everything else is fetched with httpx (e.g. a moto S3 server on loopback).

`python -m mock_upstream.sources` regenerates the sample files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from PIL import Image, ImageDraw

SAMPLES_DIR = Path(__file__).parent / "samples"
PLACEHOLDER_HOSTS = frozenset({"example.com", "www.example.com", "xxx.com", "www.xxx.com"})
DEFAULT_SAMPLE = "image.png"


class FetchError(Exception):
    """The source could not be downloaded (connection failure, non-2xx, too large)."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    too_large: bool = False


def sample_for(url: str) -> Path | None:
    """The bundled sample standing in for a placeholder-host URL, else None."""
    parts = urlsplit(url)
    if (parts.hostname or "").lower() not in PLACEHOLDER_HOSTS:
        return None
    stem = Path(parts.path).stem
    for candidate in sorted(SAMPLES_DIR.iterdir()):
        if candidate.stem == stem and candidate.suffix in (".png", ".jpg"):
            return candidate
    return SAMPLES_DIR / DEFAULT_SAMPLE


async def fetch(url: str, *, timeout: float, max_bytes: int) -> Fetched:
    """Download `url`; stop reading past `max_bytes` and report it as too large."""
    sample = sample_for(url)
    if sample is not None:
        return Fetched(sample.read_bytes())
    if urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"unsupported URL scheme: {url!r}")
    try:
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=True, trust_env=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code >= 400:
                raise FetchError(f"GET {url} answered {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    return Fetched(b"", too_large=True)
                chunks.append(chunk)
            return Fetched(b"".join(chunks))
    except httpx.HTTPError as exc:
        raise FetchError(f"GET {url} failed: {exc}") from exc


# ---- sample generation (build time) ------------------------------------------------------
def _scene(size: tuple[int, int], bg: tuple[int, int, int], shape: str) -> Image.Image:
    image = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(image)
    w, h = size
    if shape == "person":
        draw.ellipse((w * 0.35, h * 0.12, w * 0.65, h * 0.42), fill=(224, 172, 140))
        draw.rounded_rectangle((w * 0.22, h * 0.42, w * 0.78, h * 0.98), radius=w // 10, fill=(40, 60, 120))
    elif shape == "product":
        draw.rounded_rectangle((w * 0.25, h * 0.2, w * 0.75, h * 0.85), radius=w // 12, fill=(180, 40, 40))
        draw.rectangle((w * 0.4, h * 0.1, w * 0.6, h * 0.2), fill=(90, 20, 20))
    else:
        draw.ellipse((w * 0.2, h * 0.2, w * 0.8, h * 0.8), fill=(30, 140, 80))
        draw.rectangle((w * 0.42, h * 0.42, w * 0.58, h * 0.58), fill=(240, 200, 40))
    return image


def _save(image: Image.Image, name: str) -> None:
    buffer = io.BytesIO()
    image.save(
        buffer, "JPEG" if name.endswith(".jpg") else "PNG", **({"quality": 85} if ".jpg" in name else {})
    )
    (SAMPLES_DIR / name).write_bytes(buffer.getvalue())


def write_samples() -> None:
    SAMPLES_DIR.mkdir(exist_ok=True)
    _save(_scene((512, 512), (235, 235, 235), "object"), "image.png")
    _save(_scene((432, 576), (245, 245, 245), "product"), "foreground.png")
    _save(_scene((432, 576), (70, 160, 220), "person"), "portrait.png")
    product = _scene((640, 640), (250, 250, 250), "product")
    _save(product, "product.jpg")
    mask = Image.new("RGBA", product.size, (0, 0, 0, 0))
    ImageDraw.Draw(mask).rounded_rectangle((160, 128, 480, 544), radius=53, fill=(255, 255, 255, 255))
    _save(mask, "mask.png")
    logo = Image.new("RGB", (120, 40), (20, 20, 20))
    ImageDraw.Draw(logo).text((10, 12), "LOGO", fill=(255, 255, 255))
    _save(logo, "logo.jpg")


if __name__ == "__main__":
    write_samples()
