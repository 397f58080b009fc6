"""SDXL with a trainable LoRA, generating one image with gradients.

`load_sdxl_pipeline` loads any SDXL-architecture pipeline (hub id or local diffusers folder)
and checks that it is SDXL-shaped. `add_lora` attaches rank-r adapters (peft, gaussian init, B
starts at zero) to the UNet attention projections and, optionally, to both CLIP text encoders,
under a fixed seed and in the reference order (UNet, text encoder 1, text encoder 2), so the
initial LoRA is the one the authors' script draws.

`SDXLGenerator.generate` runs the pipeline's own components step by step:

    e, p   = encode_prompt(prompt)                 # [1, 77, 2048], [1, 1280]; grad iff TE LoRA
    z_T    = randn(generator) * init_noise_sigma   # [1, 4, H/8, W/8], same noise every call
    z_t-1  = scheduler.step(unet(z_t, t, e, p))    # grad only through the LAST step
    x      = clamp(vae.decode(z_0 / s) / 2 + 1/2)  # [1, 3, H, W] in [0, 1], float32

which equals `pipe(prompt, guidance_scale=0, output_type="pt")` for the same generator, but
keeps the autograd graph (diffusers wraps `__call__` in `no_grad`). With text-encoder LoRA the
prompt is encoded from token ids tokenized once, with the pipeline's own encoders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, StableDiffusionXLPipeline
from diffusers.training_utils import cast_training_params
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from .config import TEXT_ENCODER_LORA_TARGETS, UNET_LORA_TARGETS
from .errors import SISOInputError, error_summary
from .model_paths import check_local_base_model, check_local_vae, is_hub_id

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
    check_local_base_model(name_or_path)
    if vae_name_or_path:
        check_local_vae(vae_name_or_path)
    kwargs = dict(dtype=torch_dtype, revision=revision, variant=variant, cache_dir=cache_dir)
    try:
        if vae_name_or_path:
            kwargs["vae"] = AutoencoderKL.from_pretrained(vae_name_or_path, dtype=torch_dtype, cache_dir=cache_dir)
        pipe = StableDiffusionXLPipeline.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        if is_hub_id(name_or_path) and isinstance(error, OSError):
            raise SISOInputError(
                f"base model {name_or_path!r} is not in the Hugging Face cache and could not be downloaded "
                f"({error_summary(error, 120)}): run `huggingface-cli download {name_or_path}` where the hub is "
                "reachable, or give a local diffusers folder"
            ) from error
        raise SISOInputError(
            f"base model {name_or_path!r} could not be loaded ({error_summary(error)}): give a local SDXL diffusers folder "
            "or a hub id you have downloaded"
        ) from error
    if not getattr(pipe.unet.config, "addition_embed_type", None) == "text_time":
        raise SISOInputError(f"base model {name_or_path!r} has a non-SDXL UNet: SISO here needs an SDXL pipeline")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class LoRASpec:
    rank: int = 4
    alpha: float = 4.0
    train_text_encoder: bool = True

    def unet_config(self) -> LoraConfig:
        return LoraConfig(
            r=self.rank, lora_alpha=self.alpha, init_lora_weights="gaussian", target_modules=list(UNET_LORA_TARGETS)
        )

    def text_encoder_config(self) -> LoraConfig:
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            init_lora_weights="gaussian",
            target_modules=list(TEXT_ENCODER_LORA_TARGETS),
        )


def lora_modules(pipe: StableDiffusionXLPipeline, train_text_encoder: bool) -> dict[str, torch.nn.Module]:
    """The pipeline parts that carry a LoRA, by diffusers' save prefix."""
    parts = {"unet": pipe.unet}
    if train_text_encoder:
        parts["text_encoder"] = pipe.text_encoder
        parts["text_encoder_2"] = pipe.text_encoder_2
    return parts


TRAINED_ADAPTER = "default"  # peft's default name, as the authors' script: the adapter SISO trains


def remove_trained_adapter(pipe: StableDiffusionXLPipeline) -> None:
    """Delete the adapter an earlier SISO run attached (UNet and both text encoders), if any.

    Other adapters (e.g. a LoRA loaded under another name) are left alone.
    """
    for module in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2):
        if TRAINED_ADAPTER in (getattr(module, "peft_config", None) or {}):
            # diffusers models spell it delete_adapters, transformers models delete_adapter
            delete = getattr(module, "delete_adapters", None) or module.delete_adapter
            delete(TRAINED_ADAPTER)


