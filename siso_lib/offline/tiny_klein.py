"""FLUX.2 [klein] with random weights, in the hub's on-disk layout (Flux2KleinPipeline.save_pretrained).

    DIR/flux2_klein/   transformer/ (Flux2Transformer2DModel), text_encoder/ (Qwen3ForCausalLM),
                       tokenizer/ (Qwen2TokenizerFast with a chat template, built offline: tokenizers.py),
                       vae/ (AutoencoderKLFlux2), scheduler/ (FlowMatchEulerDiscreteScheduler), model_index.json

`size="full"` is FLUX.2-klein-4B's architecture: a 5 + 20 block transformer of width 3072 (24 heads
of 128) reading Qwen3-4B's hidden states of layers 9, 18 and 27 stacked (3 x 2560 = 7680), the
32-channel FLUX.2 VAE, 4 distilled steps; 3.9 B + 4.0 B parameters, bf16. `size="tiny"` keeps every
shape rule at widths of 16-48, and a 28-layer Qwen3 so that the pipeline's layer indices exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .building import _default_dtype, _eval
from .tokenizers import make_qwen3_tokenizer

if TYPE_CHECKING:
    import torch

# black-forest-labs/FLUX.2-klein-4B's scheduler: flow matching, shift from the image size (mu)
KLEIN_SCHEDULER = dict(
    num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
    base_image_seq_len=256, max_image_seq_len=4096, time_shift_type="exponential",
)

KLEIN_TRANSFORMERS = {
    # sum(axes_dims_rope) must equal attention_head_dim (RoPE over the (t, h, w, l) ids);
    # joint_attention_dim is 3 x the text encoder's width (three hidden states stacked)
    "tiny": dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                 axes_dims_rope=(4, 4, 4, 4), timestep_guidance_channels=32),
    "full": dict(num_layers=5, num_single_layers=20, attention_head_dim=128, num_attention_heads=24,
                 axes_dims_rope=(32, 32, 32, 32), timestep_guidance_channels=256),
}

QWEN3_ENCODERS = {
    # Qwen3-4B; tiny takes vocab_size from the tokenizer (a smaller embedding table) and keeps 28
    # layers so that the pipeline's hidden states 9, 18 and 27 exist
    "tiny": dict(hidden_size=16, intermediate_size=32, num_hidden_layers=28, num_attention_heads=2, num_key_value_heads=1,
                 head_dim=8, max_position_embeddings=1024, tie_word_embeddings=True),
    "full": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                 head_dim=128, max_position_embeddings=40960, tie_word_embeddings=True, vocab_size=151936),
}

KLEIN_VAES = {
    # 4 levels -> VAE scale factor 8; the 32-channel latent is patchified 2x2 (128 channels), so a
    # 64 px image is 4x4 tokens
    "tiny": dict(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8, latent_channels=4),
    "full": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, latent_channels=32),
}


def build_flux2_klein_pipeline(size: str = "tiny", device: "str | torch.device" = "cpu", dtype: "torch.dtype | None" = None):
    """A FLUX.2 [klein] pipeline with random weights (the 4B distilled model's architecture for 'full').

    dtype None: float32 for tiny, bfloat16 for full (as published). Shapes: Qwen3 gives three
    (B, L, hidden) hidden states stacked to (B, L, 3 * hidden); the latent of an H x W image is
    (B, 4 * latent_channels, H/16, W/16) after the 2x2 patchify, packed to (B, H/16 * W/16, 4 * latent_channels).
    """
    import torch
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM


    tokenizer = make_qwen3_tokenizer()
    qwen = {"vocab_size": len(tokenizer), **QWEN3_ENCODERS[size]}
    vae_config = KLEIN_VAES[size]
    dtype = dtype or (torch.bfloat16 if size == "full" else torch.float32)
    torch.manual_seed(0)
    with torch.device(device), _default_dtype(dtype):
        text_encoder = Qwen3ForCausalLM(Qwen3Config(**qwen, pad_token_id=tokenizer.pad_token_id))
        transformer = Flux2Transformer2DModel(
            patch_size=1,
            in_channels=4 * vae_config["latent_channels"],  # 2x2 patches of the latent
            joint_attention_dim=3 * qwen["hidden_size"],
            guidance_embeds=False,  # the distilled model takes no guidance input
            **KLEIN_TRANSFORMERS[size],
        )
        vae = AutoencoderKLFlux2(
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, **vae_config,
        )
        if size == "tiny":  # statistics a trained VAE would have, so that un-normalising the latent matters
            vae.bn.running_mean.uniform_(-0.5, 0.5)
            vae.bn.running_var.uniform_(0.5, 2.0)
    _eval(text_encoder, transformer, vae)
    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**KLEIN_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )
