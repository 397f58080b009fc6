"""The edit's scene photo, brought to the run's square the way the authors' script does
(`resize_and_center_crop`, geometry.py), and the pictures that show a mask on it.

The scene is read like the subject photo (orientation, colour profile, size checks, one-line
errors), with notes worded for a scene; it keeps its size up to MAX_DECODE_PIXELS, since the
edited photo is returned at that size (compose.py). The mask's rule is in masks.py. Everything
here needs PIL only: `siso-edit` checks its input before torch is imported.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..io.images import load_subject_image
from .geometry import centre_square_box, resize_and_center_crop  # noqa: F401  (where callers find them)
from .masks import MASK_THRESHOLD, SceneMask, load_mask, mask_image, scene_mask, square_mask  # noqa: F401


def load_scene(path: str | os.PathLike, resolution: int) -> tuple[Image.Image, Image.Image, dict]:
    """(the photo as read, the photo at resolution x resolution, its description for run.json).

    The description holds the photo's absolute path, hash, the size it was read at (`size`), the
    size a viewer shows (`shown_size`, what a mask must match) and the notes of what was changed.
    """
    loaded = load_subject_image(path, "scene photo", "input_image_path", scene=True)
    info = {"path": loaded.path, "sha256": loaded.sha256, "size": list(loaded.image.size),
            "shown_size": list(loaded.shown_size or loaded.image.size), "notes": loaded.notes}
    return loaded.image, resize_and_center_crop(loaded.image, resolution), info


def overlay(scene: Image.Image, mask: np.ndarray, colour: tuple[int, int, int] = (255, 64, 64), alpha: float = 0.45) -> Image.Image:
    """The scene with the mask's region tinted, to check a mask at a glance."""
    tint = Image.new("RGB", scene.size, colour)
    return Image.composite(Image.blend(scene.convert("RGB"), tint, alpha), scene.convert("RGB"), mask_image(mask))
