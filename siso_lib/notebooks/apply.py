"""What `notebooks/02_apply_lora.ipynb` does: find a saved LoRA, render new prompts with and without it.

A LoRA of any model family (SDXL-Turbo, FLUX.1-schnell, Sana) applies: its base model and family
are read from the file's metadata (`siso.base_model`, `siso.model_family`; a file without them is
an SDXL LoRA), and rendering uses the family's recipe steps and guidance unless the user sets them.

    info = lora_info(find_lora(None))          # the newest run under outputs/runs
    pipe = load_pipeline_quietly(info.base_model, info.path, model_family=info.model_family)
    steps, guidance = info.render_settings()   # the family's recipe (SDXL-Turbo 1 / 0, Sana 20 / 4.5, ...)
    base = render(pipe, prompts, seeds, lora_scale=0)   # the same seeds with and without the LoRA
    tuned = render(pipe, prompts, seeds, lora_scale=1)
    comparison_figure(prompts, seeds, base, tuned)
    scores = score_renders(info, base_model, prompts, seeds, base, tuned)   # siso-eval's measures
    comparison_figure(prompts, seeds, base, tuned, scores.record)            # each image with its scores
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..config import MODEL_FAMILIES, SISOConfig
from ..errors import SISOInputError
from ..io.lora import DIFFUSERS_WEIGHT_NAME, resolve_lora_path
from ..io.run_record import LoraInfo, lora_info  # noqa: F401 (notebook 02 imports them from here)
from ..io.locations import runs_root as default_runs_root

PROMPT_VARIATIONS = ("{} on a beach at sunset", "{} in a snowy forest", "a watercolor painting of {}")
# the parameters cell of 02_apply_lora.ipynb and the type each value is read as (a test keeps them equal)
APPLY_PARAMETERS = {
    "lora_path": "str | None",
    "base_model": "str | None",
    "prompts": "list[str] | None",
    "seeds": "list[int]",
    "num_inference_steps": "int | None",
    "guidance_scale": "float | None",
    "resolution": "int | None",
    "lora_scales": "list[float]",
    "scale_prompt": "str | None",
    "device": "str | None",
    "precision": "str | None",
    "output_dir": "str | None",
    "evaluate": "bool",
}
# the scores shown under each image and in the tables (siso_lib.evaluation's names)
SCORE_LABELS = {"dino": "DINO", "clip_i": "CLIP-I", "ir": "IR", "clip_t": "CLIP-T", "seed_diversity": "seed diversity (ours)",
                "paper_diversity_mse": "paper's diversity (MSE to photo)"}
SCORE_MEANINGS = {"dino": "subject", "clip_i": "subject", "ir": "subject", "clip_t": "prompt", "seed_diversity": "across seeds",
                  "paper_diversity_mse": "less copying of the photo"}


def find_lora(lora_path: str | Path | None, runs_root: str | Path | None = None) -> Path:
    """The LoRA file named (a file or a run folder), or the newest one under runs_root."""
    if lora_path:
        return resolve_lora_path(lora_path)
    runs_root = runs_root or default_runs_root()
    found = sorted(Path(runs_root).glob(f"**/{DIFFUSERS_WEIGHT_NAME}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SISOInputError(
            f"no {DIFFUSERS_WEIGHT_NAME} under {str(runs_root)!r}: run 01_generate_lora.ipynb first, or set lora_path"
        )
    return found[-1]


def load_pipeline_quietly(
    base_model: str, lora_path: str | Path, device: str = "auto", precision: str = "auto", model_family: str = "auto"
):
    """`inference.load_pipeline_with_lora` without progress bars (they are widgets in a notebook)."""
    from ..inference import load_pipeline_with_lora
    from ..cli.common import quiet_libraries

    quiet_libraries()
    pipe = load_pipeline_with_lora(base_model, lora_path, device=device, precision=precision, model_family=model_family)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_device(pipe):
    """The device of a loaded pipeline's denoiser (inference.pipeline_device; imported on use: torch)."""
    from ..inference import pipeline_device as device_of

    return device_of(pipe)


