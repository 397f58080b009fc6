"""Offline models with random weights, in the same on-disk formats as the real ones.

No model hub is reachable where this package is built, tested and benchmarked, so every model
a test, the demo or a benchmark uses is built here from a config:

    DIR/sdxl/             an SDXL pipeline in diffusers layout (StableDiffusionXLPipeline.from_pretrained)
    DIR/dino/             a DINOv2 in timm's hub layout (config.json + model.safetensors)
    DIR/ir_features.pth   an IR checkpoint in the real file's key format (`module.` prefix, fc2 head)
    DIR/clip/             an open_clip CLIP (the evaluation's CLIP-I / CLIP-T) in open_clip's local-dir layout
    DIR/grounding-dino/   (tiny only) a Grounding-DINO and DIR/sam/ a SAM, transformers' save_pretrained
                          layout (features/detection.py: editing's automatic mask, the evaluation's crop)
    DIR/flux/             (on request) a FLUX.1-schnell pipeline in diffusers layout (FluxPipeline)
    DIR/sana/             (on request) a Sana 1600M 512px pipeline in diffusers layout (SanaPipeline)
    DIR/flux2_klein/      (on request) a FLUX.2 [klein] 4B pipeline in diffusers layout (tiny_klein.py)
    DIR/ASSETS.json       {"size": ..., "sdxl": path, "dino": path, "ir": path, "clip": path,
                           "grounding_dino"/"sam": path (tiny), "flux"/"sana": path if written}

`size="tiny"` gives models that run a whole SISO optimisation on a CPU in seconds;
`size="full"` gives the real architectures (SDXL-Turbo, DINOv2-L/14, IR ViT-H/14, FLUX.1-schnell,
Sana_1600M_512px) with random weights, for GPU benchmarks. The CLIP tokenizers are rebuilt from
the BPE vocabulary that open_clip_torch ships (the same 49,408 tokens as the hub's tokenizers).
The T5 (FLUX) and Gemma (Sana) tokenizers cannot be rebuilt exactly offline; they are built from
English words of that same CLIP vocabulary, in the real tokenizers' formats (T5: SentencePiece
Unigram, unknown characters -> <unk>; Gemma: SentencePiece BPE with byte fallback): a common
word is one token and a rarer one is spelled out, so prompts take a realistic number of tokens
(Sana's 166-word instruction: 334), and both reload with the diffusers/transformers classes.

Command line: `siso-make-test-assets DIR [--size tiny|full] [--model_family sdxl|flux|sana|flux2_klein|all]`
(cli/make_test_assets.py). torch, diffusers and transformers are imported inside the builders
only, so that `--help` and argument errors answer at once. The tokenizers are in tokenizers.py,
the tiny Grounding-DINO and SAM in tiny_detectors.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .building import _default_dtype, _eval
from .tokenizers import make_clip_tokenizer, make_gemma_tokenizer, make_t5_tokenizer

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

# CLIP's vocabulary and special token ids (SDXL's two text encoders and FLUX's CLIP-L)
CLIP_TOKENS = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)

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

# open_clip CLIP for the evaluation's CLIP-I / CLIP-T (the tiny text tower keeps CLIP's 49408-token
# vocabulary: open_clip's own tokenizer ships with the package, so nothing is downloaded)
CLIPS = {
    "tiny": dict(embed_dim=16, vision_cfg=dict(image_size=32, layers=2, width=32, patch_size=8, head_width=16),
                 text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2)),
    "full": "ViT-B-32",  # the evaluation's default architecture, from open_clip's registry
}

# --- FLUX.1-schnell (black-forest-labs/FLUX.1-schnell: scheduler/, transformer/, text_encoder_2/, vae/ configs)

FLUX_SCHNELL_SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=1.0,
    use_dynamic_shifting=False,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)

FLUX_TRANSFORMERS = {
    # sum(axes_dims_rope) must equal attention_head_dim (RoPE over the (text, row, column) ids)
    "tiny": dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2, axes_dims_rope=(4, 6, 6)),
    "full": dict(num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24, axes_dims_rope=(16, 56, 56)),
}

T5_ENCODERS = {
    # T5-v1.1-XXL encoder; tiny takes its vocab_size from the tokenizer (a smaller embedding table)
    "tiny": dict(d_model=32, d_ff=37, num_layers=2, num_heads=4, d_kv=8),
    "full": dict(d_model=4096, d_ff=10240, num_layers=24, num_heads=64, d_kv=64, vocab_size=32128),
}

FLUX_VAES = {
    # 4 levels -> VAE scale factor 8, so the 2x2-packed latent of a 64 px image is 4x4 tokens
    "tiny": dict(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8, sample_size=TINY_RESOLUTION),
    "full": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=1024),
}

# --- Sana_1600M_512px (diffusers' scripts/convert_sana_to_diffusers.py and convert_dcae_to_diffusers.py)

SANA_SCHEDULER = dict(flow_shift=3.0, use_flow_sigmas=True, prediction_type="flow_prediction")

SANA_TRANSFORMERS = {
    # sample_size 16 in both: SanaPipeline's resolution binning accepts only 16/32/64/128 (16 = the 512 px bins);
    # cross_attention_dim must equal heads * head_dim (the captions are projected to the inner width)
    "tiny": dict(num_attention_heads=2, attention_head_dim=16, num_layers=2, num_cross_attention_heads=2,
                 cross_attention_head_dim=16, cross_attention_dim=32),
    "full": dict(num_attention_heads=70, attention_head_dim=32, num_layers=20, num_cross_attention_heads=20,
                 cross_attention_head_dim=112, cross_attention_dim=2240),
}

GEMMA_ENCODERS = {
    # gemma-2-2b-it; its hidden_size is the transformer's caption_channels. Tiny takes vocab_size from the tokenizer.
    "tiny": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                 head_dim=16, query_pre_attn_scalar=16),
    "full": dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                 head_dim=256, query_pre_attn_scalar=256, vocab_size=256000),
}

DC_AES = {
    # dc-ae-f32c32-sana-1.0: 6 levels -> spatial factor 32 (512 px -> 16x16 latent), 32 latent channels;
    # EfficientViT (linear attention) blocks on the 3 deepest levels, as published
    # tiny: no blocks at full resolution (as dc-ae-f32c32-in/mix): the 512 px decode then takes ~0.04 CPU-s, not ~0.1
    "tiny": dict(block_out_channels=(8, 8, 16, 16, 32, 32), encoder_layers_per_block=(0, 1, 1, 1, 1, 1),
                 decoder_layers_per_block=(0, 1, 1, 1, 1, 1), attention_head_dim=8),
    "full": dict(block_out_channels=(128, 256, 512, 512, 1024, 1024), encoder_layers_per_block=(2, 2, 2, 3, 3, 3),
                 decoder_layers_per_block=(3, 3, 3, 3, 3, 3), attention_head_dim=32),
}

# Published parameter counts, for checking the "full" configs (tests/test_test_assets.py); the
# configs above give, on the meta device: 11,891,178,560 / 4,762,310,656 / 1,604,462,752 / 2,614,341,888
PUBLISHED_PARAMETERS = {
    "flux.transformer": 11.9e9,  # FLUX.1 "12 B"; dev's 11.90 B includes a guidance embedder schnell lacks
    "flux.text_encoder_2": 4.76e9,  # T5-v1.1-XXL encoder
    "sana.transformer": 1.6e9,  # Sana_1600M
    "sana.text_encoder": 2.61e9,  # gemma-2-2b ("2.6 B", embeddings included)
}

FAMILIES = ("sdxl", "flux", "sana", "flux2_klein")



def build_sdxl_pipeline(size: str = "tiny", device: "str | torch.device" = "cpu", dtype: "torch.dtype | None" = None):
    """An SDXL pipeline with random weights (SDXL-Turbo's architecture and scheduler for 'full'); fp32 by default."""
    import torch
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config_1, config_2 = TEXT_ENCODERS[size]
    torch.manual_seed(0)
    with torch.device(device), _default_dtype(dtype or torch.float32):
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_TOKENS, **config_1))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_TOKENS, **config_2))
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


