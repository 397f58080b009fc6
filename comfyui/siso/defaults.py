"""The widgets' defaults, ranges and tooltips and the model-family recipes: comfyui/defaults.json.

That file is generated from siso_lib/config.py (and io/model_paths.py's family tables) by
comfyui/tools/make_defaults.py, and a test keeps it equal to them; the pack reads only it, since
ComfyUI's Python need not have siso_lib.

The node offers SDXL, FLUX.1 and FLUX.2 klein (`NODE_FAMILIES`): ComfyUI core renders SDXL and FLUX.1
(0.3.64, the tested release, has no FLUX.2 model; later releases have one). The widgets
whose default differs per family (`RECIPE_WIDGETS`) show the SDXL recipe's value; left at it, a
run takes its family's recipe value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

PATH = Path(__file__).resolve().parent.parent / "defaults.json"
REGENERATE = "python comfyui/tools/make_defaults.py"


def _load() -> dict[str, Any]:
    try:
        return json.loads(PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RuntimeError(f"cannot read the SISO node defaults {str(PATH)!r} ({error}): restore it, or regenerate it "
                           f"with {REGENERATE} in a siso-lab checkout") from None


DATA = _load()
GENERATE_FIELDS: dict[str, dict[str, Any]] = DATA["generate"]  # SISOConfig field -> default, tooltip, range, choices
EDIT_FIELDS: dict[str, dict[str, Any]] = DATA["edit"]  # the same for SISOEditConfig
DEFAULTS = {name: spec["default"] for name, spec in GENERATE_FIELDS.items()}
EDIT_DEFAULTS = {name: spec["default"] for name, spec in EDIT_FIELDS.items()}
PRECISIONS = tuple(GENERATE_FIELDS["precision"]["choices"])
MODES = tuple(GENERATE_FIELDS["mode"]["choices"])
RECIPES: dict[str, dict[str, Any]] = DATA["family_recipes"]
PIPELINE_FAMILIES: dict[str, str] = DATA["pipeline_families"]
HUB_ID_FAMILIES = tuple(tuple(pair) for pair in DATA["hub_id_families"])
SINGLE_FILE: dict[str, Any] = DATA["single_file"]  # suffixes, the families' key markers, a whole checkpoint's parts

NODE_FAMILIES = ("sdxl", "flux", "flux2_klein")  # what the node offers (not Sana: ComfyUI core has no Sana model)
FAMILY_NAMES = {"sdxl": "SDXL", "flux": "FLUX.1", "sana": "Sana", "flux2_klein": "FLUX.2 klein"}
KOHYA_FAMILIES = ("sdxl",)  # ComfyUI applies these LoRAs fully only in Kohya keys; the others' diffusers file is the one
# the class of comfy.model_base that renders a family (host.comfy_families() looks them up in the running ComfyUI)
COMFY_MODEL_CLASSES = {"sdxl": "SDXL", "flux": "Flux", "flux2_klein": "Flux2"}
# node widget -> SISOConfig field, for the widgets whose default is the family's recipe
RECIPE_WIDGETS = {
    "base_model_path": "pretrained_model_name_or_path",
    "learning_rate": "learning_rate",
    "num_inference_steps": "num_inference_steps",
    "train_text_encoder": "train_text_encoder",
    "early_stopping_max_count": "early_stopping_max_count",
}


def recipe(family: str) -> dict[str, Any]:
    """The family's recipe (FAMILY_RECIPES' values)."""
    return dict(RECIPES[family])


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
    """'SDXL 0.0002, FLUX.1 0.0002' for a tooltip: the recipe value of each offered family."""
    def show(value):
        return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{FAMILY_NAMES[family]} {show(recipe(family)[field])}" for family in NODE_FAMILIES)
