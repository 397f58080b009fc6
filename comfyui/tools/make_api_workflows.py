"""Write the API-format example workflows from the nodes' own defaults (run after changing inputs).

    python comfyui/tools/make_api_workflows.py

The UI-format files next to them are made from these by loading them into ComfyUI's own
frontend (comfyui/tools/ui_workflows.py), so both formats always describe the same graph.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK.parent))

from comfyui.siso import defaults  # noqa: E402
from comfyui.nodes import SISOLoRAGenerator, SISOSubjectEdit  # noqa: E402

OUT = PACK / "example_workflows" / "api"


def generator_widgets(node: type = SISOLoRAGenerator) -> dict:
    """The widget defaults of a SISO node (SISO LoRA Generator unless another is named)."""
    types = node.INPUT_TYPES()
    values = {}
    for section in ("required", "optional"):
        for name, spec in types[section].items():
            options = spec[1] if len(spec) > 1 else {}
            if options.get("forceInput") or not isinstance(spec[0], (str, list)) or spec[0] in ("IMAGE",):
                continue
            if "default" in options:
                values[name] = options["default"]
    return values


def generation(family: str = "sdxl") -> dict:
    """Load Image -> SISO LoRA Generator -> status, lora_path, best image; the base model is `family`'s recipe model."""
    widgets = generator_widgets()
    widgets["base_model_path"] = defaults.recipe(family)["pretrained_model_name_or_path"]
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}, "_meta": {"title": "Subject photo"}},
        "2": {"class_type": "PrimitiveBoolean", "inputs": {"value": True}, "_meta": {"title": "Run SISO?"}},
        "3": {"class_type": "SISOLoRAGenerator", "inputs": {"subject_image": ["1", 0], "subject_mask": ["1", 1],
                                                            "execute": ["2", 0], **widgets},
              "_meta": {"title": "SISO LoRA Generator"}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}, "_meta": {"title": "status"}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}, "_meta": {"title": "lora_path"}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["3", 2]}, "_meta": {"title": "best image"}},
    }


def subject_edit() -> dict:
    """Load Image (scene; paint the mask in its mask editor) + Load Image (subject) -> SISO Subject Edit -> picture, status.

    The example scene's object is named (input_class "cup"): without a painted mask, Grounding-DINO + SAM find it.
    """
    widgets = generator_widgets(SISOSubjectEdit)
    widgets["input_class"] = "cup"
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "coffee.png"},
              "_meta": {"title": "Scene (paint the region in its mask editor)"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}, "_meta": {"title": "Subject photo"}},
        "3": {"class_type": "PrimitiveBoolean", "inputs": {"value": True}, "_meta": {"title": "Run SISO?"}},
        "4": {"class_type": "SISOSubjectEdit", "inputs": {"scene_image": ["1", 0], "subject_image": ["2", 0], "mask": ["1", 1],
                                                          "execute": ["3", 0], **widgets},
              "_meta": {"title": "SISO Subject Edit"}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}, "_meta": {"title": "edited scene"}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["4", 1]}, "_meta": {"title": "status"}},
    }


def inference(lora_source) -> dict:
    return {
        "10": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_turbo_1.0_fp16.safetensors"},
               "_meta": {"title": "SDXL-Turbo checkpoint"}},
        "11": {"class_type": "SISOLoadLoRA", "inputs": {"model": ["10", 0], "clip": ["10", 1], "lora_path": lora_source,
                                                        "strength_model": 1.0, "strength_clip": 1.0},
               "_meta": {"title": "SISO Load LoRA"}},
        "12": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat on the moon", "clip": ["11", 1]},
               "_meta": {"title": "new prompt"}},
        "13": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["11", 1]}, "_meta": {"title": "negative (unused at cfg 1)"}},
        "14": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "15": {"class_type": "SDTurboScheduler", "inputs": {"model": ["11", 0], "steps": 1, "denoise": 1.0}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
        "17": {"class_type": "SamplerCustom", "inputs": {"model": ["11", 0], "add_noise": True, "noise_seed": 1, "cfg": 1.0,
                                                         "positive": ["12", 0], "negative": ["13", 0], "sampler": ["16", 0],
                                                         "sigmas": ["15", 0], "latent_image": ["14", 0]}},
        "18": {"class_type": "VAEDecode", "inputs": {"samples": ["17", 0], "vae": ["10", 2]}},
        "19": {"class_type": "SaveImage", "inputs": {"images": ["18", 0], "filename_prefix": "siso"}},
        "20": {"class_type": "PreviewAny", "inputs": {"source": ["11", 2]}, "_meta": {"title": "lora_info"}},
    }


def flux_inference(lora_source) -> dict:
    """ComfyUI's stock FLUX.1-schnell graph (the split files its FLUX examples use), with the LoRA applied by
    SISO Load LoRA from `lora_source`; 4 steps at cfg 1, as the authors render with their FLUX LoRAs."""
    return {
        "10": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-schnell.safetensors", "weight_dtype": "default"},
               "_meta": {"title": "FLUX.1-schnell model"}},
        "21": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors",
                                                          "type": "flux"}, "_meta": {"title": "FLUX text encoders (CLIP-L, T5-XXL)"}},
        "22": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}, "_meta": {"title": "FLUX VAE"}},
        "11": {"class_type": "SISOLoadLoRA", "inputs": {"model": ["10", 0], "clip": ["21", 0], "lora_path": lora_source,
                                                        "strength_model": 1.0, "strength_clip": 1.0},
               "_meta": {"title": "SISO Load LoRA"}},
        "12": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat on the moon", "clip": ["11", 1]},
               "_meta": {"title": "new prompt"}},
        "13": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["11", 1]}, "_meta": {"title": "negative (unused at cfg 1)"}},
        "14": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "17": {"class_type": "KSampler", "inputs": {"model": ["11", 0], "seed": 1, "steps": 4, "cfg": 1.0, "sampler_name": "euler",
                                                    "scheduler": "simple", "positive": ["12", 0], "negative": ["13", 0],
                                                    "latent_image": ["14", 0], "denoise": 1.0}},
        "18": {"class_type": "VAEDecode", "inputs": {"samples": ["17", 0], "vae": ["22", 0]}},
        "19": {"class_type": "SaveImage", "inputs": {"images": ["18", 0], "filename_prefix": "siso_flux"}},
        "20": {"class_type": "PreviewAny", "inputs": {"source": ["11", 2]}, "_meta": {"title": "lora_info"}},
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    standalone = inference(["9", 0])
    standalone["9"] = {"class_type": "PrimitiveString",
                       "inputs": {"value": "siso/REPLACE-WITH-YOUR-RUN/siso_lora_kohya.safetensors"},
                       "_meta": {"title": "LoRA path (a file, a run folder, or a name under models/loras)"}}
    combined = generation()
    combined.update(inference(["3", 0]))
    flux = generation("flux")
    flux.update(flux_inference(["3", 0]))
    files = {
        "siso_generate_lora_api.json": generation(),
        "siso_inference_with_lora_api.json": dict(sorted(standalone.items(), key=lambda kv: int(kv[0]))),
        "siso_generate_and_render_api.json": combined,
        "siso_flux_generate_and_render_api.json": flux,
        "siso_subject_edit_api.json": subject_edit(),
    }
    for name, graph in files.items():
        (OUT / name).write_text(json.dumps(graph, indent=2) + "\n")
        print(OUT / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
