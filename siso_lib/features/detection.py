"""Find the subject in an image: a box from Grounding-DINO, then a mask from SAM.

The editing stages "detect" and "segment" of the authors' `siso_editing_sdxl.py` (their
utils/grounding_sam_utils.py), and the crop the evaluation makes before it scores a generated
image. Models, through transformers:

* Grounding-DINO (Liu et al., arXiv 2303.05499), `AutoModelForZeroShotObjectDetection`, default
  "IDEA-Research/grounding-dino-tiny", box threshold 0.3 (the authors'), text threshold 0.25.
  `SubjectDetector.detect(images, labels)` -> one `Detection` or None per image: the
  highest-scoring box, xyxy = (x0, y0, x1, y1) in pixels of that input image (floats, clamped to
  it), its score in [0, 1] and which of the given class names it was found for.
* SAM (Kirillov et al., arXiv 2304.02643), `SamModel`, default "facebook/sam-vit-base".
  `SubjectSegmenter.segment(image, box)` -> numpy bool mask [H, W] of the image, prompted by the
  box; then, as the authors do, only the largest region is kept and its holes are filled (they
  fill the largest OpenCV contour; here `largest_region` + `fill_holes`, in numpy).
* `automatic_subject_mask(image, labels, detector, segmenter)` chains both (the top box only);
  `crop_to_box(image, box, margin)` crops to a box.

Where this differs from the authors' calls: they run transformers' zero-shot pipeline, one
forward pass per class name and no text threshold, and keep the union of SAM's three masks
(`segment(..., multimask="union")`); here all names share one prompt, as Grounding-DINO was
trained, and SAM's best mask by predicted IoU is the default. For one class name, the usual case,
the box and score are theirs (they truncate the box to whole pixels and do not clamp it).

Models are named as transformers names them: a hub id (downloaded into the hub cache) or a local
folder as `save_pretrained` writes it (model and processor together). Loading problems are one-line
SISOInputErrors. The tiny random-weight models of the tests and demos are offline/tiny_detectors.py.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image

from ..config import DEFAULT_BOX_THRESHOLD, DEFAULT_DETECTOR, DEFAULT_SEGMENTER  # noqa: F401 (exported here too)
from ..devices import torch_layers_only
from ..errors import SISOInputError, error_summary, setting
from ..io.model_paths import DETECTOR_FOLDER_LAYOUT, SEGMENTER_FOLDER_LAYOUT, check_local_transformers_folder, is_hub_id

BOX_THRESHOLD = DEFAULT_BOX_THRESHOLD  # the authors' threshold
TEXT_THRESHOLD = 0.25  # Grounding-DINO's usual value; it only decides which class name a box is given

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One box: xyxy in pixels of the image it was found in, score in [0, 1], the class name."""

    box: Box
    score: float
    label: str


# ------------------------------------------------------------------ loading


def _load(name_or_path: str, what: str, model_types: tuple[str, ...], layout: str, example: str, load):
    """`load(name_or_path)` -> (model, processor), with every failure as a one-line SISOInputError."""
    from transformers import AutoConfig

    check_local_transformers_folder(name_or_path, what, layout, example)
    try:
        model_type = AutoConfig.from_pretrained(name_or_path).model_type
        if model_type in model_types:
            return load(name_or_path)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        if is_hub_id(name_or_path) and isinstance(error, OSError):
            raise SISOInputError(
                f"{what} {name_or_path!r} is not in the Hugging Face cache and could not be downloaded "
                f"({error_summary(error, 120)}): run `hf download {name_or_path}` where the hub is reachable, "
                f"or give {layout}"
            ) from error
        raise SISOInputError(
            f"{what} {name_or_path!r} could not be loaded ({type(error).__name__}: {error_summary(error, 160)}): expected {layout}"
        ) from error
    # checked, because from_pretrained would otherwise load another architecture's weights with a warning
    raise SISOInputError(
        f"{what} {name_or_path!r} is a {model_type!r} model, not {' or '.join(map(repr, model_types))}: "
        f"give a hub id such as {example!r} or {layout}"
    )


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


# ------------------------------------------------------------------ detection


def _class_names(labels: Sequence[str] | str) -> list[str]:
    """Grounding-DINO was trained on lower-case phrases, each ended by "."; the dots are added to the prompt."""
    names = [labels] if isinstance(labels, str) else list(labels)
    names = [" ".join(name.lower().replace(".", " ").split()) for name in names]
    if not names or not all(names):
        raise SISOInputError(f"no class name to detect in {labels!r}: give one or more names such as 'dog'")
    return names


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _label_for(phrase: str, names: list[str]) -> str:
    """The class name a box was found for: Grounding-DINO reports the prompt tokens above the text
    threshold (e.g. "dog ." or ""), so the name sharing most words with them (the first on a tie)."""
    found = _words(phrase)
    return max(names, key=lambda name: len(_words(name) & found))


