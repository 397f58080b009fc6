"""The one place every SISO default lives.

`SISOConfig` is read by the library, the `siso-generate` command line, the notebooks and the
ComfyUI node, so a default changed here changes everywhere. The values are those of the
authors' documented commands (arXiv 2503.16025, README of github.com/yairshp/SISO), one recipe
per model family (`FAMILY_RECIPES`):

    sdxl  stabilityai/sdxl-turbo: 512 px, 1 step (gradient through it), lr 2e-4, weight decay
          1e-2, LoRA on the UNet attention and both CLIP encoders, early stop 3 % / 7
    flux  black-forest-labs/FLUX.1-schnell: 512 px, 1 step (gradients through every step),
          guidance 0, T5 length 256, lr 2e-4 / weight decay 1e-4 on the transformer LoRA,
          CLIP-L LoRA with lr 5e-6 / weight decay 1e-3, early stop 3 % / 7
    sana  Efficient-Large-Model/Sana_1600M_512px_diffusers: 512 px, 20 steps with CFG 4.5,
          gradients through the last 3, lr 8e-4, LoRA on q/k/v only, early stop 3 % / 5

A field whose value differs between families is declared `None`, meaning "the family's
recipe"; the family is `model_family`, or with "auto" read from the base model
(model_paths.detect_family), and the recipe fills those fields when the config is made and
again in `validate()`. `config.replace(model_family="flux")` re-reads the recipe for every
field the caller did not set. Field names follow the upstream argument names so that a config
maps 1:1 onto its CLI.

Values coming from forms, papermill, YAML or the environment are often text: every field is
coerced to its declared type when the config is made and again by `validate()` ("1e-4" -> 1e-4,
"false" -> False, "8" -> 8), and a value that cannot be read as that type, or is out of range,
raises `SISOInputError` (a ValueError) with one line naming the field and a valid example.
This module imports nothing heavy, so the command lines validate a config in milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import SISOInputError

DEFAULT_BASE_MODEL = "stabilityai/sdxl-turbo"
DEFAULT_DINO_MODEL = "vit_large_patch14_dinov2.lvd142m"
# editing's automatic mask (features/detection.py): the authors' Grounding-DINO, SAM and box threshold
DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
DEFAULT_SEGMENTER = "facebook/sam-vit-base"
DEFAULT_BOX_THRESHOLD = 0.3

UNET_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ENCODER_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
# siso_generation_flux.py's targets; the suffix match also hits the single blocks' attn.to_q/k/v
FLUX_LORA_TARGETS = (
    "attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj",
    "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
)
SANA_LORA_TARGETS = ("to_k", "to_q", "to_v")  # siso_generation_sana.py: self- and cross-attention q/k/v

MODEL_FAMILIES = ("sdxl", "flux", "sana")
MODEL_FAMILY_CHOICES = ("auto", *MODEL_FAMILIES)  # the values model_family takes
# the authors' documented command per family; every field here is None in SISOConfig ("the recipe").
# text_encoder_lr / adam_weight_decay_text_encoder None: the text-encoder LoRA uses the denoiser's
# values (one optimiser group, as siso_generation_sdxl.py)
FAMILY_RECIPES: dict[str, dict[str, Any]] = {
    "sdxl": dict(
        pretrained_model_name_or_path=DEFAULT_BASE_MODEL, learning_rate=2e-4, adam_weight_decay=1e-2,
        num_inference_steps=1, num_grad_steps=1, guidance_scale=0.0, max_sequence_length=77,
        train_text_encoder=True, text_encoder_lr=None, adam_weight_decay_text_encoder=None,
        lora_layers=",".join(UNET_LORA_TARGETS), early_stopping_max_count=7,
    ),
    "flux": dict(
        pretrained_model_name_or_path="black-forest-labs/FLUX.1-schnell", learning_rate=2e-4, adam_weight_decay=1e-4,
        num_inference_steps=1, num_grad_steps=0, guidance_scale=0.0, max_sequence_length=256,
        train_text_encoder=True, text_encoder_lr=5e-6, adam_weight_decay_text_encoder=1e-3,
        lora_layers=",".join(FLUX_LORA_TARGETS), early_stopping_max_count=7,
    ),
    "sana": dict(
        pretrained_model_name_or_path="Efficient-Large-Model/Sana_1600M_512px_diffusers", learning_rate=8e-4,
        adam_weight_decay=1e-4, num_inference_steps=20, num_grad_steps=3, guidance_scale=4.5, max_sequence_length=256,
        train_text_encoder=False, text_encoder_lr=None, adam_weight_decay_text_encoder=None,
        lora_layers=",".join(SANA_LORA_TARGETS), early_stopping_max_count=5,
    ),
}
RECIPE_FIELDS = tuple(FAMILY_RECIPES["sdxl"])

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MODES = ("default", "reference", "low-memory")
# diffusers.optimization.SchedulerType's names (a test keeps them equal)
LR_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "piecewise_constant",
)
DEVICE_PATTERN = re.compile(r"(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)")
# config fields that may name a local file or folder (recorded as absolute paths, see model_paths.py)
MODEL_PATH_FIELDS = ("pretrained_model_name_or_path", "dino_model_name", "ir_features_path")
LORA_LAYER_PATTERN = re.compile(r"[A-Za-z_][\w.]*")
MODEL_PATH_EXTRAS = ("pretrained_vae_model_name_or_path", "cache_dir")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"", "none", "null"}


def coerce_value(name: str, annotation: str, value: Any) -> Any:
    """`value` as the field's declared type ('int', 'float | None', 'bool', 'str', ...), or SISOInputError."""
    kind, optional = annotation.split("|")[0].strip(), "None" in annotation
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise SISOInputError(f"{name} must be true or false, got {value!r}")
    if kind in ("int", "float"):
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip()) if kind == "float" or not re.fullmatch(r"\s*[+-]?\d+\s*", value) else int(value)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            example = "a whole number, e.g. 4" if kind == "int" else "a number, e.g. 2e-4"
            raise SISOInputError(f"{name} must be {example}, got {value!r}")
        if kind == "int":
            if isinstance(number, float) and not (math.isfinite(number) and number.is_integer()):
                raise SISOInputError(f"{name} must be a whole number, e.g. 4, got {value!r}")
            return int(number)
        if not math.isfinite(number):
            raise SISOInputError(f"{name} must be a finite number, got {value!r}")
        return float(number)
    if kind == "str":
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str):
            raise SISOInputError(f"{name} must be text, got {value!r}")
        return value
    if kind.startswith("dict"):
        if not isinstance(value, dict):
            raise SISOInputError(f"{name} must be a dict, got {value!r}")
        return value
    return value


