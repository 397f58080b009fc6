"""Subject-image loading that survives what users actually hand in.

`load_subject_image(path)` returns the photo as an RGB PIL image (and, on first use, a float
tensor [1, 3, H, W] in [0, 1]) with the colours a viewer shows: it applies the EXIF orientation,
converts an embedded ICC colour profile (Display P3, Adobe RGB, CMYK...) to sRGB with Pillow's
ImageCms, flattens transparency onto white, and converts grayscale, palette, 16-bit and float
images correctly (a float image's range is read from its values: 0..1, 0..255 or 0..65535). It
refuses files that are not images, truncated, too small to hold a subject, too large to decode
safely, or so elongated that the centre square the feature networks see keeps little of the
photo. Memory is bounded: sizes are read from the header before decoding, large
JPEGs are decoded at reduced size, and an image is only ever reduced, never enlarged. It never
executes anything, and it imports no torch until the tensor is asked for.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import SISOInputError, check_file, error_summary, setting

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MIN_SIDE = 32  # the feature networks upsample to 518/290 px; below this there is no subject
MAX_DECODE_PIXELS = 50_000_000  # PNG/WebP/TIFF larger than this are refused before decoding (150 MB RGB)
MAX_JPEG_PIXELS = 400_000_000  # JPEGs are decoded at 1/2..1/8 scale (draft mode), so they may be larger
DOWNSCALE_ABOVE_PIXELS = 16_000_000  # larger images are reduced (never enlarged) to a 2048 px short side
DOWNSCALE_SHORT_SIDE = 2048  # 4x the largest input a feature network uses (DINOv2: 518 px)
# the networks see the centre square (short side x short side) of the photo; below these
# fractions of the photo that square is worth a warning, then a refusal
WARN_CENTRE_FRACTION = 0.5
MIN_CENTRE_FRACTION = 0.2


@dataclass
class SubjectImage:
    image: Image.Image  # RGB, sRGB colours
    sha256: str
    path: str
    notes: list[str]
    shown_size: tuple[int, int] | None = None  # (width, height) as a viewer shows the file: before any reduction
    _tensor: "torch.Tensor | None" = field(default=None, repr=False)

    @property
    def tensor(self) -> "torch.Tensor":
        """[1, 3, H, W] float32 in [0, 1], made on first use."""
        if self._tensor is None:
            self._tensor = pil_to_tensor(self.image)
        return self._tensor


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def high_bit_depth_to_8bit(image: Image.Image, where: str) -> tuple[Image.Image, str]:
    """A single-channel image of more than 8 bits ("I;16*", "I", "F") as an "L" image, and a note.

    The scale is the format's own for 16-bit files (0..65535). A 32-bit integer or float image says
    nothing about its range, so it is read from the values: floats within 0..1 (what numpy and
    rendering pipelines write) are scaled from 0..1, values up to 255 are taken as 8-bit levels,
    up to 65535 as 16-bit ones. Values that fit none of these (negative, above 65535, NaN or
    infinite) are refused with one line (SISOInputError) naming `where`: guessing would give a
    black or washed-out photo without a word.
    """
    mode = image.mode
    array = np.asarray(image, dtype=np.float32)  # float32: 4 bytes a pixel, memory stays bounded
    if not np.isfinite(array).all():
        raise SISOInputError(f"{where} holds NaN or infinite values ({mode} image): save it as an 8- or 16-bit PNG")
    low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
    if mode.startswith("I;16"):
        top, scale = 65535.0, "0..65535 (16-bit)"
    elif mode == "F" and high <= 1.0:
        top, scale = 1.0, "0..1"
    elif high <= 255.0:
        top, scale = 255.0, "0..255"
    elif high <= 65535.0:
        top, scale = 65535.0, "0..65535"
    else:
        top, scale = 0.0, ""
    if not top or low < -0.01 * top:
        raise SISOInputError(
            f"{where} is a {mode} image with values from {low:g} to {high:g}, which is no known range (0..1, 0..255 or "
            "0..65535): save it as an 8- or 16-bit PNG, or scale its values to 0..1"
        )
    array = np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(array, mode="L"), f"converted {mode} (high bit depth, values read as {scale}) to 8-bit"


def _to_rgb(image: Image.Image, notes: list[str], where: str = "the image") -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image, note = high_bit_depth_to_8bit(image, where)
        notes.append(note)
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


def _is_srgb(profile) -> bool:
    from PIL import ImageCms

    if "srgb" in ImageCms.getProfileDescription(profile).lower():
        return True
    reference = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).profile
    try:
        colorants = [getattr(profile.profile, f"{c}_colorant")[0] for c in ("red", "green", "blue")]
        expected = [getattr(reference, f"{c}_colorant")[0] for c in ("red", "green", "blue")]
    except (AttributeError, TypeError):
        return False
    return all(abs(a - b) < 2e-3 for got, want in zip(colorants, expected) for a, b in zip(got, want))


# image mode -> the mode of its sRGB version (alpha kept; flattened later like any RGBA photo)
_ICC_OUTPUT_MODES = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB", "L": "RGB"}


def _to_srgb(image: Image.Image, notes: list[str]) -> Image.Image:
    """Convert pixels tagged with an embedded ICC profile to sRGB (what a colour-managed viewer shows).

    Relative colorimetric intent, as browsers and image viewers use for photos. Untagged images
    are taken to be sRGB already, as everywhere on the web.
    """
    icc = image.info.get("icc_profile")
    if not icc:
        return image
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(source).strip() or "unnamed"
        if _is_srgb(source):
            return image
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if image.mode not in _ICC_OUTPUT_MODES:
            notes.append(f"kept the pixel values of the {image.mode} image as they are (its colour profile {name!r} cannot be applied to that mode)")
            return image
        converted = ImageCms.profileToProfile(
            image, source, ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode=_ICC_OUTPUT_MODES[image.mode],
        )
    except (ImportError, OSError, ValueError, TypeError) as error:  # ImageCms.PyCMSError is an OSError
        notes.append(f"ignored an embedded colour profile that could not be applied ({error_summary(error, 80)}); used the pixel values as stored")
        return image
    notes.append(f"converted the embedded colour profile {name!r} to sRGB")
    return converted


def _check_proportions(path: Path, width: int, height: int, notes: list[str], what: str = "subject image", scene: bool = False) -> None:
    """Refuse (or warn about) a photo whose centre square keeps little of it: what the feature
    networks see of a subject photo, what the edit can change of a scene photo."""
    kept = min(width, height) / max(width, height)
    if scene:
        seen, fix = "the edit works on its centre square only", "crop it around the region to edit"
        advice = "the rest is returned unchanged; crop the photo if the region to edit is not in the centre"
    else:
        seen, fix = "the feature networks see only its centre square", "crop it around the subject"
        advice = "crop it around the subject if the subject is not in the centre"
    if kept < MIN_CENTRE_FRACTION:
        raise SISOInputError(
            f"{what} {str(path)!r} is {width}x{height} pixels: {seen}, "
            f"{kept:.0%} of the photo; {fix} (at most {round(1 / MIN_CENTRE_FRACTION)}:1)"
        )
    if kept < WARN_CENTRE_FRACTION:
        notes.append(f"WARNING: the photo is {width}x{height}; {seen} ({kept:.0%} of it): {advice}")


def _reduced_size(width: int, height: int) -> tuple[int, int]:
    """The size an image above its reduction threshold is reduced to: short side 2048 px, never larger."""
    scale = min(1.0, DOWNSCALE_SHORT_SIDE / min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def load_subject_image(
    path: str | os.PathLike, what: str = "subject image", option: str = "subject_image_path", scene: bool = False,
) -> SubjectImage:
    """Read a subject photo safely; raise SISOInputError with a one-line fix otherwise.

    Returns a SubjectImage whose `path` is absolute and whose `notes` say every change made to
    the photo (orientation, colour profile, transparency, bit depth, size). `what` and `option`
    name the photo in the errors. `scene`: the photo is an edit's scene (editing reads it here
    too): the notes are worded for a scene, and it is reduced only above MAX_DECODE_PIXELS, since
    the edited photo is returned at the size it was read.
    """
    reduce_above = MAX_DECODE_PIXELS if scene else DOWNSCALE_ABOVE_PIXELS
    path = Path(os.path.abspath(path))
    check_file(path, what, "give the path of a PNG/JPEG/WebP photo", f"check the path ({setting(option)})")
    if path.stat().st_size == 0:
        raise SISOInputError(f"{what} {str(path)!r} is empty (0 bytes): give a real photo")
    try:
        with open(path, "rb"):
            pass
    except PermissionError as error:
        raise SISOInputError(
            f"{what} {str(path)!r} is not readable (permission denied): fix its permissions or copy it"
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
                            f"{what} {str(path)!r} is {width}x{height} pixels, too large to decode safely: "
                            f"downscale it below {limit // 1_000_000} megapixels first"
                        )
                    _check_proportions(path, width, height, notes, what, scene)
                    turned = opened.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # shown turned by 90 degrees
                    shown_size = (height, width) if turned else (width, height)
                    if opened.format == "JPEG" and width * height > reduce_above:
                        # decode a reduced JPEG directly instead of the full-size bitmap: the
                        # largest 1/2..1/8 reduction that keeps the short side >= 2048 px
                        floor = DOWNSCALE_SHORT_SIDE
                        opened.draft(opened.mode, (max(floor, round(width * floor / min(width, height))),
                                                   max(floor, round(height * floor / min(width, height)))))
                        if opened.size != (width, height):
                            notes.append(f"decoded the {width}x{height} JPEG at {opened.size[0]}x{opened.size[1]}")
                    opened.load()
                    if opened.getexif().get(0x0112, 1) not in (0, 1):
                        notes.append("applied the EXIF orientation")
                    image = ImageOps.exif_transpose(opened) or opened
                    image = image.copy() if image is opened else image
                    image = _to_srgb(image, notes)
            finally:
                Image.MAX_IMAGE_PIXELS = previous_limit
    except SISOInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SISOInputError(
            f"{what} {str(path)!r} is too large to decode safely ({error}): downscale it first"
        ) from error
    except UnidentifiedImageError as error:
        raise SISOInputError(
            f"{what} {str(path)!r} is not an image file PIL can read: give a PNG, JPEG or WebP photo"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SISOInputError(
            f"{what} {str(path)!r} could not be decoded ({str(error).splitlines()[0]}): "
            "the file is probably truncated or corrupt; re-export or re-download it"
        ) from error

    image = _to_rgb(image, notes, f"{what} {str(path)!r}")
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise SISOInputError(
            f"{what} {str(path)!r} is only {width}x{height} pixels: give a photo at least "
            f"{MIN_SIDE} px on its short side (512 px or more is best)"
        )
    if width * height > reduce_above and _reduced_size(width, height) != (width, height):
        image = image.resize(_reduced_size(width, height), Image.Resampling.LANCZOS)
        notes.append(f"downscaled from {width}x{height} to {image.width}x{image.height}")
    return SubjectImage(image=image, sha256=file_sha256(path), path=str(path), notes=notes, shown_size=shown_size)


def pil_to_tensor(image: Image.Image) -> "torch.Tensor":
    """RGB PIL image -> float32 tensor [1, 3, H, W] in [0, 1] (the same as upstream's uint8/255)."""
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def tensor_to_pil(image: "torch.Tensor") -> Image.Image:
    """Float tensor [1, 3, H, W] or [3, H, W] in [0, 1] -> RGB PIL image (rounded, as diffusers does)."""
    if image.dim() == 4:
        image = image[0]
    array = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)
