"""LoRA files as ComfyUI reads them: which key format a file has, how many modules of each model part, and
the Kohya copy of a diffusers-format SDXL file.

ComfyUI maps Kohya keys for every SDXL module but ignores diffusers' SDXL UNet keys, so such a
file is converted (kohya.py, the generated copy of siso_lib/io/kohya.py). FLUX files are used as
they are: ComfyUI maps the diffusers/peft keys siso-generate writes for them
(`transformer.<module>.lora_A.weight`, `text_encoder.text_model.<module>.lora_B.weight`) itself,
onto its fused q/k/v weights; `key_format` calls them "transformer".
"""

from __future__ import annotations

import os
import tempfile

from .kohya import DOWN_SUFFIXES, KOHYA_KEY, UP_SUFFIXES, split_key, to_kohya

TRANSFORMER_PREFIX = "transformer."  # the denoiser of FLUX (and Sana) in diffusers' LoRA files


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
        elif split_key(key) is not None:
            kinds.add("diffusers" if key.startswith("unet.") else "text_encoder")
        else:
            kinds.add("unknown")
    if not kinds:
        return "unknown"
    if "transformer" in kinds and kinds <= {"transformer", "text_encoder"}:
        return "transformer"
    kinds = {"diffusers" if kind == "text_encoder" else kind for kind in kinds}
    return kinds.pop() if len(kinds) == 1 else "mixed"


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
        split = split_key(key)
        if split is None:
            modules["other"].add(key)
        elif split[2] != "alpha":
            modules[{"unet": "unet", "text_encoder": "te1", "text_encoder_2": "te2"}[split[0]]].add(split[1])
    return {part: len(names) for part, names in modules.items()}


def module_count(keys) -> int:
    """How many LoRA modules a state dict's keys hold, of any part (0: not a LoRA)."""
    summary = summarize(keys)
    return summary["unet"] + summary["transformer"] + summary["te1"] + summary["te2"]


def read_lora(path: str) -> tuple[dict, dict]:
    """State dict and safetensors metadata of a LoRA file, in keys ComfyUI maps: a diffusers-format SDXL
    file converted to Kohya keys, anything else as it is."""
    metadata: dict = {}
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    else:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
    if key_format(state.keys()) in ("diffusers", "mixed"):
        state = to_kohya(state, metadata)
    return state, metadata


def convert_file(source: str, destination: str) -> dict[str, int]:
    """Write a Kohya copy of the LoRA file `source` to `destination` (atomically); return its summary."""
    from safetensors import safe_open
    from safetensors.torch import save_file

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
