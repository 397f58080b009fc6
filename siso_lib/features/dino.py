"""DINOv2 image features through timm: x [B, 3, H, W] in [0, 1] -> CLS feature [B, D].

The model is named as users name timm models: a timm/hub name (downloaded into the hub cache,
e.g. the default `vit_large_patch14_dinov2.lvd142m`, D = 1024), `hf-hub:org/name`, or a local
folder in timm's hub layout (`config.json` + `model.safetensors`, as written by
`timm.models.save_for_hf`), optionally spelled `local-dir:/path`, which works offline.
The network is frozen and in eval mode; gradients flow only to its input.
"""

from __future__ import annotations

import math

import timm
import torch
from torch import nn

from ..errors import SISOInputError, error_summary, setting
from ..io.model_paths import DINO_FOLDER_LAYOUT, LOCAL_DIR_PREFIX, check_local_dino, dino_local_folder
from .preprocess import DinoPreprocess, FrozenFeatures, PreprocessSpec


def check_dino_name(name: str) -> str:
    """Return timm's name for `name`, or raise SISOInputError if it cannot name a loadable model.

    A local folder is checked for timm's layout (see model_paths.check_dino_folder) and becomes
    ``local-dir:<absolute path>``; a timm name must be in timm's registry.
    """
    check_local_dino(name)
    folder = dino_local_folder(name)
    if folder is not None:
        return LOCAL_DIR_PREFIX + str(folder.resolve())
    if not name.startswith("hf-hub:") and not timm.is_model(timm.models.split_model_name_tag(name)[0]):
        raise SISOInputError(
            f"DINO model {name!r} is not a timm model name: use e.g. {'vit_large_patch14_dinov2.lvd142m'!r} "
            f"or {DINO_FOLDER_LAYOUT}"
        )
    return name


def create_dino_network(name: str) -> nn.Module:
    """The timm model `name` names (see check_dino_name), pretrained, with no classifier: image -> CLS [B, D]."""
    timm_name = check_dino_name(name)
    try:
        return timm.create_model(timm_name, pretrained=True, num_classes=0)
    except Exception as error:  # timm raises OSError, RuntimeError, TypeError, KeyError... on a bad folder
        fix = (
            f"expected {DINO_FOLDER_LAYOUT}" if timm_name.startswith(LOCAL_DIR_PREFIX)
            else f"download it once with network access or point {setting('dino_model_name')} at a local timm folder"
        )
        raise SISOInputError(f"DINO model {name!r} could not be loaded ({type(error).__name__}: {error_summary(error, 160)}): {fix}") from error


def preprocess_spec_for(model: nn.Module) -> PreprocessSpec:
    """Resize/crop sizes and mean/std from the model's pretrained config (518 px for DINOv2)."""
    cfg = timm.data.resolve_model_data_config(model)
    crop = int(cfg["input_size"][-1])
    resize = math.floor(crop / cfg.get("crop_pct", 1.0))
    return PreprocessSpec(resize=resize, crop=crop, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))


class DinoFeatures(FrozenFeatures):
    """Frozen DINOv2: image [B, 3, H, W] in [0, 1] -> CLS features [B, D]."""

    def __init__(self, model: nn.Module, spec: PreprocessSpec):
        super().__init__(model, DinoPreprocess(spec))

    @classmethod
    def from_pretrained(cls, name: str) -> "DinoFeatures":
        model = create_dino_network(name)
        return cls(model, preprocess_spec_for(model))
