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
from PIL import Image

from .config import FAMILY_RECIPES
from .devices import pick_device, pick_dtype
from .errors import SISOInputError, error_summary
from .generators import family_of, get_family
from .io.lora import resolve_lora_path
from .io.model_paths import detect_family

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
    model_family: str = "auto",
):
    """Base pipeline (SDXL, FLUX or Sana; "auto" reads the base model) on `device`, with the LoRA
    file (or run folder) loaded as adapter 'siso'."""
    target = pick_device(device)
    family = detect_family(base_model) if model_family == "auto" else model_family
    if family is None:
        from .io.model_paths import check_local_base_model

        check_local_base_model(base_model)
        raise SISOInputError(f"cannot tell which model family {base_model!r} is: pass model_family sdxl, flux or sana")
    pipe = get_family(family).load_pipeline(base_model, torch_dtype=pick_dtype(precision, target))
    if lora_path is not None:
        apply_lora(pipe, lora_path)
    return pipe.to(target)


def apply_lora(pipe, lora_path: str | os.PathLike) -> None:
    """Load a LoRA file (or run folder) into `pipe` as adapter 'siso', replacing an earlier 'siso'.

    Replacing keeps the base weights loaded: an evaluation over many runs of one base model
    swaps only the adapter. SISOInputError when the file does not fit the pipeline.
    """
    path = resolve_lora_path(lora_path)
    if ADAPTER in {name for names in pipe.get_list_adapters().values() for name in names}:
        pipe.delete_adapters(ADAPTER)
    try:
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=ADAPTER)
    except Exception as error:  # safetensors, peft and diffusers raise many types on a bad file
        raise SISOInputError(
            f"LoRA {str(path)!r} could not be applied ({type(error).__name__}: {error_summary(error, 160)}): give a LoRA file a "
            f"{family_of(pipe).family} SISO run wrote (pytorch_lora_weights.safetensors) or its run folder"
        ) from error


def pipeline_device(pipe) -> torch.device:
    """The device of a loaded pipeline's denoiser (the UNet of SDXL, the transformer of FLUX and Sana)."""
    return getattr(pipe, family_of(pipe).denoiser_name).device


@torch.no_grad()
def render(
    pipe,
    prompts: Sequence[str],
    seeds: Sequence[int] = (42,),
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    resolution: int = 512,
    lora_scale: float | None = 1.0,
) -> list[list[Image.Image]]:
    """images[i][j] = prompts[i] with seeds[j]; lora_scale None or 0 renders the base model.

    `num_inference_steps` and `guidance_scale` default to the pipeline family's recipe (SDXL-Turbo
    1 step / 0, FLUX.1-schnell 1 / 0, Sana 20 / 4.5); FLUX is usually rendered with 4 steps. The
    pipeline's adapter settings are restored afterwards, also on error.
    """
    family = family_of(pipe)
    recipe = FAMILY_RECIPES[family.family]
    num_inference_steps = num_inference_steps or recipe["num_inference_steps"]
    guidance_scale = recipe["guidance_scale"] if guidance_scale is None else guidance_scale
    # the prompt length the LoRA was optimised with (FLUX does not mask T5's padding)
    extra = {} if family.family == "sdxl" else {"max_sequence_length": recipe["max_sequence_length"]}
    denoiser = family.denoiser_name
    has_lora = ADAPTER in getattr(pipe, "get_list_adapters", lambda: {})().get(denoiser, [])
    device = pipeline_device(pipe)
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
                        **extra,
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
