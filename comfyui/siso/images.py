"""ComfyUI's IMAGE and MASK tensors as the PNG files siso-generate and siso-edit read, and back.

IMAGE is `[B, H, W, C]` floats in 0..1, channels LAST (read as `[C, H, W]` it would scramble the
picture); MASK is `[B, H, W]`. A batch gives its first item, and the report says so. numpy,
PIL and torch are imported where used, so the checks of a run that cannot start stay cheap.
"""

from __future__ import annotations

import logging
from typing import Any

from .folders import MASK_NAME
from .messages import InputProblem

logger = logging.getLogger(__name__)
MASK_THRESHOLD = 0.5  # an edit MASK value above this marks the region to edit


def first_item(array, name: str, kind: str, ndim: int):
    """(the first item of a batch ([B, ...] with `ndim` + 1 dims) or the array itself (`ndim` dims), notes)."""
    notes = []
    if array.ndim == ndim + 1:
        if array.shape[0] == 0:
            raise InputProblem(f"{name} is an empty batch: connect a Load Image node")
        if array.shape[0] > 1:
            notes.append(f"{name} is a batch of {array.shape[0]}: SISO uses its first {kind} only")
        array = array[0]
    return array, notes


def as_array(value):
    """A torch tensor or array-like as a float32 numpy array."""
    import numpy as np

    return value.detach().cpu().float().numpy() if hasattr(value, "detach") else np.asarray(value, dtype=np.float32)


def mask_to_alpha(mask: Any, height: int, width: int):
    """ComfyUI's MASK (1 = transparent, as Load Image gives it) as uint8 alpha [H, W]; None if it is empty.

    An all-zero mask is an opaque photo: Load Image returns a 64x64 zero mask for files
    without transparency, whatever their size, so its shape is not checked then.
    """
    import numpy as np

    if mask is None:
        return None
    array = as_array(mask)
    if array.ndim not in (2, 3):
        raise InputProblem(
            f"subject_mask has shape {list(array.shape)}: expected ComfyUI's MASK [B, H, W]; connect Load Image's MASK output"
        )
    array, _ = first_item(array, "subject_mask", "mask", 2)
    if not np.isfinite(array).all():
        raise InputProblem("subject_mask contains NaN or infinite values: connect Load Image's MASK output")
    if array.size == 0 or float(array.max()) <= 0.0:
        return None  # nothing is transparent
    if tuple(array.shape) != (height, width):
        raise InputProblem(
            f"subject_mask is {array.shape[1]}x{array.shape[0]} pixels but subject_image is {width}x{height}: "
            "connect the MASK output of the same Load Image node"
        )
    alpha = ((1.0 - np.clip(array, 0.0, 1.0)) * 255.0 + 0.5).astype(np.uint8)
    if int(alpha.max()) == 0:
        raise InputProblem(
            "subject_mask marks every pixel transparent, so no subject is left: connect the MASK of the subject's "
            "own Load Image (1 = transparent), or leave subject_mask unconnected"
        )
    return alpha


