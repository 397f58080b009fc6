"""Writing the optimised LoRA in the two formats people load.

`pytorch_lora_weights.safetensors`: diffusers' format, loaded by
`StableDiffusionXLPipeline.load_lora_weights(folder)`. Keys are `unet.<module>.lora.down.weight`,
`text_encoder.text_model.<module>.lora_linear_layer.up.weight`, ... with the peft adapter
config in the `lora_adapter_metadata` entry, so an alpha other than the rank reloads right.

`siso_lora_kohya.safetensors`: Kohya's format (`lora_unet_<module_with_underscores>.lora_down.weight`,
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
from .errors import SISOInputError, error_summary

if TYPE_CHECKING:  # torch is imported where tensors are made, so that the file names above stay cheap to import
    import torch

DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
KOHYA_WEIGHT_NAME = "siso_lora_kohya.safetensors"
KOHYA_PREFIXES = {"unet": "lora_unet", "text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}


def normalise_text_encoder_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Give every CLIP key the `text_model.` level (absent in transformers >= 5.6 CLIPTextModel)."""
    return {key if key.startswith("text_model.") else f"text_model.{key}": value for key, value in state.items()}


def _canonical_parts(best_lora: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
    return {
        part: (state if part == "unet" else normalise_text_encoder_keys(state)) for part, state in best_lora.items()
    }


def to_diffusers_state_dict(best_lora: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """peft-named parts -> one diffusers LoRA state dict (`unet.` / `text_encoder.` / `text_encoder_2.`)."""
    from diffusers.utils import convert_state_dict_to_diffusers

    packed: dict[str, torch.Tensor] = {}
    for part, state in _canonical_parts(best_lora).items():
        for key, value in convert_state_dict_to_diffusers(state).items():
            packed[f"{part}.{key}"] = value.contiguous()
    return packed


def to_kohya_state_dict(best_lora: dict[str, dict[str, torch.Tensor]], alpha: float) -> dict[str, torch.Tensor]:
    """peft-named parts -> Kohya keys: `<prefix>_<module path with _>.lora_down.weight` etc."""
    kohya: dict[str, torch.Tensor] = {}
    for part, state in _canonical_parts(best_lora).items():
        prefix = KOHYA_PREFIXES[part]
        for key, value in state.items():
            for peft_name, kohya_name in ((".lora_A.weight", "lora_down"), (".lora_B.weight", "lora_up")):
                if key.endswith(peft_name):
                    module = key[: -len(peft_name)].replace(".", "_")
                    kohya[f"{prefix}_{module}.{kohya_name}.weight"] = value.contiguous()
                    kohya[f"{prefix}_{module}.alpha"] = _scalar(alpha)
                    break
            else:
                raise ValueError(f"unexpected LoRA key {key!r} in {part}: expected peft lora_A/lora_B weights")
    return kohya


def _scalar(value: float) -> "torch.Tensor":
    import torch

    return torch.tensor(float(value))


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
) -> dict[str, str]:
    """Write both LoRA files atomically into `directory`; return {"diffusers": path, "kohya": path}."""
    from safetensors.torch import save_file

    from .config import TEXT_ENCODER_LORA_TARGETS, UNET_LORA_TARGETS

    directory = Path(directory)
    targets = {"unet": UNET_LORA_TARGETS, "text_encoder": TEXT_ENCODER_LORA_TARGETS, "text_encoder_2": TEXT_ENCODER_LORA_TARGETS}
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
        save_file(to_diffusers_state_dict(best_lora), str(temporary), metadata=diffusers_meta)
    with atomic_path(paths["kohya"]) as temporary:
        save_file(to_kohya_state_dict(best_lora, alpha), str(temporary), metadata=kohya_meta)
    return {name: str(path) for name, path in paths.items()}


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of a LoRA file (`siso.*` keys for files a run wrote).

    Raises SISOInputError (one line) when the file is not a safetensors file.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
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
    if not path.is_file():
        raise SISOInputError(f"LoRA {str(path)!r} does not exist: give the LoRA file or its run folder")
    return path