def default_prompts(prompt: str) -> list[str]:
    """The optimisation prompt and richer ones built around it ("prompt simplification")."""
    subject = prompt
    for prefix in ("a photo of ", "a picture of ", "an image of "):
        if subject.lower().startswith(prefix):
            subject = subject[len(prefix):]
            break
    return [prompt] + [variation.format(subject) for variation in PROMPT_VARIATIONS]


def mean_abs_difference(images_a, images_b) -> float:
    """Mean absolute pixel difference (0-255) between two equally long lists of same-size images."""
    import numpy as np

    values = [np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean() for a, b in zip(images_a, images_b)]
    return float(np.mean(values)) if values else 0.0


def _interp(image) -> str:
    return "nearest" if max(image.size) < 256 else "antialiased"


def reference_figure(info: LoraInfo):
    """The subject photo and the run's best image, for reference."""
    from matplotlib.figure import Figure
    from PIL import Image

    panels = [(p, t) for p, t in ((info.subject_image, "subject photo"), (info.result_image, "best image of the run")) if p]
    figure = Figure(figsize=(3 * max(len(panels), 1), 3.2), dpi=100)
    axes = figure.subplots(1, max(len(panels), 1), squeeze=False)[0]
    for ax in axes:
        ax.set_axis_off()
    for ax, (path, title) in zip(axes, panels):
        image = Image.open(path).convert("RGB")
        ax.imshow(image, interpolation=_interp(image))
        ax.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def comparison_figure(prompts: Sequence[str], seeds: Sequence[int], base_rows, lora_rows, scores: dict | None = None):
    """One row per prompt: each seed without the LoRA, then the same seeds with it; with `scores`
    (score_renders' record) each image's scores under it."""
    from matplotlib.figure import Figure

    columns = 2 * len(seeds)
    per_image = {(row["prompt_index"], row["seed"], row["variant"]): row for row in (scores or {}).get("images", [])}
    figure = Figure(figsize=(2.2 * columns, (2.75 if scores else 2.35) * len(prompts) + 0.4), dpi=100)
    axes = figure.subplots(len(prompts), columns, squeeze=False)
    for i, prompt in enumerate(prompts):
        images = list(base_rows[i]) + list(lora_rows[i])
        for j, image in enumerate(images):
            ax = axes[i][j]
            ax.imshow(image, interpolation=_interp(image))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                kind = "base model" if j < len(seeds) else "with the LoRA"
                ax.set_title(f"{kind}\nseed {seeds[j % len(seeds)]}", fontsize=8)
            if j == 0:
                ax.set_ylabel("\n".join(_wrap(prompt, 22)), fontsize=7)
            row = per_image.get((i, seeds[j % len(seeds)], "base" if j < len(seeds) else "lora"))
            if row:
                ax.set_xlabel(score_caption(row), fontsize=6.5)
    figure.tight_layout()
    return figure


def score_caption(scores: dict) -> str:
    """'DINO 0.88  IR 0.93' over 'CLIP-I 0.81  CLIP-T 0.01': one image's scores, for its caption."""
    parts = [f"{SCORE_LABELS[name]} {scores[name]:.2f}" for name in ("dino", "ir", "clip_i", "clip_t") if scores.get(name) is not None]
    return "  ".join(parts[:2]) + ("\n" + "  ".join(parts[2:]) if parts[2:] else "")


