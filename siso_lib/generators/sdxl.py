"""SDXL (SDXL-Turbo) behind the generator interface (base.py): a LoRA on the UNet, one image with gradients.

`load_sdxl_pipeline` loads any SDXL-architecture pipeline (hub id or local diffusers folder)
and checks that it is SDXL-shaped. `SDXLGenerator.add_lora` (base.py) attaches rank-r adapters
(peft, gaussian init, B starts at zero) to the UNet attention projections and, optionally, to
both CLIP text encoders, under a fixed seed and in the reference order (UNet, text encoder 1,
text encoder 2), so the initial LoRA is the one the authors' `siso_generation_sdxl.py` draws.

`SDXLGenerator.generate` runs the pipeline's own components step by step:

    e, p   = encode_prompt(prompt)                 # [1, 77, 2048], [1, 1280]; grad iff TE LoRA
    z_T    = randn(generator) * init_noise_sigma   # [1, 4, H/8, W/8], same noise every call
    z_t-1  = scheduler.step(unet(z_t, t, e, p))    # grad through the last `num_grad_steps` (1) steps
    x      = clamp(vae.decode(z_0 / s) / 2 + 1/2)  # [1, 3, H, W] in [0, 1], float32

which equals `pipe(prompt, guidance_scale=0, output_type="pt")` for the same generator, but
keeps the autograd graph (diffusers wraps `__call__` in `no_grad`). With text-encoder LoRA the
prompt is encoded from token ids tokenized once, with the pipeline's own encoders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from diffusers import StableDiffusionXLPipeline

from ..config import DEFAULT_BASE_MODEL, TEXT_ENCODER_LORA_TARGETS, UNET_LORA_TARGETS
from ..errors import SISOInputError, error_summary
from . import base
from .base import TRAINED_ADAPTER, LoRAGenerator, grad_step_flags  # noqa: F401 (TRAINED_ADAPTER re-exported)

logger = logging.getLogger(__name__)


def load_sdxl_pipeline(
    name_or_path: str,
    torch_dtype: torch.dtype = torch.float32,
    vae_name_or_path: str | None = None,
    revision: str | None = None,
    variant: str | None = None,
    cache_dir: str | None = None,
) -> StableDiffusionXLPipeline:
    """Load an SDXL pipeline on the CPU in `torch_dtype`; raise SISOInputError if it cannot be."""
    return SDXLGenerator.load_pipeline(
        name_or_path, torch_dtype, revision=revision, variant=variant, cache_dir=cache_dir, vae_name_or_path=vae_name_or_path
    )


@dataclass
class GenerationInputs:
    """Everything an iteration's image depends on except the LoRA weights; built once per run.

    The same tensors are reused by every iteration, which is what lets a CUDA graph replay
    them (see cuda_graphs.py). `embeds`/`pooled` are set when the prompt's encoding is cached,
    else `token_ids` and the prompt is encoded every iteration (with gradients iff text-encoder
    LoRA is trained).
    """

    latents: torch.Tensor  # [1, 4, H/8, W/8], the seeded starting noise times init_noise_sigma
    timesteps: torch.Tensor  # [num_inference_steps] on the device
    time_ids: torch.Tensor  # [1, 6]
    noise_state: torch.Tensor  # the generator's state after drawing `latents`, for the ancestral noise
    token_ids: tuple[torch.Tensor, torch.Tensor] | None = None  # [1, 77] each
    embeds: torch.Tensor | None = None  # [1, 77, 2048]
    pooled: torch.Tensor | None = None  # [1, 1280]
    latents_mean: torch.Tensor | None = None  # [1, 4, 1, 1] for VAEs that declare them
    latents_std: torch.Tensor | None = None


class SDXLGenerator(LoRAGenerator):
    """Generates one image per call from a fixed prompt and a freshly seeded generator.

    `generate()` does it all; the optimiser splits it so that the device work of an iteration
    needs no host data: `prepare()` once per run, then per iteration `start()` (host-side
    scheduler state and noise generator) and `forward()` (device work only, capturable).
    """

    family = "sdxl"
    pipeline_class_name = "StableDiffusionXLPipeline"
    denoiser_name = "unet"
    text_encoder_names = ("text_encoder", "text_encoder_2")
    lora_text_encoder_names = ("text_encoder", "text_encoder_2")
    supports_cuda_graphs = True
    default_model = DEFAULT_BASE_MODEL

    def __init__(
        self,
        pipe: StableDiffusionXLPipeline,
        device: torch.device,
        train_text_encoder: bool,
        cache_prompt_embeddings: bool = False,
        num_grad_steps: int = 1,
    ):
        super().__init__(pipe, device, train_text_encoder, cache_prompt_embeddings and not train_text_encoder)
        self.num_grad_steps = num_grad_steps
        self._cached: tuple[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._noise: torch.Generator | None = None

    @classmethod
    def check_pipeline(cls, pipe, name_or_path: str) -> None:
        if not getattr(pipe.unet.config, "addition_embed_type", None) == "text_time":
            raise SISOInputError(f"base model {name_or_path!r} has a non-SDXL UNet: SISO here needs an SDXL pipeline")

    def place(self, dtype, gradient_checkpointing, offload_text_encoders, compile) -> None:
        super().place(dtype, gradient_checkpointing, offload_text_encoders, compile)
        if dtype == torch.float16:
            self.pipe.vae.to(torch.float32)  # fp16 SDXL VAEs overflow; bf16 has fp32's range and is fine

    def encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """prompt -> (token embeddings [1, 77, 2048], pooled embedding [1, 1280])."""
        if self._cached is not None and self._cached[0] == prompt:
            return self._cached[1]
        text_device = self.pipe.text_encoder.device
        with torch.set_grad_enabled(self.train_text_encoder and torch.is_grad_enabled()):
            embeds, _, pooled, _ = self.pipe.encode_prompt(
                prompt=prompt, device=text_device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
        embeds, pooled = embeds.to(self.device), pooled.to(self.device)
        if self.cache_prompt_embeddings:
            embeds, pooled = embeds.detach(), pooled.detach()
            self._cached = (prompt, (embeds, pooled))
        return embeds, pooled

    def tokenize(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """prompt -> the two tokenizers' ids [1, 77], padded and truncated as encode_prompt does."""
        pipe = self.pipe
        return tuple(
            tokenizer(
                prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
            ).input_ids.to(self.device)
            for tokenizer in (pipe.tokenizer, pipe.tokenizer_2)
        )

    def encode_ids(self, token_ids: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids -> (embeds [1, 77, 2048], pooled [1, 1280]); equals `encode`, without the host work.

        SDXL conditions on both encoders' penultimate hidden states side by side, and on the
        second encoder's projected pooled output.
        """
        hidden, pooled = [], None
        for ids, encoder in zip(token_ids, (self.pipe.text_encoder, self.pipe.text_encoder_2)):
            output = encoder(ids, output_hidden_states=True)
            if output[0].ndim == 2:
                pooled = output[0]
            hidden.append(output.hidden_states[-2])
        return torch.cat(hidden, dim=-1).to(self.pipe.text_encoder_2.dtype), pooled

    def prepare(
        self, prompt: str, generator: torch.Generator, height: int, width: int, num_inference_steps: int = 1
    ) -> GenerationInputs:
        pipe = self.pipe
        text_encoder_2 = pipe.text_encoder_2
        if not self.cache_prompt_embeddings:
            token_ids, embeds, pooled = self.tokenize(prompt), None, None
            embeds_dtype = text_encoder_2.dtype
        else:
            with torch.no_grad():
                embeds, pooled = self.encode(prompt)
            token_ids, embeds_dtype = None, embeds.dtype  # encode() detached and cached them
        pipe.scheduler.set_timesteps(num_inference_steps, device=self.device)
        latents = pipe.prepare_latents(1, pipe.unet.config.in_channels, height, width, embeds_dtype, self.device, generator)
        time_ids = pipe._get_add_time_ids(
            (height, width), (0, 0), (height, width), dtype=embeds_dtype,
            text_encoder_projection_dim=text_encoder_2.config.projection_dim,
        ).to(self.device)
        vae_config = pipe.vae.config
        mean, std = getattr(vae_config, "latents_mean", None), getattr(vae_config, "latents_std", None)
        if mean is not None and std is not None:
            vae_dtype = pipe.vae.dtype
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(self.device, vae_dtype)
            std = torch.tensor(std).view(1, -1, 1, 1).to(self.device, vae_dtype)
        else:
            mean = std = None
        self._noise = generator
        return GenerationInputs(
            latents=latents, timesteps=pipe.scheduler.timesteps.clone(), time_ids=time_ids,
            noise_state=generator.get_state(), token_ids=token_ids, embeds=embeds, pooled=pooled,
            latents_mean=mean, latents_std=std,
        )

    def start(self, inputs: GenerationInputs) -> None:
        """Host-side reset before each iteration: scheduler at step 0, noise generator rewound."""
        scheduler = self.pipe.scheduler
        scheduler.set_timesteps(len(inputs.timesteps), device=self.device)
        scheduler.set_begin_index(0)  # else the scheduler finds its index with a host-synchronising search
        self._noise.set_state(inputs.noise_state)

    def forward(self, inputs: GenerationInputs, ancestral_noise: bool = True) -> torch.Tensor:
        """Image [1, 3, H, W] float32 in [0, 1]; differentiable w.r.t. the LoRA weights.

        Gradients flow through the last `num_grad_steps` denoising steps. `ancestral_noise=False` draws the
        ancestral sampler's noise from the default generator instead of the seeded one; that
        changes nothing for one step, where the noise is multiplied by sigma_up = 0.
        """
        pipe = self.pipe
        if inputs.token_ids is not None:
            with torch.set_grad_enabled(self.train_text_encoder and torch.is_grad_enabled()):
                embeds, pooled = self.encode_ids(inputs.token_ids)
        else:
            embeds, pooled = inputs.embeds, inputs.pooled
        latents = inputs.latents
        step_kwargs = pipe.prepare_extra_step_kwargs(self._noise if ancestral_noise else None, 0.0)
        grad_enabled = torch.is_grad_enabled()
        with_grad = grad_step_flags(len(inputs.timesteps), self.num_grad_steps)
        for index, timestep in enumerate(inputs.timesteps):
            with torch.set_grad_enabled(grad_enabled and with_grad[index]):
                model_input = pipe.scheduler.scale_model_input(latents, timestep)
                noise_pred = pipe.unet(
                    model_input,
                    timestep,
                    encoder_hidden_states=embeds,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": inputs.time_ids},
                    return_dict=False,
                )[0]
                latents = pipe.scheduler.step(noise_pred, timestep, latents, **step_kwargs, return_dict=False)[0]
        return self.decode(latents, inputs)

    def decode(self, latents: torch.Tensor, inputs: GenerationInputs) -> torch.Tensor:
        vae = self.pipe.vae
        latents = latents.to(vae.dtype)
        if inputs.latents_mean is not None:
            latents = latents * inputs.latents_std / vae.config.scaling_factor + inputs.latents_mean
        else:
            latents = latents / vae.config.scaling_factor
        image = vae.decode(latents, return_dict=False)[0]
        return self.pipe.image_processor.postprocess(image, output_type="pt").float()
