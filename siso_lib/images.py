"""Subject-image loading that survives what users actually hand in.

`load_subject_image(path)` returns an RGB PIL image and a float tensor of shape [1, 3, H, W]
in [0, 1]. It applies the EXIF orientation, flattens transparency onto white, converts
grayscale, palette and 16-bit images correctly, refuses files that are not images, truncated,
too small to hold a subject, or too large to decode safely, and it never executes anything.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import SISOInputError

MIN_SIDE = 32  # the feature networks upsample to 518/290 px; below this there is no subject
MAX_DECODE_PIXELS = 50_000_000  # PNG/WebP/TIFF larger than this are refused before decoding (150 MB RGB)
MAX_JPEG_PIXELS = 400_000_000  # JPEGs are decoded at 1/2..1/8 scale (draft mode), so they may be larger
DOWNSCALE_ABOVE_PIXELS = 16_000_000  # larger images are reduced to a 2048 px short side
DOWNSCALE_SHORT_SIDE = 2048


@dataclass
class SubjectImage:
    image: Image.Image  # RGB
    tensor: torch.Tensor  # [1, 3, H, W] float32 in [0, 1]
    sha256: str
    path: str
    notes: list[str]


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8)
        notes.append(f"converted {mode} (high bit depth) to 8-bit")
        image = Image.fromarray(array)
        mode = "L"
    if mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("flattened transparency onto white")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "RGB":
        if image.mode not in ("RGBA",):
            notes.append(f"converted {image.mode} to RGB")
        image = image.convert("RGB")
    return image


def load_subject_image(path: str | os.PathLike) -> SubjectImage:
    """Read a subject photo safely; raise SISOInputError with a one-line fix otherwise."""
    path = Path(path)
    if not path.exists():
        raise SISOInputError(f"subject image {str(path)!r} does not exist: check the path (--subject_image_path)")
    if not path.is_file():
        raise SISOInputError(f"subject image {str(path)!r} is not a file: give the path of a PNG/JPEG/WebP photo")
    if path.stat().st_size == 0:
        raise SISOInputError(f"subject image {str(path)!r} is empty (0 bytes): give a real photo")
    try:
        with open(path, "rb"):
            pass
    except PermissionError as error:
        raise SISOInputError(
            f"subject image {str(path)!r} is not readable (permission denied): fix its permissions or copy it"
        ) from error
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = MAX_JPEG_PIXELS  # our own checks below are stricter for non-JPEG
            try:
                with Image.open(path) as opened:
                    width, height = opened.size  # read from the header: nothing is decoded yet
                    limit = MAX_JPEG_PIXELS if opened.format == "JPEG" else MAX_DECODE_PIXELS
                    if width * height > limit:
                        raise SISOInputError(
                            f"subject image {str(path)!r} is {width}x{height} pixels, too large to decode safely: "
                            f"downscale it below {limit // 1_000_000} megapixels first"
                        )
                    if opened.format == "JPEG" and width * height > DOWNSCALE_ABOVE_PIXELS:
                        # decode a reduced JPEG directly instead of the full-size bitmap
                        opened.draft("RGB", (DOWNSCALE_SHORT_SIDE, DOWNSCALE_SHORT_SIDE))
                        if opened.size != (width, height):
                            notes.append(f"decoded the {width}x{height} JPEG at {opened.size[0]}x{opened.size[1]}")
                    opened.load()
                    if opened.getexif().get(0x0112, 1) not in (0, 1):
                        notes.append("applied the EXIF orientation")
                    image = ImageOps.exif_transpose(opened) or opened
                    image = image.copy() if image is opened else image
            finally:
                Image.MAX_IMAGE_PIXELS = previous_limit
    except SISOInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SISOInputError(
            f"subject image {str(path)!r} is too large to decode safely ({error}): downscale it first"
        ) from error
    except UnidentifiedImageError as error:
        raise SISOInputError(
            f"subject image {str(path)!r} is not an image file PIL can read: give a PNG, JPEG or WebP photo"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SISOInputError(
            f"subject image {str(path)!r} could not be decoded ({str(error).splitlines()[0]}): "
            "the file is probably truncated or corrupt; re-export or re-download it"
        ) from error

    image = _to_rgb(image, notes)
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise SISOInputError(
            f"subject image {str(path)!r} is only {width}x{height} pixels: give a photo at least "
            f"{MIN_SIDE} px on its short side (512 px or more is best)"
        )
    if width * height > DOWNSCALE_ABOVE_PIXELS:
        scale = DOWNSCALE_SHORT_SIDE / min(width, height)
        image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.LANCZOS)
        notes.append(f"downscaled from {width}x{height} to {image.width}x{image.height}")
    return SubjectImage(image=image, tensor=pil_to_tensor(image), sha256=file_sha256(path), path=str(path), notes=notes)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor [1, 3, H, W] in [0, 1] (the same as upstream's uint8/255)."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """Float tensor [1, 3, H, W] or [3, H, W] in [0, 1] -> RGB PIL image (rounded, as diffusers does)."""
    if image.dim() == 4:
        image = image[0]
    array = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)
