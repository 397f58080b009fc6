"""Score an edit run (siso-edit, notebook 04) by what it produced, as the paper's Table 3 does.

An edit's LoRA is not a text-to-image LoRA (it was optimised on one scene, from one inverted
latent); rendering prompts with it would measure nothing the user asked for. So the edited photo
is scored, against the subject photo y and the scene s, on the edit's square (the run's
`result_square.png`, `scene.png` and `mask.png`, R x R):

    subject kept (on the masked region: both pictures cropped to the mask's bounding box)
        dino = cos(DINO(crop(edited)), DINO(y))     clip_i = cos(CLIP(crop(edited)), CLIP(y))
        ir   = cos(IR(crop(edited)), IR(y))
    background kept (outside the mask, RGB in [0, 1])
        background_mse = mean over the unmasked pixels of (edited - s)^2

The paper measures the background with LPIPS; LPIPS needs pretrained network weights that no
well-kept, installed package provides offline, so the MSE (the quantity the edit's own background
term minimises) is reported under its own name. The same scores of the scene before the edit
("scene": its masked region against the subject; background 0) give the change the edit made
("delta" = edited - scene).

Writes RUN/eval/metrics.json and RUN/eval/grid.png (swapped in whole, as a generation run's) and
the summary into run.json's "evaluation".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import SISOInputError
from ..io.atomic import replace_folder, save_image, write_json
from ..io.run_record import now_iso

EDIT_METRICS = ("dino", "clip_i", "ir", "background_mse")
FILES = {"edited": "result_square", "scene": "scene_image", "mask": "mask_image"}  # run.json artifacts
DEFINITIONS = {
    "dino": "cos(DINO(edited photo cropped to the mask's box), DINO(subject photo))",
    "clip_i": "cos(CLIP image(edited photo cropped to the mask's box), CLIP image(subject photo))",
    "ir": "cos(IR(edited photo cropped to the mask's box), IR(subject photo))",
    "background_mse": "mean squared difference of RGB values in [0, 1] between the edited photo and the scene, outside the "
                      "mask (the paper's Table 3 uses LPIPS here; not available offline)",
}


def edit_files(info) -> dict[str, Path]:
    """The edit's square, scene and mask (absolute paths from run.json); SISOInputError (one line)
    when the run predates `result_square.png` or a file is gone."""
    artifacts = info.record.artifacts if info.record is not None else {}
    files = {}
    for name, key in FILES.items():
        path = artifacts.get(key)
        if not path or not Path(path).is_file():
            raise SISOInputError(
                f"edit run {str(info.folder)!r} has no {key.replace('_', ' ')} ({path or 'not recorded'}): an edit is scored on "
                "its edited photo, scene and mask; run siso-edit again to get them"
            )
        files[name] = Path(path)
    return files


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the True pixels of a bool [H, W] mask."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def evaluate_edit(judges, info, subject_image_path: str | None = None, output_dir=None, write: bool = True,
                  progress: Callable[[str], None] | None = None):
    """Score one edit run (module doc) with loaded `judges`; an `EvalReport` (images: the crops)."""
    from ..io.run_folder import package_versions
    from .metrics import masked_mse, similarity_to
    from .reports import EVAL_DIR, METRICS_FILE, EvalReport, attach_to_run_json, check_output_dir, subject_photo

    say = progress or (lambda message: None)
    started = time.perf_counter()
    files = edit_files(info)
    subject_path = subject_photo(info, subject_image_path)
    with Image.open(files["edited"]) as edited, Image.open(files["scene"]) as scene, Image.open(files["mask"]) as mask_file:
        edited, scene = edited.convert("RGB"), scene.convert("RGB")
        mask = np.asarray(mask_file.convert("L").resize(edited.size, Image.Resampling.NEAREST)) > 127
    if scene.size != edited.size:
        scene = scene.resize(edited.size, Image.Resampling.BICUBIC)
    if not mask.any() or mask.all():
        raise SISOInputError(f"the mask of edit run {str(info.folder)!r} is {'empty' if not mask.any() else 'everywhere'}: nothing to score")
    box = mask_box(mask)
    crops = {"edited": edited.crop(box), "scene": scene.crop(box)}
    say(f"scoring the edited photo (the mask's region, {box[2] - box[0]}x{box[3] - box[1]} px, and the background)")
    with Image.open(subject_path) as photo:
        subject = photo.convert("RGB")
    features = judges.image_features(list(crops.values()))
    reference = judges.image_features([subject])
    summary = {}
    for n, variant in enumerate(crops):
        values = {name: round(float(similarity_to(features[judge][n : n + 1], reference[judge][0])[0]), 6)
                  for name, judge in (("dino", "dino"), ("clip_i", "clip"), ("ir", "ir")) if judge in features}
        picture = edited if variant == "edited" else scene
        values["background_mse"] = round(masked_mse(np.asarray(picture, np.float64) / 255, np.asarray(scene, np.float64) / 255, ~mask), 8)
        summary[variant] = values
    summary["delta"] = {name: round(summary["edited"][name] - summary["scene"][name], 8) for name in summary["edited"]}
    record = {
        "task": "edit",
        "run": str(info.folder.absolute()),
        "lora": str(info.path.absolute()),
        "subject_image": str(subject_path.absolute()),
        "files": {name: str(path) for name, path in files.items()},
        "region_box": list(box),
        "mask_fraction": round(float(mask.mean()), 4),
        "judges": dict(judges.names),
        "summary": summary,
        "definitions": DEFINITIONS,
        "versions": package_versions(),
        "elapsed_seconds": round(time.perf_counter() - started, 3),
        "evaluated_at": now_iso(),
    }
    report = EvalReport(record, None, {})
    if write:
        target = check_output_dir(Path(output_dir) if output_dir else info.folder / EVAL_DIR)
        with replace_folder(target) as staging:
            save_image(staging / "grid.png", edit_grid(subject, scene, edited, mask, crops, summary))
            write_json(staging / METRICS_FILE, record)
        report.output_dir = target
        if target == (info.folder / EVAL_DIR).absolute():
            attach_to_run_json(info.folder, report)
    return report


def edit_grid(subject, scene, edited, mask, crops, summary, cell: int = 192) -> Image.Image:
    """subject | scene with the mask's box | edited | the two crops, with the scores under them."""
    from .grid import _fit, _score

    font = ImageFont.load_default(size=12)
    left, top, right, bottom = mask_box(mask)
    framed = scene.copy()
    ImageDraw.Draw(framed).rectangle((left, top, right - 1, bottom - 1), outline=(255, 64, 64))
    cells = [(subject, "subject photo"), (framed, "scene, mask's box"), (edited, "edited"),
             (crops["scene"], "scene's region"), (crops["edited"], "edited region")]
    canvas = Image.new("RGB", (cell * len(cells), cell + 4 * 16), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (image, label) in enumerate(cells):
        canvas.paste(_fit(image, cell), (i * cell, 0))
        draw.text((i * cell + 4, cell + 2), label, fill="black", font=font)
    for row, variant in enumerate(("scene", "edited")):
        values = summary[variant]
        line = f"{variant}: " + "  ".join(f"{name} {_score(values[name]) if name != 'background_mse' else f'{values[name]:.4f}'}"
                                        for name in EDIT_METRICS if name in values)
        draw.text((4, cell + 18 + 16 * row), line, fill="black", font=font)
    return canvas
