"""The diffusers-format configs a single-file checkpoint is loaded with: SDXL-Turbo and FLUX.1-schnell.

A single-file checkpoint holds weights only. diffusers' `from_single_file` needs the pipeline's
component configs besides (and tokenizers, which no checkpoint holds), and fetches them from the
hub unless it is given a local folder. These are those configs, written here from the published
architectures (the same numbers as offline/tiny_models.py's full-size builders; a test compares
them), so that loading a checkpoint never reaches the hub. `single_file.py` writes them out as a
folder (file name -> JSON object) and adds the tokenizers.
"""

from __future__ import annotations

from typing import Any

CLIP_L = {  # CLIP ViT-L/14's text tower: SDXL's first text encoder and FLUX.1's CLIP
    "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "vocab_size": 49408, "max_position_embeddings": 77,
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
    "projection_dim": 768, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "dropout": 0.0,
    "initializer_factor": 1.0, "initializer_range": 0.02, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1,
}
CLIP_BIG_G = {  # OpenCLIP ViT-bigG/14's text tower with its projection: SDXL's second text encoder
    **CLIP_L, "architectures": ["CLIPTextModelWithProjection"], "hidden_size": 1280, "intermediate_size": 5120,
    "num_hidden_layers": 32, "num_attention_heads": 20, "projection_dim": 1280, "hidden_act": "gelu",
}

SDXL_TURBO: dict[str, dict[str, Any]] = {
    "model_index.json": {
        "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.1", "force_zeros_for_empty_prompt": True,
        "add_watermarker": None,
        "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "feature_extractor": [None, None], "image_encoder": [None, None],
    },
    "scheduler/scheduler_config.json": {
        "_class_name": "EulerAncestralDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon", "steps_offset": 1,
        "timestep_spacing": "trailing", "trained_betas": None,
    },
    "unet/config.json": {
        "_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 4, "out_channels": 4,
        "block_out_channels": [320, 640, 1280], "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10], "cross_attention_dim": 2048,
        "addition_embed_type": "text_time", "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816,
        "norm_num_groups": 32, "norm_eps": 1e-5, "use_linear_projection": True, "act_fn": "silu", "flip_sin_to_cos": True,
        "freq_shift": 0, "upcast_attention": False,
    },
    "vae/config.json": {
        "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 512,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4, "act_fn": "silu",
        "scaling_factor": 0.13025, "force_upcast": True,
    },
    "text_encoder/config.json": CLIP_L,
    "text_encoder_2/config.json": CLIP_BIG_G,
}

FLUX_SCHNELL: dict[str, dict[str, Any]] = {
    "model_index.json": {
        "_class_name": "FluxPipeline", "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"], "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"], "feature_extractor": [None, None], "image_encoder": [None, None],
    },
    "scheduler/scheduler_config.json": {
        "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0,
        "use_dynamic_shifting": False, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
        "max_image_seq_len": 4096,
    },
    "transformer/config.json": {
        "_class_name": "FluxTransformer2DModel", "patch_size": 1, "in_channels": 64, "num_layers": 19,
        "num_single_layers": 38, "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
        "pooled_projection_dim": 768, "guidance_embeds": False, "axes_dims_rope": [16, 56, 56],
    },
    "vae/config.json": {
        "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 16,
        "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 1024,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4, "act_fn": "silu",
        "scaling_factor": 0.3611, "shift_factor": 0.1159, "use_quant_conv": False, "use_post_quant_conv": False,
        "mid_block_add_attention": True, "force_upcast": True,
    },
    "text_encoder/config.json": CLIP_L,
    "text_encoder_2/config.json": {  # T5-v1.1-XXL's encoder
        "architectures": ["T5EncoderModel"], "model_type": "t5", "vocab_size": 32128, "d_model": 4096, "d_ff": 10240,
        "d_kv": 64, "num_layers": 24, "num_heads": 64, "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new",
        "is_gated_act": True, "layer_norm_epsilon": 1e-6, "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128, "dropout_rate": 0.0, "is_encoder_decoder": False, "use_cache": False,
        "tie_word_embeddings": False, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
    },
}

CONFIGS = {"sdxl": SDXL_TURBO, "flux": FLUX_SCHNELL}
# the tokenizers no checkpoint holds: CLIP's are rebuilt exactly from open_clip's packaged BPE
# vocabulary (pad token as published); FLUX's T5 tokenizer must be found (see single_file.py)
CLIP_TOKENIZERS = {"sdxl": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}, "flux": {"tokenizer": "<|endoftext|>"}}
