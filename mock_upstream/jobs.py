"""The render jobs: pure functions of bytes and parameters, run in the worker processes.

Each takes the source bytes and the validated parameters and returns plain data (result files
as `(name, bytes, media type)`, sizes, a failure to report), so it pickles across the process
boundary and never touches the mock's state. The HTTP handlers (taskpic.py, hdredraw.py,
tencent.py) decide what a result means for a task or an answer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, Final

from PIL import Image, ImageFilter, ImageOps

from mock_upstream import images

Outputs = list[tuple[str, bytes, str]]

EXPAND_FIELDS: Final = ("expand_top", "expand_bottom", "expand_left", "expand_right")
PROMPT_WORDS: Final = ("high quality", "detailed", "sharp", "professional photography", "beautiful lighting")
PATTERN_PROMPT: Final = "vibrant pattern, textile design, seamless repeat, colorful motifs"
PRODUCT_FORMATS: Final = frozenset({"JPEG", "PNG", "BMP", "TIFF", "WEBP"})


# ---- task/pic -------------------------------------------------------------------------------
def taskpic(kind: str, params: dict[str, Any], source: bytes) -> dict[str, Any]:
    """Result files, foreground box and result size of a task/pic task, or `failure` -7."""
    try:
        image = images.decode(source)
    except images.ImageDecodeError:
        return {"failure": -7}
    outputs: Outputs
    if kind == "segmentation":
        files, box, size = images.segmentation(
            image,
            output_type=params["output_type"],
            crop=params["crop"],
            fmt=params["format"],
            bg=params["bg_color"],
        )
        ext = "jpg" if params["format"] == "jpg" else "png"
        outputs = [(f"{name}.{ext if name == 'image' else 'png'}", *files[name]) for name in files]
    elif kind == "idphoto":
        files, box = images.idphoto(image, size=params["size"], fmt=params["format"], bg=params["bg_color"])
        size = params["size"]
        ext = "jpg" if params["format"] == "jpg" else "png"
        outputs = [(f"image.{ext}", *files["image"])]
    else:
        # The document's answer has one `image`: the first of the batch (the price still
        # counts batch_size images).
        batch, box = images.background(image, prompt=params["prompt"], batch_size=1)
        size = image.size
        outputs = [("image.png", batch[0], images.PNG)]
    return {"outputs": outputs, "rect": box, "size": size, "source_size": image.size}


# ---- HD redraw ------------------------------------------------------------------------------
def _png(image: Image.Image) -> tuple[bytes, str]:
    return images.encode(image, "PNG"), images.PNG


def hdredraw(route: str, params: dict[str, Any], content: bytes, max_side: int) -> dict[str, Any]:
    """Result files and extra status fields of an HD redraw task, or `failure` (undecodable)."""
    try:
        image = images.decode(content)
    except images.ImageDecodeError:
        return {"failure": "无法识别的图片文件"}
    files: dict[str, tuple[bytes, str]] = {}
    extra: dict[str, Any] = {}
    src = images.rgb(image)
    simple: dict[str, Callable[[Image.Image], Image.Image]] = {
        "submit_face_enhance_task": lambda im: ImageOps.autocontrast(im).filter(ImageFilter.SHARPEN),
        "submit_remove_fabric_task": lambda im: im.filter(ImageFilter.MedianFilter(3)),
        "submit_remove_diamonds_task": lambda im: im.filter(ImageFilter.MedianFilter(5)),
        "submit_remove_watermark_task": lambda im: im.filter(ImageFilter.SMOOTH_MORE),
    }
    if route in simple:
        files["image.png"] = _png(simple[route](src))
    elif route == "submit_task":
        files["image.png"] = _png(
            images.upscale(src, params["upscale"], max_side, sharpen=params["high_fidelity"])
        )
        if params["vector_switch"]:
            files["vector.eps"] = (images.eps(src, params["color_count"]), images.EPS)
        if params["auto_generate_prompt"]:
            seed = images.seed_of("prompt", src.tobytes()[:4096])
            extra["generated_prompt"] = ", ".join(
                w for i, w in enumerate(PROMPT_WORDS) if seed[i] % 4 or i == 0
            )
    elif route == "submit_vector_task":
        files["image.png"] = _png(images.quantize(src, params["color_count"]).convert("RGB"))
        files["vector.eps"] = (images.eps(src, params["color_count"]), images.EPS)
    elif route == "submit_seamless_task":
        expanded = images.expand(src, *(params[f] for f in EXPAND_FIELDS))
        tile = images.seamless(expanded, params["fit"], params["direction"])
        files["image.png"] = _png(images.upscale(tile, 2, max_side, sharpen=False))
        files["image-1m.png"] = _png(tile)
        files["grid.png"] = _png(images.grid(tile, params["direction"]))
    elif route == "submit_edit_image_task":
        files["image.png"] = _png(images.edit(src, params["prompt"], params["model_version"]))
    elif route == "submit_extract_pattern_task":
        pattern = images.aspect_crop(src, params["aspect_ratio"])
        files["image.png"] = _png(pattern)
        files["image-alt-1.png"] = _png(images.seamless(pattern, 0.5, 0))
        extra["generated_prompt"] = PATTERN_PROMPT
    else:  # submit_expand_image_task
        files["image.png"] = _png(images.expand(src, *(params[f] for f in EXPAND_FIELDS)))
    return {"outputs": [(name, data, media) for name, (data, media) in files.items()], "extra": extra}


# ---- Tencent ReplaceBackground ------------------------------------------------------------
def _decode(data: bytes, formats: frozenset[str]) -> Image.Image | None:
    if images.image_format(data) not in formats:
        return None
    try:
        return images.decode(data)
    except images.ImageDecodeError:
        return None


def _mask_of(mask: Image.Image) -> Image.Image:
    """The documented mask has a transparent background; without alpha, use its brightness."""
    if mask.mode in ("RGBA", "LA") or "transparency" in mask.info:
        return mask.convert("RGBA").getchannel("A")
    return mask.convert("L")


def _error(code: str, detail: str | None = None) -> dict[str, Any]:
    return {"error": (code, detail)}


def tencent(
    params: dict[str, Any], product_data: bytes, mask_data: bytes | None, logo_data: bytes | None
) -> dict[str, Any]:
    """The JPEG result (and the automatic mask, as PNG, when no MaskUrl was given), or `error`."""
    product = _decode(product_data, PRODUCT_FORMATS)
    if product is None:
        return _error("FailedOperation.ImageDecodeFailed")
    w, h = product.size
    if max(w, h) >= 4000:
        return _error("FailedOperation.ImageResolutionExceed")
    if not 2 / 5 <= w / h <= 5 / 2:
        return _error("InvalidParameterValue.ParameterValueError", "商品原图长宽比需在2:5 ~ 5:2之间。")
    mask = None
    if mask_data is not None:
        mask = _decode(mask_data, frozenset({"PNG"}))
        if mask is None:
            return _error("FailedOperation.ImageDecodeFailed")
        if mask.size != product.size:
            return _error("InvalidParameterValue.ParameterValueError", "Mask 图必须和商品原图分辨率一致。")
    logo = None
    logo_param = params["logo"]
    if logo_data is not None:
        logo = _decode(logo_data, PRODUCT_FORMATS)
        if logo is None:
            return _error("FailedOperation.ImageDecodeFailed")
    elif logo_param and logo_param["image"]:
        try:
            raw = base64.b64decode(logo_param["image"], validate=True)
        except binascii.Error:
            return _error("FailedOperation.ImageDecodeFailed")
        logo = _decode(raw, PRODUCT_FORMATS)
        if logo is None:
            return _error("FailedOperation.ImageDecodeFailed")
    auto_mask = images.foreground_mask(product) if mask is None else None
    result = images.replace_background(
        product,
        _mask_of(mask) if mask is not None else auto_mask,  # type: ignore[arg-type]
        prompt=params["prompt"],
        size=params["resolution"],
        logo=logo,
        logo_rect=logo_param["rect"] if logo_param else None,
        add_logo=params["logo_add"],
    )
    return {
        "result": result,
        "mask": images.encode(auto_mask, "PNG") if auto_mask is not None else None,
    }
