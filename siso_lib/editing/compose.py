"""The edited photo at the scene's own size: the edited square put back into the scene.

The method edits an R x R square (the scene's centre, scaled); a user expects the photo they gave,
at its size, with only the masked region changed. `paste_back` scales the edited square up (or
down) to the centre square of the scene and blends it in **inside the mask only**: the blend
weight is the mask blurred by half an edited pixel (Gaussian sigma), multiplied by the mask
itself, so it fades in from the mask's border (no hard seam) and is exactly 0 outside. Every
pixel outside the mask is therefore bit-identical to the scene as it was read (orientation and
colour profile applied), and so is the part of the mask outside the centre square (never edited).
PIL and numpy only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageFilter

from .geometry import centre_square_box


def blend_weights(region: np.ndarray, radius: float) -> Image.Image:
    """An "L" image: 0 outside `region` (bool [H, W]), rising from its border to 255 inside it."""
    mask = Image.fromarray(np.asarray(region, dtype=np.uint8) * 255, mode="L")
    return ImageChops.multiply(mask.filter(ImageFilter.GaussianBlur(radius)), mask)


def paste_back(scene: Image.Image, edited: Image.Image, region: np.ndarray) -> Image.Image:
    """The scene (RGB, any size) with `edited` (the R x R edit of its centre square) blended in
    where `region` (bool [H, W] at the scene's size) is True; outside it the scene's own pixels."""
    scene = scene.convert("RGB")
    resolution = edited.width
    left, top, right, bottom = centre_square_box(scene.size, resolution)
    region = np.asarray(region, dtype=bool)
    if region.shape != (scene.height, scene.width):
        raise ValueError(f"the region is {region.shape[1]}x{region.shape[0]} but the scene is {scene.width}x{scene.height}")
    inside = np.zeros_like(region)
    inside[top:bottom, left:right] = region[top:bottom, left:right]  # nothing was edited outside the square
    scale = (right - left) / resolution
    placed = scene.copy()
    placed.paste(edited.convert("RGB").resize((right - left, bottom - top), Image.Resampling.LANCZOS), (left, top))
    return Image.composite(placed, scene, blend_weights(inside, max(1.0, scale / 2)))
