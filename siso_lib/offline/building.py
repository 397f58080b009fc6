"""Small helpers shared by the random-weight model builders (tiny_models.py, tiny_klein.py).

Kept apart so the builders of each family can use them without importing each other.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@contextmanager
def _default_dtype(dtype: "torch.dtype"):
    """Create parameters directly in `dtype` (a full-size SDXL in fp32 and then cast would need 2x memory)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _eval(*modules):
    """Put freshly built models in eval mode, as from_pretrained returns them (a built model is in training mode)."""
    for module in modules:
        module.eval()
