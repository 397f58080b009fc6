"""The edit's mask means what the user sees (editing/masks.py): read as shown, by its alpha when its
transparency varies, refused when it is a photo, and its share (and what lies outside the edit's
square) always said. PIL and numpy only: no model, no torch."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from siso_lib.editing.inputs import load_scene
from siso_lib.editing.masks import load_mask, scene_mask
from siso_lib.errors import SISOInputError

# EXIF orientation -> what a viewer does to the stored pixels (numpy, independent of PIL's transpose)
SHOWN = {
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    6: lambda a: np.rot90(a, -1),  # 90 degrees clockwise
    8: lambda a: np.rot90(a, 1),
}


def tagged(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def stored_rectangle(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """uint8 [H, W]: 255 inside box (x0, y0, x1, y1), 0 elsewhere."""
    array = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = 255
    return array


@pytest.mark.parametrize("orientation", sorted(SHOWN))
@pytest.mark.parametrize("stored", [(512, 512), (400, 600)], ids=["square", "600x400 stored"])
def test_a_mask_with_the_scenes_orientation_covers_what_the_viewer_shows(tmp_path, orientation, stored):
    """Scene JPEG and mask PNG both drawn on the stored pixels and tagged alike: the region is the
    painted one as shown, never the unrotated one (which had 0 px overlap with it)."""
    height, width = stored
    rng = np.random.default_rng(orientation)
    scene = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(scene).save(tmp_path / "scene.jpg", exif=tagged(orientation))
    painted = stored_rectangle(height, width, (20, 30, 200, 140))  # off-centre: a wrong turn moves it
    Image.fromarray(painted).save(tmp_path / "mask.png", exif=tagged(orientation))

    photo, _, info = load_scene(tmp_path / "scene.jpg", 64)
    mask = load_mask(tmp_path / "mask.png", photo.size, 64, tuple(info["shown_size"]))
    expected = SHOWN[orientation](painted) > 127
    assert mask.full.shape == expected.shape == (photo.height, photo.width)
    assert np.array_equal(mask.full, expected)


def test_a_mask_of_the_stored_pixels_without_the_tag_is_refused_naming_the_turn(tmp_path):
    Image.fromarray(np.zeros((400, 600, 3), np.uint8)).save(tmp_path / "scene.jpg", exif=tagged(6))  # shown 400x600
    Image.fromarray(stored_rectangle(400, 600, (0, 0, 100, 100))).save(tmp_path / "mask.png")
    photo, _, info = load_scene(tmp_path / "scene.jpg", 64)
    assert info["shown_size"] == [400, 600]
    with pytest.raises(SISOInputError, match=r"600x400 px but the scene photo is 400x600: it is the scene turned by 90 degrees"):
        load_mask(tmp_path / "mask.png", photo.size, 64, tuple(info["shown_size"]))


def rgba(colour_rgb: np.ndarray, alpha: np.ndarray) -> Image.Image:
    return Image.fromarray(np.dstack([colour_rgb, alpha]).astype(np.uint8), mode="RGBA")


@pytest.mark.parametrize("case", ["black paint, transparent stored white", "black paint, transparent stored black",
                                  "red paint", "LA", "palette with a transparent index"])
def test_a_mask_whose_transparency_varies_is_read_by_its_alpha(tmp_path, case):
    """What a painting program shows: the painted (opaque) pixels are the region, whatever colour
    the transparent ones are stored as (Krita stores them white: the grey rule gave the inverse)."""
    height, width = 100, 150
    opaque = stored_rectangle(height, width, (50, 20, 100, 80))
    if case.startswith("black paint"):
        background = 255 if "white" in case else 0
        colour = np.where(opaque[..., None] > 0, 0, background).repeat(3, axis=2)
        image = rgba(colour, opaque)
    elif case == "red paint":
        colour = np.zeros((height, width, 3))
        colour[..., 0] = 255
        image = rgba(colour, opaque)
    elif case == "LA":
        image = Image.fromarray(np.dstack([np.full((height, width), 255), opaque]).astype(np.uint8), mode="LA")
    else:
        image = Image.fromarray((opaque > 0).astype(np.uint8), mode="P")
        image.putpalette([255, 255, 255, 0, 0, 0])
        image.info["transparency"] = 0  # index 0 (stored white) is transparent
    path = tmp_path / "mask.png"
    image.save(path, **({"transparency": 0} if case.startswith("palette") else {}))
    mask = load_mask(path, (width, height), 64)
    assert np.array_equal(mask.full, opaque > 0) and mask.info["rule"] == "alpha"
    assert "read by its transparency: opaque = subject" in mask.describe()


def test_a_mask_with_constant_transparency_is_read_by_its_grey_level(tmp_path):
    white_box = stored_rectangle(100, 150, (50, 20, 100, 80))
    rgba(white_box[..., None].repeat(3, axis=2), np.full((100, 150), 255)).save(tmp_path / "opaque.png")
    mask = load_mask(tmp_path / "opaque.png", (150, 100), 64)
    assert np.array_equal(mask.full, white_box > 0) and mask.info["rule"] == "grey"
    # alpha everywhere 0 and no white pixel: the refusal says why transparency did not count
    rgba(np.zeros((100, 150, 3)), np.zeros((100, 150))).save(tmp_path / "clear.png")
    with pytest.raises(SISOInputError, match="empty.*transparency is the same everywhere, so its grey level counts"):
        load_mask(tmp_path / "clear.png", (150, 100), 64)


@pytest.mark.parametrize("mode", ["I;16", "F"])
def test_a_high_bit_depth_mask_is_scaled_by_its_range(tmp_path, mode):
    box = stored_rectangle(100, 150, (50, 20, 100, 80)) > 0
    if mode == "I;16":
        Image.fromarray(box.astype(np.uint16) * 65535).save(tmp_path / "mask.png")
        path = tmp_path / "mask.png"
    else:
        Image.fromarray(box.astype(np.float32), mode="F").save(tmp_path / "mask.tif")  # 0..1, as numpy writes it
        path = tmp_path / "mask.tif"
    assert np.array_equal(load_mask(path, (150, 100), 64).full, box)


def test_a_photo_given_as_its_mask_is_refused_and_soft_or_coloured_pixels_are_warned_about(tmp_path, subject_path):
    photo = Image.open(subject_path).convert("RGB")
    photo.save(tmp_path / "photo.png")
    with pytest.raises(SISOInputError, match=r"is not black and white: \d+% of its pixels are grey or coloured \(a photo, not a mask\?\)"):
        load_mask(tmp_path / "photo.png", photo.size, 64)
    soft = stored_rectangle(photo.height, photo.width, (150, 50, 300, 250)).astype(np.float32)
    soft[50:250, 130:150] = 128  # a soft edge: 20 px of mid-grey beside the region (3 %)
    Image.fromarray(soft.astype(np.uint8)).save(tmp_path / "soft.png")
    mask = load_mask(tmp_path / "soft.png", photo.size, 64)
    assert any("of the mask's pixels are grey or coloured" in w for w in mask.warnings)
    assert mask.info["ambiguous_fraction"] == pytest.approx(200 * 20 / (photo.width * photo.height), abs=1e-4)
    red = np.zeros((photo.height, photo.width, 3), np.uint8)
    red[:, :300, 0] = 255  # two thirds painted red: grey 76, so nothing would count as the region
    Image.fromarray(red).save(tmp_path / "red.png")
    with pytest.raises(SISOInputError, match="grey or coloured"):
        load_mask(tmp_path / "red.png", photo.size, 64)


def test_every_mask_states_its_shares_and_what_lies_outside_the_square(tmp_path):
    """On a 600x400 scene the edit's square is x 100-500: a rectangle x 0-200 loses half of itself."""
    size = (600, 400)
    Image.fromarray(stored_rectangle(400, 600, (0, 100, 200, 300))).save(tmp_path / "left.png")
    mask = load_mask(tmp_path / "left.png", size, 64)
    assert mask.info["outside_square_fraction"] == pytest.approx(0.5)
    assert mask.info["scene_fraction"] == pytest.approx(200 * 200 / (600 * 400), abs=1e-4)
    assert mask.warnings == ["50% of the mask lies outside the centre square the edit works on (x 100-500, y 0-400 of 600x400): "
                             "that part of the scene stays unchanged"]
    assert mask.describe().startswith("left.png (white = subject) covers 12.") and "(16.7 % of the scene)" in mask.describe()
    inside = scene_mask(stored_rectangle(400, 600, (200, 100, 400, 300)) > 0, 64)
    assert inside.warnings == [] and inside.info["outside_square_fraction"] == 0
    with pytest.raises(SISOInputError, match=r"all of its region lies outside the centre square \(x 100-500") as outside:
        scene_mask(stored_rectangle(400, 600, (0, 0, 90, 400)) > 0, 64)
    # the fresh-user trial: "...; paint it inside that square: paint the subject's region white" gave two fixes
    assert str(outside.value).count("paint") == 1 and str(outside.value).endswith("paint the region inside that square")
    with pytest.raises(SISOInputError, match=r"is empty \(no white pixel .*\): paint the subject's region white$"):
        scene_mask(np.zeros((400, 600), dtype=bool), 64)


