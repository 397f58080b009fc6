"""The numbers: cosine similarities between feature vectors, diversity across seeds, and pixel
differences.

Feature inputs are matrices [N, D] (any scale; each row is L2-normalised here).

    similarity(a, b)[i]   = cos(a_i, b_i)                          paired rows, [N]
    similarity_to(a, r)[i] = cos(a_i, r)                            one reference [D], [N]
    diversity(f)           = mean_{i<j} (1 - cos(f_i, f_j))         seeds of one prompt, scalar
    mse_to_photo(x, y)     = mean over pixels of (x - y)^2          RGB in [0, 1], y brought to x's size

DreamBench's subject metrics (DreamBooth, arXiv 2208.12242, section 4.1) are these cosines:
DINO = cos(DINO(generated), DINO(subject)), CLIP-I likewise with CLIP's image tower, CLIP-T =
cos(CLIP image(generated), CLIP text(prompt)); SISO's paper (arXiv 2503.16025, Table 1) adds IR,
the same cosine in its retrieval network's space. Diversity here is the mean pairwise cosine
distance of DINO features between images of one prompt drawn with different seeds (0: all
seeds give the same picture); it is this project's definition, stated in every metrics.json, and
reported as `seed_diversity`. The paper's Table 2 calls something else "diversity": the MSE
between each generated image and the subject photo (higher = less copying of the photo), reported
as `paper_diversity_mse` (`mse_to_photo`). The two measure different things and are never compared.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of two [N, D] matrices -> [N], in [-1, 1]."""
    if a.shape != b.shape:
        raise ValueError(f"feature shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (F.normalize(a.float(), dim=-1) * F.normalize(b.float(), dim=-1)).sum(-1).clamp(-1.0, 1.0)


def similarity_to(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Cosine of every row of [N, D] with one reference vector [D] (or [1, D]) -> [N]."""
    return similarity(features, reference.reshape(1, -1).expand_as(features))


def diversity(features: torch.Tensor) -> float | None:
    """Mean pairwise cosine distance 1 - cos(f_i, f_j) over i < j of [N, D]; None for N < 2."""
    count = features.shape[0]
    if count < 2:
        return None
    unit = F.normalize(features.float(), dim=-1)
    cosines = unit @ unit.T
    upper = torch.triu_indices(count, count, offset=1)
    return float((1.0 - cosines[upper[0], upper[1]].clamp(-1.0, 1.0)).mean())


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are numbers (None and NaN skipped); None if there are none."""
    numbers = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(numbers) / len(numbers) if numbers else None


def mse_to_photo(image: Image.Image, photo: Image.Image) -> float:
    """Mean squared difference of RGB values in [0, 1] between `image` and `photo`, the photo brought
    to the image's size as the method sees it (short side scaled, centre cropped; bicubic)."""
    from ..editing.geometry import resize_and_center_crop

    width, height = image.size
    reference = resize_and_center_crop(photo.convert("RGB"), min(width, height))
    if reference.size != image.size:
        reference = reference.resize(image.size, Image.Resampling.BICUBIC)
    a = np.asarray(image.convert("RGB"), np.float64) / 255.0
    b = np.asarray(reference, np.float64) / 255.0
    return float(((a - b) ** 2).mean())


def masked_mse(image: np.ndarray, reference: np.ndarray, keep: np.ndarray) -> float:
    """Mean squared difference of [H, W, 3] arrays in [0, 1] over the pixels where `keep` [H, W] is True."""
    if not keep.any():
        raise ValueError("no pixel to compare: the mask covers everything")
    return float(((image - reference) ** 2)[keep].mean())