class SubjectDetector:
    """Zero-shot Grounding-DINO: images and class names -> the best box per image, or None."""

    def __init__(self, model, processor):
        self.model = model.eval().requires_grad_(False)
        self.processor = processor

    @classmethod
    def from_pretrained(
        cls, name_or_path: str = DEFAULT_DETECTOR, device: str | torch.device = "cpu", torch_dtype: torch.dtype | None = None
    ) -> "SubjectDetector":
        def load(name):
            from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

            model = AutoModelForZeroShotObjectDetection.from_pretrained(name, dtype=torch_dtype)
            torch_layers_only(model)
            return model, AutoProcessor.from_pretrained(name)

        model_types = ("grounding-dino", "mm-grounding-dino")
        model, processor = _load(str(name_or_path), "Grounding-DINO model", model_types, DETECTOR_FOLDER_LAYOUT, DEFAULT_DETECTOR, load)
        return cls(model.to(device), processor)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.no_grad()
    def detect(
        self,
        images: Sequence[Image.Image],
        labels: Sequence[str] | str,
        box_threshold: float = BOX_THRESHOLD,
        text_threshold: float = TEXT_THRESHOLD,
        batch_size: int = 8,
    ) -> list[Detection | None]:
        """The highest-scoring box of any of `labels` in each image (None where no box scores above
        `box_threshold`); `text_threshold` only decides which label a box is given.

        All labels go in one prompt ("cat. toy."). Images of one size are batched; sizes are not
        mixed in a batch, because the padding would change the backbone's features and so the result.
        """
        names = _class_names(labels)
        prompt = " ".join(f"{name}." for name in names)
        results: list[Detection | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault(image.size, []).append(index)
        for (width, height), indices in by_size.items():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                batch = [_rgb(images[i]) for i in chunk]
                inputs = self.processor(images=batch, text=[prompt] * len(chunk), return_tensors="pt")
                inputs = {key: value.to(self.device) for key, value in inputs.items()}
                inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
                outputs = self.model(**inputs)
                # `threshold` is the box threshold (older transformers releases called it `box_threshold`)
                found = self.processor.post_process_grounded_object_detection(
                    outputs, inputs["input_ids"], threshold=box_threshold, text_threshold=text_threshold,
                    target_sizes=[(height, width)] * len(chunk),
                )
                for index, result in zip(chunk, found):
                    results[index] = _top_detection(result, width, height, names)
        return results


def _top_detection(result: dict, width: int, height: int, names: list[str]) -> Detection | None:
    """The best box of one image's post-processed result, clamped to the image (its centre is
    inside it, its sides may not be)."""
    if len(result["scores"]) == 0:
        return None
    best = int(result["scores"].argmax())
    x0, y0, x1, y1 = result["boxes"][best].float().tolist()
    box = (min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height))
    return Detection(tuple(map(float, box)), float(result["scores"][best]), _label_for(result["text_labels"][best], names))


def crop_to_box(image: Image.Image, box: Sequence[float], margin: float = 0.0) -> Image.Image:
    """`image` cropped to `box` (xyxy pixels) widened by `margin` x the box's width/height on each
    side, clamped to the image; whole pixels outward, at least 1 x 1."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x0 <= x1 and y0 <= y1) or margin < 0:
        raise SISOInputError(
            f"cannot crop to box {tuple(box)} with margin {margin}: give (x0, y0, x1, y1) with x0 <= x1, y0 <= y1 and margin >= 0"
        )
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    width, height = image.size
    left = min(max(int(np.floor(x0 - dx)), 0), width - 1)
    top = min(max(int(np.floor(y0 - dy)), 0), height - 1)
    right = max(min(int(np.ceil(x1 + dx)), width), left + 1)
    bottom = max(min(int(np.ceil(y1 + dy)), height), top + 1)
    return image.crop((left, top, right, bottom))


# ------------------------------------------------------------------ masks


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every False region that does not reach the image border set True (the
    background is 4-connected, scipy's default structure)."""
    from scipy import ndimage

    return ndimage.binary_fill_holes(np.asarray(mask, dtype=bool))


