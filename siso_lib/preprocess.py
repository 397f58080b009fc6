"""Differentiable image preprocessing for the feature networks (kornia, so gradients flow).

Both pipelines take an image tensor [B, 3, H, W] in [0, 1] and return [B, 3, S, S] normalised.
They reproduce the reference implementation's calls exactly, because PIL/torchvision resizing,
antialiasing or another crop changes every loss value:

    DINO: kornia.geometry.transform.resize(x, short_side, "bicubic")   (no antialias)
          kornia.geometry.transform.center_crop(x, (S, S))              (bilinear warp)
          (x - ImageNet mean) / ImageNet std
    IR:   kornia.geometry.transform.Resize(short_side, "bicubic")
          kornia.augmentation.CenterCrop(S)                             (integer slice)
          (x - OpenAI-CLIP mean) / OpenAI-CLIP std
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia.augmentation as KA
import kornia.enhance as KE
import kornia.geometry.transform as KT
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PreprocessSpec:
    resize: int  # short side after resizing
    crop: int  # square centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class DinoPreprocess(nn.Module):
    """Resize short side (bicubic), centre crop (warp), ImageNet normalisation."""

    def __init__(self, spec: PreprocessSpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", torch.tensor(spec.mean), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image = KT.resize(image, self.spec.resize, interpolation="bicubic")
        image = KT.center_crop(image, (self.spec.crop, self.spec.crop))
        return KE.normalize(image, self.mean, self.std)


class IRPreprocess(nn.Module):
    """Resize short side (bicubic), centre crop (integer slice), OpenAI-CLIP normalisation."""

    def __init__(self, spec: PreprocessSpec):
        super().__init__()
        self.spec = spec
        self.resize = KT.Resize(spec.resize, interpolation="bicubic")
        self.crop = KA.CenterCrop(spec.crop)
        self.normalize = KA.Normalize(mean=torch.tensor(spec.mean), std=torch.tensor(spec.std))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.crop(self.resize(image)))


class FrozenFeatures(nn.Module):
    """A frozen feature network behind its differentiable preprocessing:
    image [B, 3, H, W] in [0, 1] (float32) -> features [B, D] (float32).

    The network may run in bf16/fp16; the preprocessing always runs in float32. The network is
    a fixed judge: it stays in eval mode (no dropout or stochastic depth) and gets no gradients,
    which still flow through it to the image.
    """

    def __init__(self, network: nn.Module, preprocess: nn.Module):
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.preprocess = preprocess

    @property
    def dtype(self) -> torch.dtype:
        return next(self.network.parameters()).dtype

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pixels = self.preprocess(image.float()).to(self.dtype)
        return self.network(pixels).float()

    def train(self, mode: bool = True) -> "FrozenFeatures":
        return super().train(False)
