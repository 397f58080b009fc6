"""The edit's mask: which pixels of the scene photo the subject goes into, read as the user sees it.

The rule (stated in `siso-edit --help` and docs/editing.md), chosen so that a user can predict it:

1. The mask is read as shown: its EXIF orientation is applied, like every photo's. Its size must
   be the scene photo's size as shown (or the size the scene was read at, when it was reduced).
2. A mask whose transparency varies is read by its alpha: opaque (alpha > 127) marks the
   subject's region, whatever the paint's colour. That is what a layer painted in Krita, GIMP or
   Photoshop shows, whose transparent pixels may be stored white or black.
3. Otherwise its grey level counts: white (grey > 127) marks the region, black what to keep.
4. A mask must be black and white (or opaque and transparent). Pixels that are neither (grey
   between 32 and 223, or coloured) are soft edges in a real mask; when more than a quarter of the
   pixels are such, the file is a photo, not a mask, and is refused; from 2 % on it is warned about.

The edit works on the scene's centre square: a painted region that reaches outside it is warned
about with the share that stays unchanged, and one wholly outside is refused. A mask file that covers
more than half of the square is warned about as perhaps inverted (the run goes on). Every mask's share
of the square and of the whole scene is recorded and printed. PIL and numpy only: `siso-edit`
checks its mask before torch is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import SISOInputError, check_file
from ..io.images import high_bit_depth_to_8bit
from .geometry import centre_square_box, resize_and_center_crop

MASK_THRESHOLD = 127  # grey (or alpha) level above which a mask pixel marks the subject's region
BLACK_AT_MOST, WHITE_AT_LEAST = 32, 223  # levels that count as plainly black / white
COLOURED_SPREAD = 32  # a pixel whose channels differ by more than this is coloured, not grey
WARN_AMBIGUOUS = 0.02  # share of neither-black-nor-white pixels from which a mask is warned about
MAX_AMBIGUOUS = 0.25  # ... and above which it is refused as "a photo, not a mask"
WARN_LOST = 0.01  # share of the painted region outside the centre square from which that is warned about
LIKELY_INVERTED = 0.5  # share of the edit's square above which a mask file is warned about as perhaps inverted
INVERTED_FIX = {
    "grey": "white marks where the subject goes, black what to keep; if the region is black on white, invert the mask",
    "alpha": "opaque marks where the subject goes, transparent what to keep; a mask in the inpainting convention "
             "(transparent = region) needs its transparency inverted",
}
FIX = "paint the region white (or opaque) on black (or transparent), at the scene photo's size"


@dataclass
class SceneMask:
    """A mask at the scene's size and at the edit's square, with what was read and what to say."""

    full: np.ndarray  # bool [H, W] at the size the scene was read at (True = the subject's region)
    square: np.ndarray  # bool [R, R]: the region in the edit's centre square
    info: dict  # for run.json: source, rule, shares
    warnings: list[str] = field(default_factory=list)  # one line each, printed before the run

    def describe(self) -> str:
        """One line: where the mask came from and how much it covers (printed for every mask)."""
        info = self.info
        rule = {"alpha": "read by its transparency: opaque = subject", "grey": "white = subject"}.get(info.get("rule"), "")
        label = Path(info["path"]).name if "path" in info else info["source"]
        return (f"{label}{f' ({rule})' if rule else ''} covers {100 * info['covered_fraction']:.1f} % of the edit's "
                f"square ({100 * info['scene_fraction']:.1f} % of the scene)")


def read_mask_levels(image: Image.Image, where: str) -> tuple[np.ndarray, str, bool]:
    """(levels uint8 [H, W], "alpha" or "grey", whether the image has a constant alpha channel):
    the channel the rule above reads, plus the coloured pixels marked as mid-grey (128) so that
    they count as ambiguous."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
        if alpha.min() != alpha.max():
            return alpha.copy(), "alpha", False
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image, _ = high_bit_depth_to_8bit(image, where)
    if image.mode in ("L", "1"):
        return np.asarray(image.convert("L")).copy(), "grey", has_alpha
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    levels = np.asarray(image.convert("RGB").convert("L")).copy()
    levels[(rgb.max(axis=2) - rgb.min(axis=2)) > COLOURED_SPREAD] = 128
    return levels, "grey", has_alpha


