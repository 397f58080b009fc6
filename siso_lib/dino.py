"""DINOv2 image features through timm: x [B, 3, H, W] in [0, 1] -> CLS feature [B, D].

The model is named as users name timm models: a timm/hub name (downloaded into the hub cache,
e.g. the default `vit_large_patch14_dinov2.lvd142m`, D = 1024), `hf-hub:org/name`, or a local
folder in timm's hub layout (`config.json` + `model.safetensors`, as written by
`timm.models.save_for_hf`), optionally spelled `local-dir:/path`, which works offline.
The network is frozen and in eval mode; gradients flow only to its input.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import timm
import torch
from torch import nn

from .errors import SISOInputError
from .preprocess import DinoPreprocess, FrozenFeatures, PreprocessSpec


def _timm_name(name: str) -> str:
    if name.startswith(("local-dir:", "hf-hub:")):
        return name
    if os.path.isdir(name):
        return f"local-dir:{Path(name).resolve()}"
    if os.path.sep in name or name.startswith("."):
        raise SISOInputError(
            f"DINO model folder {name!r} does not exist: give a timm model name or a folder with config.json"
        )
    return name


def check_dino_name(name: str) -> str:
    """Return timm's name for `name`, or raise SISOInputError if it cannot name a model."""
    timm_name = _timm_name(name)
    if timm_name.startswith("local-dir:"):
        folder = Path(timm_name[len("local-dir:"):])
        if not (folder / "config.json").is_file():
            raise SISOInputError(
                f"DINO model folder {str(folder)!r} has no config.json: save it with timm.models.save_for_hf "
                "or download the hub repo (config.json + model.safetensors)"
            )
    elif not timm.is_model(timm.models.split_model_name_tag(timm_name)[0]) and not timm_name.startswith("hf-hub:"):
        raise SISOInputError(
            f"DINO model {name!r} is not a timm model name: use e.g. {'vit_large_patch14_dinov2.lvd142m'!r} "
            "or a local folder"
        )
    return timm_name


def _create(name: str) -> nn.Module:
    timm_name = check_dino_name(name)
    try:
        return timm.create_model(timm_name, pretrained=True, num_classes=0)
    except (OSError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SISOInputError(
            f"DINO model {name!r} could not be loaded ({first[:200]}): download it once with network access "
            "or point --dino_model_name at a local timm folder"
        ) from error


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
        model = _create(name)
        return cls(model, preprocess_spec_for(model))
