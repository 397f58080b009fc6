"""Grounding-DINO boxes, SAM masks and the crop, with tiny random-weight models written offline.

Random weights find nothing in particular, so the tests check units, shapes, thresholds, batching,
the mask clean-up and the one-line errors, not what is found.
"""

from __future__ import annotations

import shutil
from collections import deque

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

from siso_lib.errors import SISOInputError
from siso_lib.features.detection import (
    BOX_THRESHOLD,
    Detection,
    SubjectDetector,
    SubjectSegmenter,
    _class_names,
    _label_for,
    automatic_subject_mask,
    crop_to_box,
    fill_holes,
    largest_region,
)
from siso_lib.offline.tiny_detectors import (
    build_tiny_grounding_dino,
    build_tiny_sam,
    write_tiny_grounding_dino,
    write_tiny_sam,
)

SIZES = [(160, 128), (200, 300)]  # (width, height): landscape and portrait


def random_image(size: tuple[int, int], seed: int) -> Image.Image:
    width, height = size
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("detection")
    return {"detector": write_tiny_grounding_dino(root / "grounding-dino"), "segmenter": write_tiny_sam(root / "sam")}


@pytest.fixture(scope="module")
def detector(folders) -> SubjectDetector:
    return SubjectDetector.from_pretrained(folders["detector"])


@pytest.fixture(scope="module")
def segmenter(folders) -> SubjectSegmenter:
    return SubjectSegmenter.from_pretrained(folders["segmenter"])


@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1 for this test: any request to the hub raises."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


# ------------------------------------------------------------------ the tiny models


def test_tiny_grounding_dino_reloads_offline_unchanged(tmp_path, offline):
    folder = write_tiny_grounding_dino(tmp_path / "gd")
    loaded = SubjectDetector.from_pretrained(folder)
    built, processor = build_tiny_grounding_dino()
    saved, reloaded = built.state_dict(), loaded.model.state_dict()
    assert saved.keys() == reloaded.keys()
    assert all(torch.equal(saved[key], reloaded[key]) for key in saved)
    prompt = "a photo of a poodle. cat."
    assert loaded.processor.tokenizer(prompt).input_ids == processor.tokenizer(prompt).input_ids
    assert processor.tokenizer.unk_token_id not in processor.tokenizer(prompt).input_ids  # unknown words are spelled out
    inputs = processor(images=[random_image(SIZES[0], 0)], text=[prompt], return_tensors="pt")
    with torch.no_grad():
        expected, actual = built(**inputs), loaded.model(**inputs)
    assert torch.equal(expected.logits, actual.logits) and torch.equal(expected.pred_boxes, actual.pred_boxes)