def load_mask(
    path: str | os.PathLike, scene_size: tuple[int, int], resolution: int, shown_size: tuple[int, int] | None = None,
) -> SceneMask:
    """The mask file at `path` for a scene read at `scene_size` (width, height) and shown at
    `shown_size` (default the same); SISOInputError (one line, the fix named) for a missing or
    unreadable file, another size, a photo instead of a mask, or a region empty or everywhere."""
    path = Path(path).absolute()
    shown_size = tuple(shown_size or scene_size)
    check_file(path, "mask", "give a PNG of the scene's size, white where the subject goes")
    try:
        with Image.open(path) as opened:
            opened.load()
            turned = opened.getexif().get(0x0112, 1) not in (0, 1)
            image = ImageOps.exif_transpose(opened) or opened
            image = image.copy() if image is opened else image
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise SISOInputError(f"mask {str(path)!r} is not a readable image ({error}): save it as a PNG, white where the subject goes") from error
    if image.size not in (shown_size, tuple(scene_size)):
        shown = f"{shown_size[0]}x{shown_size[1]}"
        hint = "paint the mask on the scene photo itself (same size)"
        if image.size == shown_size[::-1]:
            hint = (f"it is the scene turned by 90 degrees: paint it on the scene as a viewer shows it ({shown})"
                    + ("" if turned else ", or give the mask the scene's EXIF orientation"))
        raise SISOInputError(f"mask {str(path)!r} is {image.width}x{image.height} px but the scene photo is {shown}: {hint}")
    levels, rule, constant_alpha = read_mask_levels(image, f"mask {str(path)!r}")
    ambiguous = float(((levels > BLACK_AT_MOST) & (levels < WHITE_AT_LEAST)).mean())
    what = "alpha levels are neither opaque nor transparent" if rule == "alpha" else "pixels are grey or coloured"
    if ambiguous > MAX_AMBIGUOUS:
        raise SISOInputError(f"mask {str(path)!r} is not black and white: {ambiguous:.0%} of its {what} (a photo, not a mask?): {FIX}")
    warnings = []
    if ambiguous >= WARN_AMBIGUOUS:
        warnings.append(f"{ambiguous:.0%} of the mask's {what}; those above {MASK_THRESHOLD} of 255 count as the subject's region")
    region = Image.fromarray(((levels > MASK_THRESHOLD) * 255).astype(np.uint8), mode="L")
    if region.size != tuple(scene_size):
        region = region.resize(tuple(scene_size), Image.Resampling.NEAREST)
    note = ""
    if rule == "grey" and constant_alpha:
        note = " (its transparency is the same everywhere, so its grey level counts)"
    mask = scene_mask(np.asarray(region) > MASK_THRESHOLD, resolution, f"mask {str(path)!r}", note)
    mask.info.update(source=str(path), path=str(path), rule=rule, ambiguous_fraction=round(ambiguous, 4))
    if mask.info["covered_fraction"] > LIKELY_INVERTED:
        warnings.append(f"the mask covers {100 * mask.info['covered_fraction']:.1f} % of the edit's square, so it may be inverted: "
                        + INVERTED_FIX[rule])
    mask.warnings[:0] = warnings
    return mask


def scene_mask(full: np.ndarray, resolution: int, source: str = "the mask", note: str = "",
               square: np.ndarray | None = None) -> SceneMask:
    """A scene-sized bool mask [H, W] brought to the edit's R x R square (or the `square` it was
    made from), with its checks and shares."""
    full = np.asarray(full, dtype=bool)
    height, width = full.shape
    if square is None:
        square = np.asarray(resize_and_center_crop(Image.fromarray(full.astype(np.uint8) * 255, mode="L"), resolution,
                                                   Image.Resampling.NEAREST)) > MASK_THRESHOLD
    left, top, right, bottom = centre_square_box((width, height), resolution)
    painted = int(full.sum())
    inside = int(full[top:bottom, left:right].sum())
    lost = 1.0 - inside / painted if painted else 0.0
    share = float(square.mean())
    if share == 0.0:
        if painted:
            raise SISOInputError(f"{source} is empty where the edit works{note}: all of its region lies outside the centre square "
                                 f"(x {left}-{right}, y {top}-{bottom} of {width}x{height}); paint the region inside that square")
        raise SISOInputError(f"{source} is empty (no white pixel in the centre square the edit uses){note}: "
                             "paint the subject's region white")
    if share == 1.0:
        raise SISOInputError(f"{source} covers the whole picture{note}: nothing of the scene would be kept; leave the background black")
    warnings = []
    if lost >= WARN_LOST:
        warnings.append(f"{lost:.0%} of the mask lies outside the centre square the edit works on (x {left}-{right}, "
                        f"y {top}-{bottom} of {width}x{height}): that part of the scene stays unchanged")
    info = {"source": source, "covered_fraction": round(share, 4), "scene_fraction": round(painted / full.size, 4),
            "outside_square_fraction": round(lost, 4)}
    return SceneMask(full, square, info, warnings)


def square_mask(square: np.ndarray, scene_size: tuple[int, int], source: str) -> SceneMask:
    """A mask found on the edit's R x R square (the automatic mask), also at the scene's size:
    the square's region scaled (nearest) into the centre square of the scene."""
    square = np.asarray(square, dtype=bool)
    resolution = square.shape[0]
    width, height = scene_size
    left, top, right, bottom = centre_square_box(scene_size, resolution)
    full = np.zeros((height, width), dtype=bool)
    scaled = Image.fromarray(square.astype(np.uint8) * 255, mode="L").resize((right - left, bottom - top), Image.Resampling.NEAREST)
    full[top:bottom, left:right] = np.asarray(scaled) > MASK_THRESHOLD
    return scene_mask(full, resolution, source, square=square)  # the square as found, not a round trip


def mask_image(mask: np.ndarray) -> Image.Image:
    """bool [H, W] -> a black-and-white PNG-ready image (white = subject region)."""
    return Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255, mode="L")
