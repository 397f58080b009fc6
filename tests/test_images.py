"""Odd but valid photos load correctly; broken ones are refused with a one-line fix."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from siso_lib.errors import SISOInputError
from siso_lib.images import load_subject_image


@pytest.fixture(scope="module")
def cat(subject_path):
    return Image.open(subject_path).convert("RGB")


def test_plain_rgb_photo(subject_path):
    subject = load_subject_image(subject_path)
    assert subject.tensor.shape == (1, 3, 300, 451) and subject.notes == []
    assert 0.0 <= subject.tensor.min() and subject.tensor.max() <= 1.0
    assert len(subject.sha256) == 64


def test_grayscale_becomes_rgb(tmp_path, cat):
    cat.convert("L").save(tmp_path / "gray.png")
    subject = load_subject_image(tmp_path / "gray.png")
    t = subject.tensor[0]
    assert t.shape[0] == 3 and bool((t[0] == t[1]).all() and (t[1] == t[2]).all())


def test_transparency_is_flattened_on_white(tmp_path, cat):
    rgba = cat.convert("RGBA")
    alpha = Image.new("L", cat.size, 255)
    alpha.paste(0, (0, 0, 100, 100))
    rgba.putalpha(alpha)
    rgba.save(tmp_path / "rgba.png")
    subject = load_subject_image(tmp_path / "rgba.png")
    assert "flattened transparency onto white" in subject.notes
    assert float(subject.tensor[0, :, :100, :100].min()) == 1.0  # white, not black garbage
    assert float(subject.tensor[0, :, 200:, 200:].std()) > 0.05


def test_palette_with_and_without_transparency(tmp_path, cat):
    cat.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png")
    assert load_subject_image(tmp_path / "palette.png").image.mode == "RGB"
    p = cat.convert("P", palette=Image.Palette.ADAPTIVE)
    p.info["transparency"] = 0
    p.save(tmp_path / "palette_t.png", transparency=0)
    assert load_subject_image(tmp_path / "palette_t.png").image.mode == "RGB"


def test_sixteen_bit_is_scaled_not_clipped(tmp_path, cat):
    gray16 = (np.asarray(cat.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "deep.png")
    subject = load_subject_image(tmp_path / "deep.png")
    expected = np.asarray(cat.convert("L"), dtype=np.float32) / 255.0
    assert np.abs(subject.tensor[0, 0].numpy() - expected).max() < 1 / 255 + 1e-6  # a naive convert would be all white


def test_exif_orientation_is_applied(tmp_path, cat):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    cat.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    subject = load_subject_image(tmp_path / "rotated.jpg")
    assert subject.image.size == (300, 451) and "applied the EXIF orientation" in subject.notes


def test_huge_jpeg_is_decoded_at_reduced_size(tmp_path):
    Image.new("RGB", (12000, 12000), (120, 80, 40)).save(tmp_path / "huge.jpg", quality=50)
    subject = load_subject_image(tmp_path / "huge.jpg")
    assert max(subject.image.size) <= 2048 * 2
    assert any("decoded the 12000x12000 JPEG" in note for note in subject.notes)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims width x height (a decompression bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is not a file"),
        (lambda p: p.write_bytes(b""), "empty \\(0 bytes\\)"),
        (lambda p: p.write_text("this is not a picture"), "not an image file"),
        (lambda p: p.write_bytes(png_claiming(12000, 12000)), "12000x12000 pixels, too large to decode safely"),
        (lambda p: Image.new("RGB", (8, 8)).save(p, format="PNG"), "only 8x8 pixels"),
    ],
    ids=["missing", "directory", "empty", "not-an-image", "bomb-header", "tiny"],
)
def test_bad_files_are_refused(tmp_path, make, message):
    path = tmp_path / "subject.png"
    make(path)
    with pytest.raises(SISOInputError, match=message):
        load_subject_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_refused(tmp_path, cat, fmt):
    full = tmp_path / f"full.{fmt.lower()}"
    cat.save(full, format=fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    with pytest.raises(SISOInputError, match="truncated or corrupt"):
        load_subject_image(cut)