@pytest.mark.parametrize("case", ["black region on white", "transparent region (inpainting convention)", "the right way"])
def test_a_mask_covering_more_than_half_of_the_square_is_warned_about_as_perhaps_inverted(tmp_path, case):
    """The fresh-user trial: an inverted mask ran silently, printing only "covers 90.6 % of the edit's square"."""
    region = stored_rectangle(100, 100, (30, 30, 70, 70))  # 16 % of the square
    if case == "black region on white":
        Image.fromarray(255 - region).save(tmp_path / "mask.png")
    elif case.startswith("transparent"):
        rgba(np.zeros((100, 100, 3)), 255 - region).save(tmp_path / "mask.png")
    else:
        Image.fromarray(region).save(tmp_path / "mask.png")
    mask = load_mask(tmp_path / "mask.png", (100, 100), 64)  # warned, not refused: the run goes on
    inverted = [w for w in mask.warnings if "may be inverted" in w]
    if case == "the right way":
        assert inverted == []
        return
    assert len(inverted) == 1 and "\n" not in inverted[0] and inverted[0].startswith("the mask covers 83.5 % of the edit")
    assert ("invert the mask" if mask.info["rule"] == "grey" else "transparency inverted") in inverted[0]


def test_a_reduced_scene_takes_the_mask_of_its_shown_size(tmp_path, monkeypatch):
    """A scene above the reduction threshold is read smaller; the mask painted on the photo as the
    user has it (its full size) still fits and is scaled with it."""
    from siso_lib.io import images

    monkeypatch.setattr(images, "MAX_DECODE_PIXELS", 10_000)
    monkeypatch.setattr(images, "DOWNSCALE_SHORT_SIDE", 100)
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(tmp_path / "scene.jpg")
    photo, _, info = load_scene(tmp_path / "scene.jpg", 64)
    assert photo.size == (150, 100) and info["shown_size"] == [300, 200]
    Image.fromarray(stored_rectangle(200, 300, (100, 50, 200, 150))).save(tmp_path / "mask.png")
    mask = load_mask(tmp_path / "mask.png", photo.size, 64, tuple(info["shown_size"]))
    assert mask.full.shape == (100, 150) and np.array_equal(mask.full, stored_rectangle(100, 150, (50, 25, 100, 75)) > 0)
