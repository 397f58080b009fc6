"""Write a full-size SDXL-architecture UNet, both CLIPs (random weights, fp16) and a rank-4 SISO LoRA.

    python tests/comfyui/make_full_sdxl_lora.py DIR

DIR/unet.safetensors (diffusers keys, what ComfyUI's UNETLoader reads), clip_l.safetensors,
clip_g.safetensors (transformers keys, DualCLIPLoader type sdxl), vae.safetensors (VAELoader), siso_lora_kohya.safetensors
(made by siso_lib's own code path: peft adapters as SISO attaches them -> LoRASnapshotter ->
to_kohya_state_dict), the same LoRA in diffusers keys (pytorch_lora_weights.safetensors) and
counts.json. Needs ~8 GB of RAM and a few minutes on 2 CPU cores;
does nothing when DIR/counts.json exists.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from siso_lib.io.lora import to_diffusers_state_dict, to_kohya_state_dict
from siso_lib.config import UNET_LORA_TARGETS
from siso_lib.generators.base import LoRASnapshotter
from siso_lib.generators.sdxl import SDXLGenerator
from siso_lib.offline.tiny_models import build_sdxl_pipeline


def main(directory: str) -> int:
    out = Path(directory)
    if (out / "counts.json").is_file() and (out / "vae.safetensors").is_file():
        print(f"{out}: already made")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    started = time.monotonic()
    pipe = build_sdxl_pipeline("full", dtype=torch.float16)
    print(f"built the full-size pipeline in {time.monotonic() - started:.0f} s", flush=True)
    save_file({k: v.contiguous() for k, v in pipe.unet.state_dict().items()}, str(out / "unet.safetensors"))
    save_file({k: v.contiguous() for k, v in pipe.text_encoder.state_dict().items()}, str(out / "clip_l.safetensors"))
    save_file({k: v.contiguous() for k, v in pipe.text_encoder_2.state_dict().items()}, str(out / "clip_g.safetensors"))
    save_file({k: v.contiguous() for k, v in pipe.vae.state_dict().items()}, str(out / "vae.safetensors"))
    SDXLGenerator.add_lora(pipe, 4, 4.0, 42, True, UNET_LORA_TARGETS)
    with torch.no_grad():  # B starts at zero; give it values, as after some SISO steps
        for part in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2):
            for name, parameter in part.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=1e-3)
    best = LoRASnapshotter(SDXLGenerator.lora_modules(pipe, True))()
    kohya = to_kohya_state_dict(best, alpha=4.0)
    save_file(kohya, str(out / "siso_lora_kohya.safetensors"), metadata={"format": "pt"})
    # the same LoRA in diffusers keys: the negative control (ComfyUI's LoraLoader skips its UNet part)
    save_file(to_diffusers_state_dict(best), str(out / "pytorch_lora_weights.safetensors"), metadata={"format": "pt"})
    counts = {
        "unet_modules": sum(k.endswith(".lora_A.weight") for k in best["unet"]),
        "te1_modules": sum(k.endswith(".lora_A.weight") for k in best["text_encoder"]),
        "te2_modules": sum(k.endswith(".lora_A.weight") for k in best["text_encoder_2"]),
        "kohya_tensors": len(kohya),
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
