"""The one place every SISO default lives.

`SISOConfig` is read by the library, the `siso-generate` command line, the notebooks and the
ComfyUI node, so a default changed here changes everywhere. The values are those of the
authors' documented SDXL-Turbo command (arXiv 2503.16025, `siso_generation_sdxl.py`):

    --resolution 512 --num_inference_steps 1 --num_train_epochs 50 --learning_rate 2e-4
    --lr_scheduler constant --lr_warmup_steps 0 --rank 4 --train_text_encoder --seed 42
    --early_stopping_threshold_percentage 3 --early_stopping_max_count 7

Field names follow the upstream argument names so that a config maps 1:1 onto its CLI.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BASE_MODEL = "stabilityai/sdxl-turbo"
DEFAULT_DINO_MODEL = "vit_large_patch14_dinov2.lvd142m"

UNET_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ENCODER_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MODES = ("default", "reference", "low-memory")


@dataclass
class SISOConfig:
    """Every knob of one SISO run, with the defaults of the documented SDXL command."""

    # what to personalise
    prompt: str = "a photo of a cat"
    pretrained_model_name_or_path: str = DEFAULT_BASE_MODEL
    dino_model_name: str = DEFAULT_DINO_MODEL
    ir_features_path: str | None = None  # hand-downloaded ir_features.pth; None = DINO only

    # generation
    resolution: int = 512
    num_inference_steps: int = 1
    seed: int = 42

    # optimisation
    num_train_epochs: int = 50  # the maximum number of SISO iterations
    learning_rate: float = 2e-4
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0

    # LoRA
    rank: int = 4
    lora_alpha: float | None = None  # None = rank, as upstream (scale 1)
    train_text_encoder: bool = True

    # loss
    dino_features_weight: float = 1.0
    ir_features_weight: float = 1.0

    # early stopping
    early_stopping_threshold_percentage: float = 3.0
    early_stopping_max_count: int = 7

    # device and speed/memory
    device: str = "auto"
    precision: str = "auto"  # dtype of the frozen weights; LoRA weights stay fp32
    mode: str = "default"  # "default", "reference" (authors' fp32 setup) or "low-memory"
    gradient_checkpointing: bool | None = None  # None = as the mode says
    compile: bool = False  # torch.compile the UNet
    cuda_graphs: bool = True  # replay each iteration as a CUDA graph where supported (see cuda_graphs.py)

    # robustness
    save_on_improve: bool = False  # write the best LoRA every time it improves

    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def effective_lora_alpha(self) -> float:
        return float(self.rank if self.lora_alpha is None else self.lora_alpha)

    def validate(self) -> None:
        """Raise ValueError with a one-line, fix-naming message for any impossible setting."""
        if not self.prompt or not self.prompt.strip():
            raise ValueError("prompt is empty: give a short description of the subject, e.g. 'a photo of a cat'")
        if len(self.prompt) > 2000:
            raise ValueError(
                f"prompt is {len(self.prompt)} characters long: keep it under 2000 (CLIP reads only ~77 tokens)"
            )
        if self.resolution % 8 != 0 or not 64 <= self.resolution <= 2048:
            raise ValueError(
                f"resolution {self.resolution} is not usable: give a multiple of 8 between 64 and 2048 (512 for SDXL-Turbo)"
            )
        if self.num_inference_steps < 1:
            raise ValueError("num_inference_steps must be at least 1 (SDXL-Turbo uses 1)")
        if self.num_train_epochs < 1:
            raise ValueError("num_train_epochs must be at least 1 (the default is 50)")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate {self.learning_rate} must be positive (the default is 2e-4)")
        if self.rank < 1:
            raise ValueError(f"rank {self.rank} must be at least 1 (the default is 4)")
        if self.dino_features_weight < 0 or self.ir_features_weight < 0:
            raise ValueError("loss weights must be zero or positive")
        if self.dino_features_weight == 0 and self.ir_features_weight == 0:
            raise ValueError("both loss weights are zero: nothing to optimise; set dino_features_weight > 0")
        if self.early_stopping_max_count < 1:
            raise ValueError("early_stopping_max_count must be at least 1 (the default is 7)")
        if self.early_stopping_threshold_percentage < 0:
            raise ValueError("early_stopping_threshold_percentage must be zero or positive (the default is 3)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is unknown: use one of {', '.join(PRECISIONS)}")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is unknown: use one of {', '.join(MODES)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SISOConfig":
        """Build a config from a dict, refusing unknown keys (a typo must not be silently ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SISO setting(s): {', '.join(unknown)}; known settings: {', '.join(sorted(known))}")
        return cls(**values)

    def replace(self, **changes: Any) -> "SISOConfig":
        return dataclasses.replace(self, **changes)
