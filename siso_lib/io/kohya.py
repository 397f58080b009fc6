"""SDXL LoRA state dict in diffusers or peft key names -> Kohya key names: the one implementation.

ComfyUI's LoraLoader applies Kohya keys (`lora_unet_<module_with_underscores>.lora_down.weight`,
`.lora_up.weight`, `.alpha`; `lora_te1_...`, `lora_te2_...`) to every SDXL module, but none of
the UNet keys diffusers' `save_lora_weights` writes. siso_lib.io.lora writes siso-generate's
Kohya file with this, and the ComfyUI pack converts the files of other scripts with a generated
copy of it (comfyui/siso/kohya.py, written by comfyui/tools/make_defaults.py): so this module
imports nothing from siso_lib, only the standard library and torch.

The module paths are the same in both formats, so the conversion renames keys, gives text
encoder modules the `text_model.` level (transformers >= 5.6 drops it; ComfyUI needs it) and
adds an `.alpha` per module: the given alpha, else the part's `lora_alpha` from diffusers'
`lora_adapter_metadata` (or Kohya's `ss_network_alpha`), else the module's rank.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

KOHYA_PREFIXES = {"unet": "lora_unet", "text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}
DOWN_SUFFIXES = (".lora.down.weight", ".lora_linear_layer.down.weight", ".lora_A.weight", ".lora_down.weight")
UP_SUFFIXES = (".lora.up.weight", ".lora_linear_layer.up.weight", ".lora_B.weight", ".lora_up.weight")
KOHYA_KEY = re.compile(r"^(lora_unet|lora_te1|lora_te2|lora_te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$")


def split_key(key: str) -> tuple[str, str, str] | None:
    """'unet.a.b.lora.down.weight' -> ('unet', 'a.b', 'down'); kinds 'down', 'up', 'alpha'; None for any other key."""
    for part in ("text_encoder_2", "text_encoder", "unet"):
        if key.startswith(part + "."):
            rest = key[len(part) + 1:]
            break
    else:
        return None
    for kind, suffixes in (("down", DOWN_SUFFIXES), ("up", UP_SUFFIXES)):
        for suffix in suffixes:
            if rest.endswith(suffix):
                return part, rest[: -len(suffix)], kind
    if rest.endswith(".alpha"):
        return part, rest[: -len(".alpha")], "alpha"
    return None


def alphas_from_metadata(metadata: Mapping[str, str] | None) -> dict[str, float]:
    """Per-part LoRA alpha recorded by diffusers (`lora_adapter_metadata`) or Kohya (`ss_network_alpha`)."""
    metadata = metadata or {}
    alphas: dict[str, float] = {}
    raw = metadata.get("lora_adapter_metadata")
    if raw:
        try:
            adapter = json.loads(raw)
        except (TypeError, ValueError):
            adapter = {}
        for part in KOHYA_PREFIXES:
            value = adapter.get(f"{part}.lora_alpha") if isinstance(adapter, dict) else None
            if isinstance(value, (int, float)):
                alphas[part] = float(value)
    if not alphas and metadata.get("ss_network_alpha"):
        try:
            alphas = {part: float(metadata["ss_network_alpha"]) for part in KOHYA_PREFIXES}
        except ValueError:
            pass
    return alphas


def kohya_name(part: str, module: str) -> str:
    """The Kohya module name of `module` in model part `part` ('unet', 'text_encoder', 'text_encoder_2')."""
    if part != "unet" and not module.startswith("text_model."):
        module = "text_model." + module
    return f"{KOHYA_PREFIXES[part]}_{module.replace('.', '_')}"


def to_kohya(state: Mapping[str, Any], metadata: Mapping[str, str] | None = None, alpha: float | None = None) -> dict[str, Any]:
    """`state` (keys `unet.` / `text_encoder.` / `text_encoder_2.` + a diffusers or peft LoRA key) in Kohya keys.

    Every module with a down weight gets an `.alpha` right after its first weight: an `.alpha` key of
    the input, else `alpha`, else its part's alpha in `metadata`, else its rank. Keys already in Kohya form are kept.
    Raises ValueError naming a key it cannot place.
    """
    import torch

    alphas = alphas_from_metadata(metadata)
    out: dict[str, Any] = {}
    ranks: dict[str, tuple[str, int]] = {}
    explicit: set[str] = set()
    for key, value in state.items():
        if KOHYA_KEY.match(key):
            out[key] = value
            continue
        split = split_key(key)
        if split is None:
            raise ValueError(f"LoRA key {key!r} is neither diffusers/peft (unet./text_encoder./text_encoder_2.) "
                             "nor Kohya (lora_unet_...)")
        part, module, kind = split
        name = kohya_name(part, module)
        if kind == "alpha":
            out[f"{name}.alpha"] = value
            explicit.add(name)
            continue
        out[f"{name}.lora_{kind}.weight"] = value
        out.setdefault(f"{name}.alpha", None)  # its place; the value once the rank is known
        if kind == "down":
            ranks[name] = (part, int(value.shape[0]))
    for name, (part, rank) in ranks.items():
        if name not in explicit:
            out[f"{name}.alpha"] = torch.tensor(float(alpha if alpha is not None else alphas.get(part, rank)))
    return {key: value for key, value in out.items() if value is not None}  # a module without a down weight: no alpha
