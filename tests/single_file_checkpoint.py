"""A tiny SDXL pipeline saved as ONE .safetensors file in the original (Stability / ComfyUI / A1111)
layout, for the single-file checkpoint tests: `model.diffusion_model.*` (UNet),
`first_stage_model.*` (VAE), `conditioner.embedders.0.transformer.*` (CLIP-L) and
`conditioner.embedders.1.model.*` (OpenCLIP bigG: fused q/k/v, transposed projection).

The key mapping is the inverse of diffusers' own conversion (loaders/single_file_utils.py), written
here for the test; `from_single_file` turning the file back into the pipeline, image for image,
is what the tests check. The tiny model used is the test assets' tiny SDXL with a wider second
text encoder (48 instead of 32): diffusers tells SDXL's two CLIP encoders apart by their widths
(768 and 1280 in the real model), which the standard tiny model gives both as 32.
"""

from __future__ import annotations

import re
from pathlib import Path

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
          "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2", "conv_in": "input_blocks.0.0",
            "conv_norm_out": "out.0", "conv_out": "out.2", "add_embedding.linear_1": "label_emb.0.0",
            "add_embedding.linear_2": "label_emb.0.2"}


def _resnet(rest: str) -> str:
    part, _, tail = rest.partition(".")
    return f"{RESNET.get(part, part)}.{tail}"


def unet_to_original(state: dict, layers_per_block: int, attention_blocks: set[int]) -> dict:
    """diffusers UNet2DConditionModel keys -> `model.diffusion_model.*`; `attention_blocks`: the up blocks with attentions."""
    per = layers_per_block + 1
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module in UNET_TOP:
            out[f"{UNET_TOP[module]}.{leaf}"] = value
            continue
        if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            out[f"input_blocks.{1 + b * per + j}.0.{_resnet(rest)}"] = value
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            out[f"input_blocks.{1 + int(m[1]) * per + int(m[2])}.1.{m[3]}"] = value
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            out[f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"] = value
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            out[f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"] = value
        elif m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
            out[f"middle_block.1.{m[1]}"] = value
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            out[f"output_blocks.{int(m[1]) * per + int(m[2])}.0.{_resnet(m[3])}"] = value
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            out[f"output_blocks.{int(m[1]) * per + int(m[2])}.1.{m[3]}"] = value
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            b = int(m[1])
            out[f"output_blocks.{b * per + layers_per_block}.{2 if b in attention_blocks else 1}.conv.{m[2]}"] = value
        else:
            raise KeyError(f"no original name for UNet key {key}")
    return {f"model.diffusion_model.{key}": value for key, value in out.items()}


def vae_to_original(state: dict, levels: int) -> dict:
    """diffusers AutoencoderKL keys -> `first_stage_model.*` (attention as 1x1 convolutions)."""
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out")
        if m := re.match(r"(encoder)\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m[2]}.block.{m[3]}.{m[4].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            new = f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
            new = f"{m[1]}.mid.attn_1.{VAE_ATTENTION[m[2]]}.{m[3]}"
            if m[3] == "weight" and value.ndim == 2:
                value = value[:, :, None, None]
        out[new] = value
    return {f"first_stage_model.{key}": value for key, value in out.items()}


def clip_l_to_original(state: dict) -> dict:
    """CLIPTextModel keys -> `conditioner.embedders.0.transformer.text_model.*` (with or without transformers' text_model level)."""
    return {"conditioner.embedders.0.transformer." + (k if k.startswith("text_model.") else "text_model." + k): v
            for k, v in state.items() if not k.endswith("position_ids")}


def clip_g_to_original(state: dict) -> dict:
    """CLIPTextModelWithProjection keys -> OpenCLIP's `conditioner.embedders.1.model.*` (fused in_proj, transposed projection)."""
    import torch

    state = {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v for k, v in state.items()}
    out = {"positional_embedding": state["text_model.embeddings.position_embedding.weight"],
           "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
           "ln_final.weight": state["text_model.final_layer_norm.weight"],
           "ln_final.bias": state["text_model.final_layer_norm.bias"],
           "text_projection": state["text_projection.weight"].T.contiguous()}
    layers = {int(m[1]) for k in state if (m := re.match(r"text_model\.encoder\.layers\.(\d+)\.", k))}
    for n in sorted(layers):
        src, dst = f"text_model.encoder.layers.{n}.", f"transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([state[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out[f"{dst}attn.out_proj.{kind}"] = state[f"{src}self_attn.out_proj.{kind}"]
            out[f"{dst}ln_1.{kind}"] = state[f"{src}layer_norm1.{kind}"]
            out[f"{dst}ln_2.{kind}"] = state[f"{src}layer_norm2.{kind}"]
            out[f"{dst}mlp.c_fc.{kind}"] = state[f"{src}mlp.fc1.{kind}"]
            out[f"{dst}mlp.c_proj.{kind}"] = state[f"{src}mlp.fc2.{kind}"]
    return {f"conditioner.embedders.1.model.{key}": value for key, value in out.items()}


def build_tiny_sdxl():
    """The tiny test SDXL with a 48-wide second text encoder (see the module docstring); random weights, seed 0."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from siso_lib.offline.tiny_models import CLIP_TOKENS, TEXT_ENCODERS, UNETS, build_sdxl_pipeline

    pipe = build_sdxl_pipeline("tiny")
    torch.manual_seed(1)
    wide = dict(TEXT_ENCODERS["tiny"][1], hidden_size=48, projection_dim=48)
    pipe.text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_TOKENS, **wide)).eval()
    unet = dict(UNETS["tiny"], cross_attention_dim=32 + 48, projection_class_embeddings_input_dim=6 * 8 + 48)
    pipe.unet = UNet2DConditionModel(in_channels=4, out_channels=4, use_linear_projection=True,
                                     addition_embed_type="text_time", **unet).eval()
    pipe.register_modules(text_encoder_2=pipe.text_encoder_2, unet=pipe.unet)
    return pipe


def write_single_file(pipe, path: Path) -> Path:
    """`pipe` (SDXL) as one original-layout .safetensors file, fp32."""
    from safetensors.torch import save_file

    unet = pipe.unet
    attention_up = {i for i, kind in enumerate(unet.config.up_block_types) if "CrossAttn" in kind}
    state = {
        **unet_to_original(unet.state_dict(), unet.config.layers_per_block, attention_up),
        **vae_to_original(pipe.vae.state_dict(), len(pipe.vae.config.block_out_channels)),
        **clip_l_to_original(pipe.text_encoder.state_dict()),
        **clip_g_to_original(pipe.text_encoder_2.state_dict()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.detach().float().contiguous() for key, value in state.items()}, str(path))
    return path


def write_tiny_checkpoint(folder: Path) -> tuple[Path, Path]:
    """(the .safetensors checkpoint, a diffusers folder of the same pipeline) under `folder`; the folder
    minus its weights is the config the checkpoint loads with (SISO_SINGLE_FILE_CONFIG)."""
    pipe = build_tiny_sdxl()
    diffusers_folder = folder / "tiny-sdxl-wide"
    pipe.save_pretrained(diffusers_folder)
    config_folder = folder / "tiny-sdxl-wide-config"
    import shutil

    shutil.copytree(diffusers_folder, config_folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return write_single_file(pipe, folder / "checkpoints" / "tiny_sdxl_wide.safetensors"), config_folder