def test_tiny_sam_reloads_offline_unchanged(tmp_path, offline):
    folder = write_tiny_sam(tmp_path / "sam")
    loaded = SubjectSegmenter.from_pretrained(folder)
    built, processor = build_tiny_sam()
    saved, reloaded = built.state_dict(), loaded.model.state_dict()
    assert saved.keys() == reloaded.keys()
    assert all(torch.equal(saved[key], reloaded[key]) for key in saved)
    inputs = processor(images=random_image(SIZES[1], 1), input_boxes=[[[10.0, 20.0, 150.0, 200.0]]], return_tensors="pt")
    inputs = dict(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"], multimask_output=True)
    with torch.no_grad():
        expected, actual = built(**inputs), loaded.model(**inputs)
    # equal weights; the loaded tensors' memory layout can change the summation order in the last bits
    torch.testing.assert_close(actual.pred_masks, expected.pred_masks, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(actual.iou_scores, expected.iou_scores, rtol=1e-5, atol=1e-12)
    assert expected.pred_masks.std() > 0  # the random encoder is not constant


# ------------------------------------------------------------------ detection


def test_detect_gives_the_top_box_in_pixels_of_each_image(detector):
    images = [random_image(size, seed) for seed, size in enumerate(SIZES)]
    detections = detector.detect(images, "cat", box_threshold=0.0)
    assert len(detections) == len(images)
    for image, detection in zip(images, detections):
        width, height = image.size
        x0, y0, x1, y1 = detection.box
        assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
        assert detection.label == "cat" and 0 < detection.score <= 1
        # the same box from the raw model output: best query, (cx, cy, w, h) in [0, 1] times the image size
        inputs = detector.processor(images=[image], text=["cat."], return_tensors="pt")
        with torch.no_grad():
            outputs = detector.model(**inputs)
        scores = outputs.logits[0].sigmoid().max(dim=-1).values
        cx, cy, w, h = outputs.pred_boxes[0, scores.argmax()].tolist()
        corners = np.clip([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height],
                          0, [width, height, width, height])
        np.testing.assert_allclose(detection.box, corners, atol=1e-3)
        assert detection.score == pytest.approx(float(scores.max()), abs=1e-6)


def test_one_class_name_gives_the_authors_box(detector, folders):
    """The authors' call: transformers' zero-shot pipeline, "cat." as the candidate label, threshold 0.3,
    first (best) result; its box is truncated to int and not clamped."""
    from transformers import pipeline

    authors = pipeline(model=folders["detector"], task="zero-shot-object-detection", device="cpu")
    for seed, size in enumerate(SIZES):
        image = random_image(size, seed)
        theirs = authors(image, candidate_labels=["cat."], threshold=BOX_THRESHOLD)
        ours = detector.detect([image], "cat")[0]
        assert (ours is None) == (not theirs)
        if ours is not None:
            box = theirs[0]["box"]
            expected = np.clip([box["xmin"], box["ymin"], box["xmax"], box["ymax"]], 0, [size[0], size[1]] * 2)
            assert [int(v) for v in ours.box] == expected.tolist()
            assert ours.score == pytest.approx(theirs[0]["score"], abs=1e-6)


def test_batched_detection_equals_one_by_one(detector):
    images = [random_image(SIZES[0], 0), random_image(SIZES[1], 1), random_image(SIZES[0], 2), random_image(SIZES[0], 3)]
    batched = detector.detect(images, ["cat", "dog"], box_threshold=0.0, batch_size=2)
    single = [detector.detect([image], ["cat", "dog"], box_threshold=0.0)[0] for image in images]
    for together, alone in zip(batched, single):
        np.testing.assert_allclose(together.box, alone.box, atol=1e-3)
        assert together.score == pytest.approx(alone.score, abs=1e-5) and together.label == alone.label
    assert batched[0].box != batched[2].box  # different images, different boxes: results are not mixed up


def test_box_threshold_decides_whether_there_is_a_box(detector):
    images = [random_image(size, seed) for seed, size in enumerate(SIZES)]
    assert all(isinstance(d, Detection) for d in detector.detect(images, "cat", box_threshold=0.0))
    assert detector.detect(images, "cat", box_threshold=1.01) == [None, None]
    # the prompt convention: case and a final "." make no difference
    assert detector.detect(images, "Cat.", box_threshold=0.0) == detector.detect(images, ["cat"], box_threshold=0.0)


def test_class_names_and_labels():
    assert _class_names("Teddy Bear.") == ["teddy bear"]
    assert _class_names(["cat", " Duck  Toy "]) == ["cat", "duck toy"]
    for empty in ("", [], ["cat", " . "]):
        with pytest.raises(SISOInputError):
            _class_names(empty)
    assert _label_for("duck toy .", ["cat", "duck toy"]) == "duck toy"
    assert _label_for("", ["cat", "dog"]) == "cat"  # no word above the text threshold: the first name


# ------------------------------------------------------------------ crop


def test_crop_to_box_sizes_margin_and_clamping():
    pixels = np.random.RandomState(0).randint(0, 256, (80, 100, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)  # 100 wide, 80 high
    crop = crop_to_box(image, (10, 20, 30, 60))
    assert crop.size == (20, 40) and np.array_equal(np.asarray(crop), pixels[20:60, 10:30])
    assert crop_to_box(image, (10, 20, 30, 60), margin=0.25).size == (30, 60)  # 5 and 10 px on each side
    assert crop_to_box(image, (10, 20, 30, 60), margin=1.0).size == (50, 80)  # -10 -> 0, and 100 -> 80 at the bottom
    corner = crop_to_box(image, (90, 70, 100, 80), margin=1.0)
    assert corner.size == (20, 20) and np.array_equal(np.asarray(corner), pixels[60:80, 80:100])
    assert crop_to_box(image, (10.5, 20.2, 30.1, 59.9)).size == (21, 40)  # whole pixels outward
    assert crop_to_box(image, (100, 80, 100, 80)).size == (1, 1)  # an empty box at the edge: still one pixel
    for box, margin in (((30, 20, 10, 60), 0.0), ((10, 20, 30, 60), -0.1)):
        with pytest.raises(SISOInputError):
            crop_to_box(image, box, margin)


# ------------------------------------------------------------------ masks


def reference_components(mask: np.ndarray, diagonal: bool) -> list[set]:
    """Connected True regions by breadth-first search, pixel by pixel."""
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)] + ([(-1, -1), (-1, 1), (1, -1), (1, 1)] if diagonal else [])
    seen, regions = np.zeros_like(mask), []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start], region, queue = True, set(), deque([start])
        while queue:
            y, x = queue.popleft()
            region.add((y, x))
            for dy, dx in steps:
                p = (y + dy, x + dx)
                if 0 <= p[0] < mask.shape[0] and 0 <= p[1] < mask.shape[1] and mask[p] and not seen[p]:
                    seen[p] = True
                    queue.append(p)
        regions.append(region)
    return regions


