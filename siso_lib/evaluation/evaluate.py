"""Score a run's LoRA: render prompts with and without it (same seeds), then measure.

For each prompt p and seed s, the LoRA image x(p, s) and the base image x0(p, s) are scored
against the subject photo y (metrics.py):

    dino   = cos(DINO(x), DINO(y))          clip_i = cos(CLIP(x), CLIP(y))
    clip_t = cos(CLIP(x), CLIP_text(p))     ir     = cos(IR(x), IR(y))
    seed_diversity(p)   = mean over seed pairs of 1 - cos(DINO(x(p, s)), DINO(x(p, s')))   (ours)
    paper_diversity_mse = mean over pixels of (x - y)^2, RGB in [0, 1]    (the paper's Table 2 "diversity")

and the summary is the mean over all images (seed diversity: over prompts), for "lora", "base" and
their difference "delta" (lora - base): a LoRA that keeps the subject raises dino / clip_i / ir
above the base model's, and one that still follows the prompts keeps clip_t near the base's. The
two diversities measure different things (variety across seeds; distance from the photo, higher =
less copying) and carry different names so that neither is compared with the other's numbers.

`baseline="reference"` (FLUX.2 klein runs): the same prompts and seeds are also rendered by klein's
zero-shot reference mode, the subject photo as its reference image and no LoRA (the question a
klein user asks: is SISO better than no optimisation at all?), scored as variant "reference" with
"delta_reference" = lora - reference.

An edit run (run.json `task` "edit") is not a text-to-image LoRA: `Evaluator.evaluate` scores its
edited photo instead (edit_scores.py).

With `crop_subject`, DINO, CLIP-I and IR see the photo and each picture cropped to the box
Grounding-DINO finds for the class (the paper's protocol; an image with no box is scored whole
and marked `cropped: false`). CLIP-T always sees the whole picture.

This module imports torch only when it renders or scores, so `read_run` checks a folder cheaply.

What a run folder gains (written into a temporary folder, then swapped in: a killed evaluation
never leaves a half-written eval/):

    RUN/eval/metrics.json   settings, judges and library versions, per-image scores, per-prompt
                            diversity, summary
    RUN/eval/grid.png       subject photo, then per prompt the LoRA and base images with scores
    RUN/eval/images/        every rendered picture (p00-s0-lora.png, p00-s0-base.png, ...)
    RUN/run.json            gains "evaluation": the summary and where metrics.json is
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from ..io.atomic import replace_folder, save_image, write_json
from ..io.model_paths import family_title
from ..io.run_record import now_iso
from ..errors import SISOInputError, setting
from ..text import count
from .prompts import evaluation_prompts, guess_class_name
from .reports import (  # noqa: F401  (EVAL_DIR ... subject_photo_path: also imported from here)
    EVAL_DIR, METRICS_FILE, EvalReport, attach_to_run_json, check_output_dir, is_edit_run, read_run, subject_photo,
    subject_photo_path,
)

GRID_FILE = "grid.png"
IMAGES_DIR = "images"
SUBJECT_METRICS = ("dino", "clip_i", "ir")
METRICS = ("dino", "clip_i", "clip_t", "ir", "seed_diversity", "paper_diversity_mse")
SEED_DIVERSITY_DEFINITION = ("ours: mean over seed pairs of 1 - cos(DINO features) between images of the same prompt; mean over "
                             "prompts (not the paper's diversity)")
PAPER_DIVERSITY_DEFINITION = ("the paper's Table 2 'diversity': mean squared difference of RGB values in [0, 1] between the image and "
                              "the subject photo (its centre square at the image's size); higher = less copying of the photo")
DEFAULT_NUM_SEEDS = 4
REFERENCE = "reference"  # the baseline variant: klein draws the subject from the photo, no LoRA, no optimisation
REFERENCE_BASELINE = ("FLUX.2 klein's zero-shot reference mode: Flux2KleinPipeline(image=[subject photo], prompt) with the "
                      "LoRA disabled, same prompts and seeds; summary['reference'] are its scores, summary['delta_reference'] "
                      "= lora - reference (on tiny random-weight models this checks the plumbing only)")


@dataclass
class EvalSettings:
    """What to render. None means "as the run did it" (its steps, guidance and resolution)."""

    templates: Sequence[str] | None = None  # None: prompts.GENERIC_TEMPLATES
    class_name: str | None = None  # None: guessed from the run's prompt ("a photo of a cat" -> "cat")
    seeds: Sequence[int] = tuple(range(DEFAULT_NUM_SEEDS))
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    resolution: int | None = None
    lora_scale: float = 1.0
    with_base: bool = True  # also render without the LoRA (same seeds), for the delta
    crop_subject: bool = False
    box_threshold: float = 0.3  # Grounding-DINO's, for crop_subject (the authors' value)
    subject_image_path: str | None = None  # None: the photo run.json names
    base_model: str | None = None  # None: the base model the LoRA names (for a moved local folder)
    baseline: str | None = None  # "reference": FLUX.2 klein's zero-shot reference mode, from the subject photo


class Evaluator:
    """Loaded judges and the last base pipeline, reused across runs (a sweep loads each once).

        evaluator = Evaluator(Judges.from_names(...), device="auto")
        report = evaluator.evaluate("outputs/runs/<run>")       # writes RUN/eval/, updates run.json
    """

    def __init__(self, judges, device: str = "auto", precision: str = "auto", detector=None):
        self.judges = judges
        self.device = device
        self.precision = precision
        self.detector = detector  # features.detection.SubjectDetector, for crop_subject
        self._pipeline = None
        self._pipeline_key: tuple | None = None

    def pipeline(self, base_model: str, model_family: str, lora_path: str | os.PathLike):
        """The base pipeline with this LoRA as adapter 'siso' (the base is loaded once per model)."""
        from ..inference import apply_lora, load_pipeline_with_lora

        key = (base_model, model_family, self.device, self.precision)
        if self._pipeline_key != key:
            self._pipeline = None  # release the previous model before loading another
            self._pipeline = load_pipeline_with_lora(base_model, None, device=self.device, precision=self.precision, model_family=model_family)
            self._pipeline.set_progress_bar_config(disable=True)
            self._pipeline_key = key
        apply_lora(self._pipeline, lora_path)
        return self._pipeline

    def release_pipeline(self, keep_on_cpu: bool = True) -> None:
        """Drop the base pipeline and return its accelerator memory (a sweep's next run needs it).

        With `keep_on_cpu`, a pipeline on the CPU is kept: host memory is not contended and the next
        run of the same base model then skips loading it. The judges (small) stay loaded.
        """
        pipe = self._pipeline
        if pipe is None:
            return
        from ..inference import pipeline_device

        device = pipeline_device(pipe)
        if keep_on_cpu and device.type == "cpu":
            return
        self._pipeline = self._pipeline_key = None
        del pipe
        import gc

        import torch

        gc.collect()
        backend = getattr(torch, device.type, None)
        if backend is not None and hasattr(backend, "empty_cache"):
            backend.empty_cache()

    def evaluate(
        self,
        run_dir: str | os.PathLike,
        settings: EvalSettings | None = None,
        output_dir: str | os.PathLike | None = None,
        write: bool = True,
        progress: Callable[[str], None] | None = None,
    ) -> EvalReport:
        """Render and score one run; with `write`, save RUN/eval/ (or `output_dir`) and update run.json."""
        from ..inference import render

        settings = settings or EvalSettings()
        say = progress or (lambda message: None)
        started = time.perf_counter()
        info = read_run(run_dir)
        if is_edit_run(info):
            from .edit_scores import evaluate_edit

            return evaluate_edit(self.judges, info, settings.subject_image_path, output_dir, write, say)
        subject_path = subject_photo(info, settings.subject_image_path)
        class_name = (settings.class_name or guess_class_name(info.prompt)).strip()
        prompts = evaluation_prompts(class_name, settings.templates)
        seeds = [int(seed) for seed in settings.seeds]
        steps = settings.num_inference_steps or int(info.metadata.get("num_inference_steps") or info.recipe.num_inference_steps)
        guidance = settings.guidance_scale
        if guidance is None:
            guidance = float(info.metadata.get("guidance_scale", info.recipe.guidance_scale))
        resolution = settings.resolution or info.resolution

        say(f"rendering {count(len(prompts), 'prompt')} x {count(len(seeds), 'seed')} with{' and without' if settings.with_base else ''} the LoRA")
        base_model = settings.base_model or info.base_model
        pipe = self.pipeline(base_model, info.model_family, info.path)
        variants = {"lora": settings.lora_scale} | ({"base": 0.0} if settings.with_base else {})
        if settings.baseline == "reference":
            check_reference_baseline(info.model_family)
            variants[REFERENCE] = 0.0
            say("the baseline: FLUX.2 klein's zero-shot reference mode from the subject photo, without the LoRA")
        photo = Image.open(subject_path).convert("RGB")
        images = {}
        for variant, scale in variants.items():
            references = [photo] if variant == REFERENCE else None
            rows = render(pipe, prompts, seeds, num_inference_steps=steps, guidance_scale=guidance, resolution=resolution,
                          lora_scale=scale, reference_images=references)
            for i, row in enumerate(rows):
                for seed, image in zip(seeds, row):
                    images[(i, seed, variant)] = image
        say("scoring")
        crop = settings.box_threshold if settings.crop_subject else None
        record = self.score(images, prompts, seeds, photo, class_name, crop)
        if REFERENCE in variants:
            record["baseline"] = REFERENCE_BASELINE
        record.update(
            run=str(info.folder.absolute()),
            lora=str(info.path.absolute()),
            model_family=info.model_family,
            base_model=base_model,
            subject_image=str(subject_path.absolute()),
            class_name=class_name,
            class_name_source="given" if settings.class_name else f"guessed from the run's prompt {info.prompt!r}",
            prompts=prompts,
            seeds=seeds,
            render=dict(num_inference_steps=steps, guidance_scale=guidance, resolution=resolution, lora_scale=settings.lora_scale),
            elapsed_seconds=round(time.perf_counter() - started, 3),
            evaluated_at=now_iso(),
        )
        report = EvalReport(_ordered(record), None, images)
        if write:
            report.output_dir = write_report(report, Path(output_dir) if output_dir else info.folder / EVAL_DIR, subject_path)
            if report.output_dir == (info.folder / EVAL_DIR).absolute():
                # run.json (and a sweep's results.csv) describe the run's own eval/, never a side copy
                attach_to_run_json(info.folder, report)
        return report

    def score(self, images: dict, prompts: list[str], seeds: list[int], subject: Image.Image, class_name: str,
              crop_threshold: float | None = None) -> dict:
        """The metrics record (without run details) of rendered `images` {(prompt, seed, variant): PIL}.

        `crop_threshold`: crop to the class's Grounding-DINO box found at this box threshold (None: no crop).
        """
        crop_subject = crop_threshold is not None
        from ..io.run_folder import package_versions
        from .metrics import diversity, mean, mse_to_photo, similarity_to

        keys = list(images)
        pictures = [images[key] for key in keys]
        subject_whole = subject
        judged, cropped, cropped_subject = pictures, [False] * len(pictures), False
        if crop_subject:
            judged, cropped = self._crop([*pictures, subject], class_name, crop_threshold)
            subject, judged, cropped_subject, cropped = judged[-1], judged[:-1], cropped[-1], cropped[:-1]
        features = self.judges.image_features(judged)
        reference = self.judges.image_features([subject])
        per_image = {name: similarity_to(features[judge], reference[judge][0]).tolist()
                     for name, judge in (("dino", "dino"), ("clip_i", "clip"), ("ir", "ir")) if judge in features}
        if "clip" in self.judges.names:
            whole = self.judges.image_features(pictures, ("clip",))["clip"] if crop_subject else features["clip"]
            text = self.judges.text_features(prompts)
            per_image["clip_t"] = [float(similarity_to(whole[n : n + 1], text[key[0]])[0]) for n, key in enumerate(keys)]
        per_image["paper_diversity_mse"] = [mse_to_photo(picture, subject_whole) for picture in pictures]
        rows = [
            {"prompt_index": key[0], "prompt": prompts[key[0]], "seed": key[1], "variant": key[2],
             "file": f"{IMAGES_DIR}/{image_name(key)}", "cropped": cropped[n],
             **{name: round(values[n], 6) for name, values in per_image.items()}}
            for n, key in enumerate(keys)
        ]
        variants = list(dict.fromkeys(key[2] for key in keys))
        per_prompt = []
        for i, prompt in enumerate(prompts):
            entry = {"prompt_index": i, "prompt": prompt}
            for variant in variants:
                index = [n for n, key in enumerate(keys) if key[0] == i and key[2] == variant]
                values = {name: mean(per_image[name][n] for n in index) for name in per_image}
                if "dino" in features:
                    values["seed_diversity"] = diversity(features["dino"][index])
                entry[variant] = _rounded(values)
            per_prompt.append(entry)
        summary = {
            variant: _rounded({name: mean(p[variant].get(name) for p in per_prompt) for name in METRICS if name in per_prompt[0][variant]})
            for variant in variants
        }
        for other, name in (("base", "delta"), (REFERENCE, "delta_" + REFERENCE)):
            if other in summary:
                summary[name] = _rounded({metric: summary["lora"][metric] - summary[other][metric] for metric in summary["lora"]
                                          if summary["lora"][metric] is not None and summary[other].get(metric) is not None})
        return {
            "summary": summary,
            "judges": dict(self.judges.names) | ({"detector": self.detector.model.name_or_path} if crop_subject else {}),
            "crop_subject": crop_subject,
            "box_threshold": crop_threshold,
            "subject_photo_cropped": cropped_subject,
            "definitions": {
                "dino": "cos(DINO(image), DINO(subject photo))",
                "clip_i": "cos(CLIP image(image), CLIP image(subject photo))",
                "clip_t": "cos(CLIP image(image), CLIP text(prompt))",
                "ir": "cos(IR(image), IR(subject photo))",
                "seed_diversity": SEED_DIVERSITY_DEFINITION,
                "paper_diversity_mse": PAPER_DIVERSITY_DEFINITION,
            },
            "per_prompt": per_prompt,
            "images": rows,
            "versions": package_versions(),
        }

    def _crop(self, images: list[Image.Image], class_name: str, threshold: float) -> tuple[list[Image.Image], list[bool]]:
        """Each image cropped to the class's best Grounding-DINO box (whole if none), and whether it was."""
        from ..features.detection import crop_to_box

        if self.detector is None:
            raise SISOInputError(f"crop_subject needs a Grounding-DINO detector: pass {setting('detector_model')} (or Evaluator(detector=...))")
        detections = self.detector.detect(images, class_name, box_threshold=threshold)
        cropped = [crop_to_box(image, found.box) if found else image for image, found in zip(images, detections)]
        return cropped, [found is not None for found in detections]


def check_reference_baseline(model_family: str) -> None:
    """The zero-shot baseline exists for FLUX.2 klein only (its pipeline takes reference images)."""
    if model_family != "flux2_klein":
        raise SISOInputError(f"the reference baseline is FLUX.2 klein's zero-shot reference mode; this is {family_title(model_family)} run: "
                             "drop the baseline")


def image_name(key: tuple[int, int, str]) -> str:
    prompt_index, seed, variant = key
    return f"p{prompt_index:02d}-s{seed}-{variant}.png"


def _rounded(values: dict) -> dict:
    return {name: (None if value is None else round(float(value), 6)) for name, value in values.items()}


def _ordered(record: dict) -> dict:
    first = ("run", "lora", "model_family", "base_model", "subject_image", "class_name", "class_name_source", "prompts",
             "seeds", "render", "crop_subject", "judges", "summary", "definitions")
    return {key: record[key] for key in first if key in record} | {k: v for k, v in record.items() if k not in first}


def write_report(report: EvalReport, output_dir: Path, subject_path: Path) -> Path:
    """Write metrics.json, grid.png and images/ into a fresh folder, then swap it in for `output_dir`."""
    from .grid import score_grid

    output_dir = check_output_dir(output_dir)
    with replace_folder(output_dir) as staging:
        for key, image in report.images.items():
            save_image(staging / IMAGES_DIR / image_name(key), image)
        save_image(staging / GRID_FILE, score_grid(report.record, report.images, Image.open(subject_path)))
        write_json(staging / METRICS_FILE, report.record)
    return output_dir