def add_lora(pipe: StableDiffusionXLPipeline, spec: LoRASpec, seed: int) -> list[torch.nn.Parameter]:
    """Freeze the pipeline, attach LoRA adapters under `seed`, return the fp32 trainable params.

    The seed is set immediately before the adapters are created, in the order UNet, text
    encoder 1, text encoder 2: peft's gaussian init then draws the same numbers as upstream.
    An adapter left by an earlier run on the same pipeline is replaced, so a second run starts
    exactly as a run on a freshly loaded pipeline does.
    """
    remove_trained_adapter(pipe)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.requires_grad_(False)
    torch.manual_seed(seed)
    pipe.unet.add_adapter(spec.unet_config())
    if spec.train_text_encoder:
        pipe.text_encoder.add_adapter(spec.text_encoder_config())
        pipe.text_encoder_2.add_adapter(spec.text_encoder_config())
    parts = list(lora_modules(pipe, spec.train_text_encoder).values())
    cast_training_params(parts, dtype=torch.float32)
    return [p for part in parts for p in part.parameters() if p.requires_grad]


class LoRASnapshotter:
    """Takes detached CPU float32 COPIES of the LoRA weights, by part (peft key names).

    peft's state dict aliases the live parameters; without a copy a "best" snapshot would
    silently follow every later update (the reference script's bug). Building that state dict
    walks every module of the UNet (~90 ms of Python per call for SDXL), so the aliasing
    tensors are looked up once; each snapshot then packs them into one buffer on the device and
    copies it to the CPU at once, one transfer instead of ~1,300 synchronising ones.
    """

    def __init__(self, pipe: StableDiffusionXLPipeline, train_text_encoder: bool):
        # hold the Parameter objects, not the state dict's tensors, so a later `.to(device)` is seen
        self.parts = {}
        for name, part in lora_modules(pipe, train_text_encoder).items():
            parameters = dict(part.named_parameters())
            self.parts[name] = [
                (key, parameters[key.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")])
                for key in get_peft_model_state_dict(part)
            ]

    def pack(self) -> dict[str, torch.Tensor]:
        """Part -> all its LoRA weights in one flat float32 tensor on their device (no host work)."""
        return {name: torch.cat([tensor.detach().reshape(-1).float() for _, tensor in items]) for name, items in self.parts.items()}

    def unpack(self, packed: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        """`pack()`'s output -> part -> peft key -> CPU float32 tensor (one transfer per part)."""
        snapshot = {}
        for name, items in self.parts.items():
            chunks = packed[name].cpu().split([tensor.numel() for _, tensor in items])
            snapshot[name] = {key: chunk.view(tensor.shape) for (key, tensor), chunk in zip(items, chunks)}
        return snapshot

    def __call__(self) -> dict[str, dict[str, torch.Tensor]]:
        return self.unpack(self.pack())


def lora_state_dicts(pipe: StableDiffusionXLPipeline, train_text_encoder: bool) -> dict[str, dict[str, torch.Tensor]]:
    """One snapshot of the LoRA weights (see LoRASnapshotter), e.g. for tests and tools."""
    return LoRASnapshotter(pipe, train_text_encoder)()


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


class SDXLGenerator:
    """Generates one image per call from a fixed prompt and a freshly seeded generator.

    `generate()` does it all; the optimiser splits it so that the device work of an iteration
    needs no host data: `prepare()` once per run, then per iteration `start()` (host-side
    scheduler state and noise generator) and `forward()` (device work only, capturable).
    """

    def __init__(
        self,
        pipe: StableDiffusionXLPipeline,
        device: torch.device,
        train_text_encoder: bool,
        cache_prompt_embeddings: bool = False,
    ):
        self.pipe = pipe
        self.device = device
        self.train_text_encoder = train_text_encoder
        self.cache_prompt_embeddings = cache_prompt_embeddings and not train_text_encoder
        self._cached: tuple[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._noise: torch.Generator | None = None

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

        Gradients flow through the last denoising step only. `ancestral_noise=False` draws the
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
        last = len(inputs.timesteps) - 1
        for index, timestep in enumerate(inputs.timesteps):
            with torch.set_grad_enabled(grad_enabled and index == last):
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

    def generate(
        self,
        prompt: str,
        generator: torch.Generator,
        height: int,
        width: int,
        num_inference_steps: int = 1,
    ) -> torch.Tensor:
        """Image [1, 3, H, W] float32 in [0, 1]; differentiable w.r.t. the LoRA weights."""
        inputs = self.prepare(prompt, generator, height, width, num_inference_steps)
        self.start(inputs)
        return self.forward(inputs)

    def decode(self, latents: torch.Tensor, inputs: GenerationInputs) -> torch.Tensor:
        vae = self.pipe.vae
        latents = latents.to(vae.dtype)
        if inputs.latents_mean is not None:
            latents = latents * inputs.latents_std / vae.config.scaling_factor + inputs.latents_mean
        else:
            latents = latents / vae.config.scaling_factor
        image = vae.decode(latents, return_dict=False)[0]
        return self.pipe.image_processor.postprocess(image, output_type="pt").float()
