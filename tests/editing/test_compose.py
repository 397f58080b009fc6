"""The edited photo at the scene's size (editing/compose.py): the square put back inside the mask,
every pixel outside it bit-identical to the scene."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from siso_lib.editing.compose import paste_back
from siso_lib.editing.geometry import centre_square_box, resize_and_center_crop


@pytest.mark.parametrize("size, resolution", [((600, 400), 64), ((400, 600), 64), ((451, 300), 512), ((64, 64), 64), ((1000, 333), 64)])
def test_the_centre_square_box_is_what_resize_and_center_crop_shows(size, resolution):
    """Each pixel of the box, scaled the same way, lands where resize_and_center_crop put it."""
    width, height = size
    gradient = np.zeros((height, width, 3), np.uint8)
    gradient[..., 0] = np.linspace(0, 255, width)[None, :]
    gradient[..., 1] = np.linspace(0, 255, height)[:, None]
    photo = Image.fromarray(gradient)
    left, top, right, bottom = centre_square_box(size, resolution)
    square = np.asarray(resize_and_center_crop(photo, resolution), np.float32)
    boxed = np.asarray(photo.crop((left, top, right, bottom)).resize((resolution, resolution), Image.Resampling.BICUBIC), np.float32)
    assert np.abs(square - boxed).mean() < 2.0  # within resampling differences: the same region


def test_outside_the_mask_every_pixel_is_the_scenes_own_and_inside_it_the_edit(tmp_path):
    rng = np.random.default_rng(0)
    scene = Image.fromarray(rng.integers(0, 256, (400, 600, 3), dtype=np.uint8))
    edited = Image.new("RGB", (64, 64), (255, 0, 255))
    region = np.zeros((400, 600), bool)
    region[100:300, 20:400] = True  # x 20-100 lies outside the square the edit changed (x 100-500)
    result = paste_back(scene, edited, region)
    before, after = np.asarray(scene), np.asarray(result)
    assert result.size == scene.size
    assert np.array_equal(after[~region], before[~region])
    assert np.array_equal(after[:, :100], before[:, :100])  # outside the square nothing was edited
    core = after[120:280, 120:380]  # well inside the mask (20 px): the edit itself
    assert np.array_equal(core, np.broadcast_to(np.array([255, 0, 255], np.uint8), core.shape))
    rim = after[100, 150:390].astype(int)  # the mask's border row: blended, neither the scene nor the edit alone
    assert not np.array_equal(rim, before[100, 150:390]) and not (rim == [255, 0, 255]).all()
