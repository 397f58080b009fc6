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

The same numbers come from fewer host-side steps, so that an iteration can be captured in a
CUDA graph (see cuda_graphs.py): kornia's `center_crop` builds its corner points from Python
data on every call, and the augmentation modules build parameter tensors; here the crop's
translation matrix is built once per input shape and the slice offsets are plain integers.
Tests check both against kornia's own calls with `torch.equal`.
"""

from __future__ import annotations

from dataclasses import dataclass

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


class _Preprocess(nn.Module):
    def __init__(self, spec: PreprocessSpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", torch.tensor(spec.mean), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std), persistent=False)


class DinoPreprocess(_Preprocess):
    """Resize short side (bicubic), centre crop (warp), ImageNet normalisation."""

    def __init__(self, spec: PreprocessSpec):
        super().__init__(spec)
        self._crop_matrices: dict[tuple, torch.Tensor] = {}

    def crop_matrix(self, image: torch.Tensor) -> torch.Tensor:
        """[1, 3, 3] pixel translation of kornia's `center_crop`, cached per input shape.

        kornia maps the source corner (W/2 - S/2, H/2 - S/2) onto (0, 0); the offsets may be
        fractional (an odd size difference), which is why this is a warp and not a slice.
        """
        height, width = image.shape[-2:]
        key = (height, width, image.dtype, image.device)
        if key not in self._crop_matrices:
            matrix = torch.eye(3, dtype=image.dtype, device=image.device)[None]
            matrix[0, 0, 2] = -(width / 2 - self.spec.crop / 2)
            matrix[0, 1, 2] = -(height / 2 - self.spec.crop / 2)
            self._crop_matrices[key] = matrix
        return self._crop_matrices[key]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image = KT.resize(image, self.spec.resize, interpolation="bicubic")
        crop = (self.spec.crop, self.spec.crop)
        image = KT.crop_by_transform_mat(image, self.crop_matrix(image), crop, "bilinear", "zeros", True)
        return KE.normalize(image, self.mean, self.std)


class IRPreprocess(_Preprocess):
    """Resize short side (bicubic), centre crop (integer slice), OpenAI-CLIP normalisation."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image = KT.resize(image, self.spec.resize, interpolation="bicubic")
        size = self.spec.crop
        top, left = (image.shape[-2] - size) // 2, (image.shape[-1] - size) // 2
        return KE.normalize(image[..., top : top + size, left : left + size], self.mean, self.std)


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
