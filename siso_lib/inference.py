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
from pathlib import Path
from typing import Iterator, Sequence

import torch
from PIL import Image

from .config import FAMILY_RECIPES
from .devices import pick_device, pick_dtype
from .errors import SISOInputError, error_summary
from .generators import family_of, get_family
from .io.lora import resolve_lora_path
from .io.model_paths import FAMILY_TITLES, detect_family

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
    """Base pipeline (SDXL, FLUX, Sana or FLUX.2 klein; "auto" reads the base model) on `device`, with the LoRA
    file (or run folder) loaded as adapter 'siso'."""
    target = pick_device(device)
    family = detect_family(base_model) if model_family == "auto" else model_family
    if family is None:
        from .io.model_paths import check_local_base_model

        check_local_base_model(base_model)
        raise SISOInputError(f"cannot tell which model family {base_model!r} is: pass model_family sdxl, flux, sana or flux2_klein")
    if lora_path is not None:  # a LoRA of another family is refused before the base model loads
        check_lora_family(resolve_lora_path(lora_path), family, f"the base model {base_model!r}")
    pipe = get_family(family).load_pipeline(base_model, torch_dtype=pick_dtype(precision, target))
    if lora_path is not None:
        apply_lora(pipe, lora_path)
    return pipe.to(target)


def apply_lora(pipe, lora_path: str | os.PathLike) -> None:
    """Load a LoRA file (or run folder) into `pipe` as adapter 'siso', replacing an earlier 'siso'.

    Replacing keeps the base weights loaded: an evaluation over many runs of one base model
    swaps only the adapter. SISOInputError when the file does not fit the pipeline: a LoRA whose
    metadata or run.json names another model family (diffusers would only warn "No LoRA keys
    associated ..." and leave the pipeline without the LoRA), or one that reaches no layer of the
    pipeline's denoiser.
    """
    path = resolve_lora_path(lora_path)
    family = family_of(pipe)
    check_lora_family(path, family.family, f"the pipeline ({type(pipe).__name__})")
    if ADAPTER in {name for names in pipe.get_list_adapters().values() for name in names}:
        pipe.delete_adapters(ADAPTER)
    try:
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=ADAPTER)
    except Exception as error:  # safetensors, peft and diffusers raise many types on a bad file
        raise SISOInputError(
            f"LoRA {str(path)!r} could not be applied ({type(error).__name__}: {error_summary(error, 160)}): give a LoRA file a "
            f"{family.family} SISO run wrote (pytorch_lora_weights.safetensors) or its run folder"
        ) from error
    if ADAPTER not in pipe.get_list_adapters().get(family.denoiser_name, []):
        if ADAPTER in {name for names in pipe.get_list_adapters().values() for name in names}:
            pipe.delete_adapters(ADAPTER)  # a text-encoder part alone is no SISO LoRA: leave the pipeline as it was
        raise SISOInputError(
            f"LoRA {str(path)!r} has no layer of this {family.family} pipeline's {family.denoiser_name} "
            f"({type(pipe).__name__}): it was made for another model; give a LoRA made on {FAMILY_TITLES.get(family.family, family.family)}"
        )


def lora_family(path: str | os.PathLike) -> str | None:
    """The model family a LoRA file says it was optimised for: its `siso.model_family` metadata, else
    the model_family of the run.json beside it; None when neither says (a file from elsewhere)."""
    from .config import MODEL_FAMILIES
    from .io.lora import read_metadata
    from .io.run_record import RUN_JSON, RunRecord

    path = Path(path)
    try:
        family = read_metadata(path).get("siso.model_family")
    except SISOInputError:  # not a safetensors file: loading it says so
        family = None
    if family in MODEL_FAMILIES:
        return family
    record = RunRecord.find(path.parent / RUN_JSON)
    return record.model_family if record is not None else None


def check_lora_family(path: str | os.PathLike, family: str, given: str) -> None:
    """SISOInputError (one line) when the LoRA at `path` was optimised for another family than `family`,
    the family of `given` (the base model or pipeline, in words)."""
    trained = lora_family(path)
    if trained is None or trained == family:
        return
    raise SISOInputError(
        f"LoRA {str(path)!r} was optimised for {FAMILY_TITLES.get(trained, trained)} (model_family {trained}), but "
        f"{given} is {FAMILY_TITLES.get(family, family)}: load it into a {FAMILY_TITLES.get(trained, trained)} base model "
        f"(e.g. {FAMILY_RECIPES[trained]['pretrained_model_name_or_path']}), or give a LoRA made on "
        f"{FAMILY_TITLES.get(family, family)}"
    )


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
    reference_images: Sequence[Image.Image] | None = None,
) -> list[list[Image.Image]]:
    """images[i][j] = prompts[i] with seeds[j]; lora_scale None or 0 renders the base model.

    `reference_images` (FLUX.2 klein only): the pipeline's zero-shot reference mode, which draws
    the subject of these photos with no optimisation (`Flux2KleinPipeline(image=[...])`).

    `num_inference_steps` and `guidance_scale` default to the pipeline family's recipe (SDXL-Turbo
    1 step / 0, FLUX.1-schnell 1 / 0, Sana 20 / 4.5, FLUX.2 klein 4 / 1); FLUX is usually rendered with 4 steps. The
    pipeline's adapter settings are restored afterwards, also on error.
    """
    family = family_of(pipe)
    if reference_images is not None and family.family != "flux2_klein":
        raise SISOInputError(f"reference images are FLUX.2 klein's zero-shot mode; {family.family} has none")
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
                        prompt=prompt,  # by name: Flux2KleinPipeline takes reference images first
                        num_inference_steps=num_inference_steps,
                        guidance_scale=guidance_scale,
                        height=resolution,
                        width=resolution,
                        generator=generator,
                        **extra,
                        **({"image": list(reference_images)} if reference_images is not None else {}),
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
