"""Sana behind the generator interface (base.py): a LoRA on the linear-attention DiT's q/k/v.

The authors' recipe (`siso_generation_sana.py`, README command, Sana_1600M_512px): LoRA rank 4
on every `to_q/to_k/to_v` (self- and cross-attention; no text-encoder LoRA), lr 8e-4, 20
steps with classifier-free guidance 4.5 against the empty prompt, gradients through the last
`--num_grad_steps` (3) steps, Gemma prompt length 256. `SanaGenerator.forward` runs the
pipeline's own parts:

    e, e0  = Gemma(instruction + prompt), Gemma("")       # [1, L, 2304] each; frozen, encoded once
    z_T    = randn(generator)                              # [1, 32, H/32, W/32], the same noise every call
    v      = transformer([z, z], t, [e0, e])                # CFG: v0 + w (v_c - v0)
    z      = scheduler.step(v, t, z)                        # grad only through the last k steps
    x      = clamp(vae.decode(z / a) / 2 + 1/2)             # [1, 3, H', W'], resized to H x W, in [0, 1]

`instruction` is the "complex human instruction" that `SanaPipeline.__call__` prepends to the
prompt by default (its `encode_prompt` does not, on its own); H' x W' is the pipeline's
resolution bin for the model (512 x 512 for a 512 px request on the 512 px model). The result
equals `SanaPipeline(prompt, guidance_scale, num_inference_steps, max_sequence_length,
output_type="pt")` for the same generator (a test checks it).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from ..config import FAMILY_RECIPES
from ..errors import SISOInputError
from .base import LoRAGenerator, grad_step_flags


def pipeline_instruction() -> list[str]:
    """The prompt prefix `SanaPipeline.__call__` uses by default, read from its signature (no copy kept here)."""
    from diffusers import SanaPipeline

    return list(inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default)


@dataclass
class SanaInputs:
    """What every iteration's image shares; built once per run by `SanaGenerator.prepare`."""

    prompt: str
    latents: torch.Tensor  # [1, 32, h/32, w/32] float32
    timesteps: torch.Tensor  # [N]
    noise_state: torch.Tensor  # the generator's state after drawing `latents` (SDE schedulers draw more)
    height: int  # the requested size
    width: int
    embeds: torch.Tensor | None = None  # [2, L, 2304]: (empty prompt, prompt) when cached; [1, ...] without CFG
    mask: torch.Tensor | None = None  # [2, L] attention mask of `embeds`