@dataclass
class RenderScores:
    """The scores of the notebook's images (`record`: Evaluator.score's summary, per_prompt and
    images), or None with the reason in `note`."""

    record: dict | None
    note: str

    def to_markdown(self) -> str:
        if self.record is None:
            return f"Not scored: {self.note}"
        summary = self.record["summary"]
        lines = ["| score | base model | with the LoRA | LoRA - base |", "| --- | ---: | ---: | ---: |"]
        for name, label in SCORE_LABELS.items():
            if summary["lora"].get(name) is None:
                continue
            delta = (summary.get("delta") or {}).get(name)
            lines.append(f"| {label} ({SCORE_MEANINGS[name]}) | {_cell(summary['base'].get(name))} | {_cell(summary['lora'][name])} | "
                         f"{'' if delta is None else f'{delta:+.3f}'} |")
        shown = [name for name in ("dino", "clip_t") if summary["lora"].get(name) is not None]
        lines += ["", "| prompt | " + " | ".join(f"{SCORE_LABELS[n]} base → LoRA" for n in shown) + " |",
                  "| --- |" + " ---: |" * len(shown)]
        for entry in self.record["per_prompt"]:
            cells = [f"{_cell(entry['base'].get(n))} → {_cell(entry['lora'].get(n))}" for n in shown]
            lines.append(f"| {entry['prompt']} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + f"\n\n{self.note}"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def _cell(value) -> str:
    return "" if value is None else f"{value:.3f}"


def score_renders(info: LoraInfo, base_model: str, prompts: Sequence[str], seeds: Sequence[int], base_rows, lora_rows,
                  device="auto") -> RenderScores:
    """Score the images the notebook rendered (rows per prompt, one image per seed; the same seeds
    with and without the LoRA) as siso-eval does: DINO, CLIP-I, IR against the run's subject photo,
    CLIP-T against each prompt, seed diversity and the paper's diversity (MSE to the photo). Judges as siso-eval's "auto": the tiny
    random-weight DINO and CLIP beside a tiny offline base model, else DINO ViT-S/16 and CLIP
    ViT-B/32; IR with the run's checkpoint when it is at hand."""
    from PIL import Image

    from ..evaluation import Evaluator, Judges, guess_class_name
    from ..evaluation.defaults import DEFAULT_CLIP_PRETRAINED, judge_names
    from ..cli.common import quiet_libraries

    if info.subject_image is None:
        named = info.record.subject_image_path if info.record is not None else None
        return RenderScores(None, f"the subject photo {named!r} is not at hand any more" if named
                            else "no run.json beside the LoRA names the subject photo (the scores compare the images with it)")
    dino, clip, tiny = judge_names(base_model)
    ir_path = info.record.parameters.get("ir_features_path") if info.record is not None else None
    ir_path = ir_path if ir_path and Path(ir_path).is_file() else None
    quiet_libraries()
    judges = Judges.from_names(dino, clip, DEFAULT_CLIP_PRETRAINED, ir_path, device=device)
    images = {}
    for variant, rows in (("lora", lora_rows), ("base", base_rows)):
        for i, row in enumerate(rows):
            images.update({(i, int(seed), variant): image for seed, image in zip(seeds, row)})
    subject = Image.open(info.subject_image).convert("RGB")
    record = Evaluator(judges).score(images, list(prompts), [int(seed) for seed in seeds], subject, guess_class_name(info.prompt))
    record["subject_image"], record["prompts"], record["seeds"] = str(info.subject_image), list(prompts), [int(s) for s in seeds]
    judged = ", ".join(f"{k} {v}" for k, v in judges.names.items())
    note = (f"Judges: {judged}." + ("" if ir_path else " IR not scored: the run's IR checkpoint is not at hand.")
            + (" **Tiny random-weight judges** (an offline run): the numbers test the plumbing, not the picture." if tiny else ""))
    return RenderScores(record, note)


def scale_figure(prompt: str, seeds: Sequence[int], scales: Sequence[float], rows_by_scale):
    """One row per seed, one column per LoRA scale (0 = the base model)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2.2 * len(scales), 2.35 * len(seeds) + 0.6), dpi=100)
    axes = figure.subplots(len(seeds), len(scales), squeeze=False)
    for k, scale in enumerate(scales):
        for j, seed in enumerate(seeds):
            image = rows_by_scale[k][0][j]
            ax = axes[j][k]
            ax.imshow(image, interpolation=_interp(image))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_title(f"LoRA scale {scale:g}", fontsize=8)
            if k == 0:
                ax.set_ylabel(f"seed {seed}", fontsize=8)
    figure.suptitle(prompt, fontsize=9)
    figure.tight_layout()
    return figure


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])