def build_flux_pipeline(size: str = "tiny", device: "str | torch.device" = "cpu", dtype: "torch.dtype | None" = None):
    """A FLUX.1-schnell pipeline with random weights (schnell's architecture and scheduler for 'full').

    dtype None: float32 for tiny, bfloat16 for full (as published; float32 would be 67 GB).
    Shapes: CLIP-L gives the pooled (B, 768) prompt vector, T5 the (B, L, 4096) sequence (L is the
    pipeline's max_sequence_length); the 16-channel latent of an H x W image is packed 2x2 into
    (B, H/16 * W/16, 64) tokens. Tiny: the same with widths 32, 32 and 16 x 4 latent channels.
    """
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tokenizer_2 = make_t5_tokenizer()
    t5 = {"vocab_size": len(tokenizer_2), **T5_ENCODERS[size]}
    clip = TEXT_ENCODERS[size][0]
    dtype = dtype or (torch.bfloat16 if size == "full" else torch.float32)
    torch.manual_seed(0)
    with torch.device(device), _default_dtype(dtype):
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_TOKENS, **clip))
        # dropout_rate 0: T5Config's default 0.1 stays active in a model built in training mode, and
        # made the images of a built pipeline differ from run to run (by ~1e-2)
        text_encoder_2 = T5EncoderModel(
            T5Config(**t5, feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False, use_cache=False)
        )
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=4 * 16,  # 2x2 patches of the 16-channel latent
            joint_attention_dim=t5["d_model"],
            pooled_projection_dim=clip["hidden_size"],
            guidance_embeds=False,  # schnell is guidance-distilled without a guidance input (dev has one)
            **FLUX_TRANSFORMERS[size],
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=16,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            use_quant_conv=False,
            use_post_quant_conv=False,
            force_upcast=True,
            **FLUX_VAES[size],
        )
    _eval(text_encoder, text_encoder_2, transformer, vae)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHNELL_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=make_clip_tokenizer("<|endoftext|>"),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def build_sana_pipeline(size: str = "tiny", device: "str | torch.device" = "cpu", dtype: "torch.dtype | None" = None):
    """A Sana_1600M_512px pipeline with random weights (its architecture and diffusers' default scheduler for 'full').

    dtype None: float32 (SISO's Sana script runs everything in float32).
    Shapes: Gemma-2 gives (B, L, 2304) prompt states (SanaPipeline keeps <bos> and the last 299 of
    the instruction + prompt); DC-AE maps 512 px to a (B, 32, 16, 16) latent, which the transformer
    sees as 256 tokens of width 2240. Tiny: widths 32, the same latent shape.
    SanaPipeline bins every request to >= 512 px for sample_size 16 and resizes the result.
    """
    import torch
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = make_gemma_tokenizer()
    gemma = {"vocab_size": len(tokenizer), **GEMMA_ENCODERS[size]}
    dc_ae = dict(DC_AES[size])
    channels = dc_ae.pop("block_out_channels")
    torch.manual_seed(0)
    with torch.device(device), _default_dtype(dtype or torch.float32):
        text_encoder = Gemma2Model(
            Gemma2Config(
                **gemma,
                hidden_activation="gelu_pytorch_tanh",
                max_position_embeddings=8192,
                sliding_window=4096,
                attn_logit_softcapping=50.0,
                final_logit_softcapping=30.0,
                rms_norm_eps=1e-6,
                attention_dropout=0.0,
                pad_token_id=0,
                eos_token_id=1,
                bos_token_id=2,
            )
        )
        transformer = SanaTransformer2DModel(
            in_channels=32,
            out_channels=32,
            caption_channels=gemma["hidden_size"],
            mlp_ratio=2.5,
            attention_bias=False,
            sample_size=16,  # 512 px / 32
            patch_size=1,
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            interpolation_scale=None,  # no positional embedding at 512 and 1024 px
            **SANA_TRANSFORMERS[size],
        )
        vae = AutoencoderDC(
            in_channels=3,
            latent_channels=32,
            encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
            decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
            encoder_block_out_channels=channels,
            decoder_block_out_channels=channels,
            encoder_qkv_multiscales=((),) * 3 + ((5,),) * 3,
            decoder_qkv_multiscales=((),) * 3 + ((5,),) * 3,
            downsample_block_type="Conv",
            upsample_block_type="interpolate",
            decoder_norm_types="rms_norm",
            decoder_act_fns="silu",
            scaling_factor=0.41407,
            **dc_ae,
        )
    _eval(text_encoder, transformer, vae)
    return SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(**SANA_SCHEDULER),
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

    from ..features.ir import IRNetwork

    torch.manual_seed(2)
    with torch.device(device):
        network = IRNetwork(**IRS[size])
        fc2 = torch.empty(10000, IRS[size]["feature_dim"])
        torch.nn.init.xavier_uniform_(fc2)
    state = {f"module.{key}": value for key, value in network.state_dict().items()}
    state["module.fc2.weight"] = fc2
    return state


