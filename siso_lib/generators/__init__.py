"""Text-to-image model families behind one interface (base.LoRAGenerator), one module each.

    sdxl.py   SDXLGenerator   SDXL / SDXL-Turbo (UNet + two CLIP encoders)
    flux.py   FluxGenerator   FLUX.1-schnell / -dev (MM-DiT transformer, CLIP-L + T5-XXL)
    sana.py   SanaGenerator   Sana (linear DiT, Gemma-2 text encoder, DC-AE)
    flux2_klein.py  Flux2KleinGenerator  FLUX.2 [klein] (MM-DiT transformer, Qwen3 text encoder, FLUX.2 VAE)

`get_family("flux")` returns the class; importing this package loads no torch, the family
module is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..config import MODEL_FAMILIES
from ..errors import SISOInputError

if TYPE_CHECKING:
    from .base import LoRAGenerator

# family -> (module, class)
FAMILY_CLASSES = {
    "sdxl": ("sdxl", "SDXLGenerator"), "flux": ("flux", "FluxGenerator"), "sana": ("sana", "SanaGenerator"),
    "flux2_klein": ("flux2_klein", "Flux2KleinGenerator"),
}
assert tuple(FAMILY_CLASSES) == MODEL_FAMILIES


def get_family(name: str) -> "type[LoRAGenerator]":
    """The generator class of a model family ('sdxl', 'flux', 'sana' or 'flux2_klein')."""
    if name not in FAMILY_CLASSES:
        raise SISOInputError(f"model family {name!r} is unknown: use one of {', '.join(FAMILY_CLASSES)}")
    module, cls = FAMILY_CLASSES[name]
    return getattr(importlib.import_module(f".{module}", __name__), cls)


def family_of(pipe) -> "type[LoRAGenerator]":
    """The generator class for a loaded diffusers pipeline (by its class), or SISOInputError."""
    from ..io.model_paths import family_of_pipeline_class

    return get_family(family_of_pipeline_class(type(pipe).__name__, type(pipe).__name__))
