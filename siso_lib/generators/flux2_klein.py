"""FLUX.2 [klein] behind the generator interface (base.py): a LoRA on its MM-DiT transformer.

No author has published SISO settings for klein; the recipe (config.FAMILY_RECIPES["flux2_klein"],
docs/families.md says why each value) renders the distilled 4B model as it is meant to run (4
steps, no guidance) and carries gradients through the last step only. `forward` runs the
pipeline's own parts:

    e      = stack(Qwen3(chat(prompt)).hidden[9, 18, 27])   # [1, L, 3 * 2560]; frozen, computed once
    z_1    = pack(patchify(randn(generator)))               # [1, (H/16)(W/16), 128], the same noise every call
    sigmas = linspace(1, 1/N, N), shifted by mu(image tokens, N)     (as Flux2KleinPipeline)
    z      = z + (s_next - s) * transformer(z, s, e)        # flow-matching Euler; grad through the last
                                                            # `num_grad_steps` steps (0 = all)
    x      = clamp(vae.decode(unpatchify(z * std_bn + mean_bn)) / 2 + 1/2)   # [1, 3, H, W] in [0, 1]

which equals `Flux2KleinPipeline(prompt, output_type="pt")` for the same generator (diffusers wraps
`__call__` in `no_grad`; a test checks the equality at 1 and 4 steps). A base (not distilled)
checkpoint gets classifier-free guidance with the empty prompt, as the pipeline does, when
`guidance_scale` > 1.

Memory: the Qwen3 text encoder is frozen (no text-encoder LoRA), so its embedding is computed once
and it leaves the accelerator; `--mode low-memory` checkpoints the transformer blocks and the VAE
decoder; frozen weights bf16, LoRA fp32 (runtime.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

from ..config import FAMILY_RECIPES
from .base import LoRAGenerator, grad_step_flags

TEXT_ENCODER_OUT_LAYERS = (9, 18, 27)  # the Qwen3 hidden states the pipeline stacks (its default)


@dataclass
class KleinInputs:
    """What every iteration's image shares; built once per run by `Flux2KleinGenerator.prepare`."""

    prompt: str
    latents: torch.Tensor  # [1, (H/16)(W/16), C] packed 2x2 patches of the latent
    latent_ids: torch.Tensor  # [1, (H/16)(W/16), 4] rotary position ids (t, h, w, l) of the image tokens
    sigmas: list[float] | None  # the sigma schedule handed to the scheduler (None with use_flow_sigmas)
    mu: float  # the shift of that schedule for this many image tokens and steps
    timesteps: torch.Tensor  # [N]
    height: int
    width: int
    embeds: torch.Tensor | None = None  # [1, L, 3 * hidden] when cached
    text_ids: torch.Tensor | None = None  # [1, L, 4]
    negative_embeds: torch.Tensor | None = None  # the empty prompt's, for guidance (base checkpoints)
    negative_text_ids: torch.Tensor | None = None


