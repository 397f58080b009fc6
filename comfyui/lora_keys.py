"""LoRA key formats, without ComfyUI: diffusers -> Kohya conversion and a per-part summary.

ComfyUI's LoRA code maps Kohya keys (`lora_unet_<module_with_underscores>.lora_down.weight`,
`.lora_up.weight`, `.alpha`; `lora_te1_...`, `lora_te2_...`) for every SDXL module, but not the
UNet keys diffusers' `save_lora_weights` writes (`unet.<module>.lora.down.weight`), of which it
applies none. siso-generate writes a Kohya copy itself (`siso_lora_kohya.safetensors`); the
authors' script and other diffusers-based tools write only the diffusers file. `to_kohya`
converts such a file so that ComfyUI applies every tensor, with the real alpha.

The conversion only renames keys (the module paths are the same in both formats) and adds the
`.alpha` entries; it needs torch only for the alpha scalars.

FLUX LoRAs are different: ComfyUI maps the diffusers/peft keys siso-generate writes for them
(`transformer.<module>.lora_A.weight`, `text_encoder.text_model.<module>.lora_B.weight`) itself,
onto its fused q/k/v weights, so they are used as they are (`key_format` says "transformer") and
there is no Kohya form of them here.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

KOHYA_PREFIXES = {"unet": "lora_unet", "text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}
DOWN_SUFFIXES = (".lora.down.weight", ".lora_linear_layer.down.weight", ".lora_A.weight", ".lora_down.weight")
UP_SUFFIXES = (".lora.up.weight", ".lora_linear_layer.up.weight", ".lora_B.weight", ".lora_up.weight")
KOHYA_KEY = re.compile(r"^(lora_unet|lora_te1|lora_te2|lora_te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$")
TRANSFORMER_PREFIX = "transformer."  # the denoiser of FLUX (and Sana) in diffusers' LoRA files


def _split(key: str) -> tuple[str, str, str] | None:
    """'unet.a.b.lora.down.weight' -> ('unet', 'a.b', 'down'); None for anything else."""
    for part in ("text_encoder_2", "text_encoder", "unet"):
        if key.startswith(part + "."):
            rest = key[len(part) + 1 :]
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


def _transformer_module(key: str) -> str | None:
    """'transformer.a.b.lora_A.weight' -> 'a.b'; None for anything else."""
    if not key.startswith(TRANSFORMER_PREFIX):
        return None
    rest = key[len(TRANSFORMER_PREFIX):]
    for suffix in DOWN_SUFFIXES + UP_SUFFIXES + (".alpha",):
        if rest.endswith(suffix):
            return rest[: -len(suffix)]
    return None


def key_format(keys) -> str:
    """'kohya', 'diffusers' (SDXL), 'transformer' (diffusers keys of a FLUX/Sana LoRA, text encoder
    included), 'mixed' or 'unknown' for a LoRA state dict's keys."""
    kinds = set()
    for key in keys:
        if KOHYA_KEY.match(key):
            kinds.add("kohya")
        elif _transformer_module(key) is not None:
            kinds.add("transformer")
        elif _split(key) is not None:
            kinds.add("diffusers" if key.startswith("unet.") else "text_encoder")
        else:
            kinds.add("unknown")
    if not kinds:
        return "unknown"
    if "transformer" in kinds and kinds <= {"transformer", "text_encoder"}:
        return "transformer"
    kinds = {"diffusers" if kind == "text_encoder" else kind for kind in kinds}
    if len(kinds) == 1:
        return kinds.pop()
    return "mixed"


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
            value = adapter.get(f"{part}.lora_alpha")
            if isinstance(value, (int, float)):
                alphas[part] = float(value)
    if not alphas and metadata.get("ss_network_alpha"):
        try:
            alphas = {part: float(metadata["ss_network_alpha"]) for part in KOHYA_PREFIXES}
        except ValueError:
            pass
    return alphas


def to_kohya(state: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Rename a diffusers/peft-named SDXL LoRA to Kohya keys; alpha from metadata, else the rank.

    Keys already in Kohya form are kept. Raises ValueError naming a key it cannot place.
    """
    import torch  # noqa: PLC0415

    alphas = alphas_from_metadata(metadata)
    out: dict[str, Any] = {}
    ranks: dict[str, tuple[str, int]] = {}
    explicit_alpha: set[str] = set()
    for key, value in state.items():
        if KOHYA_KEY.match(key):
            out[key] = value
            continue
        split = _split(key)
        if split is None:
            raise ValueError(
                f"LoRA key {key!r} is neither diffusers (unet./text_encoder./text_encoder_2.) nor Kohya (lora_unet_...)"
            )
        part, module, kind = split
        if part != "unet" and not module.startswith("text_model."):
            module = "text_model." + module  # transformers >= 5.6 drops this level; ComfyUI needs it
        name = f"{KOHYA_PREFIXES[part]}_{module.replace('.', '_')}"
        if kind == "alpha":
            out[f"{name}.alpha"] = value
            explicit_alpha.add(name)
        elif kind == "down":
            out[f"{name}.lora_down.weight"] = value
            ranks[name] = (part, int(value.shape[0]))
        else:
            out[f"{name}.lora_up.weight"] = value
    for name, (part, rank) in ranks.items():
        if name not in explicit_alpha:
            out[f"{name}.alpha"] = torch.tensor(float(alphas.get(part, rank)))
    return out


def summarize(keys) -> dict[str, int]:
    """Number of LoRA modules per model part ('unet', 'transformer', 'te1', 'te2', 'other') in a state dict."""
    modules: dict[str, set[str]] = {"unet": set(), "transformer": set(), "te1": set(), "te2": set(), "other": set()}
    for key in keys:
        match = KOHYA_KEY.match(key)
        if match:
            part = {"lora_unet": "unet", "lora_te1": "te1", "lora_te": "te1", "lora_te2": "te2"}[match.group(1)]
            if match.group(3) != "alpha":
                modules[part].add(match.group(2))
            continue
        transformer = _transformer_module(key)
        if transformer is not None:
            if not key.endswith(".alpha"):
                modules["transformer"].add(transformer)
            continue
        split = _split(key)
        if split is None:
            modules["other"].add(key)
        elif split[2] != "alpha":
            modules[{"unet": "unet", "text_encoder": "te1", "text_encoder_2": "te2"}[split[0]]].add(split[1])
    return {part: len(names) for part, names in modules.items()}


def convert_file(source: str, destination: str) -> dict[str, int]:
    """Write a Kohya copy of the LoRA file `source` to `destination` (atomically); return its summary."""
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from safetensors import safe_open  # noqa: PLC0415
    from safetensors.torch import save_file  # noqa: PLC0415

    with safe_open(source, framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    converted = to_kohya(state, metadata)
    kohya_metadata = {key: value for key, value in metadata.items() if key != "lora_adapter_metadata"}
    kohya_metadata.update({"format": "pt", "ss_network_module": "networks.lora", "siso.converted_from": os.path.basename(source)})
    folder = os.path.dirname(os.path.abspath(destination))
    handle, temporary = tempfile.mkstemp(prefix=".siso-kohya-", suffix=".partial", dir=folder)
    os.close(handle)
    try:
        save_file({key: value.contiguous() for key, value in converted.items()}, temporary, metadata=kohya_metadata)
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return summarize(converted)
