"""The one place every SISO default lives, with the text that explains each setting.

`SISOConfig` is read by the library, the command lines, the notebooks and the ComfyUI node, so a
default changed here changes everywhere. Each field carries its help text and its valid range in
`dataclasses.field(metadata=...)`: `--help`, the notebook panels and the ComfyUI widgets (through
comfyui/defaults.json, generated from here) show the same words (`field_help` adds the range),
and the config checks the same range. The values are those of the authors' documented commands (arXiv 2503.16025, README of
github.com/yairshp/SISO), one recipe per model family (`FAMILY_RECIPES`):

    sdxl  stabilityai/sdxl-turbo: 512 px, 1 step (gradient through it), lr 2e-4, weight decay
          1e-2, LoRA on the UNet attention and both CLIP encoders, early stop 3 % / 7
    flux  black-forest-labs/FLUX.1-schnell: 512 px, 1 step (gradients through every step),
          guidance 0, T5 length 256, lr 2e-4 / weight decay 1e-4 on the transformer LoRA,
          CLIP-L LoRA with lr 5e-6 / weight decay 1e-3, early stop 3 % / 7
    sana  Efficient-Large-Model/Sana_1600M_512px_diffusers: 512 px, 20 steps with CFG 4.5,
          gradients through the last 3, lr 8e-4, LoRA on q/k/v only, early stop 3 % / 5
    flux2_klein  black-forest-labs/FLUX.2-klein-4B (ours: no author has published one): 512 px,
          4 distilled steps, gradients through the last 1, no guidance, Qwen3 length 512, lr 2e-4 /
          weight decay 1e-4 on the transformer LoRA, Qwen3 frozen, early stop 3 % / 7

A field whose value differs between families is declared `None`, meaning "the family's
recipe"; the family is `model_family`, or with "auto" read from the base model
(io/model_paths.detect_family), and the recipe fills those fields when the config is made and
again in `validate()`. `config.replace(model_family="flux")` re-reads the recipe for every
field the caller did not set. Field names follow the upstream argument names so that a config
maps 1:1 onto its command line.

Values coming from forms, papermill, YAML or the environment are often text: every field is
coerced to its declared type (`coerce_value`: pydantic's lax rules, "1e-4" -> 1e-4, "false" ->
False, "8" -> 8), and a value that cannot be read as that type, is not one of its choices or is
out of range raises `SISOInputError` (a ValueError) with one line naming the setting and a valid
value, when the config is made (`SISOConfig(mode="fast")`, `config.replace(resolution=63)`).
`validate()` adds the checks that need several fields or the base model (its family, both loss
weights zero, a text-encoder LoRA the family has not). This module imports nothing heavy, so the command lines validate a config in milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .errors import SISOInputError, setting

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
# FLUX.2 [klein] (no author's value): FLUX.1's choice carried over, attention and feed-forward of the
# double blocks, and the single blocks' fused q/k/v + MLP-in projection (their output projection
# is a ModuleList name that would also match the double blocks' to_out)
FLUX2_KLEIN_LORA_TARGETS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj",
    "attn.to_add_out", "ff.linear_in", "ff.linear_out", "ff_context.linear_in", "ff_context.linear_out",
    "attn.to_qkv_mlp_proj",
)

MODEL_FAMILIES = ("sdxl", "flux", "sana", "flux2_klein")
NO_TEXT_ENCODER_LORA = ("sana", "flux2_klein")  # families whose text encoder stays frozen (an LLM: no LoRA)
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
    # no author has published SISO settings for klein: every value is ours (docs/families.md says why)
    "flux2_klein": dict(
        pretrained_model_name_or_path="black-forest-labs/FLUX.2-klein-4B", learning_rate=2e-4, adam_weight_decay=1e-4,
        num_inference_steps=4, num_grad_steps=1, guidance_scale=1.0, max_sequence_length=512,
        train_text_encoder=False, text_encoder_lr=None, adam_weight_decay_text_encoder=None,
        lora_layers=",".join(FLUX2_KLEIN_LORA_TARGETS), early_stopping_max_count=7,
    ),
}
RECIPE_FIELDS = tuple(FAMILY_RECIPES["sdxl"])

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# auto: the fastest mode the memory model predicts to fit the device's free memory (memory.py)
MODES = ("auto", "default", "low-memory", "reference")
RUN_MODES = MODES[1:]  # what auto resolves to
# frozen denoiser weights: auto (only when --mode auto finds nothing else fits), or as given
QUANTIZE = ("auto", "none", "int8", "fp8")
# diffusers.optimization.SchedulerType's names (a test keeps them equal)
LR_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "piecewise_constant",
)
DEVICE_PATTERN = re.compile(r"(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)")
LORA_LAYER_PATTERN = re.compile(r"[A-Za-z_][\w.]*")
# config fields that may name a local file or folder (recorded as absolute paths, see io/model_paths.py)
MODEL_PATH_FIELDS = (
    "pretrained_model_name_or_path", "pretrained_vae_model_name_or_path", "cache_dir", "dino_model_name", "ir_features_path",
)
NONE_TEXTS = {"", "none", "null", "~"}  # text that means "not set" for an optional field


# ----------------------------------------------------------------------------- values
@lru_cache(maxsize=None)
def _adapter(kind: str):
    from pydantic import TypeAdapter

    return TypeAdapter({"int": int, "float": float, "bool": bool}[kind])


def coerce_value(name: str, annotation: str, value: Any) -> Any:
    """`value` as the declared type `annotation` ("int", "float | None", "bool", "str", "dict[str, Any]"),
    or SISOInputError naming `name`.

    Numbers and booleans are read by pydantic's lax rules ("8", "1e-4", "false", "yes", 4.0); on
    top of them: an optional field takes "", "none" and "null" as None; True is no number; an
    integer may be written as a float that is whole ("1e2"); floats are finite; text stays text
    (a number given for a text field is refused rather than guessed: "1984" is a prompt).
    """
    kind, optional = annotation.split("|")[0].strip(), "None" in annotation
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in NONE_TEXTS)):
        return None
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
    if kind not in ("int", "float", "bool"):
        return value
    from pydantic import ValidationError

    example = {"bool": "true or false", "int": "a whole number, e.g. 4", "float": "a number, e.g. 2e-4"}[kind]
    if kind != "bool" and isinstance(value, bool) or isinstance(value, (list, dict, tuple)):
        raise SISOInputError(f"{name} must be {example}, got {value!r}")
    try:
        number = _adapter(kind).validate_python(value.strip() if isinstance(value, str) else value)
    except ValidationError:
        if kind != "int":
            raise SISOInputError(f"{name} must be {example}, got {value!r}") from None
        try:  # "1e2": a whole number written as a float
            whole = _adapter("float").validate_python(value)
        except ValidationError:
            whole = None
        if whole is None or not math.isfinite(whole) or not float(whole).is_integer():
            raise SISOInputError(f"{name} must be {example}, got {value!r}") from None
        number = int(whole)
    if kind == "float" and not math.isfinite(number):
        raise SISOInputError(f"{name} must be a finite number, got {value!r}")
    return number


def knob(default: Any, help: str, **rules: Any) -> Any:  # noqa: A002 - the argparse word
    """A config field with its help text and rules, read by validate(), --help, the panels and the
    ComfyUI widgets: `min` / `max` (inclusive), `above` / `below` (exclusive), `choices`,
    `widget` (a widget's own range and step where the field has no bound, e.g. {"max": 1000})."""
    return field(default=default, metadata={"help": help, **rules})


def field_help(cls: type, name: str, rules: bool = True) -> str:
    """The help text of a config field, with its valid values: "AdamW learning rate of the
    denoiser's LoRA; positive", "...; one of default, reference, low-memory". `rules=False`: the
    help text alone (a widget's tooltip)."""
    spec = next(spec for spec in dataclasses.fields(cls) if spec.name == name)
    text = spec.metadata.get("help", "")
    valid = rules_text(spec.metadata) if rules else ""
    return f"{text}; {valid}" if valid else text


def rules_text(rules: dict) -> str:
    """A field's valid values in words: 'one of a, b', 'between 0 and 1', 'positive'; '' if any value goes."""
    if "choices" in rules:
        return f"one of {', '.join(map(str, rules['choices']))}"
    if any(key in rules for key in ("min", "max", "above", "below")):
        return _range_text(rules)
    return ""


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _range_text(rules: dict) -> str:
    """'at least 1', 'positive', 'between 0 and 1', ... for a field's bounds."""
    low = rules.get("min", rules.get("above"))
    high = rules.get("max", rules.get("below"))
    if low is not None and high is not None:
        return f"between {_number(low)} and {_number(high)}" + (
            " (both excluded)" if "above" in rules and "below" in rules else f" ({_number(high)} excluded)" if "below" in rules else "")
    if "above" in rules:
        return "positive" if rules["above"] == 0 else f"above {_number(rules['above'])}"
    if "min" in rules:
        return "zero or positive" if rules["min"] == 0 else f"at least {_number(rules['min'])}"
    if "below" in rules:
        return f"below {_number(rules['below'])}"
    return f"at most {_number(rules['max'])}"


def _out_of_range(value: float, rules: dict) -> bool:
    return (("min" in rules and value < rules["min"]) or ("max" in rules and value > rules["max"])
            or ("above" in rules and not value > rules["above"]) or ("below" in rules and not value < rules["below"]))


@dataclass
class SISOConfig:
    """Every knob of one SISO run; `None` fields take the model family's recipe (see the module doc)."""

    # what to personalise
    prompt: str = knob("a photo of a cat", "a simple prompt naming the subject's class")
    model_family: str = knob("auto", "sdxl, flux, sana, flux2_klein, or auto: read from the base model (model_index.json or "
                                     "the hub id)",
                             choices=MODEL_FAMILY_CHOICES)
    pretrained_model_name_or_path: str | None = knob(None, "hub id or local diffusers folder of the base model; None: the family's model")
    pretrained_vae_model_name_or_path: str | None = knob(None, "optional separate VAE (e.g. an fp16-safe one)")
    revision: str | None = knob(None, "hub revision (branch, tag or commit) of the base model")
    variant: str | None = knob(None, "weights variant to download, e.g. fp16")
    cache_dir: str | None = knob(None, "hub cache folder")
    dino_model_name: str = knob(DEFAULT_DINO_MODEL, "timm DINOv2 name or a local timm folder")
    ir_features_path: str | None = knob(None, "hand-downloaded ir_features.pth; None: DINO only (the paper uses both)")

    # generation
    resolution: int = knob(512, "side of the generated square image, px (a multiple of 8)", min=64, max=2048, widget={"step": 8})
    num_inference_steps: int | None = knob(None, "denoising steps per image", min=1, widget={"max": 100})
    num_grad_steps: int | None = knob(None, "the last k denoising steps carry gradients, 0 = every step", min=0, widget={"max": 100})
    guidance_scale: float | None = knob(None, "classifier-free guidance (Sana, a FLUX.2 klein base model); FLUX-dev's "
                                               "embedded guidance", min=0, widget={"max": 30})
    max_sequence_length: int | None = knob(None, "prompt tokens of T5 (FLUX) / Gemma (Sana) / Qwen3 (FLUX.2 klein)", min=1, max=512)
    seed: int = knob(42, "seed of the LoRA initialisation and of the fixed starting noise", min=0, max=2**63 - 1)

    # optimisation
    num_train_epochs: int = knob(50, "the maximum number of SISO iterations", min=1, widget={"max": 1000})
    learning_rate: float | None = knob(None, "AdamW learning rate of the denoiser's LoRA", above=0, widget={"max": 1.0})
    lr_scheduler: str = knob("constant", "diffusers scheduler name: constant, linear, cosine, ...", choices=LR_SCHEDULERS)
    lr_warmup_steps: int = knob(0, "iterations of learning-rate warm-up", min=0, widget={"max": 1000})
    lr_num_cycles: int = knob(1, "hard restarts of cosine_with_restarts", min=1, widget={"max": 100})
    lr_power: float = knob(1.0, "power of the polynomial schedule", above=0, widget={"max": 10})
    adam_beta1: float = knob(0.9, "AdamW beta1", min=0, below=1)
    adam_beta2: float = knob(0.999, "AdamW beta2", min=0, below=1)
    adam_weight_decay: float | None = knob(None, "AdamW weight decay of the denoiser's LoRA", min=0, widget={"max": 1.0})
    adam_epsilon: float = knob(1e-8, "AdamW epsilon", above=0, widget={"max": 1.0})
    max_grad_norm: float = knob(1.0, "gradient-norm clip", above=0, widget={"max": 100})

    # LoRA
    rank: int = knob(4, "LoRA rank", min=1, widget={"max": 256})
    lora_alpha: float | None = knob(None, "LoRA alpha; None: the rank (scale 1, as upstream)", above=0, widget={"max": 1024})
    lora_layers: str | None = knob(None, "comma-separated module names of the denoiser that get a LoRA")
    train_text_encoder: bool | None = knob(None, "also put LoRA on the CLIP text encoder(s)")
    text_encoder_lr: float | None = knob(None, "learning rate of the text-encoder LoRA; None: the denoiser's", above=0, widget={"max": 1.0})
    adam_weight_decay_text_encoder: float | None = knob(None, "AdamW weight decay of the text-encoder LoRA; None: the denoiser's",
                                                        min=0, widget={"max": 1.0})

    # loss
    dino_features_weight: float = knob(1.0, "weight of the DINO loss term", min=0, widget={"max": 10})
    ir_features_weight: float = knob(1.0, "weight of the IR loss term", min=0, widget={"max": 10})

    # early stopping
    early_stopping_threshold_percentage: float = knob(3.0, "an improvement smaller than this % does not reset the patience",
                                                      min=0, widget={"max": 100})
    early_stopping_max_count: int | None = knob(None, "stop after this many iterations without such an improvement", min=1,
                                                widget={"max": 1000})

    # device and speed/memory
    device: str = knob("auto", "auto, cuda, cuda:N, xpu, mps or cpu")
    precision: str = knob("auto", "dtype of the frozen weights (the LoRA stays fp32): auto = bf16 on Ampere+ NVIDIA GPUs and "
                          "XPU, fp16 with loss scaling on older NVIDIA GPUs, fp32 on MPS and CPU", choices=PRECISIONS)
    mode: str = knob("auto", "auto (the fastest mode predicted to fit the GPU's free memory; default on a CPU), default "
                     "(fast), low-memory (gradient checkpointing) or reference (the authors' setup: fp32 unless a precision "
                     "is given, nothing cached); see docs/memory.md", choices=MODES)
    quantize: str = knob("auto", "frozen denoiser weights in int8 or fp8 (torchao; the LoRA stays fp32), none, or auto "
                         "(quantized only when --mode auto finds nothing else fits)", choices=QUANTIZE)
    gradient_checkpointing: bool | None = knob(None, "override the mode's gradient checkpointing")
    compile: bool = knob(False, "torch.compile the denoiser (UNet or transformer; slow first step)")
    cuda_graphs: bool = knob(True, "replay each iteration as one CUDA graph where supported (SDXL, default mode, bf16/fp32, 1 step)")

    # robustness
    save_on_improve: bool = knob(False, "write the best LoRA whenever it improves (survives a hard kill)")

    def __post_init__(self) -> None:
        self.coerce()
        self.check_fields()  # a bad single value is refused when the config is made, not only by validate()
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
        from .io.model_paths import detect_family

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

    def default_of(self, name: str) -> Any:
        """The default of a field for this config: the declared one, or for a recipe field (declared
        None) the recipe's value for this config's family."""
        declared = next(spec.default for spec in dataclasses.fields(self) if spec.name == name)
        if declared is not None or name not in RECIPE_FIELDS:
            return declared
        try:
            family = self.family if self.model_family in MODEL_FAMILY_CHOICES else None
        except SISOInputError:
            family = None
        return FAMILY_RECIPES.get(family or "", FAMILY_RECIPES["sdxl"])[name]

    @property
    def effective_lora_alpha(self) -> float:
        return float(self.rank if self.lora_alpha is None else self.lora_alpha)

    def with_absolute_paths(self) -> "SISOConfig":
        """A copy whose local model paths are absolute; hub ids, timm names and missing paths unchanged."""
        from .io.model_paths import absolute_if_local

        names = [name for name in self.path_fields() if isinstance(getattr(self, name), str)]
        return self.replace(**{name: absolute_if_local(getattr(self, name)) for name in names})

    def path_fields(self) -> tuple[str, ...]:
        return MODEL_PATH_FIELDS

    def check_fields(self) -> None:
        """Every check of one field on its own, SISOInputError (one line) for the first that fails:
        choices, bounds, and the rules of a single value (a resolution that is a multiple of 8, a
        prompt that is not empty, a device name, module names). Run when a config is made (so
        `SISOConfig(mode="fast")` raises at once) and again by validate(), which adds the checks
        that need several fields or the base model (the family, the loss weights together)."""
        if self.model_family not in MODEL_FAMILY_CHOICES:
            raise SISOInputError(f"model_family {self.model_family!r} is unknown: use {', '.join(MODEL_FAMILY_CHOICES)}")
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
        self.check_ranges()
        if not DEVICE_PATTERN.fullmatch(self.device.strip()):
            raise SISOInputError(f"device {self.device!r} is not a device name: use auto, cuda, cuda:N, xpu, mps or cpu")
        if not self.dino_model_name.strip():
            raise SISOInputError(f"dino_model_name is empty: give a timm name or a local folder (the default is {DEFAULT_DINO_MODEL!r})")
        if self.lora_layers is not None:
            layers = [layer.strip() for layer in self.lora_layers.split(",")]
            if not all(LORA_LAYER_PATTERN.fullmatch(layer) for layer in layers):
                raise SISOInputError(
                    f"lora_layers {self.lora_layers!r} is not a comma-separated list of module names, e.g. "
                    f"{self.default_of('lora_layers')!r}"
                )

    def check_ranges(self) -> None:
        """Each field against its metadata: choices, and bounds (its default named: the recipe's for
        this family)."""
        for spec in dataclasses.fields(self):
            value, rules = getattr(self, spec.name), spec.metadata
            if value is None:
                continue
            if "choices" in rules and value not in rules["choices"]:
                raise SISOInputError(f"{spec.name} {value!r} is unknown: use one of {', '.join(rules['choices'])}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and _out_of_range(value, rules):
                default = self.default_of(spec.name)
                said = f" (the default is {_number(default)})" if isinstance(default, (int, float)) and not isinstance(default, bool) else ""
                raise SISOInputError(f"{spec.name} {_number(value)} must be {_range_text(rules)}{said}")

    def validate(self) -> None:
        """Coerce every field, then raise SISOInputError (a ValueError) with a one-line fix for any
        impossible setting."""
        self.coerce()
        self.check_fields()  # again: a field may have been set after the config was made
        family = self.family  # raises for a folder of another pipeline class
        if family is None:
            from .io.model_paths import check_local_base_model

            check_local_base_model(self.pretrained_model_name_or_path)  # a missing or wrong folder says so first
            raise SISOInputError(
                f"cannot tell which model family {self.pretrained_model_name_or_path!r} is: give "
                f"{setting('model_family')} {', '.join(MODEL_FAMILIES)}"
            )
        self.apply_recipe()
        self.check_ranges()  # the values the recipe filled in
        if self.dino_features_weight == 0 and self.ir_features_weight == 0:
            raise SISOInputError(f"both loss weights are zero: nothing to optimise; set {setting('dino_features_weight')} above 0")
        if family in NO_TEXT_ENCODER_LORA and self.train_text_encoder:
            from .io.model_paths import FAMILY_TITLES

            raise SISOInputError(f"train_text_encoder is not available for {FAMILY_TITLES[family]} (its LLM text encoder stays "
                                 f"frozen; the LoRA is on the transformer only): use {setting('train_text_encoder', False)}")
        if self.mode == "reference" and self.quantize in ("int8", "fp8"):
            raise SISOInputError(f"reference mode is the authors' fp32 setup and takes no quantized weights: use "
                                 f"{setting('mode', 'default')} or {setting('mode', 'low-memory')} with {setting('quantize', self.quantize)}")

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

    input_image_path: str = knob("", "the scene photo to edit")
    mask_path: str | None = knob(None, "PNG of the scene's size, white = where the subject goes; None: found automatically "
                                       "(Grounding-DINO + SAM) from input_class")
    input_class: str | None = knob(None, "the class of the scene's object the subject replaces (inversion prompt; automatic mask)")
    inversion_max_step: float = knob(0.75, "ReNoise / img2img strength: the share of the 4-step schedule that is inverted and "
                                           "redrawn (0.75: the last 3 steps; below 0.25 no step is left)", min=MIN_INVERSION_STEP, max=1.0,
                                     widget={"step": 0.05})
    bg_mse_loss_weight: float = knob(10.0, "weight of the background-preservation MSE outside the mask", min=0, widget={"max": 1000})
    detector_model: str = knob(DEFAULT_DETECTOR, "Grounding-DINO of the automatic mask: hub id or local folder")
    segmenter_model: str = knob(DEFAULT_SEGMENTER, "SAM of the automatic mask: hub id or local folder")
    box_threshold: float = knob(DEFAULT_BOX_THRESHOLD, "Grounding-DINO's box threshold for the automatic mask (the authors' 0.3)",
                                min=0, max=1, widget={"step": 0.01})
    learning_rate: float | None = knob(3e-4, "AdamW learning rate of the UNet LoRA", above=0, widget={"max": 1.0})
    train_text_encoder: bool | None = knob(False, "also put LoRA on the CLIP text encoders")
    model_family: str = knob("sdxl", "editing runs on SDXL(-Turbo) only", choices=MODEL_FAMILY_CHOICES)
    cuda_graphs: bool = knob(False, "not implemented for the edit's renderer (the run says so when asked)")

    @property
    def scene_prompt(self) -> str:
        return class_prompt(self.input_class) if self.input_class else "a photo"

    def path_fields(self) -> tuple[str, ...]:
        return (*MODEL_PATH_FIELDS, "detector_model", "segmenter_model")

    def validate(self) -> None:
        from .io.model_paths import detect_family

        found = detect_family(self.pretrained_model_name_or_path or DEFAULT_BASE_MODEL)
        if self.model_family != "sdxl" or found not in (None, "sdxl"):
            other = found if found not in (None, "sdxl") else self.model_family
            raise SISOInputError(
                f"SISO editing runs on SDXL(-Turbo) only, not {other}: give an SDXL base model as "
                f"{setting('pretrained_model_name_or_path')} (the default is {DEFAULT_BASE_MODEL!r})"
            )
        super().validate()
        if not self.input_image_path or not str(self.input_image_path).strip():
            raise SISOInputError(f"input_image_path is empty: give the scene photo to edit ({setting('input_image_path', 'scene.png')})")
        if self.mask_path is None and not (self.input_class or "").strip():
            raise SISOInputError(f"no mask and no input_class: give the region to edit as a PNG ({setting('mask_path', 'mask.png')}) "
                                 f"or the class of the scene's object to find it automatically ({setting('input_class', 'dog')})")
        for name in ("detector_model", "segmenter_model"):
            if not getattr(self, name).strip():
                raise SISOInputError(f"{name} is empty: give a hub id or a local folder (the default is {self.default_of(name)!r})")