def image_to_png(image: Any, path: str, mask: Any = None, name: str = "subject_image") -> list[str]:
    """Write the first image of an IMAGE batch ([B,H,W,C] or [H,W,C], floats 0..1) as an RGB PNG; return notes.

    Transparency, from `mask` (Load Image's MASK of a cut-out PNG, whose IMAGE has the alpha
    dropped) or from a 4th channel, is composited onto white exactly as siso-generate does when
    it reads a transparent file, so the same photo gives the same subject through ComfyUI and on
    the command line. `name` is the input the messages name.
    """
    import numpy as np
    from PIL import Image

    if image is None:
        raise InputProblem(f"{name} is missing: connect a Load Image node")
    array = as_array(image)
    if array.ndim == 4 and array.shape[0] == 0:
        raise InputProblem(f"{name} is an empty batch: connect a Load Image node")
    array, notes = first_item(array, name, "image", 3) if array.ndim == 4 else (array, [])
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise InputProblem(
            f"{name} has shape {list(getattr(image, 'shape', array.shape))}: expected ComfyUI's IMAGE [B, H, W, C] with C = 3"
        )
    height, width, channels = array.shape
    if min(height, width) < 32:
        raise InputProblem(f"{name} is {width}x{height} pixels: give a photo at least 32 pixels on each side")
    if not np.isfinite(array).all():
        raise InputProblem(f"{name} contains NaN or infinite values")
    pixels = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    alpha = mask_to_alpha(mask, height, width)
    source = "from subject_mask" if alpha is not None else "from its alpha channel"
    if channels == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    elif channels == 4:
        if alpha is None and int(pixels[:, :, 3].min()) < 255:
            alpha = pixels[:, :, 3]
        pixels = pixels[:, :, :3]
    if alpha is None:
        picture = Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")
    else:
        rgba = Image.fromarray(np.dstack([pixels, alpha]), mode="RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(white, rgba).convert("RGB")
        notes.append(f"{name}: transparency ({source}) flattened onto white, as siso-generate does for a transparent file")
    picture.save(path, format="PNG")
    return notes


def region_to_png(mask: Any, width: int, height: int, path: str) -> list[str] | None:
    """The edit's MASK (1 = the region to edit; > 0.5 counts) as a black/white PNG of the scene's size;
    notes, or None when it marks nothing (then the region is found from input_class)."""
    import numpy as np
    from PIL import Image

    if mask is None:
        return None
    array = as_array(mask)
    if array.ndim not in (2, 3):
        raise InputProblem(f"mask has shape {list(array.shape)}: expected ComfyUI's MASK [B, H, W]; connect the scene's Load Image MASK")
    array, notes = first_item(array, "mask", "mask", 2)
    if not np.isfinite(array).all():
        raise InputProblem("mask contains NaN or infinite values")
    region = array > MASK_THRESHOLD
    if array.size == 0 or not region.any():
        return None
    if tuple(array.shape) != (height, width):
        raise InputProblem(
            f"mask is {array.shape[1]}x{array.shape[0]} pixels but scene_image is {width}x{height}: paint the mask on the "
            "scene's own Load Image (mask editor) and connect its MASK, or leave mask unconnected"
        )
    if region.all():
        raise InputProblem("mask covers the whole scene, so nothing of it would be kept: paint only where the subject goes")
    Image.fromarray(region.astype(np.uint8) * 255, mode="L").save(path, format="PNG")
    notes.append(f"mask: {region.mean():.0%} of the scene (white in {MASK_NAME})")
    return notes


def png_size(path: str) -> tuple[int, int]:
    """(width, height) of an image file."""
    from PIL import Image

    with Image.open(path) as picture:
        return picture.size


def load_image_tensor(path: str):
    """A PNG as ComfyUI's IMAGE: torch float32 [1, H, W, 3] in 0..1."""
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(path) as picture:
        array = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array)[None]


NO_IMAGE_SIZE = (512, 288)  # (width, height) of the picture an image output gets when a run has none


PREVIEW_MAX_SIZE = 512  # px: the longer side of a live preview on the node (ComfyUI's own default preview size)


def read_preview(path: str):
    """The live preview the child wrote (an RGB PIL image, read whole, so the file may be replaced at once),
    or None when it cannot be read: a preview never ends a run (logged at debug only)."""
    try:
        from PIL import Image

        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        picture.load()
        return picture
    except Exception as error:  # noqa: BLE001 - missing, half-written or corrupt: skip this preview
        logger.debug("no live preview from %r: %s", path, error)
        return None


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _wrap(draw, text: str, font, width: int, max_lines: int) -> list[str]:
    """`text` broken into lines no wider than `width` pixels, at most `max_lines` ('...' marks a cut)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1].rstrip(".") + " ..."
    return lines


def no_image_picture(headline: str, detail: str = ""):
    """A picture that cannot be taken for a result: a striped frame, `headline` (e.g. 'SISO: no image:
    the run failed') and the start of `detail` (the status), as a PIL image of NO_IMAGE_SIZE."""
    from PIL import Image, ImageDraw

    width, height = NO_IMAGE_SIZE
    picture = Image.new("RGB", (width, height), (48, 48, 52))
    draw = ImageDraw.Draw(picture)
    for x in range(-height, width, 24):  # warning stripes along the top and bottom edges
        for top in (0, height - 14):
            draw.polygon([(x, top), (x + 12, top), (x + 26, top + 14), (x + 14, top + 14)], fill=(200, 60, 50))
    title = _font(30)
    draw.text((24, 34), headline, fill=(255, 255, 255), font=title)
    body = _font(18)
    for row, line in enumerate(_wrap(draw, detail, body, width - 48, 7)):
        draw.text((24, 84 + row * 24), line, fill=(215, 215, 215), font=body)
    return picture


def no_image_tensor(headline: str, detail: str = ""):
    """`no_image_picture` as ComfyUI's IMAGE: torch float32 [1, H, W, 3] in 0..1."""
    import numpy as np
    import torch

    array = np.asarray(no_image_picture(headline, detail), dtype=np.float32) / 255.0
    return torch.from_numpy(array)[None]
