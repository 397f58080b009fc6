"""Using an optimised LoRA: load it into a base pipeline and render new prompts.

"Prompt simplification" (the paper's recipe): optimise with a simple prompt ("a photo of a
dog"), then reuse the LoRA with richer prompts ("a dog in the park") and, if wanted, more
inference steps. `render` draws each prompt with the same seeds, optionally with the LoRA
switched off or at another scale, so that with/without comparisons are fair.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from diffusers import StableDiffusionXLPipeline
from PIL import Image

from .devices import pick_device, pick_dtype
from .lora_io import resolve_lora_path
from .sdxl import load_sdxl_pipeline

ADAPTER = "siso"


def load_pipeline_with_lora(
    base_model: str,
    lora_path: str | os.PathLike | None,
    device: str = "auto",
    precision: str = "auto",
) -> StableDiffusionXLPipeline:
    """Base SDXL pipeline on `device`, with the LoRA file (or run folder) loaded as adapter 'siso'."""
    target = pick_device(device)
    pipe = load_sdxl_pipeline(base_model, torch_dtype=pick_dtype(precision, target))
    if lora_path is not None:
        path = resolve_lora_path(lora_path)
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=ADAPTER)
    return pipe.to(target)


@torch.no_grad()
def render(
    pipe: StableDiffusionXLPipeline,
    prompts: Sequence[str],
    seeds: Sequence[int] = (42,),
    num_inference_steps: int = 1,
    guidance_scale: float = 0.0,
    resolution: int = 512,
    lora_scale: float | None = 1.0,
) -> list[list[Image.Image]]:
    """images[i][j] = prompts[i] with seeds[j]; lora_scale None or 0 renders the base model."""
    has_lora = ADAPTER in getattr(pipe, "get_list_adapters", lambda: {})().get("unet", [])
    if has_lora:
        if lora_scale:
            pipe.enable_lora()
            pipe.set_adapters([ADAPTER], adapter_weights=[lora_scale])
        else:
            pipe.disable_lora()
    device = pipe.unet.device
    rows = []
    for prompt in prompts:
        row = []
        for seed in seeds:
            generator = torch.Generator(device=device).manual_seed(seed)
            row.append(
                pipe(
                    prompt,
                    num_inference_steps=num_inference_steps,
                    guidance_scale=guidance_scale,
                    height=resolution,
                    width=resolution,
                    generator=generator,
                ).images[0]
            )
        rows.append(row)
    if has_lora:
        pipe.enable_lora()
    return rows


def image_grid(rows: Sequence[Sequence[Image.Image]]) -> Image.Image:
    """Paste rows of equally sized images into one picture."""
    width, height = rows[0][0].size
    grid = Image.new("RGB", (width * max(len(r) for r in rows), height * len(rows)), "white")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            grid.paste(image, (j * width, i * height))
    return grid
