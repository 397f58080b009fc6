"""The generator interface: what the SISO optimiser needs from a text-to-image model.

A generator wraps one diffusers pipeline of its family and

* attaches the trainable LoRA: rank r, alpha, peft's gaussian init (B = 0) drawn under a fixed
  seed, on the denoiser (UNet or transformer) and optionally on text encoders, and gives the
  optimiser its parameter groups (each part may have its own learning rate and weight decay);
* renders one image from a fixed prompt and a fixed seed, with gradients w.r.t. those weights:

      inputs = prepare(prompt, generator, H, W, steps)   # once per run: noise, timesteps, cached embeddings
      start(inputs)                                      # per iteration, host side: scheduler at step 0
      x      = forward(inputs)                           # [1, 3, H, W] float32 in [0, 1], differentiable

* places its parts for a run (dtype, gradient checkpointing, frozen text encoders off the
  accelerator once their embeddings are cached) and hands the pipeline back usable for plain
  inference afterwards.

The optimiser, the losses and early stopping know nothing else about the model: a family is a
subclass in its own module (sdxl.py, flux.py, sana.py), found by name through `get_family`.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from diffusers.training_utils import cast_training_params
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from ..config import TEXT_ENCODER_LORA_TARGETS
from ..devices import torch_layers_only
from ..errors import SISOInputError, error_summary
from ..io.model_paths import FAMILY_VAE_CLASSES, check_local_base_model, check_local_vae, is_hub_id
from ..io.single_file import is_single_file

if TYPE_CHECKING:
    from ..config import SISOConfig

logger = logging.getLogger(__name__)

TRAINED_ADAPTER = "default"  # peft's default name, as the authors' scripts: the adapter SISO trains


class LoRAGenerator:
    """One model family's differentiable renderer with a trainable LoRA (see the module doc).

    Subclasses set the class attributes and implement `prepare`, `start` and `forward`.
    """

    family: ClassVar[str]
    pipeline_class_name: ClassVar[str]  # the diffusers pipeline class that loads the family's folders
    denoiser_name: ClassVar[str] = "transformer"  # the pipeline attribute that carries the main LoRA
    denoiser_class_name: ClassVar[str | None] = None  # its diffusers class, checked by check_pipeline (None: no check)
    text_encoder_names: ClassVar[tuple[str, ...]] = ()  # every text encoder of the pipeline
    lora_text_encoder_names: ClassVar[tuple[str, ...]] = ()  # those that get a LoRA with train_text_encoder
    text_encoder_lora_targets: ClassVar[tuple[str, ...]] = TEXT_ENCODER_LORA_TARGETS
    supports_cuda_graphs: ClassVar[bool] = False
    default_model: ClassVar[str]

    def __init__(
        self,
        pipe,
        device: torch.device,
        train_text_encoder: bool = False,
        cache_prompt_embeddings: bool = False,
        **options: Any,
    ):
        self.pipe = pipe
        self.device = torch.device(device)
        self.train_text_encoder = train_text_encoder
        self.cache_prompt_embeddings = cache_prompt_embeddings
        self.options = options

    @classmethod
    def generation_options(cls, config: "SISOConfig") -> dict[str, Any]:
        """The config's settings this family's renderer takes: every keyword argument of the
        family's __init__ that is also a config field (num_grad_steps, guidance_scale, ...)."""
        own = set(inspect.signature(cls.__init__).parameters) - set(inspect.signature(LoRAGenerator.__init__).parameters)
        return {name: getattr(config, name) for name in own if hasattr(config, name)}

    # ------------------------------------------------------------------ loading
    @classmethod
    def pipeline_class(cls):
        import diffusers

        return getattr(diffusers, cls.pipeline_class_name)

    @classmethod
    def load_pipeline(
        cls,
        name_or_path: str,
        torch_dtype: torch.dtype = torch.float32,
        revision: str | None = None,
        variant: str | None = None,
        cache_dir: str | None = None,
        vae_name_or_path: str | None = None,
        quantize: str = "none",
        **components: Any,
    ):
        """The family's pipeline on the CPU in `torch_dtype`; SISOInputError (one line) if it cannot be loaded.

        `vae_name_or_path` loads a separate VAE (e.g. an fp16-safe one); `components` replace other
        parts of the folder, as in diffusers' `from_pretrained`. A whole single-file checkpoint
        (.safetensors) is loaded with `from_single_file` and a config shipped with siso-lab
        (single_file.py), never from the hub. `quantize` int8 / fp8 loads the denoiser's weights
        quantized (diffusers' TorchAoConfig; quantization.py), so they never exist in full precision.
        """
        check_local_base_model(name_or_path, cls.family)
        if vae_name_or_path:
            check_local_vae(vae_name_or_path, FAMILY_VAE_CLASSES[cls.family])
        try:
            if vae_name_or_path:
                import diffusers

                vae_class = getattr(diffusers, FAMILY_VAE_CLASSES[cls.family])
                components["vae"] = vae_class.from_pretrained(vae_name_or_path, dtype=torch_dtype, cache_dir=cache_dir)
            if is_single_file(name_or_path):  # a whole checkpoint (ComfyUI's models/checkpoints), with a shipped config
                from .single_file import load_single_file

                pipe = load_single_file(cls.pipeline_class(), name_or_path, cls.family, torch_dtype, **components)
            else:
                if quantize != "none":
                    from diffusers.quantizers import PipelineQuantizationConfig

                    from ..quantization import diffusers_quantization_config

                    components["quantization_config"] = PipelineQuantizationConfig(
                        quant_mapping={cls.denoiser_name: diffusers_quantization_config(quantize)})
                pipe = cls.pipeline_class().from_pretrained(
                    name_or_path, dtype=torch_dtype, revision=revision, variant=variant, cache_dir=cache_dir, **components
                )
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
            if is_hub_id(name_or_path) and isinstance(error, OSError):
                raise SISOInputError(
                    f"base model {name_or_path!r} is not in the Hugging Face cache and could not be downloaded "
                    f"({error_summary(error, 120)}): run `hf download {name_or_path}` where the hub is "
                    "reachable, or give a local diffusers folder"
                ) from error
            raise SISOInputError(
                f"base model {name_or_path!r} could not be loaded ({error_summary(error)}): give a local "
                f"{cls.family} diffusers folder or a hub id you have downloaded"
            ) from error
        cls.check_pipeline(pipe, name_or_path)
        pipe.set_progress_bar_config(disable=True)
        for component in pipe.components.values():
            torch_layers_only(component)
        return pipe

    @classmethod
    def check_pipeline(cls, pipe, name_or_path: str) -> None:
        """Raise SISOInputError when a loaded pipeline is not of this family's shape: by default,
        when its denoiser is not a `denoiser_class_name` (None: no check)."""
        denoiser = getattr(pipe, cls.denoiser_name, None)
        if cls.denoiser_class_name and type(denoiser).__name__ != cls.denoiser_class_name:
            from ..text import family_title

            raise SISOInputError(f"base model {name_or_path!r} has no {family_title(cls.family, article=False)} "
                                 f"{cls.denoiser_name}: SISO's {cls.family} family needs a {cls.pipeline_class_name} folder")

    # ------------------------------------------------------------------ LoRA
    @classmethod
    def lora_modules(cls, pipe, train_text_encoder: bool) -> dict[str, torch.nn.Module]:
        """The pipeline parts that carry a LoRA, by diffusers' save prefix ("unet", "transformer", "text_encoder", ...)."""
        parts = {cls.denoiser_name: getattr(pipe, cls.denoiser_name)}
        if train_text_encoder:
            parts.update({name: getattr(pipe, name) for name in cls.lora_text_encoder_names})
        return parts

    @classmethod
    def trainable_modules(cls, pipe) -> list[torch.nn.Module]:
        """Every module of the pipeline that an adapter could be attached to (denoiser and text encoders)."""
        return [getattr(pipe, cls.denoiser_name), *(getattr(pipe, name) for name in cls.text_encoder_names)]

    @classmethod
    def remove_trained_adapter(cls, pipe) -> None:
        """Delete the adapter an earlier SISO run attached, if any; other adapters are left alone."""
        for module in cls.trainable_modules(pipe):
            if TRAINED_ADAPTER in (getattr(module, "peft_config", None) or {}):
                # diffusers models spell it delete_adapters, transformers models delete_adapter
                delete = getattr(module, "delete_adapters", None) or module.delete_adapter
                delete(TRAINED_ADAPTER)

    @classmethod
    def add_lora(
        cls,
        pipe,
        rank: int,
        alpha: float,
        seed: int,
        train_text_encoder: bool,
        targets: tuple[str, ...],
    ) -> dict[str, list[torch.nn.Parameter]]:
        """Freeze the pipeline, attach LoRA adapters under `seed`; return part -> fp32 trainable params.

        The seed is set immediately before the adapters are created, in the authors' order
        (denoiser, then each text encoder): peft's gaussian init then draws the same numbers as
        their scripts. An adapter left by an earlier run on the same pipeline is replaced, so a
        second run starts exactly as a run on a freshly loaded pipeline does.
        """
        cls.remove_trained_adapter(pipe)
        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False)
        torch.manual_seed(seed)
        parts = cls.lora_modules(pipe, train_text_encoder)
        for name, part in parts.items():
            part_targets = targets if name == cls.denoiser_name else cls.text_encoder_lora_targets
            part.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(part_targets)))
        cast_training_params(list(parts.values()), dtype=torch.float32)
        return {name: [p for p in part.parameters() if p.requires_grad] for name, part in parts.items()}

    # ------------------------------------------------------------------ a run's placement
    @classmethod
    def frozen_text_encoder_names(cls, train_text_encoder: bool) -> tuple[str, ...]:
        """The text encoders without a LoRA in this run: their prompt embeddings can be computed once."""
        trained = cls.lora_text_encoder_names if train_text_encoder else ()
        return tuple(name for name in cls.text_encoder_names if name not in trained)

    def place(self, dtype: torch.dtype, gradient_checkpointing: bool, offload_text_encoders: bool, compile: bool) -> None:
        """Move the parts for a run: denoiser and VAE on the device; frozen text encoders on the
        CPU when `offload_text_encoders` (their embeddings are cached); checkpointing set both ways
        (a pipeline reused from an earlier run may still have it on)."""
        pipe = self.pipe
        denoiser = getattr(pipe, self.denoiser_name)
        denoiser.to(self.device)
        pipe.vae.to(self.device)
        frozen = self.frozen_text_encoder_names(self.train_text_encoder)
        for name in self.text_encoder_names:
            offload = offload_text_encoders and name in frozen
            getattr(pipe, name).to(torch.device("cpu") if offload else self.device)
        for model in (denoiser, pipe.vae):
            if getattr(model, "_supports_gradient_checkpointing", False):
                model.enable_gradient_checkpointing() if gradient_checkpointing else model.disable_gradient_checkpointing()
        for name in self.text_encoder_names:
            encoder = getattr(pipe, name)
            if gradient_checkpointing and name not in frozen and getattr(encoder, "supports_gradient_checkpointing", False):
                encoder.gradient_checkpointing_enable()
            elif _checkpointing(encoder):
                encoder.gradient_checkpointing_disable()
        if compile:
            denoiser.compile()

    def train(self) -> None:
        """Training mode for the parts that carry a LoRA (dropout in LoRA layers is 0; kept as upstream)."""
        for part in self.lora_modules(self.pipe, self.train_text_encoder).values():
            part.train()

    def hand_back(self, offloaded: bool) -> None:
        """Leave the pipeline usable for plain inference: eval mode, text encoders back on the device."""
        pipe = self.pipe
        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                module.eval()
        if not offloaded:
            return
        names = self.frozen_text_encoder_names(self.train_text_encoder)
        try:
            for name in names:
                getattr(pipe, name).to(self.device)
        except (torch.OutOfMemoryError, RuntimeError) as failure:
            from ..devices import is_out_of_memory

            if not is_out_of_memory(failure):
                raise
            for name in names:
                getattr(pipe, name).to("cpu")
            logger.warning("the text encoders stay on the CPU after the run (no room on %s)", self.device)

    # ------------------------------------------------------------------ rendering
    def prepare(self, prompt: str, generator: torch.Generator, height: int, width: int, num_inference_steps: int):
        """Everything an iteration's image depends on except the LoRA weights (built once per run)."""
        raise NotImplementedError

    def start(self, inputs) -> None:
        """Host-side reset before each iteration (scheduler at step 0, noise generator rewound)."""
        raise NotImplementedError

    def forward(self, inputs, ancestral_noise: bool = True) -> torch.Tensor:
        """Image [1, 3, H, W] float32 in [0, 1]; differentiable w.r.t. the LoRA weights."""
        raise NotImplementedError

    def generate(
        self, prompt: str, generator: torch.Generator, height: int, width: int, num_inference_steps: int = 1
    ) -> torch.Tensor:
        """prepare + start + forward: one image [1, 3, H, W] float32 in [0, 1], with gradients."""
        inputs = self.prepare(prompt, generator, height, width, num_inference_steps)
        self.start(inputs)
        return self.forward(inputs)


