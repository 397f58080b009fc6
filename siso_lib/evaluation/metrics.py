"""The numbers: cosine similarities between feature vectors, and diversity across seeds.

All inputs are feature matrices [N, D] (any scale; each row is L2-normalised here).

    similarity(a, b)[i]   = cos(a_i, b_i)                          paired rows, [N]
    similarity_to(a, r)[i] = cos(a_i, r)                            one reference [D], [N]
    diversity(f)           = mean_{i<j} (1 - cos(f_i, f_j))         seeds of one prompt, scalar

DreamBench's subject metrics (DreamBooth, arXiv 2208.12242, section 4.1) are these cosines:
DINO = cos(DINO(generated), DINO(subject)), CLIP-I likewise with CLIP's image tower, CLIP-T =
cos(CLIP image(generated), CLIP text(prompt)); SISO's paper (arXiv 2503.16025, Table 1) adds IR,
the same cosine in its retrieval network's space. Diversity here is the mean pairwise cosine
distance of DINO features between images of one prompt drawn with different seeds (0: all
seeds give the same picture); it is this project's definition, stated in every metrics.json.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F


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
