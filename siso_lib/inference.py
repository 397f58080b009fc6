"""Using an optimised LoRA: load it into a base pipeline and render new prompts.

"Prompt simplification" (the paper's recipe): optimise with a simple prompt ("a photo of a
dog"), then reuse the LoRA with richer prompts ("a dog in the park") and, if wanted, more
inference steps. `render` draws each prompt with the same seeds, optionally with the LoRA
switched off or at another scale, so that with/without comparisons are fair. It leaves the
pipeline as it found it (`preserved_lora_state`), also when it raises: a later `pipe(...)` or
`pipe.fuse_lora()` sees the user's own adapter settings, not the last scale rendered.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from diffusers import StableDiffusionXLPipeline
from PIL import Image

from .devices import pick_device, pick_dtype
from .errors import SISOInputError, error_summary
from .lora_io import resolve_lora_path
from .sdxl import load_sdxl_pipeline

ADAPTER = "siso"


def _modules(pipe) -> list[torch.nn.Module]:
    return [component for component in pipe.components.values() if isinstance(component, torch.nn.Module)]


@contextmanager
def preserved_lora_state(pipe) -> Iterator[None]:
    """Restore every LoRA layer's scales, active adapters, on/off switch and requires_grad on exit.

    `set_adapters`, `enable_lora` and `disable_lora` change these in place on each peft layer
    (`scaling`, `active_adapters`, `disable_adapters`); restoring them layer by layer gives back
    exactly the state before, whatever adapters and weights the user had set.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for module in _modules(pipe) for m in module.modules() if isinstance(m, BaseTunerLayer)]
    saved = [(layer, dict(getattr(layer, "scaling", {})), list(layer.active_adapters), layer.disable_adapters) for layer in layers]
    grads = [(p, p.requires_grad) for module in _modules(pipe) for p in module.parameters()]
    try:
        yield
    finally:
        for layer, scaling, active, disabled in saved:
            layer.set_adapter(active)
            layer.enable_adapters(not disabled)
            if scaling:
                layer.scaling.clear()
                layer.scaling.update(scaling)
        for parameter, requires_grad in grads:
            parameter.requires_grad_(requires_grad)


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
        try:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=ADAPTER)
        except Exception as error:  # safetensors, peft and diffusers raise many types on a bad file
            raise SISOInputError(
                f"LoRA {str(path)!r} could not be applied ({type(error).__name__}: {error_summary(error, 160)}): give a LoRA file an SDXL "
                "SISO run wrote (pytorch_lora_weights.safetensors) or its run folder"
            ) from error
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
    """images[i][j] = prompts[i] with seeds[j]; lora_scale None or 0 renders the base model.

    The pipeline's adapter settings are restored afterwards, also on error.
    """
    has_lora = ADAPTER in getattr(pipe, "get_list_adapters", lambda: {})().get("unet", [])
    device = pipe.unet.device
    rows = []
    with preserved_lora_state(pipe):
        if has_lora:
            if lora_scale:
                pipe.enable_lora()
                pipe.set_adapters([ADAPTER], adapter_weights=[lora_scale])
            else:
                pipe.disable_lora()
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
    return rows


def image_grid(rows: Sequence[Sequence[Image.Image]]) -> Image.Image:
    """Paste rows of equally sized images into one picture."""
    width, height = rows[0][0].size
    grid = Image.new("RGB", (width * max(len(r) for r in rows), height * len(rows)), "white")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            grid.paste(image, (j * width, i * height))
    return grid