def _checkpointing(model) -> bool:
    """Whether a transformers model has activation checkpointing on (the property's name since 5.2x;
    `is_gradient_checkpointing` before, now deprecated)."""
    if hasattr(type(model), "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(getattr(model, "is_gradient_checkpointing", False))


def grad_step_flags(num_steps: int, num_grad_steps: int) -> list[bool]:
    """Which denoising steps carry gradients: the last `num_grad_steps` of `num_steps` (0 = all).

    >>> grad_step_flags(4, 1)
    [False, False, False, True]
    """
    first = 0 if num_grad_steps == 0 else max(num_steps - num_grad_steps, 0)
    return [index >= first for index in range(num_steps)]


class LoRASnapshotter:
    """Takes detached CPU float32 COPIES of the LoRA weights, by part (peft key names).

    peft's state dict aliases the live parameters; without a copy a "best" snapshot would
    silently follow every later update (the reference scripts' bug). Building that state dict
    walks every module of the denoiser (~90 ms of Python per call for SDXL), so the aliasing
    tensors are looked up once; each snapshot then packs them into one buffer on the device and
    copies it to the CPU at once, one transfer instead of ~1,300 synchronising ones.
    """

    def __init__(self, parts: dict[str, torch.nn.Module]):
        # hold the Parameter objects, not the state dict's tensors, so a later `.to(device)` is seen
        self.parts = {}
        for name, part in parts.items():
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
