"""One whole SISO edit with its files: check, load, invert, optimise, save.

    outcome = run_edit(SISOEditConfig(input_image_path="scene.png", mask_path="mask.png",
                                      input_class="dog", prompt="a photo of a dog", ...),
                       "subject.png")
    outcome.artifacts.result_image      # the edited photo, at the scene photo's size
    outcome.result_square               # the best iteration's square, as the method made it

What a run folder holds (each file written atomically; a fresh folder unless --output_dir):

    result.png        the edited photo at the scene photo's size: the best iteration's square put
                      back into the scene, inside the mask only (compose.py); every pixel outside
                      the mask is the scene's own
    result_square.png the best iteration's image itself: the edit's resolution x resolution square
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
from ..io.model_paths import DETECTOR_FOLDER_LAYOUT, SEGMENTER_FOLDER_LAYOUT, check_local_transformers_folder, is_hub_id
from ..preflight import PreparedRun, check_in_hub_cache, check_inputs, prepare_output_dirs
from .inputs import load_scene, overlay
from .masks import SceneMask, load_mask, mask_image, square_mask

logger = logging.getLogger(__name__)

SCENE_IMAGE = "scene.png"
MASK_IMAGE = "mask.png"
BEFORE_AFTER = "before_after.png"
SQUARE_RESULT = "result_square.png"


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

    def check_in_hub_cache(self) -> None:
        """With HF_HUB_OFFLINE=1: a hub id among the models is in the local hub cache (one line, no torch).
        Run after every local path is checked, so a mistyped folder is named before a default model."""
        for name, what, option in ((self.detector, "Grounding-DINO", "detector_model"), (self.segmenter, "SAM", "segmenter_model")):
            if is_hub_id(name):
                check_in_hub_cache(name, "config.json", what, option)


@dataclass
class PreparedEdit:
    """An edit whose inputs passed every check that needs no model."""

    run: PreparedRun  # config, subject photo, output folders
    scene: object  # PIL image at the edit's resolution
    scene_info: dict
    mask: SceneMask | None  # None: made automatically from input_class
    mask_models: MaskModels | None = None  # for the automatic mask (mask None)
    scene_photo: object | None = None  # PIL image at the size the scene was read at (the edited photo's size)


@dataclass
class EditOutcome:
    result: object  # optimizer.SISOResult
    artifacts: object  # artifacts.RunArtifacts
    optimizer: object
    scene_image: str
    mask_image: str
    before_after: str | None
    result_square: str | None = None  # the edit's square itself (result_image is the full-size photo)

    def paths(self) -> dict[str, str | None]:
        """Every file of the edit: the run's (artifacts.as_dict()) plus scene_image, mask_image,
        before_after and result_square."""
        return {**self.artifacts.as_dict(), "scene_image": self.scene_image, "mask_image": self.mask_image,
                "before_after": self.before_after, "result_square": self.result_square}

    def labelled(self) -> list[tuple[str, str]]:
        """(label, path) of each file written, the edited photo first."""
        a = self.artifacts
        labels = (
            ("edited photo (full size)", a.result_image), ("edited square", self.result_square),
            ("before/after", self.before_after), ("mask", self.mask_image),
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
    """Validate the config, read both photos and the mask, check models and output folders (no torch).

    Every local path of the config (scene, mask, models) is made absolute first, so that run.json
    records where the files are whatever folder the run was started from."""
    config = config.replace()
    config.validate()
    config = config.with_absolute_paths().replace(
        input_image_path=os.path.abspath(config.input_image_path),
        mask_path=os.path.abspath(config.mask_path) if config.mask_path else config.mask_path,
    )
    config.validate()  # replace() empties the fields the family's recipe filled: fill them again
    photo, scene, scene_info = load_scene(config.input_image_path, config.resolution)
    mask, models = None, None
    if config.mask_path:
        mask = load_mask(config.mask_path, photo.size, config.resolution, tuple(scene_info["shown_size"]))
    else:
        models = MaskModels.from_config(config)
    config, subject = check_inputs(config, subject_image_path)  # the subject photo, the model paths (as preflight)
    if models is not None:
        models.check_in_hub_cache()  # after every local path: a mistyped folder is named first
    out, weights, created = prepare_output_dirs(output_dir, weights_dir, overwrite, f"edit-{Path(subject_image_path).stem}")
    return PreparedEdit(PreparedRun(config, subject, out, weights, created), scene, scene_info, mask, models, photo)


def automatic_mask(scene, input_class: str, device: str, models: MaskModels = MaskModels(), scene_name: str | None = None,
                   scene_size: tuple[int, int] | None = None) -> SceneMask:
    """Grounding-DINO's best box for `input_class` on the R x R scene, then SAM's mask in it, also
    scaled into the centre square of a scene photo of `scene_size` (default: the square itself);
    SISOInputError when nothing scores `models.box_threshold` or more. The description records the
    box (px of the R x R scene) and its score, which the command line prints."""
    import numpy as np

    from ..features.detection import SubjectDetector, SubjectSegmenter, find_subject, segment_subject

    detector = SubjectDetector.from_pretrained(models.detector, device=device)
    found = find_subject(scene, [input_class], detector, box_threshold=models.box_threshold, name=scene_name)
    segmented = segment_subject(scene, found, SubjectSegmenter.from_pretrained(models.segmenter, device=device), scene_name)
    mask = square_mask(np.asarray(segmented) > 0, scene_size or scene.size, f"the automatic mask of {input_class!r}")
    mask.info.update(detector_model=models.detector, segmenter_model=models.segmenter, box_threshold=models.box_threshold,
                     box=[round(v, 1) for v in found.box], score=round(float(found.score), 4))
    return mask


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
    mask = prepared.mask
    scene_name = Path(prepared.scene_info["path"]).name
    photo = prepared.scene_photo if prepared.scene_photo is not None else prepared.scene
    for note in prepared.scene_info["notes"]:
        (logger.warning if note.startswith("WARNING") else logger.info)("scene photo: %s", note.removeprefix("WARNING: "))
    if mask is None:
        try:
            mask = automatic_mask(
                prepared.scene, config.input_class, str(pick_device(config.device)),
                prepared.mask_models or MaskModels.from_config(config), scene_name, photo.size,
            )
        except BaseException:
            run.discard_if_empty()
            raise
        logger.info("mask: %r found in %s (score %.3f, box %s px)", config.input_class, scene_name, mask.info["score"], mask.info["box"])
    logger.info("mask: %s", mask.describe())
    for warning in mask.warnings:
        logger.warning("mask: %s", warning)
    mask_info = {**mask.info, "warnings": mask.warnings}
    import torch

    renoise = ReNoiseConfig(strength=config.inversion_max_step)
    task = EditTask(
        scene=pil_to_tensor(prepared.scene),
        mask=torch.from_numpy(mask.square.astype("float32"))[None, None],
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
    save_image(mask_path, mask_image(mask.square))
    before_after = square = None
    if outcome.result.best_image is not None:
        from .compose import paste_back

        edited = outcome.result.best_pil
        square = out / SQUARE_RESULT
        save_image(square, edited)
        save_image(outcome.artifacts.result_image, paste_back(photo, edited, mask.full))  # replaces the square save_run wrote
        before_after = out / BEFORE_AFTER
        save_image(before_after, before_after_strip(prepared.scene, mask.square, run.subject.image, edited))
    files = {"scene_image": scene_path, "mask_image": mask_path, "before_after": before_after, "result_square": square}
    _record_edit_files(Path(outcome.artifacts.run_json), files)
    return EditOutcome(outcome.result, outcome.artifacts, outcome.optimizer, str(scene_path), str(mask_path),
                       str(before_after) if before_after else None, str(square) if square else None)


def _record_edit_files(run_json: Path, files: dict[str, Path | None]) -> None:
    """Add the edit's own files to run.json's artifacts (rewritten atomically)."""
    import json

    from ..io.atomic import write_json

    record = json.loads(run_json.read_text())
    record.setdefault("artifacts", {}).update({name: str(path) if path else None for name, path in files.items()})
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
