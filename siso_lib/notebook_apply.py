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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .config import MODEL_FAMILIES, SISOConfig
from .errors import SISOInputError
from .lora_io import DIFFUSERS_WEIGHT_NAME, read_metadata, resolve_lora_path
from .notebook_run import DEFAULT_RUNS_ROOT

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
}


def find_lora(lora_path: str | Path | None, runs_root: str | Path = DEFAULT_RUNS_ROOT) -> Path:
    """The LoRA file named (a file or a run folder), or the newest one under runs_root."""
    if lora_path:
        return resolve_lora_path(lora_path)
    found = sorted(Path(runs_root).glob(f"**/{DIFFUSERS_WEIGHT_NAME}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SISOInputError(
            f"no {DIFFUSERS_WEIGHT_NAME} under {str(runs_root)!r}: run 01_generate_lora.ipynb first, or set lora_path"
        )
    return found[-1]


def _json_or_text(value: str):
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


@dataclass
class LoraInfo:
    path: Path
    metadata: dict[str, object] = field(default_factory=dict)  # the siso.* entries, decoded
    run: dict = field(default_factory=dict)  # run.json beside it, if any

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def model_family(self) -> str:
        """The family the LoRA was optimised on; a file without it predates FLUX and Sana: SDXL."""
        family = self.metadata.get("model_family")
        return family if family in MODEL_FAMILIES else "sdxl"

    @property
    def recipe(self) -> SISOConfig:
        """SISOConfig with the family's recipe (the library's defaults for this LoRA)."""
        return SISOConfig(model_family=self.model_family)

    @property
    def base_model(self) -> str:
        return str(self.metadata.get("base_model") or self.recipe.pretrained_model_name_or_path)

    def render_settings(self, num_inference_steps: int | None = None, guidance_scale: float | None = None) -> tuple[int, float]:
        """(steps, guidance) to render with: the values given, else the family's recipe."""
        recipe = self.recipe
        return (num_inference_steps or recipe.num_inference_steps,
                recipe.guidance_scale if guidance_scale is None else float(guidance_scale))

    @property
    def prompt(self) -> str:
        return str(self.metadata.get("prompt") or SISOConfig().prompt)

    @property
    def resolution(self) -> int:
        return int(self.metadata.get("resolution") or SISOConfig().resolution)

    @property
    def subject_image(self) -> Path | None:
        path = (self.run.get("subject_image") or {}).get("path")
        return Path(path) if path and Path(path).is_file() else None

    @property
    def result_image(self) -> Path | None:
        path = self.folder / "result.png"
        return path if path.is_file() else None

    def to_markdown(self) -> str:
        keys = ("model_family", "base_model", "prompt", "seed", "resolution", "num_inference_steps", "guidance_scale", "rank",
                "lora_alpha", "train_text_encoder", "steps_run", "best_step", "final_losses", "stop_reason")
        rows = "\n".join(f"| `{k}` | `{self.metadata[k]}` |" for k in keys if k in self.metadata)
        if "model_family" not in self.metadata:
            rows = f"| `model_family` | `{self.model_family}` (not stored: an SDXL LoRA) |\n" + rows
        return f"LoRA: `{self.path}`\n\n| stored in the LoRA file | value |\n| --- | --- |\n{rows}"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def lora_info(path: str | Path) -> LoraInfo:
    path = resolve_lora_path(path)
    raw = read_metadata(path)
    metadata = {k[len("siso."):]: _json_or_text(v) for k, v in raw.items() if k.startswith("siso.")}
    run = {}
    if (path.parent / "run.json").is_file():
        try:
            run = json.loads((path.parent / "run.json").read_text())
        except ValueError:
            run = {}
    return LoraInfo(path, metadata, run)


def load_pipeline_quietly(
    base_model: str, lora_path: str | Path, device: str = "auto", precision: str = "auto", model_family: str = "auto"
):
    """`inference.load_pipeline_with_lora` without progress bars (they are widgets in a notebook)."""
    from .inference import load_pipeline_with_lora
    from .notebook_run import quiet_model_loading

    quiet_model_loading()
    pipe = load_pipeline_with_lora(base_model, lora_path, device=device, precision=precision, model_family=model_family)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_device(pipe):
    """The device of a loaded pipeline's denoiser (inference.pipeline_device; imported on use: torch)."""
    from .inference import pipeline_device as device_of

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


def comparison_figure(prompts: Sequence[str], seeds: Sequence[int], base_rows, lora_rows):
    """One row per prompt: each seed without the LoRA, then the same seeds with it."""
    from matplotlib.figure import Figure

    columns = 2 * len(seeds)
    figure = Figure(figsize=(2.2 * columns, 2.35 * len(prompts) + 0.4), dpi=100)
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
    figure.tight_layout()
    return figure


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
