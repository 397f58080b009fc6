"""The node's widget defaults and model-family recipes, read from siso_lib's config (the one source of truth).

ComfyUI's Python environment usually does not have siso_lib installed (SISO may live in its
own environment, see `python_executable`), so the values are found in this order:

1. `siso_lib.config` (and `siso_lib.model_paths`) if ComfyUI's Python can import them;
2. `siso_lib/config.py` of the repository this pack folder lives in (the pack ships inside
   the siso-lab repository; that `siso_lib` is imported under a private name, and its config
   and model_paths import nothing heavy);
3. the `FALLBACK_*` copies below, which tests keep equal to siso_lib's values.

Model families: the node offers SDXL and FLUX (`NODE_FAMILIES`), the families ComfyUI core can
render with; the base model picks the family (`detect_family`: a folder's model_index.json, or
the words of a hub id, as siso-generate's `--model_family auto` reads it). Sana is not offered:
ComfyUI core has no Sana model. The widgets whose default differs per family in siso_lib's
`FAMILY_RECIPES` (`RECIPE_WIDGETS`) show the SDXL recipe's value; left at that default, a run
takes its family's recipe value (`recipe_value`).

Nothing here imports ComfyUI, torch or siso_lib's heavy modules.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

# A copy of SISOConfig()'s values for the fields the node exposes; tests/comfyui checks it.
FALLBACK_DEFAULTS: dict[str, Any] = {
    "prompt": "a photo of a cat",
    "pretrained_model_name_or_path": "stabilityai/sdxl-turbo",
    "dino_model_name": "vit_large_patch14_dinov2.lvd142m",
    "ir_features_path": None,
    "resolution": 512,
    "num_inference_steps": 1,
    "seed": 42,
    "num_train_epochs": 50,
    "learning_rate": 2e-4,
    "rank": 4,
    "train_text_encoder": True,
    "dino_features_weight": 1.0,
    "ir_features_weight": 1.0,
    "early_stopping_threshold_percentage": 3.0,
    "early_stopping_max_count": 7,
    "device": "auto",
    "precision": "auto",
    "mode": "default",
}
# A copy of SISOEditConfig()'s values (the authors' editing command) for the fields the SISO Subject
# Edit node exposes; tests/comfyui checks it.
EDIT_FIELDS = ("prompt", "pretrained_model_name_or_path", "dino_model_name", "resolution", "seed", "num_train_epochs",
               "learning_rate", "rank", "train_text_encoder", "dino_features_weight", "ir_features_weight",
               "early_stopping_threshold_percentage", "early_stopping_max_count", "device", "precision", "mode",
               "inversion_max_step", "bg_mse_loss_weight")
FALLBACK_EDIT_DEFAULTS: dict[str, Any] = {
    **{key: FALLBACK_DEFAULTS[key] for key in EDIT_FIELDS if key in FALLBACK_DEFAULTS},
    "learning_rate": 3e-4, "train_text_encoder": False, "inversion_max_step": 0.75, "bg_mse_loss_weight": 10.0,
}
FALLBACK_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FALLBACK_MODES = ("default", "reference", "low-memory")

NODE_FAMILIES = ("sdxl", "flux")  # what the node offers: the families ComfyUI core renders
FAMILY_NAMES = {"sdxl": "SDXL", "flux": "FLUX.1", "sana": "Sana"}
# node widget -> SISOConfig field, for the widgets whose default is the family's recipe
RECIPE_WIDGETS = {
    "base_model_path": "pretrained_model_name_or_path",
    "learning_rate": "learning_rate",
    "num_inference_steps": "num_inference_steps",
    "train_text_encoder": "train_text_encoder",
    "early_stopping_max_count": "early_stopping_max_count",
}
# copies of siso_lib.config.FAMILY_RECIPES (those fields) and of model_paths' family tables; tests check them
FALLBACK_RECIPES: dict[str, dict[str, Any]] = {
    "sdxl": {"pretrained_model_name_or_path": "stabilityai/sdxl-turbo", "learning_rate": 2e-4, "num_inference_steps": 1,
             "train_text_encoder": True, "early_stopping_max_count": 7},
    "flux": {"pretrained_model_name_or_path": "black-forest-labs/FLUX.1-schnell", "learning_rate": 2e-4,
             "num_inference_steps": 1, "train_text_encoder": True, "early_stopping_max_count": 7},
    "sana": {"pretrained_model_name_or_path": "Efficient-Large-Model/Sana_1600M_512px_diffusers", "learning_rate": 8e-4,
             "num_inference_steps": 20, "train_text_encoder": False, "early_stopping_max_count": 5},
}
FALLBACK_PIPELINE_FAMILIES = {
    "StableDiffusionXLPipeline": "sdxl", "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux",
    "SanaPipeline": "sana", "SanaSprintPipeline": "sana",
}
FALLBACK_HUB_ID_FAMILIES = (("flux", "flux"), ("sana", "sana"))

REPO_CONFIG = Path(__file__).resolve().parent.parent / "siso_lib" / "config.py"
_PRIVATE_NAME = "_siso_comfyui_lib"  # the checkout's siso_lib, imported under a name of its own
_MODULES: dict[str, Any] = {}


def _import_siso(name: str):
    """(siso_lib.<name> module or None, where it came from)."""
    try:
        return importlib.import_module(f"siso_lib.{name}"), f"siso_lib.{name}"
    except Exception:  # noqa: BLE001 - not importable here: try the repository file
        pass
    if REPO_CONFIG.is_file():
        # as a package, so that relative imports (.errors, ...) resolve; siso_lib's __init__ imports nothing heavy
        package_dir = REPO_CONFIG.parent
        try:
            if _PRIVATE_NAME not in sys.modules:
                spec = importlib.util.spec_from_file_location(
                    _PRIVATE_NAME, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
                )
                package = importlib.util.module_from_spec(spec)
                sys.modules[_PRIVATE_NAME] = package
                spec.loader.exec_module(package)
            return importlib.import_module(f"{_PRIVATE_NAME}.{name}"), str(package_dir / f"{name}.py")
        except Exception:  # noqa: BLE001
            for module in [n for n in sys.modules if n == _PRIVATE_NAME or n.startswith(_PRIVATE_NAME + ".")]:
                sys.modules.pop(module, None)
    return None, "built-in copy"


def _config_module():
    return _import_siso("config")


def load_defaults() -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...], str]:
    """(defaults for FALLBACK_DEFAULTS' keys, precisions, modes, where they came from)."""
    module, source = _config_module()
    if module is None:
        return dict(FALLBACK_DEFAULTS), FALLBACK_PRECISIONS, FALLBACK_MODES, source
    config = dataclasses.asdict(module.SISOConfig())
    values = {key: config.get(key, fallback) for key, fallback in FALLBACK_DEFAULTS.items()}
    precisions = tuple(getattr(module, "PRECISIONS", FALLBACK_PRECISIONS))
    modes = tuple(getattr(module, "MODES", FALLBACK_MODES))
    return values, precisions, modes, source


def load_edit_defaults() -> tuple[dict[str, Any], str]:
    """(SISOEditConfig()'s values for FALLBACK_EDIT_DEFAULTS' keys, where they came from)."""
    module, source = _config_module()
    edit = getattr(module, "SISOEditConfig", None) if module is not None else None
    if edit is None:
        return dict(FALLBACK_EDIT_DEFAULTS), "built-in copy"
    config = dataclasses.asdict(edit())
    return {key: config.get(key, fallback) for key, fallback in FALLBACK_EDIT_DEFAULTS.items()}, source


def load_recipes() -> tuple[dict[str, dict[str, Any]], str]:
    """({family: {RECIPE_WIDGETS' config fields: value}} for every family siso_lib knows, where they came from)."""
    module, source = _config_module()
    recipes = getattr(module, "FAMILY_RECIPES", None) if module is not None else None
    if not isinstance(recipes, dict):
        return {family: dict(values) for family, values in FALLBACK_RECIPES.items()}, "built-in copy"
    fields = set(RECIPE_WIDGETS.values())
    return {family: {k: v for k, v in values.items() if k in fields} for family, values in recipes.items()}, source


def load_family_tables() -> tuple[dict[str, str], tuple[tuple[str, str], ...], str]:
    """(pipeline class -> family, hub-id words -> family, where they came from): siso_lib.model_paths' tables."""
    module, source = _import_siso("model_paths")
    classes = getattr(module, "PIPELINE_FAMILIES", None) if module is not None else None
    words = getattr(module, "HUB_ID_FAMILIES", None) if module is not None else None
    if not isinstance(classes, dict) or words is None:
        return dict(FALLBACK_PIPELINE_FAMILIES), FALLBACK_HUB_ID_FAMILIES, "built-in copy"
    return dict(classes), tuple(tuple(pair) for pair in words), source


DEFAULTS, PRECISIONS, MODES, DEFAULTS_SOURCE = load_defaults()
RECIPES, RECIPES_SOURCE = load_recipes()
EDIT_DEFAULTS, EDIT_DEFAULTS_SOURCE = load_edit_defaults()
PIPELINE_FAMILIES, HUB_ID_FAMILIES, _TABLES_SOURCE = load_family_tables()
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class FamilyProblem(ValueError):
    """The base model is of a family the node does not offer, or of none SISO knows (one line)."""


def _cached_model_index(hub_id: str) -> dict | None:
    """model_index.json of a hub id from the local Hugging Face cache (no download), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415

        cached = try_to_load_from_cache(hub_id, "model_index.json")
        if isinstance(cached, str):
            return json.loads(Path(cached).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - no huggingface_hub, or an unreadable file: the id's words decide
        pass
    return None


def pipeline_class(base_model: str) -> str | None:
    """The diffusers pipeline class of a local folder or a cached hub model (model_index.json), or None."""
    if os.path.isdir(base_model):
        try:
            index = json.loads((Path(base_model) / "model_index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    else:
        index = _cached_model_index(base_model) if HUB_ID.fullmatch(base_model) else None
    name = index.get("_class_name") if isinstance(index, dict) else None
    return name if isinstance(name, str) else None


def detect_family(base_model: str) -> str:
    """'sdxl' or 'flux' for a base model (a resolved local folder or a hub id), as siso-generate's
    `--model_family auto` reads it; FamilyProblem (one line) for Sana or a pipeline SISO does not run."""
    class_name = pipeline_class(base_model)
    if class_name is not None or os.path.isdir(base_model):
        family = PIPELINE_FAMILIES.get(class_name or "")
        if family is not None:
            what = f"a {FAMILY_NAMES.get(family, family)} pipeline ({class_name})"
        else:
            what = f"a {class_name} pipeline" if class_name else "a diffusers folder whose model_index.json names no pipeline"
    else:
        lowered = base_model.lower()
        family = next((fam for word, fam in HUB_ID_FAMILIES if word in lowered), "sdxl")
        what = f"a {FAMILY_NAMES.get(family, family)} model (by its name)"
    offered = " or ".join(f"{FAMILY_NAMES[f]} (e.g. {RECIPES.get(f, FALLBACK_RECIPES[f])['pretrained_model_name_or_path']})"
                          for f in NODE_FAMILIES)
    if family == "sana":
        raise FamilyProblem(
            f"base_model_path {base_model!r} is {what}: Sana is not offered in ComfyUI (ComfyUI core has no Sana model "
            f"to render with the LoRA); give {offered}, or run siso-generate --model_family sana outside ComfyUI"
        )
    if family not in NODE_FAMILIES:
        raise FamilyProblem(f"base_model_path {base_model!r} is {what}: the SISO node runs {offered}")
    return family


def recipe(family: str) -> dict[str, Any]:
    """The family's recipe values of RECIPE_WIDGETS' config fields."""
    return dict(RECIPES.get(family) or FALLBACK_RECIPES[family])


def is_widget_default(widget: str, value: Any) -> bool:
    """True when a recipe widget holds its default (the SDXL recipe value shown): the run takes its family's recipe."""
    default = DEFAULTS[RECIPE_WIDGETS[widget]]
    if isinstance(default, bool) or isinstance(value, bool):
        return value is default or value == default
    if isinstance(default, float) or isinstance(value, float):
        try:
            return math.isclose(float(value), float(default), rel_tol=1e-6, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return value == default


def recipe_text(field: str) -> str:
    """'sdxl 0.0002, flux 0.0002' for a tooltip: the recipe value of each offered family."""
    def show(value):
        return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{FAMILY_NAMES[f]} {show(recipe(f)[field])}" for f in NODE_FAMILIES)