class SanaGenerator(LoRAGenerator):
    """Sana rendering with gradients through the last denoising steps (see the module doc)."""

    family = "sana"
    pipeline_class_name = "SanaPipeline"
    denoiser_name = "transformer"
    denoiser_class_name = "SanaTransformer2DModel"
    text_encoder_names = ("text_encoder",)  # Gemma-2, never trained
    lora_text_encoder_names = ()
    default_model = FAMILY_RECIPES["sana"]["pretrained_model_name_or_path"]

    def __init__(
        self,
        pipe,
        device: torch.device,
        train_text_encoder: bool = False,
        cache_prompt_embeddings: bool = False,
        num_grad_steps: int = 3,
        guidance_scale: float = 4.5,
        max_sequence_length: int = 256,
        negative_prompt: str = "",
    ):
        if train_text_encoder:
            raise SISOInputError("Sana has no text-encoder LoRA in SISO: set train_text_encoder to false")
        super().__init__(pipe, device, False, cache_prompt_embeddings)
        self.num_grad_steps = num_grad_steps
        self.guidance_scale = guidance_scale
        self.max_sequence_length = max_sequence_length
        self.negative_prompt = negative_prompt
        self.instruction = pipeline_instruction()
        self._noise: torch.Generator | None = None


    @property
    def guided(self) -> bool:
        return self.guidance_scale > 1.0  # as SanaPipeline.do_classifier_free_guidance

    def encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """prompt -> (embeddings [2 or 1, L, 2304], attention mask [2 or 1, L]); the empty prompt first under CFG."""
        encoder = self.pipe.text_encoder
        with torch.no_grad():
            embeds, mask, negative, negative_mask = self.pipe.encode_prompt(
                prompt, self.guided, negative_prompt=self.negative_prompt, num_images_per_prompt=1,
                device=encoder.device, clean_caption=False, max_sequence_length=self.max_sequence_length,
                complex_human_instruction=self.instruction,
            )
        if self.guided:
            embeds, mask = torch.cat([negative, embeds]), torch.cat([negative_mask, mask])
        return embeds.to(self.device), mask.to(self.device)

    def render_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the pipeline renders at: its aspect-ratio bin for the model's sample size."""
        # the same tables SanaPipeline.__call__ picks from
        from diffusers.pipelines.sana.pipeline_sana import (
            ASPECT_RATIO_512_BIN, ASPECT_RATIO_1024_BIN, ASPECT_RATIO_2048_BIN, ASPECT_RATIO_4096_BIN,
        )

        bins = {16: ASPECT_RATIO_512_BIN, 32: ASPECT_RATIO_1024_BIN, 64: ASPECT_RATIO_2048_BIN, 128: ASPECT_RATIO_4096_BIN}
        ratios = bins.get(self.pipe.transformer.config.sample_size)
        if ratios is None:
            return height, width
        return self.pipe.image_processor.classify_height_width_bin(height, width, ratios=ratios)

    # ------------------------------------------------------------------ the interface
    def prepare(self, prompt: str, generator: torch.Generator, height: int, width: int, num_inference_steps: int = 20) -> SanaInputs:
        pipe = self.pipe
        embeds = mask = None
        if self.cache_prompt_embeddings:
            embeds, mask = self.encode(prompt)
        pipe.scheduler.set_timesteps(num_inference_steps, device=self.device)
        render_height, render_width = self.render_size(height, width)
        latents = pipe.prepare_latents(
            1, pipe.transformer.config.in_channels, render_height, render_width, torch.float32, self.device, generator
        )
        self._noise = generator
        return SanaInputs(
            prompt=prompt, latents=latents, timesteps=pipe.scheduler.timesteps.clone(), noise_state=generator.get_state(),
            height=height, width=width, embeds=embeds, mask=mask,
        )

    def start(self, inputs: SanaInputs) -> None:
        # set_timesteps also clears a multistep solver's memory of earlier model outputs
        self.pipe.scheduler.set_timesteps(len(inputs.timesteps), device=self.device)
        self._noise.set_state(inputs.noise_state)

    def forward(self, inputs: SanaInputs, ancestral_noise: bool = True) -> torch.Tensor:
        pipe, transformer = self.pipe, self.pipe.transformer
        embeds, mask = (inputs.embeds, inputs.mask) if inputs.embeds is not None else self.encode(inputs.prompt)
        dtype = transformer.dtype
        step_kwargs = pipe.prepare_extra_step_kwargs(self._noise if ancestral_noise else None, 0.0)
        latents = inputs.latents
        grad_enabled = torch.is_grad_enabled()
        with_grad = grad_step_flags(len(inputs.timesteps), self.num_grad_steps)
        latent_channels = transformer.config.in_channels
        for index, timestep in enumerate(inputs.timesteps):
            with torch.set_grad_enabled(grad_enabled and with_grad[index]):
                model_input = torch.cat([latents] * 2) if self.guided else latents
                velocity = transformer(
                    model_input.to(dtype),
                    encoder_hidden_states=embeds.to(dtype),
                    encoder_attention_mask=mask,
                    timestep=timestep.expand(model_input.shape[0]) * transformer.config.timestep_scale,
                    return_dict=False,
                )[0].float()
                if self.guided:
                    unconditional, conditional = velocity.chunk(2)
                    velocity = unconditional + self.guidance_scale * (conditional - unconditional)
                if transformer.config.out_channels // 2 == latent_channels:  # learned-sigma models predict twice the channels
                    velocity = velocity.chunk(2, dim=1)[0]
                latents = pipe.scheduler.step(velocity, timestep, latents, **step_kwargs, return_dict=False)[0]
        return self.decode(latents, inputs)

    def decode(self, latents: torch.Tensor, inputs: SanaInputs) -> torch.Tensor:
        """Latents -> image [1, 3, H, W] float32 in [0, 1], resized from the render bin to the requested size."""
        pipe, vae = self.pipe, self.pipe.vae
        image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        if tuple(image.shape[-2:]) != (inputs.height, inputs.width):
            image = pipe.image_processor.resize_and_crop_tensor(image, inputs.width, inputs.height)
        return pipe.image_processor.postprocess(image, output_type="pt").float()
