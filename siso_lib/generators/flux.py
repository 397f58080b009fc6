"""FLUX.1 (schnell, and dev) behind the generator interface (base.py): a LoRA on the MM-DiT transformer.

The authors' recipe (`siso_generation_flux.py`, README command): LoRA rank 4 on the attention
and feed-forward projections of every block (`FLUX_LORA_TARGETS`), a LoRA on CLIP-L (q/k/v/out,
its own lr 5e-6 and weight decay 1e-3), guidance 0, T5 prompt length 256, 512 px, 1 step, and
gradients through every denoising step. `FluxGenerator.forward` runs the pipeline's own parts:

    c      = CLIP-L(prompt).pooled                      # [1, 768]; grad iff CLIP LoRA
    e      = T5(prompt)                                 # [1, L, 4096]; frozen, cached unless mode=reference
    z_1    = pack(randn(generator))                     # [1, (H/16)(W/16), 64], the same noise every call
    sigmas = linspace(1, 1/N, N), shifted by mu(image tokens)   (as FluxPipeline)
    z      = z + (s_next - s) * transformer(z, s, e, c) # flow-matching Euler, grad through the last
                                                        # `num_grad_steps` steps (0 = all, the authors')
    x      = clamp(vae.decode(unpack(z) / a + b) / 2 + 1/2)      # [1, 3, H, W] in [0, 1], float32

which equals `FluxPipeline(prompt, guidance_scale, max_sequence_length, output_type="pt")` for
the same generator (diffusers wraps `__call__` in `no_grad`; a test checks the equality).

Memory (see docs/families.md): T5-XXL is frozen, so its embedding is computed once and
T5 moves off the accelerator; CLIP-L too when it has no LoRA; gradient checkpointing covers the
transformer blocks and the VAE decoder (`--mode low-memory`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

from ..config import FAMILY_RECIPES
from .base import LoRAGenerator, grad_step_flags


@dataclass
class FluxInputs:
    """What every iteration's image shares; built once per run by `FluxGenerator.prepare`."""

    prompt: str
    latents: torch.Tensor  # [1, (H/16)(W/16), 4 * C], packed 2x2 latent patches
    image_ids: torch.Tensor  # [(H/16)(W/16), 3] rotary position ids of the image tokens
    sigmas: list[float] | None  # the sigma schedule handed to the scheduler (None with use_flow_sigmas)
    mu: float  # the resolution-dependent shift of that schedule
    timesteps: torch.Tensor  # [N]
    height: int
    width: int
    guidance: torch.Tensor | None  # [1] for guidance-distilled models (FLUX.1-dev), None for schnell
    t5_embeds: torch.Tensor | None = None  # [1, L, 4096] when cached
    pooled: torch.Tensor | None = None  # [1, 768] when cached (CLIP without LoRA)


