"""Run INSIDE ComfyUI's Python: does ComfyUI's stock LoraLoader apply every tensor of a SISO FLUX LoRA?

    /path/to/comfy-venv/bin/python tests/comfyui/comfy_flux_lora_check.py COMFYUI_DIR ASSETS_DIR

ASSETS_DIR is what make_full_flux_lora.py wrote. ComfyUI's own code builds the full-size
FLUX.1-schnell model the way its UNETLoader does for a diffusers-format transformer (key
conversion, model detection -> FluxSchnell), and its FLUX text encoders (CLIP-L + T5-XXL), all on
the meta device (no weights, no RAM); then ComfyUI's stock `LoraLoader` node loads
DIR/pytorch_lora_weights.safetensors from models/loras and patches both. Counted:

* tensors applied: the file's tensors that ComfyUI's patches hold (by identity), of all in the file;
* weights patched (FLUX fuses q/k/v and the single blocks' linear1), "lora key not loaded" /
  "NOT LOADED" warnings;
* shapes: every patch's B @ A against the slice of the fused weight it goes to (all of them);
* values: ComfyUI's own `calculate_weight` on a zero weight of every patched weight's shape, each
  slice against B @ A (scale 1: alpha = rank); about a minute on 2 CPU cores.

Then the pack's SISO Load LoRA applies the same file by path. Prints one line `RESULT {json}`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

COMFY_DIR, ASSETS = sys.argv[1], sys.argv[2]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LORA_NAME = "pytorch_lora_weights.safetensors"

sys.path.insert(0, COMFY_DIR)
os.chdir(COMFY_DIR)
from comfy.cli_args import args  # noqa: E402

args.cpu = True
import torch  # noqa: E402

import comfy.lora  # noqa: E402
import comfy.model_detection  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402
import nodes as comfy_nodes  # noqa: E402  (ComfyUI's own nodes.py)


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def build():
    """ComfyUI's FLUX.1-schnell model and FLUX CLIP, on the meta device."""
    with open(os.path.join(ASSETS, "transformer_shapes.json")) as handle:
        shapes = json.load(handle)
    diffusers_sd = {key: torch.empty(shape, dtype=torch.bfloat16, device="meta") for key, shape in shapes.items()}
    comfy_sd = comfy.model_detection.convert_diffusers_mmdit(diffusers_sd, "")  # as load_diffusion_model_state_dict does
    config = comfy.model_detection.model_config_from_unet(comfy_sd, "")
    model = config.get_model(comfy_sd, "", device=torch.device("meta"))
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    clip = comfy.sd.CLIP(target=config.clip_target({}), model_options={"initial_device": torch.device("meta")})
    return config, patcher, clip


def main() -> None:
    import comfyui_version

    started = time.monotonic()
    config, model, clip = build()
    folder_paths.add_model_folder_path("loras", ASSETS, is_default=True)
    warnings = Warnings()
    logging.getLogger().addHandler(warnings)
    loader = comfy_nodes.LoraLoader()
    new_model, new_clip = loader.load_lora(model, clip, LORA_NAME, 1.0, 1.0)
    lora = loader.loaded_lora[1]  # the state dict the stock loader read
    owners = ((new_model.model, new_model.patches), (new_clip.cond_stage_model, new_clip.patcher.patches))
    held = set()
    shape_errors = []
    for owner, patches in owners:
        for key, entries in patches.items():
            shape = tuple(comfy.utils.get_attr(owner, key).shape)
            for _strength, adapter, _strength_model, offset, _function in entries:
                up, down = adapter.weights[0], adapter.weights[1]
                held.update(id(tensor) for tensor in adapter.weights if isinstance(tensor, torch.Tensor))
                target = list(shape)
                if offset is not None:
                    target[offset[0]] = offset[2]
                if [up.shape[0], down.shape[1]] != target or up.shape[1] != down.shape[0]:
                    shape_errors.append(f"{key}: {list(up.shape)} @ {list(down.shape)} -> {target}")
    applied = sum(id(tensor) in held for tensor in lora.values())
    worst = 0.0
    checked = 0
    for owner, patches in owners:
        for key in patches:
            weight = torch.zeros(tuple(comfy.utils.get_attr(owner, key).shape), dtype=torch.float32)
            patched = comfy.lora.calculate_weight(patches[key], weight, key)
            for _strength, adapter, _strength_model, offset, _function in patches[key]:
                region = patched if offset is None else patched.narrow(offset[0], offset[1], offset[2])
                expected = adapter.weights[0].float() @ adapter.weights[1].float()
                worst = max(worst, float((region - expected).abs().max()))
            checked += 1
    not_loaded = [m for m in warnings.messages if m.startswith(("lora key not loaded", "NOT LOADED"))]
    errors = [m for m in warnings.messages if m.startswith("ERROR")]
    # the pack's SISO Load LoRA, with the same file by path
    sys.path.insert(0, REPO)
    from comfyui import nodes as siso_nodes  # noqa: PLC0415

    info = siso_nodes.SISOLoadLoRA().load(model, clip, os.path.join(ASSETS, LORA_NAME))["result"][2]
    result = {
        "comfyui_version": comfyui_version.__version__,
        "model_config": type(config).__name__,
        "unet_config": {k: config.unet_config.get(k) for k in ("hidden_size", "depth", "depth_single_blocks", "guidance_embed")},
        "lora_tensors": len(lora),
        "applied_tensors": applied,
        "patched_model_weights": len(new_model.patches),
        "model_patches": sum(len(entries) for entries in new_model.patches.values()),
        "patched_clip_weights": len(new_clip.patcher.patches),
        "not_loaded": not_loaded[:5],
        "not_loaded_count": len(not_loaded),
        "errors": errors[:5],
        "shape_errors": shape_errors[:5],
        "weights_value_checked": checked,
        "max_abs_difference": worst,
        "siso_load_lora": info,
        "seconds": round(time.monotonic() - started, 1),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the interpreter's teardown of ModelPatchers built on the meta device (noisy, nothing to free)
