"""Where the edit's square lies in the scene photo.

The edit works on an R x R square made the way the authors' script makes it
(`resize_and_center_crop`: scale the photo so that its short side is R, the long side truncated
to whole pixels, then crop the centre). `centre_square_box` is the same square in the scene's
own pixels, so that masks can be checked against it and the edited square put back in place.
PIL only.
"""

from __future__ import annotations

from PIL import Image


def _resized_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    width, height = size
    ratio = width / height
    return (int(resolution * ratio), resolution) if ratio > 1.0 else (resolution, int(resolution / ratio))


def resize_and_center_crop(image: Image.Image, size: int, resample: int | None = None) -> Image.Image:
    """Scale `image` to cover size x size (aspect kept; the short side becomes `size`, the long side
    is truncated to whole pixels), then crop the centre: the authors' `resize_and_center_crop`.

    `resample` None is PIL's default for the mode (bicubic for RGB), as theirs; masks pass NEAREST.
    """
    new_width, new_height = _resized_size(image.size, size)
    resized = image.resize((new_width, new_height)) if resample is None else image.resize((new_width, new_height), resample)
    left, top = (new_width - size) / 2, (new_height - size) / 2
    return resized.crop((left, top, left + size, top + size))  # PIL rounds the fractional box as their call does


def centre_square_box(size: tuple[int, int], resolution: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) in the pixels of a photo of `size` (width, height): the region
    `resize_and_center_crop(photo, resolution)` shows (to the nearest pixel)."""
    width, height = size
    new_width, new_height = _resized_size(size, resolution)
    left, top = round((new_width - resolution) / 2), round((new_height - resolution) / 2)  # PIL's rounding of the crop box
    scale_x, scale_y = width / new_width, height / new_height
    return (round(left * scale_x), round(top * scale_y), round((left + resolution) * scale_x), round((top + resolution) * scale_y))
