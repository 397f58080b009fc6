"""The model card: a `README.md` beside every run's LoRA, as diffusers' training scripts write one.

The Hugging Face Hub shows a repository's README.md as its model page and reads its YAML front
matter (base_model, licence, tags, the prompt, a widget with the result image). So a run folder
uploaded as it is (`hf upload user/name RUN_FOLDER`) becomes a proper LoRA page. The card is built
with huggingface_hub's `ModelCard` / `ModelCardData` (no template download, no network) and
written atomically.

What it can know offline: the base model's hub id (given, or read from a hub-cache folder
`.../models--org--name/snapshots/<hash>`; a plain local folder has none, and the card says so),
and the licence of the base models this project names (KNOWN_LICENCES, read from their model
pages); any other licence is left out and the card tells the reader to check the base model's.
A README.md already in the folder that is not a SISO card (no `siso` tag) is never replaced.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .atomic import atomic_path

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
PAPER = "https://arxiv.org/abs/2503.16025"
# the licences the base models' own model pages declare (front matter: license, license_name, license_link)
KNOWN_LICENCES: dict[str, dict[str, str]] = {
    "stabilityai/sdxl-turbo": {"license": "other", "license_name": "sai-nc-community",
                               "license_link": "https://huggingface.co/stabilityai/sdxl-turbo/blob/main/LICENSE.md"},
    "stabilityai/stable-diffusion-xl-base-1.0": {"license": "openrail++"},
    "black-forest-labs/FLUX.1-schnell": {"license": "apache-2.0"},
    "black-forest-labs/FLUX.2-klein-4B": {"license": "apache-2.0"},
}
FAMILY_TAGS = {"sdxl": "stable-diffusion-xl", "flux": "flux", "sana": "sana", "flux2_klein": "flux"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SNAPSHOT = re.compile(r"models--([^/]+?)--([^/]+)/snapshots/[^/]+/?$")


# how ComfyUI users apply the LoRA, per family (io/lora.py writes the Kohya copy for SDXL only)
COMFYUI_USE = {
    "sdxl": "In ComfyUI load `siso_lora_kohya.safetensors` with a LoRA loader.",
    "flux": "In ComfyUI load `pytorch_lora_weights.safetensors` with a LoRA loader (it reads these keys as they are).",
    "sana": "ComfyUI's core has no Sana model, so its LoRA loaders cannot apply this file; use diffusers as above.",
    "flux2_klein": "ComfyUI 0.3.64 has no FLUX.2 model, so its LoRA loader cannot apply this file; use diffusers as above.",
}

def hub_id_of(name_or_path: str) -> str | None:
    """The hub repository id of a base model: the id itself, or the one a hub-cache snapshot
    folder is named after; None for a plain local folder."""
    if not name_or_path:
        return None
    found = SNAPSHOT.search(str(name_or_path).replace("\\", "/"))
    if found:
        return f"{found.group(1)}/{found.group(2)}"
    if Path(name_or_path).exists():
        return None
    return name_or_path if HUB_ID.match(name_or_path) else None


def card_data(config, result, task: str = "generate", image_name: str | None = None) -> ModelCardData:
    """The front matter: base model, licence, tags, the prompt and the widget (with `image_name`)."""
    base = hub_id_of(config.pretrained_model_name_or_path)
    edit = task == "edit"
    tags = ["lora", "diffusers", "siso", "image-to-image" if edit else "text-to-image"]
    tags += [FAMILY_TAGS[config.family]] if config.family in FAMILY_TAGS else []
    tags += ["siso-editing"] if edit else []
    widget = [{"text": config.prompt, "output": {"url": image_name}}] if image_name else None
    return ModelCardData(
        base_model=base, library_name="diffusers", pipeline_tag="image-to-image" if edit else "text-to-image", tags=tags,
        instance_prompt=config.prompt, widget=widget, **KNOWN_LICENCES.get(base or "", {}),
    )


def card_text(config, result, task: str = "generate", image_name: str | None = None) -> str:
    """The whole README.md: front matter, then what the LoRA is, how it was made and how to use it."""
    data = card_data(config, result, task, image_name)
    base = data.base_model or config.pretrained_model_name_or_path
    losses = ", ".join(f"{name} {value:.4f}" for name, value in (result.best_losses or {}).items())
    licence = ("The LoRA is bound by the base model's licence: "
               + (f"`{data.license_name or data.license}`." if data.license else "check the base model's model page (not known offline)."))
    what = ("the UNet LoRA of a SISO **edit**: optimised so that the subject of one photo is drawn into one scene photo "
            "(`result.png` is that edit)" if task == "edit" else
            "a SISO LoRA: optimised so that the base model draws the subject of ONE photo (`result.png` is its best image)")
    usage = ("" if task == "edit" else f"""
## Use

```python
import torch
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained({base!r}, torch_dtype=torch.{"float16" if config.family == "sdxl" else "bfloat16"})
pipe.to(torch.accelerator.current_accelerator(check_available=True) or "cpu")  # CUDA, XPU or MPS, else the CPU
pipe.load_lora_weights("<this folder or repository>")
image = pipe({config.prompt!r}, num_inference_steps={config.num_inference_steps}, guidance_scale={config.guidance_scale}).images[0]
```

{COMFYUI_USE[config.family]}
""")
    body = f"""
# SISO LoRA: {config.prompt}

This is {what}.

Made with [SISO]({PAPER}) (Single Image Iterative Subject-driven Generation and Editing): no
training set, one photo, iterations that score each generated image against the photo with DINO
and IR features and step the LoRA.

* Base model: `{base}`{'' if data.base_model else ' (a local folder: not a hub repository)'}
* Prompt: `{config.prompt}`
* Resolution {config.resolution}, seed {config.seed}, LoRA rank {config.rank}
* Iterations run: {result.steps_run}; best iteration: {result.best_step}; its losses: {losses or 'none'}
* Files: `pytorch_lora_weights.safetensors` (diffusers){", `siso_lora_kohya.safetensors` (Kohya / ComfyUI keys)" if config.family == "sdxl" else ""}
{usage}
## Licence

{licence}
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"


def is_siso_card(path: Path) -> bool:
    """Whether `path` is a model card this project wrote (its tags hold `siso`)."""
    try:
        return "siso" in (ModelCard.load(path).data.tags or [])
    except Exception:  # noqa: BLE001 - any unreadable card is someone else's
        return False


def write_model_card(folder: str | Path, config, result, task: str = "generate", image: str | Path | None = None) -> str | None:
    """Write README.md into `folder` (the LoRA's); its path, or None when a README.md that is not a
    SISO card is already there (kept, and said in one log line). `image` is shown as the widget
    when it lies in `folder` (the hub resolves the widget's path inside the repository)."""
    folder = Path(folder)
    path = folder / CARD_NAME
    if path.exists() and not is_siso_card(path):
        logger.warning("kept the README.md in %s (not a SISO model card): no model card written", folder)
        return None
    image_name = Path(image).name if image and Path(image).parent.absolute() == folder.absolute() else None
    with atomic_path(path) as temporary:
        Path(temporary).write_text(card_text(config, result, task, image_name), encoding="utf-8")
    return str(path)
