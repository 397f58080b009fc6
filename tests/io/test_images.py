"""Odd but valid photos load correctly; broken ones are refused with a one-line fix."""

import re
import struct
import zlib

import numpy as np
import pytest

from image_helpers import png_claiming
from PIL import Image

from siso_lib.errors import SISOInputError
from siso_lib.io.images import load_subject_image


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
    assert subject.image.size == (3000, 3000)  # decoded at 1/4: the largest reduction keeping 2048 px
    assert any("decoded the 12000x12000 JPEG at 3000x3000" in note for note in subject.notes)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is a folder, not a file"),
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


# ---------------------------------------------------------------- size, proportions and colour

def test_extreme_proportions_are_refused_from_the_header(tmp_path):
    """The field report: a 20000x1000 PNG was 'downscaled' to 40960x2048 (3.6 GB) and a
    100000x200 one ended in a MemoryError. The networks see the centre square; below 20 % of
    the photo that is refused in one line, before anything is decoded."""
    for width, height, kept in ((20000, 1000, "5%"), (100000, 200, "0%"), (300, 1600, "19%")):
        path = tmp_path / f"{width}x{height}.png"
        path.write_bytes(png_claiming(width, height))
        with pytest.raises(SISOInputError, match=f"see only its centre square, {kept} of the photo; crop it"):
            load_subject_image(path)


@pytest.mark.parametrize("size, expected, warned", [
    ((9000, 1800), (9000, 1800), True),    # 16.2 MP, 5:1: kept as it is, never enlarged; warned
    ((6000, 3000), (4096, 2048), False),   # 18 MP, 2:1: reduced to a 2048 px short side
    ((1200, 500), (1200, 500), True),      # small and wide: kept, warned
])
def test_large_or_wide_photos_are_only_ever_reduced(tmp_path, size, expected, warned):
    gradient = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :, None].repeat(size[1], 0).repeat(3, 2)
    path = tmp_path / "photo.png"
    Image.fromarray(gradient).save(path, compress_level=1)
    subject = load_subject_image(path)
    assert subject.image.size == expected
    assert max(subject.image.size) <= max(size)
    assert any(note.startswith("WARNING: the photo is") for note in subject.notes) == warned