def largest_region(mask: np.ndarray) -> np.ndarray:
    """Only the largest 8-connected True region of `mask` (by pixels; on a tie the first in row-major order)."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())[1:]  # label 0 is the background; labels run in row-major order
    return labels == int(sizes.argmax()) + 1


class SubjectSegmenter:
    """SAM prompted by one box: image + xyxy pixel box -> bool mask [H, W] of the image."""

    def __init__(self, model, processor):
        self.model = model.eval().requires_grad_(False)
        self.processor = processor

    @classmethod
    def from_pretrained(
        cls, name_or_path: str = DEFAULT_SEGMENTER, device: str | torch.device = "cpu", torch_dtype: torch.dtype | None = None
    ) -> "SubjectSegmenter":
        def load(name):
            from transformers import SamModel, SamProcessor

            model = SamModel.from_pretrained(name, dtype=torch_dtype)
            torch_layers_only(model)
            return model, SamProcessor.from_pretrained(name)

        model, processor = _load(str(name_or_path), "SAM model", ("sam",), SEGMENTER_FOLDER_LAYOUT, DEFAULT_SEGMENTER, load)
        return cls(model.to(device), processor)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.no_grad()
    def segment(
        self, image: Image.Image, box: Sequence[float], multimask: Literal["best", "union"] = "best", refine: bool = True
    ) -> np.ndarray:
        """Bool mask [H, W] of `image` for the object in `box` (xyxy pixels).

        SAM proposes three masks: "best" keeps the one with the highest predicted IoU, "union" their
        union (the authors' script). `refine` keeps the largest region and fills its holes (the
        authors' contour fill); without it the mask is SAM's as it is.
        """
        image = _rgb(image)
        inputs = self.processor(images=image, input_boxes=[[[float(v) for v in box]]], return_tensors="pt")
        outputs = self.model(
            pixel_values=inputs["pixel_values"].to(self.device, self.model.dtype),
            input_boxes=inputs["input_boxes"].to(self.device, self.model.dtype),
            multimask_output=True,
        )
        masks = self.processor.post_process_masks(
            outputs.pred_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )[0][0]  # [3, H, W]: the first image, its one box
        if multimask == "union":
            mask = masks.any(dim=0)
        elif multimask == "best":
            mask = masks[int(outputs.iou_scores[0, 0].argmax())]
        else:
            raise ValueError(f"multimask must be 'best' or 'union', not {multimask!r}")
        mask = mask.numpy().astype(bool)
        return fill_holes(largest_region(mask)) if refine else mask


def find_subject(
    image: Image.Image,
    labels: Sequence[str] | str,
    detector: SubjectDetector,
    box_threshold: float = BOX_THRESHOLD,
    text_threshold: float = TEXT_THRESHOLD,
    name: str | None = None,
) -> Detection:
    """The best-scoring Grounding-DINO box of `labels` in `image`; SISOInputError (one line, naming
    `name` or the image's file) when none reaches `box_threshold`."""
    name = name or (Path(image.filename).name if getattr(image, "filename", "") else "the image")
    names = _class_names(labels)
    detection = detector.detect([image], names, box_threshold=box_threshold, text_threshold=text_threshold)[0]
    if detection is None:
        wanted = " or ".join(repr(n) for n in names)
        raise SISOInputError(
            f"no {wanted} found in {name} (box threshold {box_threshold:g}): give the mask as a PNG with {setting('mask_path')}, or another class name"
        )
    return detection


def segment_subject(image: Image.Image, detection: Detection, segmenter: SubjectSegmenter, name: str | None = None) -> np.ndarray:
    """SAM's mask [H, W] (bool) of the detected box; SISOInputError when it holds no pixel."""
    name = name or (Path(image.filename).name if getattr(image, "filename", "") else "the image")
    mask = segmenter.segment(image, detection.box)
    if not mask.any():
        raise SISOInputError(
            f"SAM found no pixels of the {detection.label!r} box {tuple(round(v) for v in detection.box)} in {name}: "
            f"give the mask as a PNG with {setting('mask_path')}"
        )
    return mask


def automatic_subject_mask(
    image: Image.Image | str | os.PathLike,
    labels: Sequence[str] | str,
    detector: SubjectDetector,
    segmenter: SubjectSegmenter,
    box_threshold: float = BOX_THRESHOLD,
    text_threshold: float = TEXT_THRESHOLD,
) -> np.ndarray:
    """Bool mask [H, W] of the best-scoring object of `labels` in `image` (a PIL image or a path):
    its Grounding-DINO box (`find_subject`), segmented by SAM (`segment_subject`). SISOInputError
    (one line) when nothing is found."""
    name = None
    if not isinstance(image, Image.Image):
        name = Path(image).name
        try:
            opened = Image.open(image)
            opened.load()
        except (OSError, ValueError) as error:
            raise SISOInputError(f"cannot read the image {str(image)!r} ({error_summary(error, 120)}): give a PNG or JPEG file") from error
        image = opened
    detection = find_subject(image, labels, detector, box_threshold, text_threshold, name)
    return segment_subject(image, detection, segmenter, name)
