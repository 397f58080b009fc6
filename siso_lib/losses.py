"""The SISO objective: negative cosine similarity to the subject in two feature spaces.

    loss = w_dino * (-cos(DINO(x), DINO(s))) + w_ir * (-cos(IR(x), IR(s)))

x is the generated image [1, 3, H, W] in [0, 1], s the subject photo [1, 3, h, w] in [0, 1].
The subject's features are computed once, without gradients. Each term lies in [-1, 1]; a
perfect match gives -(w_dino + w_ir).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


def negative_cosine(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-cos(a, b) of two feature vectors ([1, D] or [D]) -> scalar."""
    return -F.cosine_similarity(features.reshape(-1), target.reshape(-1), dim=0)


class SubjectSimilarityLoss(nn.Module):
    """Weighted sum of negative cosine similarities; `forward` returns {"total", "dino", "ir"}.

    A feature network that is None (e.g. no IR checkpoint) or whose weight is 0 is skipped;
    its entry is then missing from the returned dict.
    """

    def __init__(
        self,
        subject: torch.Tensor,
        dino: nn.Module | None,
        ir: nn.Module | None,
        dino_weight: float = 1.0,
        ir_weight: float = 1.0,
    ):
        super().__init__()
        self.terms = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        for name, network, weight in (("dino", dino, dino_weight), ("ir", ir, ir_weight)):
            if network is not None and weight > 0:
                self.terms[name] = network
                self.weights[name] = float(weight)
        if not self.terms:
            raise ValueError("no feature network with a positive weight: give a DINO model or an IR checkpoint")
        self.targets: dict[str, torch.Tensor] = {}
        self.set_subject(subject)

    @torch.no_grad()
    def set_subject(self, subject: torch.Tensor) -> None:
        """Compute and keep the subject's features ([1, 3, h, w] in [0, 1])."""
        device = next(self.parameters()).device
        self.targets = {name: network(subject.to(device)).detach().clone() for name, network in self.terms.items()}

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        total = None
        for name, network in self.terms.items():
            term = negative_cosine(network(image), self.targets[name])
            losses[name] = term
            weighted = self.weights[name] * term
            total = weighted if total is None else total + weighted
        losses["total"] = total
        return losses