class FluxGenerator(LoRAGenerator):
    """FLUX.1 rendering with gradients (see the module doc for the maths and shapes)."""

    family = "flux"
    pipeline_class_name = "FluxPipeline"
    denoiser_name = "transformer"
    denoiser_class_name = "FluxTransformer2DModel"
    text_encoder_names = ("text_encoder", "text_encoder_2")  # CLIP-L, T5-XXL
    lora_text_encoder_names = ("text_encoder",)  # the authors train CLIP-L only
    default_model = FAMILY_RECIPES["flux"]["pretrained_model_name_or_path"]

    def __init__(
        self,
        pipe,
        device: torch.device,
        train_text_encoder: bool = True,
        cache_prompt_embeddings: bool = False,
        num_grad_steps: int = 0,
        guidance_scale: float = 0.0,
        max_sequence_length: int = 256,
    ):
        super().__init__(pipe, device, train_text_encoder, cache_prompt_embeddings)
        self.num_grad_steps = num_grad_steps
        self.guidance_scale = guidance_scale
        self.max_sequence_length = max_sequence_length


    # ------------------------------------------------------------------ prompt
    def encode_t5(self, prompt: str) -> torch.Tensor:
        """prompt -> T5 token embeddings [1, max_sequence_length, 4096] on the run's device (no grad: T5 is frozen)."""
        encoder = self.pipe.text_encoder_2
        with torch.no_grad():
            embeds = self.pipe._get_t5_prompt_embeds(
                prompt=prompt, num_images_per_prompt=1, max_sequence_length=self.max_sequence_length, device=encoder.device
            )
        return embeds.to(self.device)

    def encode_clip(self, prompt: str) -> torch.Tensor:
        """prompt -> CLIP-L pooled embedding [1, 768]; differentiable when CLIP carries the LoRA."""
        encoder = self.pipe.text_encoder
        with torch.set_grad_enabled(self.train_text_encoder and torch.is_grad_enabled()):
            pooled = self.pipe._get_clip_prompt_embeds(prompt=prompt, num_images_per_prompt=1, device=encoder.device)
        return pooled.to(self.device)

    # ------------------------------------------------------------------ the interface
    def prepare(self, prompt: str, generator: torch.Generator, height: int, width: int, num_inference_steps: int = 1) -> FluxInputs:
        pipe = self.pipe
        t5_embeds = pooled = None
        if self.cache_prompt_embeddings:
            t5_embeds = self.encode_t5(prompt)
            if not self.train_text_encoder:
                with torch.no_grad():
                    pooled = self.encode_clip(prompt)
        embeds_dtype = pipe.text_encoder_2.dtype
        latents, image_ids = pipe.prepare_latents(
            1, pipe.transformer.config.in_channels // 4, height, width, embeds_dtype, self.device, generator
        )
        scheduler_config = pipe.scheduler.config
        sigmas = None if scheduler_config.get("use_flow_sigmas") else np.linspace(1.0, 1 / num_inference_steps, num_inference_steps).tolist()
        mu = calculate_shift(
            latents.shape[1],
            scheduler_config.get("base_image_seq_len", 256),
            scheduler_config.get("max_image_seq_len", 4096),
            scheduler_config.get("base_shift", 0.5),
            scheduler_config.get("max_shift", 1.15),
        )
        guidance = None
        if pipe.transformer.config.guidance_embeds:
            guidance = torch.full([1], self.guidance_scale, device=self.device, dtype=torch.float32)
        inputs = FluxInputs(
            prompt=prompt, latents=latents, image_ids=image_ids, sigmas=sigmas, mu=mu,
            timesteps=torch.empty(0), height=height, width=width, guidance=guidance, t5_embeds=t5_embeds, pooled=pooled,
        )
        self._set_timesteps(inputs, num_inference_steps)
        inputs.timesteps = pipe.scheduler.timesteps.clone()
        return inputs

    def _set_timesteps(self, inputs: FluxInputs, num_inference_steps: int) -> None:
        scheduler = self.pipe.scheduler
        if inputs.sigmas is None:
            scheduler.set_timesteps(num_inference_steps, device=self.device, mu=inputs.mu)
        else:
            scheduler.set_timesteps(sigmas=inputs.sigmas, device=self.device, mu=inputs.mu)
        scheduler.set_begin_index(0)

    def start(self, inputs: FluxInputs) -> None:
        self._set_timesteps(inputs, len(inputs.timesteps))

    def forward(self, inputs: FluxInputs, ancestral_noise: bool = True) -> torch.Tensor:  # noqa: ARG002 (no ancestral noise)
        pipe = self.pipe
        t5_embeds = inputs.t5_embeds if inputs.t5_embeds is not None else self.encode_t5(inputs.prompt)
        pooled = inputs.pooled if inputs.pooled is not None else self.encode_clip(inputs.prompt)
        text_ids = torch.zeros(t5_embeds.shape[1], 3, device=self.device, dtype=pipe.text_encoder.dtype)
        latents = inputs.latents
        grad_enabled = torch.is_grad_enabled()
        with_grad = grad_step_flags(len(inputs.timesteps), self.num_grad_steps)
        for index, timestep in enumerate(inputs.timesteps):
            with torch.set_grad_enabled(grad_enabled and with_grad[index]):
                velocity = pipe.transformer(
                    hidden_states=latents,
                    timestep=timestep.expand(latents.shape[0]).to(latents.dtype) / 1000,
                    guidance=inputs.guidance,
                    pooled_projections=pooled,
                    encoder_hidden_states=t5_embeds,
                    txt_ids=text_ids,
                    img_ids=inputs.image_ids,
                    return_dict=False,
                )[0]
                latents = pipe.scheduler.step(velocity, timestep, latents, return_dict=False)[0]
        return self.decode(latents, inputs)

    def decode(self, latents: torch.Tensor, inputs: FluxInputs) -> torch.Tensor:
        """Packed latents -> image [1, 3, H, W] float32 in [0, 1] (FLUX's VAE scale and shift)."""
        pipe, vae = self.pipe, self.pipe.vae
        latents = pipe._unpack_latents(latents, inputs.height, inputs.width, pipe.vae_scale_factor)
        latents = latents / vae.config.scaling_factor + vae.config.shift_factor
        image = vae.decode(latents.to(vae.dtype), return_dict=False)[0]
        return pipe.image_processor.postprocess(image, output_type="pt").float()
