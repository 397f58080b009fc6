"""siso_lib: SISO (single-image subject-driven generation, arXiv 2503.16025) for SDXL-Turbo,
FLUX.1-schnell and Sana.

From one photo of a subject, optimise a small LoRA so that the model draws that subject, by
generating an image with gradients and scoring it against the photo with DINOv2 and
image-retrieval features. The public API (docs/python-api.md):

    from siso_lib import SISOConfig, run_siso, load_pipeline_with_lora, render

* configuration: `SISOConfig` (every default, validated and coerced field by field)
* one whole run with its files: `run_siso` -> `RunOutcome` (result, artifacts, optimizer)
* editing (the subject put into another photo): `SISOEditConfig`, `run_edit` -> `EditOutcome`
* the loop itself: `SISOOptimizer` (`.run(callbacks)` -> `SISOResult`; each iteration gives a
  `StepEvent` to every callback; `request_stop()` ends it cleanly)
* losses and feature networks (features/): `SubjectSimilarityLoss`, `DinoFeatures`, `IRFeatures`
* model families (generators/): `get_family("sdxl" | "flux" | "sana")` -> `SDXLGenerator`,
  `FluxGenerator`, `SanaGenerator` (`.load_pipeline(name_or_path, torch_dtype)`), `load_sdxl_pipeline`
* the photo: `load_subject_image`
* reusing a LoRA: `load_pipeline_with_lora`, `render`, `image_grid`; files: `save_lora_files`,
  `read_metadata`
* errors: `SISOError`, `SISOInputError` (bad input; one line naming the fix)

Iterations are numbered from 1 everywhere (events, results, files, plots). Names are imported
on first use, so `import siso_lib` stays cheap (no torch until you touch a model).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "SISOConfig": "config",
    "SISOEditConfig": "config",
    "SISOError": "errors",
    "SISOInputError": "errors",
    "SubjectImage": "io.images",
    "load_subject_image": "io.images",
    "SISOOptimizer": "optimizer",
    "SISOResult": "optimizer",
    "StepEvent": "optimizer",
    "SubjectSimilarityLoss": "losses",
    "DinoFeatures": "features.dino",
    "IRFeatures": "features.ir",
    "get_family": "generators",
    "load_sdxl_pipeline": "generators.sdxl",
    "SDXLGenerator": "generators.sdxl",
    "FluxGenerator": "generators.flux",
    "SanaGenerator": "generators.sana",
    "run_siso": "runner",
    "run_edit": "editing.runner",
    "RunOutcome": "runner",
    "load_pipeline_with_lora": "inference",
    "render": "inference",
    "image_grid": "inference",
    "save_lora_files": "io.lora",
    "read_metadata": "io.lora",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # for editors and type checkers; at run time names load lazily (PEP 562)
    from .config import SISOConfig, SISOEditConfig
    from .editing.runner import run_edit
    from .errors import SISOError, SISOInputError
    from .features.dino import DinoFeatures
    from .features.ir import IRFeatures
    from .generators import get_family
    from .generators.flux import FluxGenerator
    from .generators.sana import SanaGenerator
    from .generators.sdxl import SDXLGenerator, load_sdxl_pipeline
    from .io.images import SubjectImage, load_subject_image
    from .inference import image_grid, load_pipeline_with_lora, render
    from .io.lora import read_metadata, save_lora_files
    from .losses import SubjectSimilarityLoss
    from .optimizer import SISOOptimizer, SISOResult, StepEvent
    from .runner import RunOutcome, run_siso


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'siso_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