def write_clip(directory: str | os.PathLike, size: str = "tiny") -> str:
    """An open_clip CLIP with random weights in open_clip's local-dir layout (open_clip_config.json +
    open_clip_model.safetensors), loadable offline as `local-dir:<directory>`."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from ..features.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    config = CLIPS[size] if isinstance(CLIPS[size], dict) else open_clip.get_model_config(CLIPS[size])
    torch.manual_seed(3)
    model = open_clip.CLIP(**config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, directory / "open_clip_model.safetensors")
    preprocess = dict(mean=list(OPENAI_CLIP_MEAN), std=list(OPENAI_CLIP_STD))
    (directory / "open_clip_config.json").write_text(json.dumps(dict(model_cfg=config, preprocess_cfg=preprocess), indent=2) + "\n")
    return str(directory)


def write_test_assets(
    directory: str | os.PathLike,
    size: str = "tiny",
    families: "tuple[str, ...] | list[str]" = ("sdxl",),
    keep_existing: bool = False,
) -> dict[str, str]:
    """Write the offline models under `directory`; return the paths that ASSETS.json lists.

    The SDXL pipeline, DINOv2, IR checkpoint and CLIP are always written (every run needs DINO and
    IR; the evaluation also CLIP), and for `size="tiny"` Grounding-DINO and SAM (DIR/grounding-dino/,
    DIR/sam/: an edit's automatic mask; there are no full-size builders);
    `families` may add "flux" (DIR/flux/) and "sana" (DIR/sana/). ASSETS.json lists what the folder
    holds: what this call wrote, plus FLUX/Sana folders that an earlier call of the same size wrote
    and that are still there (so `--model_family flux` then `--model_family sana` lists both).
    `keep_existing`: models that ASSETS.json already lists for this size and that exist are not
    rebuilt (adding a family to a folder other runs are reading leaves their models alone).
    """
    import torch
    from timm.models import save_for_hf

    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown model families {unknown}; choose from {list(FAMILIES)}")
    directory = Path(directory).absolute()  # ASSETS.json's paths work from any folder
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / "ASSETS.json"
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    paths = {
        "sdxl": str(directory / "sdxl"),
        "dino": str(directory / "dino"),
        "ir": str(directory / "ir_features.pth"),
        "clip": str(directory / "clip"),
    }
    if size == "tiny":
        paths |= {"grounding_dino": str(directory / "grounding-dino"), "sam": str(directory / "sam")}

    def kept(name: str) -> bool:
        return keep_existing and previous.get("size") == size and previous.get(name) == paths[name] and Path(paths[name]).exists()

    if not kept("sdxl"):
        build_sdxl_pipeline(size).save_pretrained(paths["sdxl"])
    if not kept("dino"):
        dino, dino_args = build_dino(size)
        save_for_hf(dino, paths["dino"], model_args=dict(num_classes=0, **dino_args), safe_serialization=True)
    if not kept("ir"):
        torch.save(build_ir_state_dict(size), paths["ir"])
    if not kept("clip"):
        write_clip(paths["clip"], size)
    if size == "tiny":
        from .tiny_detectors import write_tiny_grounding_dino, write_tiny_sam

        for name, write in (("grounding_dino", write_tiny_grounding_dino), ("sam", write_tiny_sam)):
            if not kept(name):
                write(paths[name])
    from .tiny_klein import build_flux2_klein_pipeline

    builders = {"flux": build_flux_pipeline, "sana": build_sana_pipeline, "flux2_klein": build_flux2_klein_pipeline}
    for family in builders:
        if family in families:
            paths[family] = str(directory / family)
            if not kept(family):
                builders[family](size).save_pretrained(paths[family])
        elif previous.get("size") == size and previous.get(family) and Path(previous[family]).is_dir():
            paths[family] = previous[family]
    from ..io.atomic import write_text

    write_text(manifest_path, json.dumps({"size": size, **paths}, indent=2) + "\n")
    return paths