def test_fill_holes_closes_a_ring_but_not_an_open_one():
    y, x = np.mgrid[:40, :50]
    radius = np.hypot(y - 20, x - 25)
    ring = (radius >= 8) & (radius <= 12)
    assert np.array_equal(fill_holes(ring), radius <= 12)
    opened = ring & ~((x > 25) & (abs(y - 20) <= 1))  # a cut through the wall joins the inside to the outside
    assert np.array_equal(fill_holes(opened), opened)
    # a hole that touches the border is not a hole
    edge = np.ones((10, 10), bool)
    edge[0, 4:6] = edge[1, 4:6] = False
    assert np.array_equal(fill_holes(edge), edge)


def test_fill_holes_and_largest_region_match_a_pixel_flood_fill():
    rng = np.random.RandomState(0)
    for _ in range(30):
        mask = rng.rand(12, 15) < rng.uniform(0.3, 0.7)
        outside = set()
        for region in reference_components(~mask, diagonal=False):
            if any(y in (0, 11) or x in (0, 14) for y, x in region):
                outside |= region
        expected = np.ones_like(mask)
        for p in outside:
            expected[p] = False
        assert np.array_equal(fill_holes(mask), expected)
        largest = max(reference_components(mask, diagonal=True), key=len)  # scan order: the first on a tie
        expected = np.zeros_like(mask)
        for p in largest:
            expected[p] = True
        assert np.array_equal(largest_region(mask), expected)
    assert not largest_region(np.zeros((4, 5), bool)).any()


@pytest.mark.parametrize("size", SIZES)
def test_segment_gives_a_bool_mask_of_the_image(segmenter, size):
    image = random_image(size, 1)
    box = (10, 20, size[0] - 10, size[1] - 20)
    raw = segmenter.segment(image, box, refine=False)
    assert raw.dtype == np.bool_ and raw.shape == (size[1], size[0])
    assert 0 < raw.mean() < 1
    assert np.array_equal(segmenter.segment(image, box), fill_holes(largest_region(raw)))
    union = segmenter.segment(image, box, multimask="union", refine=False)
    assert union.shape == raw.shape and (union >= raw).all()


def test_automatic_subject_mask(detector, segmenter, tmp_path):
    path = tmp_path / "scene.png"
    random_image(SIZES[1], 5).save(path)
    mask = automatic_subject_mask(str(path), "cat", detector, segmenter, box_threshold=0.0)
    assert mask.dtype == np.bool_ and mask.shape == (SIZES[1][1], SIZES[1][0]) and mask.any()
    with pytest.raises(SISOInputError) as caught:
        automatic_subject_mask(path, ["Dog", "toy"], detector, segmenter, box_threshold=1.01)
    message = str(caught.value)
    assert "\n" not in message and "scene.png" in message and "'dog' or 'toy'" in message and "mask_path" in message
    assert f"{BOX_THRESHOLD:g}" not in message and "1.01" in message  # the threshold that was used


# ------------------------------------------------------------------ loading errors


@pytest.mark.parametrize("case", ["missing", "file", "no config", "no weights", "wrong model", "hub id offline"])
@pytest.mark.parametrize("loader", [SubjectDetector, SubjectSegmenter])
def test_a_bad_model_is_a_one_line_error(loader, case, folders, tmp_path, offline):
    wrong = folders["segmenter"] if loader is SubjectDetector else folders["detector"]
    if case == "file":
        (tmp_path / "model.bin").write_bytes(b"")
    elif case == "no config":
        (tmp_path / "model.safetensors").write_bytes(b"")
    elif case == "no weights":
        own = folders["detector"] if loader is SubjectDetector else folders["segmenter"]
        shutil.copy(f"{own}/config.json", tmp_path / "config.json")
    name = {
        "missing": str(tmp_path / "nowhere"),
        "file": str(tmp_path / "model.bin"),
        "no config": str(tmp_path),
        "no weights": str(tmp_path),
        "wrong model": wrong,
        "hub id offline": "nobody/no-such-model",
    }[case]
    with pytest.raises(SISOInputError) as caught:
        loader.from_pretrained(name)
    message = str(caught.value)
    assert "\n" not in message and name in message
    assert "save_pretrained" in message  # names the expected layout
    if case == "hub id offline":
        assert "hf download nobody/no-such-model" in message
