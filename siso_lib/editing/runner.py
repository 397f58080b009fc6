"""One whole SISO edit with its files: check, load, invert, optimise, save.

    outcome = run_edit(SISOEditConfig(input_image_path="scene.png", mask_path="mask.png",
                                      input_class="dog", prompt="a photo of a dog", ...),
                       "subject.png")
    outcome.artifacts.result_image      # the edited photo (the best iteration's)

What a run folder holds (each file written atomically; a fresh folder unless --output_dir):

    result.png        the edited scene (the best iteration's image)
    scene.png         the scene at the edit's resolution (what the background is compared with)
    mask.png          the mask at that resolution (white = where the subject goes)
    before_after.png  scene | mask overlay | subject photo | edited
    loss_curve.png    total, DINO, IR and background terms per iteration
    run.json          every setting, per-iteration losses, the inputs' hashes, ReNoise settings
    pytorch_lora_weights.safetensors, siso_lora_kohya.safetensors   the LoRA of the best iteration

Bad input (scene or subject unreadable, mask of the wrong size or empty, no object found for
the class) raises SISOInputError before anything is written; a folder made for the run is
removed again.

The automatic mask (no `mask_path`) is made by the config's `detector_model` (Grounding-DINO,
default the authors' IDEA-Research/grounding-dino-tiny) and `segmenter_model` (SAM, default
facebook/sam-vit-base), at `box_threshold` (the lowest Grounding-DINO box score that counts as
found, default the authors' 0.3).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..io.atomic import save_image
from ..config import DEFAULT_BOX_THRESHOLD, DEFAULT_DETECTOR, DEFAULT_SEGMENTER, SISOEditConfig
from ..errors import SISOInputError
from ..io.model_paths import DETECTOR_FOLDER_LAYOUT, SEGMENTER_FOLDER_LAYOUT, check_local_transformers_folder
from ..preflight import PreparedRun, preflight
from .inputs import binary_mask, load_mask, load_scene, mask_image, overlay

logger = logging.getLogger(__name__)

SCENE_IMAGE = "scene.png"
MASK_IMAGE = "mask.png"
BEFORE_AFTER = "before_after.png"


@dataclass(frozen=True)
class MaskModels:
    """What makes the automatic mask: Grounding-DINO, SAM, and the box threshold."""

    detector: str = DEFAULT_DETECTOR
    segmenter: str = DEFAULT_SEGMENTER
    box_threshold: float = DEFAULT_BOX_THRESHOLD

    @classmethod
    def from_config(cls, config: SISOEditConfig) -> "MaskModels":
        """The config's models (checked, as their range, by its validate()); SISOInputError for a local
        model folder that is missing or has no config.json (no torch)."""
        models = cls(config.detector_model, config.segmenter_model, config.box_threshold)
        check_local_transformers_folder(models.detector, "Grounding-DINO model", DETECTOR_FOLDER_LAYOUT, DEFAULT_DETECTOR)
        check_local_transformers_folder(models.segmenter, "SAM model", SEGMENTER_FOLDER_LAYOUT, DEFAULT_SEGMENTER)
        return models


@dataclass
class PreparedEdit:
    """An edit whose inputs passed every check that needs no model."""

    run: PreparedRun  # config, subject photo, output folders
    scene: object  # PIL image at the edit's resolution
    scene_info: dict
    mask: object | None  # bool array [R, R], or None: made automatically from input_class
    mask_info: dict | None
    mask_models: MaskModels | None = None  # for the automatic mask (mask None)


@dataclass
class EditOutcome:
    result: object  # optimizer.SISOResult
    artifacts: object  # artifacts.RunArtifacts
    optimizer: object
    scene_image: str
    mask_image: str
    before_after: str | None

    def paths(self) -> dict[str, str | None]:
        """Every file of the edit: the run's (artifacts.as_dict()) plus scene_image, mask_image, before_after."""
        return {**self.artifacts.as_dict(), "scene_image": self.scene_image, "mask_image": self.mask_image, "before_after": self.before_after}

    def labelled(self) -> list[tuple[str, str]]:
        """(label, path) of each file written, the edited photo first."""
        a = self.artifacts
        labels = (
            ("edited image", a.result_image), ("before/after", self.before_after), ("mask", self.mask_image),
            ("scene", self.scene_image), ("LoRA (diffusers)", a.lora_path), ("LoRA (ComfyUI/Kohya)", a.kohya_path),
            ("loss plot", a.loss_plot), ("run summary", a.run_json),
        )
        return [(label, path) for label, path in labels if path]