@dataclass
class SISOConfig:
    """Every knob of one SISO run; `None` fields take the model family's recipe (see the module doc)."""

    # what to personalise
    prompt: str = "a photo of a cat"
    model_family: str = "auto"  # "sdxl", "flux", "sana", or "auto" = read from the base model
    pretrained_model_name_or_path: str | None = None  # hub id or local diffusers folder; None = the family's model
    dino_model_name: str = DEFAULT_DINO_MODEL
    ir_features_path: str | None = None  # hand-downloaded ir_features.pth; None = DINO only

    # generation
    resolution: int = 512
    num_inference_steps: int | None = None  # denoising steps per image
    num_grad_steps: int | None = None  # the last k steps carry gradients; 0 = every step
    guidance_scale: float | None = None  # classifier-free guidance (Sana); FLUX-dev's embedded guidance
    max_sequence_length: int | None = None  # T5 (FLUX) / Gemma (Sana) prompt tokens
    seed: int = 42

    # optimisation
    num_train_epochs: int = 50  # the maximum number of SISO iterations
    learning_rate: float | None = None  # of the denoiser's LoRA
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    lr_num_cycles: int = 1  # hard restarts of cosine_with_restarts
    lr_power: float = 1.0  # power of the polynomial schedule
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float | None = None
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0

    # LoRA
    rank: int = 4
    lora_alpha: float | None = None  # None = rank, as upstream (scale 1)
    lora_layers: str | None = None  # comma-separated denoiser module suffixes
    train_text_encoder: bool | None = None  # LoRA on the CLIP encoder(s) too
    text_encoder_lr: float | None = None  # learning rate of the text-encoder LoRA
    adam_weight_decay_text_encoder: float | None = None

    # loss
    dino_features_weight: float = 1.0
    ir_features_weight: float = 1.0

    # early stopping
    early_stopping_threshold_percentage: float = 3.0
    early_stopping_max_count: int | None = None

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

    def __post_init__(self) -> None:
        self.coerce()
        self._from_recipe: frozenset[str] = frozenset()
        try:
            self.apply_recipe()
        except SISOInputError:
            pass  # e.g. a folder of another pipeline class: validate() names it

    def coerce(self) -> None:
        """Convert every field to its declared type in place, or raise SISOInputError (one line)."""
        path = self.pretrained_model_name_or_path
        if isinstance(path, str) and not path.strip():  # only None means "the family's model"
            raise SISOInputError(
                f"pretrained_model_name_or_path is empty: give a hub id or a local folder, or leave it unset for the "
                f"family's model (the default is {DEFAULT_BASE_MODEL!r})"
            )
        for spec in dataclasses.fields(self):
            setattr(self, spec.name, coerce_value(spec.name, str(spec.type), getattr(self, spec.name)))

    @property
    def family(self) -> str | None:
        """The model family this config runs: `model_family`, or the one read from the base model."""
        if self.model_family != "auto":
            return self.model_family
        from .model_paths import detect_family

        return detect_family(self.pretrained_model_name_or_path or DEFAULT_BASE_MODEL)

    def apply_recipe(self) -> None:
        """Fill every `None` recipe field from the family's recipe (nothing when the family is unknown)."""
        family = self.family
        if family not in FAMILY_RECIPES:
            return
        filled = {name for name in RECIPE_FIELDS if getattr(self, name) is None}
        for name in filled:
            setattr(self, name, FAMILY_RECIPES[family][name])
        self._from_recipe = frozenset(self._from_recipe | filled)

    @property
    def effective_lora_alpha(self) -> float:
        return float(self.rank if self.lora_alpha is None else self.lora_alpha)

    def with_absolute_paths(self) -> "SISOConfig":
        """A copy whose local model paths are absolute; hub ids, timm names and missing paths unchanged."""
        from .model_paths import absolute_if_local

        extra = dict(self.extra)
        for key in MODEL_PATH_EXTRAS:
            if isinstance(extra.get(key), str):
                extra[key] = absolute_if_local(extra[key])
        return self.replace(**{name: absolute_if_local(getattr(self, name)) for name in MODEL_PATH_FIELDS}, extra=extra)

    def validate(self) -> None:
        """Coerce every field, then raise SISOInputError (a ValueError) with a one-line fix for any
        impossible setting."""
        self.coerce()
        if self.model_family not in MODEL_FAMILY_CHOICES:
            raise SISOInputError(f"model_family {self.model_family!r} is unknown: use {', '.join(MODEL_FAMILY_CHOICES)}")
        family = self.family  # raises for a folder of another pipeline class
        if family is None:
            from .model_paths import check_local_base_model

            check_local_base_model(self.pretrained_model_name_or_path)  # a missing or wrong folder says so first
            raise SISOInputError(
                f"cannot tell which model family {self.pretrained_model_name_or_path!r} is: pass --model_family "
                f"{', '.join(MODEL_FAMILIES)}"
            )
        self.apply_recipe()
        self._validate_family(family)
        if not self.prompt or not self.prompt.strip():
            raise SISOInputError("prompt is empty: give a short description of the subject, e.g. 'a photo of a cat'")
        if len(self.prompt) > 2000:
            raise SISOInputError(
                f"prompt is {len(self.prompt)} characters long: keep it under 2000 (CLIP reads only ~77 tokens)"
            )
        if self.resolution % 8 != 0 or not 64 <= self.resolution <= 2048:
            raise SISOInputError(
                f"resolution {self.resolution} is not usable: give a multiple of 8 between 64 and 2048 (512 for SDXL-Turbo)"
            )
        if self.num_inference_steps < 1:
            raise SISOInputError("num_inference_steps must be at least 1 (SDXL-Turbo and FLUX.1-schnell use 1, Sana 20)")
        if self.num_train_epochs < 1:
            raise SISOInputError("num_train_epochs must be at least 1 (the default is 50)")
        if not self.learning_rate > 0:
            declared = next(spec.default for spec in dataclasses.fields(self) if spec.name == "learning_rate")
            default = declared if declared is not None else FAMILY_RECIPES[family]["learning_rate"]
            raise SISOInputError(f"learning_rate {self.learning_rate} must be positive (the default is {default:g})")
        if self.rank < 1:
            raise SISOInputError(f"rank {self.rank} must be at least 1 (the default is 4)")
        for name in ("dino_features_weight", "ir_features_weight"):
            if getattr(self, name) < 0:
                raise SISOInputError(f"{name} {getattr(self, name)} must be zero or positive (the default is 1.0)")
        if self.dino_features_weight == 0 and self.ir_features_weight == 0:
            raise SISOInputError("both loss weights are zero: nothing to optimise; set dino_features_weight > 0")
        if self.early_stopping_max_count < 1:
            raise SISOInputError("early_stopping_max_count must be at least 1 (the default is 7)")
        if self.early_stopping_threshold_percentage < 0:
            raise SISOInputError("early_stopping_threshold_percentage must be zero or positive (the default is 3)")
        if self.precision not in PRECISIONS:
            raise SISOInputError(f"precision {self.precision!r} is unknown: use one of {', '.join(PRECISIONS)}")
        if self.mode not in MODES:
            raise SISOInputError(f"mode {self.mode!r} is unknown: use one of {', '.join(MODES)}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise SISOInputError(f"lr_scheduler {self.lr_scheduler!r} is unknown: use one of {', '.join(LR_SCHEDULERS)}")
        if self.lr_num_cycles < 1:
            raise SISOInputError(f"lr_num_cycles {self.lr_num_cycles} must be at least 1 (the default is 1)")
        if not self.lr_power > 0:
            raise SISOInputError(f"lr_power {self.lr_power} must be positive (the default is 1.0)")
        if self.lr_warmup_steps < 0:
            raise SISOInputError(f"lr_warmup_steps {self.lr_warmup_steps} must be zero or positive (the default is 0)")
        if not 0 <= self.seed < 2**63:
            raise SISOInputError(f"seed {self.seed} must be between 0 and 2**63 - 1 (the default is 42)")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise SISOInputError(f"{name} {getattr(self, name)} must be in [0, 1) (the defaults are 0.9 and 0.999)")
        if self.adam_weight_decay < 0:
            raise SISOInputError(f"adam_weight_decay {self.adam_weight_decay} must be zero or positive (the default is 1e-2)")
        if not self.adam_epsilon > 0:
            raise SISOInputError(f"adam_epsilon {self.adam_epsilon} must be positive (the default is 1e-8)")
        if not self.max_grad_norm > 0:
            raise SISOInputError(f"max_grad_norm {self.max_grad_norm} must be positive (the default is 1.0)")
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise SISOInputError(f"lora_alpha {self.lora_alpha} must be positive, or None for the rank")
        if not DEVICE_PATTERN.fullmatch(self.device.strip()):
            raise SISOInputError(f"device {self.device!r} is not a device name: use auto, cuda, cuda:N, xpu, mps or cpu")
        if not self.dino_model_name.strip():
            raise SISOInputError(f"dino_model_name is empty: give a timm name or a local folder (the default is {DEFAULT_DINO_MODEL!r})")

    def _validate_family(self, family: str) -> None:
        """The settings the recipe fields and the family allow."""
        if self.num_grad_steps < 0:
            raise SISOInputError(f"num_grad_steps {self.num_grad_steps} must be 0 (every step) or the number of last steps with gradients")
        if self.guidance_scale < 0:
            raise SISOInputError(f"guidance_scale {self.guidance_scale} must be zero or positive (Sana uses 4.5)")
        if not 1 <= self.max_sequence_length <= 512:
            raise SISOInputError(f"max_sequence_length {self.max_sequence_length} must be between 1 and 512 (the authors use 256)")
        if self.text_encoder_lr is not None and not self.text_encoder_lr > 0:
            raise SISOInputError(f"text_encoder_lr {self.text_encoder_lr} must be positive (FLUX uses 5e-6), or None for learning_rate")
        for name in ("adam_weight_decay", "adam_weight_decay_text_encoder"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise SISOInputError(f"{name} {getattr(self, name)} must be zero or positive")
        layers = [layer.strip() for layer in self.lora_layers.split(",")]
        if not all(LORA_LAYER_PATTERN.fullmatch(layer) for layer in layers):
            raise SISOInputError(
                f"lora_layers {self.lora_layers!r} is not a comma-separated list of module names, e.g. "
                f"{FAMILY_RECIPES[family]['lora_layers']!r}"
            )
        if family == "sana" and self.train_text_encoder:
            raise SISOInputError("train_text_encoder is not available for Sana (the authors train the transformer LoRA only): drop --train_text_encoder")

    @property
    def lora_targets(self) -> tuple[str, ...]:
        """`lora_layers` as a tuple of module-name suffixes."""
        return tuple(layer.strip() for layer in (self.lora_layers or "").split(",") if layer.strip())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SISOConfig":
        """Build a config from a dict, refusing unknown keys (a typo must not be silently ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SISOInputError(f"unknown SISO setting(s): {', '.join(unknown)}; known settings: {', '.join(sorted(known))}")
        return cls(**values)

    def replace(self, **changes: Any) -> "SISOConfig":
        """A copy with `changes`; fields the recipe filled are filled again (for a new family too)."""
        unset = {name: None for name in getattr(self, "_from_recipe", ()) if name not in changes}
        return dataclasses.replace(self, **unset, **changes)


def class_prompt(class_name: str) -> str:
    """The authors' prompt for a class name: "a photo of a {class}" (editing's subject and scene prompts)."""
    return f"a photo of a {class_name.strip()}"


MIN_INVERSION_STEP = 0.25  # SDXL-Turbo's 4 steps (999, 749, 499, 249): a smaller strength keeps none


@dataclass
class SISOEditConfig(SISOConfig):
    """SISOConfig for SISO editing (the authors' `siso_editing_sdxl.py`): put the subject of the
    subject photo into the scene photo `input_image_path`, where `mask_path` (or the automatic
    Grounding-DINO + SAM mask of `input_class`) says, keeping the rest of the scene.

    `prompt` is the subject's ("a photo of a {subject_class}"); ReNoise inverts the scene with
    "a photo of a {input_class}". SDXL(-Turbo) only. Defaults: the authors' documented command
    (strength 0.75, background weight 10, lr 3e-4, 512 px, 50 iterations, early stop 3 % / 7, seed
    42, UNet LoRA only: their editing command has no --train_text_encoder).
    """

    input_image_path: str = ""  # the scene photo to edit
    mask_path: str | None = None  # PNG of the scene's size, white = where the subject goes; None = automatic
    input_class: str | None = None  # the scene object's class (inversion prompt; automatic mask)
    inversion_max_step: float = 0.75  # ReNoise / img2img strength: the last 3 of 4 steps
    bg_mse_loss_weight: float = 10.0  # weight of the background-preservation MSE
    learning_rate: float | None = 3e-4
    train_text_encoder: bool | None = False
    model_family: str = "sdxl"
    cuda_graphs: bool = False  # not implemented for the edit's renderer (optimizer.py says so when asked)

    @property
    def scene_prompt(self) -> str:
        return class_prompt(self.input_class) if self.input_class else "a photo"

    def validate(self) -> None:
        from .model_paths import detect_family

        found = detect_family(self.pretrained_model_name_or_path or DEFAULT_BASE_MODEL)
        if self.model_family != "sdxl" or found not in (None, "sdxl"):
            other = found if found not in (None, "sdxl") else self.model_family
            raise SISOInputError(
                f"SISO editing runs on SDXL(-Turbo) only, not {other}: give an SDXL base model with "
                f"--pretrained_model_name_or_path (the default is {DEFAULT_BASE_MODEL!r})"
            )
        super().validate()
        if not self.input_image_path or not str(self.input_image_path).strip():
            raise SISOInputError("input_image_path is empty: give the scene photo to edit (--input_image_path scene.png)")
        if not MIN_INVERSION_STEP <= self.inversion_max_step <= 1.0:
            raise SISOInputError(
                f"inversion_max_step {self.inversion_max_step:g} must be between {MIN_INVERSION_STEP} and 1: it is the share of the "
                "4-step schedule that is inverted and redrawn (0.75: 3 steps; below 0.25 no step is left)"
            )
        if self.bg_mse_loss_weight < 0:
            raise SISOInputError(f"bg_mse_loss_weight {self.bg_mse_loss_weight} must be zero or positive (the default is 10)")
        if self.mask_path is None and not (self.input_class or "").strip():
            raise SISOInputError("no mask and no --input_class: give the region to edit as a PNG (--mask mask.png) or the "
                                 "class of the scene's object to find it automatically (--input_class dog)")
