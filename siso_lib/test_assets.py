"""Offline models with random weights, in the same on-disk formats as the real ones.

No model hub is reachable where this package is built, tested and benchmarked, so every model
a test, the demo or a benchmark uses is built here from a config:

    DIR/sdxl/             an SDXL pipeline in diffusers layout (StableDiffusionXLPipeline.from_pretrained)
    DIR/dino/             a DINOv2 in timm's hub layout (config.json + model.safetensors)
    DIR/ir_features.pth   an IR checkpoint in the real file's key format (`module.` prefix, fc2 head)

`size="tiny"` gives models that run a whole SISO optimisation on a CPU in seconds (~5 MB);
`size="full"` gives the real architectures (SDXL-Turbo, DINOv2-L/14, IR ViT-H/14) with random
weights, for GPU benchmarks. The CLIP tokenizers are rebuilt from the BPE vocabulary that
open_clip_torch ships (the same 49,408 tokens as the hub's tokenizers).

Command line: `siso-make-test-assets DIR [--size tiny|full]`.
"""

from __future__ import annotations

import gzip
import json
import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import OneLineArgumentParser

if TYPE_CHECKING:  # torch is imported inside the builders, so that --help answers at once
    import torch

TINY_RESOLUTION = 64

SDXL_TURBO_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    prediction_type="epsilon",
    steps_offset=1,
    timestep_spacing="trailing",
)

TEXT_ENCODERS = {
    "tiny": (
        dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, projection_dim=32, hidden_act="quick_gelu"),
        dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, projection_dim=32, hidden_act="gelu"),
    ),
    "full": (
        dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, projection_dim=768, hidden_act="quick_gelu"),
        dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, projection_dim=1280, hidden_act="gelu"),
    ),
}

UNETS = {
    "tiny": dict(
        sample_size=TINY_RESOLUTION // 8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 1),
        addition_time_embed_dim=8,
        cross_attention_dim=64,
        projection_class_embeddings_input_dim=6 * 8 + 32,
        norm_num_groups=8,
    ),
    "full": dict(
        sample_size=64,
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(5, 10, 20),
        transformer_layers_per_block=(1, 2, 10),
        addition_time_embed_dim=256,
        cross_attention_dim=2048,
        projection_class_embeddings_input_dim=2816,
        norm_num_groups=32,
    ),
}

VAES = {
    "tiny": dict(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8, sample_size=TINY_RESOLUTION),
    "full": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=512),
}

DINOS = {
    "tiny": dict(img_size=56, embed_dim=32, depth=2, num_heads=2, init_values=1.0),
    "full": dict(img_size=518),  # vit_large_patch14_dinov2 as published
}

IRS = {
    # width must be a multiple of 80 (the family's head width); grid g -> input (g-1)*12+14 px
    "tiny": dict(width=160, layers=2, grid=4, mlp_ratio=4.0, tower_dim=32, feature_dim=64),
    "full": dict(width=1280, layers=32, grid=24, mlp_ratio=4.0, tower_dim=1024, feature_dim=64),
}


@lru_cache(maxsize=1)
def clip_vocabulary() -> tuple[dict[str, int], list[str]]:
    """CLIP's byte-level BPE vocab (49,408 tokens) and merges, from open_clip's packaged file."""
    import open_clip.tokenizer as oc_tokenizer

    path = os.path.join(os.path.dirname(oc_tokenizer.__file__), "bpe_simple_vocab_16e6.txt.gz")
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    byte_tokens = list(oc_tokenizer.bytes_to_unicode().values())
    tokens = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def make_clip_tokenizer(pad_token: str):
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocabulary()
    return CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(m.split()) for m in merges],
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token=pad_token,
        model_max_length=77,
    )


@contextmanager
def _default_dtype(dtype: "torch.dtype"):
    """Create parameters directly in `dtype` (a full-size SDXL in fp32 and then cast would need 2x memory)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_sdxl_pipeline(size: str = "tiny", device: "str | torch.device" = "cpu", dtype: "torch.dtype | None" = None):
    """An SDXL pipeline with random weights (SDXL-Turbo's architecture and scheduler for 'full'); fp32 by default."""
    import torch
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config_1, config_2 = TEXT_ENCODERS[size]
    common = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    torch.manual_seed(0)
    with torch.device(device), _default_dtype(dtype or torch.float32):
        text_encoder = CLIPTextModel(CLIPTextConfig(**common, **config_1))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**common, **config_2))
        unet = UNet2DConditionModel(
            in_channels=4,
            out_channels=4,
            use_linear_projection=True,
            addition_embed_type="text_time",
            **UNETS[size],
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            scaling_factor=0.13025,
            force_upcast=True,
            **VAES[size],
        )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=make_clip_tokenizer("<|endoftext|>"),
        tokenizer_2=make_clip_tokenizer("!"),
        unet=unet,
        scheduler=EulerAncestralDiscreteScheduler(**SDXL_TURBO_SCHEDULER),
        add_watermarker=False,
    )


def build_dino(size: str = "tiny", device: "str | torch.device" = "cpu"):
    """A DINOv2 ViT (timm) with random weights, its pretrained_cfg sized to its input."""
    import timm
    import torch

    args = DINOS[size]
    torch.manual_seed(1)
    with torch.device(device):
        model = timm.create_model("vit_large_patch14_dinov2.lvd142m", pretrained=False, num_classes=0, **args)
    cfg = dict(model.pretrained_cfg)
    cfg["input_size"] = (3, args["img_size"], args["img_size"])
    cfg["fixed_input_size"] = True
    model.pretrained_cfg = cfg
    return model, args


def build_ir_state_dict(size: str = "tiny", device: "str | torch.device" = "cpu") -> "dict[str, torch.Tensor]":
    """An IR checkpoint's state dict, keyed as the real ir_features.pth (`module.` prefix, fc2)."""
    import torch

    from .ir_features import IRNetwork

    torch.manual_seed(2)
    with torch.device(device):
        network = IRNetwork(**IRS[size])
        fc2 = torch.empty(10000, IRS[size]["feature_dim"])
        torch.nn.init.xavier_uniform_(fc2)
    state = {f"module.{key}": value for key, value in network.state_dict().items()}
    state["module.fc2.weight"] = fc2
    return state


def write_test_assets(directory: str | os.PathLike, size: str = "tiny") -> dict[str, str]:
    """Write the three offline models under `directory`; return their paths."""
    import torch
    from timm.models import save_for_hf

    directory = Path(directory).absolute()  # ASSETS.json's paths work from any folder
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "sdxl": str(directory / "sdxl"),
        "dino": str(directory / "dino"),
        "ir": str(directory / "ir_features.pth"),
    }
    build_sdxl_pipeline(size).save_pretrained(paths["sdxl"])
    dino, dino_args = build_dino(size)
    save_for_hf(dino, paths["dino"], model_args=dict(num_classes=0, **dino_args), safe_serialization=True)
    torch.save(build_ir_state_dict(size), paths["ir"])
    (directory / "ASSETS.json").write_text(json.dumps({"size": size, **paths}, indent=2) + "\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(
        prog="siso-make-test-assets",
        description="Write offline SDXL, DINOv2 and IR models with random weights (tiny for CPU tests, full for GPU benchmarks).",
    )
    parser.add_argument("directory", help="folder to write sdxl/, dino/ and ir_features.pth into")
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    args = parser.parse_args(argv)
    paths = write_test_assets(args.directory, args.size)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
