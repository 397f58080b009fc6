"""How a run trades speed for memory: the settings a mode resolves to, and the phase timer of the
benchmarks.

    mode        dtype of frozen weights   feature nets   checkpointing   frozen text encoders
    default     precision (bf16 on GPUs)  frozen         no              embedded once, off the GPU
    low-memory  precision                 frozen         yes             embedded once, off the GPU
    reference   fp32 (the authors')       trainable      no              re-encoded every iteration

The LoRA itself is always fp32. `RuntimeSettings.resolve(config, device)` makes the choice once per
run; run.json's `runtime` records it (what ran, not what was asked).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from . import cuda_graphs
from .config import SISOConfig
from .devices import dtype_name, pick_dtype, synchronize
from .generators import get_family


@dataclass
class RuntimeSettings:
    """How a mode trades speed and memory; resolved once per run from the config and device."""

    dtype: torch.dtype
    freeze_feature_networks: bool
    gradient_checkpointing: bool
    cache_prompt_embeddings: bool
    offload_text_encoders: bool
    fused_adamw: bool
    compile_denoiser: bool  # torch.compile the UNet / transformer
    cuda_graphs: bool = False
    cuda_graphs_note: str | None = None  # why CUDA graphs are off, when they were asked for

    @classmethod
    def resolve(cls, config: SISOConfig, device: torch.device) -> "RuntimeSettings":
        accelerator = device.type in ("cuda", "xpu", "meta")  # meta: the memory probe's simulated GPU
        family = get_family(config.family)
        # the frozen text encoders' embeddings are the same every iteration: computed once, encoders off the GPU
        frozen_encoders = bool(family.frozen_text_encoder_names(config.train_text_encoder))
        if config.mode == "reference":
            # the authors' setup: fp32 unless a precision is given (their FLUX command passes
            # --mixed_precision bf16), gradients for the feature networks, nothing cached
            dtype = torch.float32 if config.precision == "auto" else pick_dtype(config.precision, device)
            return cls(dtype, False, bool(config.gradient_checkpointing), False, False, False, config.compile)
        checkpointing = config.mode == "low-memory" if config.gradient_checkpointing is None else config.gradient_checkpointing
        settings = cls(
            dtype=pick_dtype(config.precision, device),
            freeze_feature_networks=True,
            gradient_checkpointing=checkpointing,
            cache_prompt_embeddings=frozen_encoders,
            offload_text_encoders=accelerator and frozen_encoders,
            fused_adamw=device.type in ("cuda", "xpu"),
            compile_denoiser=config.compile,
        )
        if config.cuda_graphs:
            settings.cuda_graphs_note = (
                cuda_graphs.unsupported_reason(
                    device, settings.dtype, config.num_inference_steps, config.lr_scheduler, checkpointing, config.compile
                )
                if family.supports_cuda_graphs
                else f"CUDA graphs are implemented for SDXL only, not {family.family}"
            )
            settings.cuda_graphs = settings.cuda_graphs_note is None
        return settings

    def describe(self) -> dict:
        return {
            "dtype": dtype_name(self.dtype),
            "freeze_feature_networks": self.freeze_feature_networks,
            "gradient_checkpointing": self.gradient_checkpointing,
            "cache_prompt_embeddings": self.cache_prompt_embeddings,
            "offload_text_encoders": self.offload_text_encoders,
            "fused_adamw": self.fused_adamw,
            "compile_denoiser": self.compile_denoiser,
            "cuda_graphs": self.cuda_graphs,
        }


class PhaseTimer:
    """Wall time per phase of a step, synchronising the device at each mark (only when enabled)."""

    def __init__(self, device: torch.device, enabled: bool):
        self.device, self.enabled = device, enabled
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, name: str) -> None:
        if self.enabled:
            synchronize(self.device)
            now = time.perf_counter()
            self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._last, 5)
            self._last = now


def set_feature_checkpointing(network: torch.nn.Module, enabled: bool) -> None:
    """Gradient checkpointing on or off for the timm / open_clip towers inside a feature network."""
    for module in network.modules():
        if hasattr(module, "set_grad_checkpointing") and module is not network:
            module.set_grad_checkpointing(enabled)
            return
