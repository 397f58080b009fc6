"""The edit's inputs: the scene photo and the mask of the region the subject goes into.

Both are brought to the run's square resolution the way the authors' script does
(`resize_and_center_crop`: scale the photo so that it covers R x R, then crop the centre), the
mask with nearest-neighbour sampling so that it stays binary. A mask is a PNG (or any image) of
the scene photo's size: white (> 127 in grey) is the subject's region, black the background to
keep. Everything here needs PIL only: `siso-edit` checks its input before torch is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SISOInputError
from ..io.images import load_subject_image

MASK_THRESHOLD = 127  # grey level above which a mask pixel marks the subject's region


def resize_and_center_crop(image: Image.Image, size: int, resample: int | None = None) -> Image.Image:
    """Scale `image` to cover size x size (aspect kept; the short side becomes `size`, the long side
    is truncated to whole pixels), then crop the centre: the authors' `resize_and_center_crop`.

    `resample` None is PIL's default for the mode (bicubic for RGB), as theirs; masks pass NEAREST.
    """
    ratio = image.width / image.height
    if ratio > 1.0:
        new_width, new_height = int(size * ratio), size
    else:
        new_width, new_height = size, int(size / ratio)
    resized = image.resize((new_width, new_height)) if resample is None else image.resize((new_width, new_height), resample)
    left, top = (new_width - size) / 2, (new_height - size) / 2
    return resized.crop((left, top, left + size, top + size))  # PIL rounds the fractional box as their call does


def load_scene(path: str | os.PathLike, resolution: int) -> tuple[Image.Image, Image.Image, dict]:
    """(the photo as loaded, the photo at resolution x resolution, its description for run.json).

    Loading is the subject photo's (images.load_subject_image: orientation, colour profile, size
    checks, one-line errors), so a scene photo is refused for the same reasons.
    """
    loaded = load_subject_image(path, "scene photo", "input_image_path")
    info = {"path": loaded.path, "sha256": loaded.sha256, "size": list(loaded.image.size), "notes": loaded.notes}
    return loaded.image, resize_and_center_crop(loaded.image, resolution), info


def load_mask(path: str | os.PathLike, scene_size: tuple[int, int], resolution: int) -> tuple[np.ndarray, dict]:
    """The mask at resolution x resolution as a bool array [R, R] (True = subject region), and its
    description; SISOInputError for a missing or unreadable file, another size than the scene's
    (width, height), or a mask that is empty or covers everything."""
    path = Path(path)
    if not path.is_file():
        raise SISOInputError(f"mask {str(path)!r} does not exist: give a PNG of the scene's size, white where the subject goes")
    try:
        with Image.open(path) as opened:
            opened.load()
            mask = opened.convert("L")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise SISOInputError(f"mask {str(path)!r} is not a readable image ({error}): save it as a PNG, white where the subject goes") from error
    if mask.size != tuple(scene_size):
        raise SISOInputError(
            f"mask {str(path)!r} is {mask.width}x{mask.height} px but the scene photo is {scene_size[0]}x{scene_size[1]}: "
            "paint the mask on the scene photo itself (same size)"
        )
    return binary_mask(mask, resolution, str(path))


def binary_mask(mask: Image.Image | np.ndarray, resolution: int, source: str = "the mask") -> tuple[np.ndarray, dict]:
    """A scene-sized mask (PIL or array; bool, 0/1 or 0-255) brought to R x R as bool, with checks."""
    if isinstance(mask, np.ndarray):
        array = mask.astype(np.float32)
        array = array * 255.0 if array.max(initial=0) <= 1.0 else array
        mask = Image.fromarray(array.clip(0, 255).astype(np.uint8), mode="L")
    square = np.asarray(resize_and_center_crop(mask.convert("L"), resolution, Image.Resampling.NEAREST)) > MASK_THRESHOLD
    share = float(square.mean())
    if share == 0.0:
        raise SISOInputError(f"{source} is empty (no white pixel in the centre square the edit uses): paint the subject's region white")
    if share == 1.0:
        raise SISOInputError(f"{source} covers the whole picture: nothing of the scene would be kept; leave the background black")
    return square, {"source": source, "covered_fraction": round(share, 4)}


def mask_image(mask: np.ndarray) -> Image.Image:
    """bool [R, R] -> a black-and-white PNG-ready image (white = subject region)."""
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L")


def overlay(scene: Image.Image, mask: np.ndarray, colour: tuple[int, int, int] = (255, 64, 64), alpha: float = 0.45) -> Image.Image:
    """The scene with the mask's region tinted, to check a mask at a glance."""
    tint = Image.new("RGB", scene.size, colour)
    return Image.composite(Image.blend(scene.convert("RGB"), tint, alpha), scene.convert("RGB"), mask_image(mask))
