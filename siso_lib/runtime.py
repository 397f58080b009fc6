"""How a run trades speed for memory: the settings a mode resolves to, and the phase timer of the
benchmarks.

    mode        dtype of frozen weights   feature nets   checkpointing   frozen text encoders
    default     precision (bf16 on GPUs)  frozen         no              embedded once, off the GPU
    low-memory  precision                 frozen         yes             embedded once, off the GPU
    reference   fp32 (the authors')       trainable      no              re-encoded every iteration

    auto        the first of default, low-memory, default + int8 weights, low-memory + int8 weights
                whose predicted peak (memory.py) fits the device's free memory; default on a CPU

The LoRA itself is always fp32. `RuntimeSettings.resolve(config, device)` makes the choice once per
run; run.json's `runtime` records it (what ran, not what was asked, and the memory plan behind auto).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from . import cuda_graphs, memory
from .config import SISOConfig
from .devices import dtype_name, free_memory_bytes, pick_dtype, synchronize
from .generators import get_family

logger = logging.getLogger(__name__)


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
    mode: str = "default"  # what ran: default, low-memory or reference (auto resolved)
    quantize: str = "none"  # the frozen denoiser weights: none, int8 or fp8
    memory_plan: dict | None = None  # the prediction behind the mode (run.json's runtime.memory)

    @classmethod
    def resolve(cls, config: SISOConfig, device: torch.device, task: str = "generate") -> "RuntimeSettings":
        accelerator = device.type in ("cuda", "xpu", "meta")  # meta: the memory probe's simulated GPU
        family = get_family(config.family)
        mode, quantize, plan = choose_mode(config, device, task)
        # the frozen text encoders' embeddings are the same every iteration: computed once, encoders off the GPU
        frozen_encoders = bool(family.frozen_text_encoder_names(config.train_text_encoder))
        if mode == "reference":
            # the authors' setup: fp32 unless a precision is given (their FLUX command passes
            # --mixed_precision bf16), gradients for the feature networks, nothing cached
            dtype = torch.float32 if config.precision == "auto" else pick_dtype(config.precision, device)
            return cls(dtype, False, bool(config.gradient_checkpointing), False, False, False, config.compile,
                       mode=mode, quantize=quantize, memory_plan=plan)
        checkpointing = mode == "low-memory" if config.gradient_checkpointing is None else config.gradient_checkpointing
        settings = cls(
            dtype=pick_dtype(config.precision, device),
            freeze_feature_networks=True,
            gradient_checkpointing=checkpointing,
            cache_prompt_embeddings=frozen_encoders,
            offload_text_encoders=accelerator and frozen_encoders,
            fused_adamw=device.type in ("cuda", "xpu"),
            compile_denoiser=config.compile,
            mode=mode,
            quantize=quantize,
            memory_plan=plan,
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
            "mode": self.mode,
            "quantize": self.quantize,
            "memory": self.memory_plan,
        }


def choose_mode(config: SISOConfig, device: torch.device, task: str = "generate") -> tuple[str, str, dict | None]:
    """(mode, quantize, plan): the config's own choice, or for mode auto the first of
    memory.AUTO_ORDER predicted to fit the device's free memory (a CPU: default, as before).

    quantize auto means "only if auto needs it"; an explicit int8 / fp8 with mode auto keeps the
    quantization and lets auto choose between default and low-memory.
    """
    quantize = config.quantize
    if config.mode != "auto":
        return config.mode, "none" if quantize == "auto" else quantize, None
    free = free_memory_bytes(device)
    if free is None:  # a CPU (or the probe's meta device): nothing to plan for
        return "default", "none" if quantize == "auto" else quantize, None
    options = memory.plan(config.family, config.resolution, bool(config.train_text_encoder), task,
                          config.rank, config.num_grad_steps, free_bytes=free, quantize=quantize)
    chosen, gib = options.auto, memory.GIB
    if chosen is None:
        logger.info("mode auto: no memory prediction for %s %s; running default mode", config.family, task)
        return "default", "none" if quantize == "auto" else quantize, {"free_gib": round(free / gib, 2), "choice": None}
    if options.choice is None:
        logger.warning("mode auto: nothing is predicted to fit %.1f GiB free (the smallest, %s, needs %.1f GiB): running it "
                       "anyway; a smaller --resolution would help", free / gib, chosen.label, chosen.needed_bytes / gib)
    else:
        note = " (nothing unquantized fits)" if chosen.quantize != "none" and quantize == "auto" else ""
        logger.info("mode auto: %s%s, predicted peak %.1f GiB of %.1f GiB free", chosen.label, note, chosen.peak_bytes / gib, free / gib)
    return chosen.mode, chosen.quantize, options.describe()


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