MEASURE_PEAK_MEMORY = r"""
import resource, sys
from siso_lib.io.images import load_subject_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
subject = load_subject_image(sys.argv[1])
print(subject.image.size[0], subject.image.size[1], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.slow
def test_loading_the_largest_accepted_image_has_bounded_memory(tmp_path):
    """A 49 MP PNG (just under the 50 MP limit), 2:1: its decoded RGB is 147 MB; loading it
    must stay within a small multiple of that (it was 3.6 GB for a 20 MP image before)."""
    import subprocess
    import sys

    path = tmp_path / "big.png"
    Image.new("RGB", (9900, 4950), (90, 120, 150)).save(path, compress_level=1)
    proc = subprocess.run([sys.executable, "-c", MEASURE_PEAK_MEMORY, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    width, height, peak_mb = map(int, proc.stdout.split())
    assert (width, height) == (4096, 2048)
    assert peak_mb < 600, f"loading a 49 MP PNG took {peak_mb} MB more"


def icc_profile(primaries, white=(0.3127, 0.3290), name="Display P3 (test)") -> bytes:
    """A minimal ICC v2 display profile: these primaries and white point, the sRGB tone curve.

    Colorants are adapted to the D50 connection space with the Bradford transform, as ICC
    matrix/TRC profiles require (ICC.1:2001-04, annex E).
    """
    import struct

    def xyz(x, y):
        return np.array([x / y, 1.0, (1 - x - y) / y])

    rgb_to_xyz = rgb_to_xyz_matrix(primaries, white)
    bradford = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    d50 = np.array([0.9642, 1.0, 0.8249])
    cone = np.diag((bradford @ d50) / (bradford @ xyz(*white)))
    adapted = np.linalg.inv(bradford) @ cone @ bradford @ rgb_to_xyz

    def s15(values):
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    def xyz_tag(values):
        return b"XYZ " + b"\0" * 4 + s15(values)

    grid = np.linspace(0, 1, 1024)
    curve = srgb_to_linear(grid)
    trc = b"curv" + b"\0" * 4 + struct.pack(">I", len(curve)) + b"".join(struct.pack(">H", round(v * 65535)) for v in curve)
    ascii_name = name.encode() + b"\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_name)) + ascii_name + b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    tags = [(b"desc", desc), (b"cprt", b"text" + b"\0" * 4 + b"no copyright, test data\0"), (b"wtpt", xyz_tag(d50)),
            (b"rXYZ", xyz_tag(adapted[:, 0])), (b"gXYZ", xyz_tag(adapted[:, 1])), (b"bXYZ", xyz_tag(adapted[:, 2])),
            (b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + b"\0" * 12 + b"acsp"
              + b"\0" * 24 + struct.pack(">I", 0) + s15(d50) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def rgb_to_xyz_matrix(primaries, white):
    columns = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    white_xyz = np.array([white[0] / white[1], 1.0, (1 - white[0] - white[1]) / white[1]])
    return columns * np.linalg.solve(columns, white_xyz)


def srgb_to_linear(v):
    v = np.asarray(v, dtype=np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v):
    v = np.clip(v, 0, 1)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


DISPLAY_P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
SRGB = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))


def test_an_embedded_colour_profile_is_converted_to_srgb(tmp_path):
    """The field report: a Display-P3 photo's pixel (230, 60, 40) was used as is; a viewer shows
    about (251, 25, 0) in sRGB. The expected value is computed here from the two colour spaces'
    definitions (primaries, D65 white, sRGB tone curve), independently of littlecms: (250, 31, 14),
    a more saturated red than the stored numbers, as the report says."""
    pixel = np.array([230, 60, 40])
    linear_p3 = srgb_to_linear(pixel / 255.0)
    xyz = rgb_to_xyz_matrix(DISPLAY_P3, (0.3127, 0.3290)) @ linear_p3
    expected = np.round(linear_to_srgb(np.linalg.solve(rgb_to_xyz_matrix(SRGB, (0.3127, 0.3290)), xyz)) * 255)
    assert expected.tolist() == [250, 31, 14]
    for fmt, suffix in (("PNG", "png"), ("JPEG", "jpg")):
        path = tmp_path / f"p3.{suffix}"
        Image.new("RGB", (64, 64), tuple(int(v) for v in pixel)).save(path, format=fmt, icc_profile=icc_profile(DISPLAY_P3), quality=100)
        subject = load_subject_image(path)
        got = np.asarray(subject.image)[32, 32].astype(int)
        assert np.abs(got - expected).max() <= 2, (fmt, got, expected)
        assert "converted the embedded colour profile 'Display P3 (test)' to sRGB" in subject.notes


def test_an_srgb_profile_changes_nothing(tmp_path, subject_path):
    """data/cat.png carries an sRGB profile: its pixels are used exactly as stored."""
    stored = np.asarray(Image.open(subject_path).convert("RGB"))
    subject = load_subject_image(subject_path)
    assert np.array_equal(np.asarray(subject.image), stored) and subject.notes == []
    assert Image.open(subject_path).info.get("icc_profile")
    # and an unusable profile is reported, not fatal
    Image.new("RGB", (64, 64), (10, 20, 30)).save(tmp_path / "bad.png", icc_profile=b"garbage profile bytes")
    broken = load_subject_image(tmp_path / "bad.png")
    assert np.asarray(broken.image)[0, 0].tolist() == [10, 20, 30]
    assert any("could not be applied" in note for note in broken.notes)


@pytest.mark.parametrize("scale, dtype", [(1.0, np.float32), (255.0, np.float32), (65535.0, np.float32), (255, np.int32), (65535, np.int32)],
                         ids=["float 0..1", "float 0..255", "float 0..65535", "int32 0..255", "int32 0..65535"])
def test_a_deep_single_channel_image_is_scaled_by_the_range_of_its_values(tmp_path, cat, scale, dtype):
    """A float TIFF in 0..1 (what numpy and renderers write) became a black subject; each range
    a 32-bit image can carry maps to the same 8-bit grey levels."""
    grey = np.asarray(cat.convert("L"), dtype=np.float64) / 255.0
    Image.fromarray((grey * scale).astype(dtype), mode="F" if dtype == np.float32 else "I").save(tmp_path / "deep.tif")
    subject = load_subject_image(tmp_path / "deep.tif")
    got = np.asarray(subject.image.convert("L"), dtype=np.float64) / 255.0
    assert np.abs(got - grey).max() <= 1 / 255 + 1e-6
    assert any("high bit depth" in note and ("0..1" in note if scale == 1.0 else "0..255" in note or "0..65535" in note)
               for note in subject.notes)


@pytest.mark.parametrize("values, why", [((-5.0, 1.0), "values from -5 to 1"), ((0.0, 1e6), "values from 0 to 1e+06"),
                                         ((0.0, float("nan")), "NaN or infinite")])
def test_a_float_image_outside_every_known_range_is_refused_in_one_line(tmp_path, values, why):
    array = np.linspace(0.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    array[0, :2] = values
    Image.fromarray(array, mode="F").save(tmp_path / "odd.tif")
    with pytest.raises(SISOInputError, match=re.escape(why)) as raised:
        load_subject_image(tmp_path / "odd.tif")
    assert "\n" not in str(raised.value) and "PNG" in str(raised.value)


def test_a_scene_photo_is_described_as_a_scene(tmp_path, cat):
    """The proportion note of an edit's scene speaks of the edit's square, not the subject."""
    wide = cat.resize((900, 300))
    wide.save(tmp_path / "wide.png")
    scene = load_subject_image(tmp_path / "wide.png", "scene photo", "input_image_path", scene=True)
    (note,) = scene.notes
    assert "the edit works on its centre square only (33% of it)" in note and "subject" not in note
    assert "the feature networks" in load_subject_image(tmp_path / "wide.png").notes[0]