def edit_preflight(
    config: SISOEditConfig,
    subject_image_path: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> PreparedEdit:
    """Validate the config, read both photos and the mask, check models and output folders (no torch)."""
    config = config.replace()
    config.validate()
    _, scene, scene_info = load_scene(config.input_image_path, config.resolution)
    mask, mask_info, models = None, None, None
    if config.mask_path:
        mask, mask_info = load_mask(config.mask_path, tuple(scene_info["size"]), config.resolution)
    else:
        models = MaskModels.from_config(config)
    run = preflight(config, subject_image_path, output_dir, weights_dir, overwrite, label=f"edit-{Path(subject_image_path).stem}")
    return PreparedEdit(run, scene, scene_info, mask, mask_info, models)


def automatic_mask(scene, input_class: str, device: str, models: MaskModels = MaskModels(), scene_name: str | None = None):
    """Grounding-DINO's best box for `input_class` on the scene, then SAM's mask in it (bool [R, R]);
    SISOInputError when nothing scores `models.box_threshold` or more. The description records the
    box (px of the R x R scene) and its score, which the command line prints."""
    from ..features.detection import SubjectDetector, SubjectSegmenter, find_subject, segment_subject

    detector = SubjectDetector.from_pretrained(models.detector, device=device)
    found = find_subject(scene, [input_class], detector, box_threshold=models.box_threshold, name=scene_name)
    segmented = segment_subject(scene, found, SubjectSegmenter.from_pretrained(models.segmenter, device=device), scene_name)
    square, info = binary_mask(segmented, scene.width, f"the automatic mask of {input_class!r}")
    return square, {
        **info, "detector_model": models.detector, "segmenter_model": models.segmenter, "box_threshold": models.box_threshold,
        "box": [round(v, 1) for v in found.box], "score": round(float(found.score), 4),
    }


def run_edit(
    config: SISOEditConfig,
    subject_image_path: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    callbacks: list[Callable] | tuple = (),
    overwrite: bool = False,
    pipe=None,
) -> EditOutcome:
    """Check, optimise and save one edit (module doc); SISOInputError for bad input, nothing written."""
    return run_prepared_edit(edit_preflight(config, subject_image_path, output_dir, weights_dir, overwrite), callbacks, pipe=pipe)


def run_prepared_edit(prepared: PreparedEdit, callbacks: list[Callable] | tuple = (), pipe=None, log_every_epoch: bool = False) -> EditOutcome:
    """The heavy half of `run_edit`, for inputs `edit_preflight` has checked."""
    from ..devices import pick_device
    from ..io.images import pil_to_tensor
    from ..runner import run_prepared
    from .renoise import ReNoiseConfig
    from .task import EditTask

    run, config = prepared.run, prepared.run.config
    mask, mask_info = prepared.mask, prepared.mask_info
    scene_name = Path(prepared.scene_info["path"]).name
    if mask is None:
        try:
            mask, mask_info = automatic_mask(
                prepared.scene, config.input_class, str(pick_device(config.device)),
                prepared.mask_models or MaskModels.from_config(config), scene_name,
            )
        except BaseException:
            run.discard_if_empty()
            raise
        logger.info("mask: %r found in %s (score %.3f, box %s px), covers %.1f %% of the edit",
                    config.input_class, scene_name, mask_info["score"], mask_info["box"], 100 * mask_info["covered_fraction"])
    import torch

    renoise = ReNoiseConfig(strength=config.inversion_max_step)
    task = EditTask(
        scene=pil_to_tensor(prepared.scene),
        mask=torch.from_numpy(mask.astype("float32"))[None, None],
        scene_prompt=config.scene_prompt,
        renoise=renoise,
        background_weight=config.bg_mse_loss_weight,
    )
    record = {
        "task": "edit",
        "scene_image": prepared.scene_info,
        "mask": mask_info,
        "scene_prompt": config.scene_prompt,
        "renoise": dataclasses.asdict(renoise),
        # what editing renders with; parameters.num_inference_steps / guidance_scale are generation's
        "regeneration": {"schedule_steps": renoise.num_steps, "strength": renoise.strength, "guidance_scale": 1.0,
                         "num_grad_steps": config.num_grad_steps},
    }
    out = run.output_dir
    scene_path, mask_path = out / SCENE_IMAGE, out / MASK_IMAGE
    outcome = run_prepared(run, callbacks, log_every_epoch, extra_record=record, pipe=pipe, task=task)
    save_image(scene_path, prepared.scene)
    save_image(mask_path, mask_image(mask))
    before_after = None
    if outcome.result.best_image is not None:
        before_after = out / BEFORE_AFTER
        save_image(before_after, before_after_strip(prepared.scene, mask, run.subject.image, outcome.result.best_pil))
    _record_edit_files(Path(outcome.artifacts.run_json), scene_path, mask_path, before_after)
    return EditOutcome(outcome.result, outcome.artifacts, outcome.optimizer, str(scene_path), str(mask_path),
                       str(before_after) if before_after else None)


def _record_edit_files(run_json: Path, scene: Path, mask: Path, before_after: Path | None) -> None:
    """Add the edit's own files to run.json's artifacts (rewritten atomically)."""
    import json

    from ..io.atomic import write_json

    record = json.loads(run_json.read_text())
    record.setdefault("artifacts", {}).update(
        scene_image=str(scene), mask_image=str(mask), before_after=str(before_after) if before_after else None
    )
    write_json(run_json, record)


def before_after_strip(scene, mask, subject, edited):
    """scene | scene with the mask tinted | subject photo (fitted) | edited, side by side."""
    from PIL import Image

    size = scene.width
    fitted = subject.convert("RGB").copy()
    fitted.thumbnail((size, size))
    subject_cell = Image.new("RGB", (size, size), "white")
    subject_cell.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    cells = [scene.convert("RGB"), overlay(scene, mask), subject_cell, edited.convert("RGB").resize((size, size))]
    strip = Image.new("RGB", (size * len(cells), size), "white")
    for i, cell in enumerate(cells):
        strip.paste(cell, (i * size, 0))
    return strip
