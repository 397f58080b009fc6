"""Writing the optimised LoRA in the formats people load.

`pytorch_lora_weights.safetensors`: diffusers' format, loaded by the family's pipeline
`load_lora_weights(folder)`. SDXL keys are `unet.<module>.lora.down.weight`,
`text_encoder.text_model.<module>.lora_linear_layer.up.weight`, ...; FLUX and Sana keys are
peft's, as their `save_lora_weights` writes them: `transformer.<module>.lora_A.weight`,
`text_encoder.text_model.<module>.lora_B.weight` (FLUX's CLIP-L). The peft adapter config is in
the `lora_adapter_metadata` entry, so an alpha other than the rank reloads right. ComfyUI's
LoraLoader reads the FLUX file as it is (it maps diffusers FLUX keys onto its fused weights).

`siso_lora_kohya.safetensors` (SDXL only): Kohya's format (`lora_unet_<module_with_underscores>.lora_down.weight`,
`.lora_up.weight`, `.alpha`; `lora_te1_...`, `lora_te2_...`), which ComfyUI's LoraLoader applies
fully (it ignores diffusers' UNet key names) and A1111/Forge read too. It is converted one model
part at a time, with alpha written as the real `lora_alpha`.

Text-encoder keys are normalised to start with `text_model.` whatever the installed
transformers version (>= 5.6 drops that level from CLIPTextModel), so files are portable.
Both files carry the run's description in their safetensors metadata (all values strings).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import safe_open

from .atomic import atomic_path
from .kohya import to_kohya
from ..errors import SISOInputError, check_file, error_summary

if TYPE_CHECKING:  # torch is imported where tensors are made, so that the file names above stay cheap to import
    import torch

DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
KOHYA_WEIGHT_NAME = "siso_lora_kohya.safetensors"


def normalise_text_encoder_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Give every CLIP key the `text_model.` level (absent in transformers >= 5.6 CLIPTextModel)."""
    return {key if key.startswith("text_model.") else f"text_model.{key}": value for key, value in state.items()}


def _canonical_parts(best_lora: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
    return {
        part: (normalise_text_encoder_keys(state) if part.startswith("text_encoder") else state)
        for part, state in best_lora.items()
    }


def to_diffusers_state_dict(best_lora: dict[str, dict[str, torch.Tensor]], family: str = "sdxl") -> dict[str, torch.Tensor]:
    """peft-named parts -> one diffusers LoRA state dict (`unet.` / `transformer.` / `text_encoder.` / ...).

    SDXL files use diffusers' own key names (as its SDXL training scripts write them); the
    transformer families keep peft's names, as their pipelines' `save_lora_weights` does.
    """
    from diffusers.utils import convert_state_dict_to_diffusers

    convert = convert_state_dict_to_diffusers if family == "sdxl" else dict
    packed: dict[str, torch.Tensor] = {}
    for part, state in _canonical_parts(best_lora).items():
        for key, value in convert(state).items():
            packed[f"{part}.{key}"] = value.contiguous()
    return packed


def to_kohya_state_dict(best_lora: dict[str, dict[str, torch.Tensor]], alpha: float) -> dict[str, torch.Tensor]:
    """peft-named parts -> Kohya keys: `<prefix>_<module path with _>.lora_down.weight` etc. (io/kohya.py)."""
    flat = {f"{part}.{key}": value for part, state in best_lora.items() for key, value in state.items()}
    return {key: value.contiguous() for key, value in to_kohya(flat, alpha=alpha).items()}


def adapter_metadata(parts: list[str], rank: int, alpha: float, targets: dict[str, tuple[str, ...]]) -> dict[str, object]:
    """diffusers' `lora_adapter_metadata`: the peft LoraConfig per part, keys prefixed by part."""
    metadata: dict[str, object] = {}
    for part in parts:
        for key, value in {"r": rank, "lora_alpha": alpha, "target_modules": list(targets[part])}.items():
            metadata[f"{part}.{key}"] = value
    return metadata


def _stringify(metadata: dict[str, object]) -> dict[str, str]:
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}


def save_lora_files(
    directory: str | os.PathLike,
    best_lora: dict[str, dict[str, torch.Tensor]],
    rank: int,
    alpha: float,
    run_metadata: dict[str, object],
    family: str = "sdxl",
    denoiser_targets: tuple[str, ...] | None = None,
) -> dict[str, str | None]:
    """Write the LoRA files atomically into `directory`; return {"diffusers": path, "kohya": path or None}.

    The Kohya copy is written for SDXL only (ComfyUI reads FLUX's diffusers file directly, and
    has no Sana). `denoiser_targets`: the module names the denoiser LoRA was put on (the
    family's recipe when None), recorded in the adapter metadata.
    """
    from safetensors.torch import save_file

    from ..config import FAMILY_RECIPES, TEXT_ENCODER_LORA_TARGETS

    directory = Path(directory)
    denoiser_targets = denoiser_targets or tuple(FAMILY_RECIPES[family]["lora_layers"].split(","))
    targets = {part: denoiser_targets if part in ("unet", "transformer") else TEXT_ENCODER_LORA_TARGETS for part in best_lora}
    base = _stringify({f"siso.{key}": value for key, value in run_metadata.items()})
    diffusers_meta = {
        "format": "pt",
        "lora_adapter_metadata": json.dumps(adapter_metadata(list(best_lora), rank, alpha, targets), indent=2, sort_keys=True),
        **base,
    }
    kohya_meta = {
        "format": "pt",
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(float(alpha)),
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_network_args": json.dumps({"text_encoder": "text_encoder" in best_lora}),
        **base,
    }
    paths = {"diffusers": directory / DIFFUSERS_WEIGHT_NAME, "kohya": directory / KOHYA_WEIGHT_NAME}
    with atomic_path(paths["diffusers"]) as temporary:
        save_file(to_diffusers_state_dict(best_lora, family), str(temporary), metadata=diffusers_meta)
    if family != "sdxl":
        return {"diffusers": str(paths["diffusers"]), "kohya": None}
    with atomic_path(paths["kohya"]) as temporary:
        save_file(to_kohya_state_dict(best_lora, alpha), str(temporary), metadata=kohya_meta)
    return {name: str(path) for name, path in paths.items()}


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of a LoRA file (`siso.*` keys for files a run wrote).

    Raises SISOInputError (one line) when the file is not a safetensors file.
    """
    # the numpy framework reads the header without importing torch (siso-eval checks before torch)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return dict(handle.metadata() or {})
    except FileNotFoundError as error:
        raise SISOInputError(f"LoRA {str(path)!r} does not exist") from error
    except Exception as error:  # safetensors raises its own SafetensorError on a wrong file
        raise SISOInputError(
            f"{str(path)!r} is not a safetensors LoRA file ({error_summary(error, 80)}): give the "
            f"{DIFFUSERS_WEIGHT_NAME} a run wrote, or its run folder"
        ) from error


def resolve_lora_path(path: str | os.PathLike) -> Path:
    """A LoRA file, or a run/weights folder holding one (diffusers file preferred); SISOInputError if none."""
    path = Path(path)
    if path.is_dir():
        for name in (DIFFUSERS_WEIGHT_NAME, KOHYA_WEIGHT_NAME):
            if (path / name).is_file():
                return path / name
        raise SISOInputError(f"no {DIFFUSERS_WEIGHT_NAME} in {str(path)!r}: give the LoRA file or its folder")
    return check_file(path, "LoRA", "give the LoRA file or its run folder")