class Flux2KleinGenerator(LoRAGenerator):
    """FLUX.2 [klein] rendering with gradients (see the module doc for the maths and shapes)."""

    family = "flux2_klein"
    pipeline_class_name = "Flux2KleinPipeline"
    denoiser_name = "transformer"
    denoiser_class_name = "Flux2Transformer2DModel"
    text_encoder_names = ("text_encoder",)  # Qwen3: frozen, no LoRA
    lora_text_encoder_names = ()
    default_model = FAMILY_RECIPES["flux2_klein"]["pretrained_model_name_or_path"]

    def __init__(
        self,
        pipe,
        device: torch.device,
        train_text_encoder: bool = False,
        cache_prompt_embeddings: bool = True,
        num_grad_steps: int = 1,
        guidance_scale: float = 1.0,
        max_sequence_length: int = 512,
    ):
        super().__init__(pipe, device, train_text_encoder, cache_prompt_embeddings)
        self.num_grad_steps = num_grad_steps
        self.guidance_scale = guidance_scale
        self.max_sequence_length = max_sequence_length


    @property
    def guided(self) -> bool:
        """Classifier-free guidance: only a base (not step-distilled) checkpoint uses it, as the pipeline."""
        return self.guidance_scale > 1 and not self.pipe.config.is_distilled

    # ------------------------------------------------------------------ prompt
    def encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """prompt -> (embeddings [1, L, 3 * hidden], text ids [1, L, 4]) on the run's device; no grad
        (the text encoder is frozen), wherever the encoder sits."""
        pipe = self.pipe
        encoder = pipe.text_encoder
        with torch.no_grad():
            embeds = pipe._get_qwen3_prompt_embeds(
                text_encoder=encoder, tokenizer=pipe.tokenizer, prompt=prompt, device=encoder.device,
                max_sequence_length=self.max_sequence_length, hidden_states_layers=TEXT_ENCODER_OUT_LAYERS,
            )
        embeds = embeds.to(self.device)
        return embeds, pipe._prepare_text_ids(embeds).to(self.device)

    # ------------------------------------------------------------------ the interface
    def prepare(self, prompt: str, generator: torch.Generator, height: int, width: int, num_inference_steps: int = 4) -> KleinInputs:
        pipe = self.pipe
        inputs = KleinInputs(prompt=prompt, latents=torch.empty(0), latent_ids=torch.empty(0), sigmas=None, mu=0.0,
                             timesteps=torch.empty(0), height=height, width=width)
        if self.cache_prompt_embeddings:
            inputs.embeds, inputs.text_ids = self.encode(prompt)
            if self.guided:
                inputs.negative_embeds, inputs.negative_text_ids = self.encode("")
        inputs.latents, inputs.latent_ids = pipe.prepare_latents(
            1, pipe.transformer.config.in_channels // 4, height, width, pipe.text_encoder.dtype, self.device, generator
        )
        if not pipe.scheduler.config.get("use_flow_sigmas"):
            inputs.sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps).tolist()
        inputs.mu = compute_empirical_mu(image_seq_len=inputs.latents.shape[1], num_steps=num_inference_steps)
        self._set_timesteps(inputs, num_inference_steps)
        inputs.timesteps = pipe.scheduler.timesteps.clone()
        return inputs

    def _set_timesteps(self, inputs: KleinInputs, num_inference_steps: int) -> None:
        scheduler = self.pipe.scheduler
        if inputs.sigmas is None:
            scheduler.set_timesteps(num_inference_steps, device=self.device, mu=inputs.mu)
        else:
            scheduler.set_timesteps(sigmas=inputs.sigmas, device=self.device, mu=inputs.mu)
        scheduler.set_begin_index(0)

    def start(self, inputs: KleinInputs) -> None:
        self._set_timesteps(inputs, len(inputs.timesteps))

    def _velocity(self, latents: torch.Tensor, timestep: torch.Tensor, embeds, text_ids, latent_ids) -> torch.Tensor:
        transformer = self.pipe.transformer
        velocity = transformer(
            hidden_states=latents.to(transformer.dtype),
            timestep=timestep.expand(latents.shape[0]).to(latents.dtype) / 1000,
            guidance=None,
            encoder_hidden_states=embeds,
            txt_ids=text_ids,
            img_ids=latent_ids,
            return_dict=False,
        )[0]
        return velocity[:, : latents.shape[1]]

    def forward(self, inputs: KleinInputs, ancestral_noise: bool = True) -> torch.Tensor:  # noqa: ARG002 (no ancestral noise)
        embeds, text_ids = (inputs.embeds, inputs.text_ids) if inputs.embeds is not None else self.encode(inputs.prompt)
        if self.guided:
            negative = (inputs.negative_embeds, inputs.negative_text_ids) if inputs.negative_embeds is not None else self.encode("")
        latents = inputs.latents
        grad_enabled = torch.is_grad_enabled()
        with_grad = grad_step_flags(len(inputs.timesteps), self.num_grad_steps)
        for index, timestep in enumerate(inputs.timesteps):
            with torch.set_grad_enabled(grad_enabled and with_grad[index]):
                velocity = self._velocity(latents, timestep, embeds, text_ids, inputs.latent_ids)
                if self.guided:
                    unconditional = self._velocity(latents, timestep, negative[0], negative[1], inputs.latent_ids)
                    velocity = unconditional + self.guidance_scale * (velocity - unconditional)
                latents = self.pipe.scheduler.step(velocity, timestep, latents, return_dict=False)[0]
        return self.decode(latents, inputs)

    def decode(self, latents: torch.Tensor, inputs: KleinInputs) -> torch.Tensor:
        """Packed latents -> image [1, 3, H, W] float32 in [0, 1] (the VAE's batch-norm statistics undone)."""
        pipe, vae = self.pipe, self.pipe.vae
        patch = pipe.vae_scale_factor * 2
        latents = pipe._unpack_latents_with_ids(latents, inputs.latent_ids, inputs.height // patch, inputs.width // patch)
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(latents.device, latents.dtype)
        latents = pipe._unpatchify_latents(latents * std + mean)
        image = vae.decode(latents.to(vae.dtype), return_dict=False)[0]
        return pipe.image_processor.postprocess(image, output_type="pt").float()
