"""The settings each node passes to its script, and how widget values become them.

Field names are the nodes' widget names, so `from_widgets` builds the settings from the
dataclass fields alone: each field a widget of the same name sets, read as the field's type.
Defaults are siso-lab's (defaults.json). The generator's recipe fields (`RECIPE_PARAMS`) stay
None while their widget holds its default: the run then takes the family's recipe value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from . import defaults

_D = defaults.DEFAULTS
_E = defaults.EDIT_DEFAULTS


@dataclass
class SISOParams:
    """siso-generate's arguments the generator node exposes (names as in the authors' argument list).

    `model_family` "auto" is read from the base model; the recipe fields left None take the
    family's recipe (`with_recipe`).
    """

    prompt: str = _D["prompt"]
    base_model_path: str = _D["pretrained_model_name_or_path"]
    model_family: str = "auto"  # "auto" (from the base model), or one of defaults.NODE_FAMILIES
    ir_features_path: str = ""
    dino_model_name: str = _D["dino_model_name"]
    num_train_epochs: int = _D["num_train_epochs"]
    learning_rate: float | None = None  # None: the family's recipe
    dino_features_weight: float = _D["dino_features_weight"]
    ir_features_weight: float = _D["ir_features_weight"]
    seed: int = _D["seed"]
    resolution: int = _D["resolution"]
    rank: int = _D["rank"]
    early_stopping_max_count: int | None = None  # None: the family's recipe
    early_stopping_threshold_percentage: float = _D["early_stopping_threshold_percentage"]
    num_inference_steps: int | None = None  # None: the family's recipe
    train_text_encoder: bool | None = None  # None: the family's recipe
    device: str = _D["device"]
    mixed_precision: str = _D["precision"]
    mode: str = _D["mode"]
    quantize: str = _D["quantize"]
    extra_args: str = ""
    from_recipe: tuple[str, ...] = ()  # filled by with_recipe: the fields that took the family's recipe


@dataclass
class EditParams:
    """siso-edit's arguments the edit node exposes (defaults: SISOEditConfig's)."""

    prompt: str = _E["prompt"]  # the subject's prompt, "a photo of a <class>"
    input_class: str = ""  # the scene object the subject replaces (inversion prompt; the automatic mask)
    base_model_path: str = _E["pretrained_model_name_or_path"]
    ir_features_path: str = ""
    dino_model_name: str = _E["dino_model_name"]
    num_train_epochs: int = _E["num_train_epochs"]
    learning_rate: float = _E["learning_rate"]
    bg_mse_loss_weight: float = _E["bg_mse_loss_weight"]
    inversion_max_step: float = _E["inversion_max_step"]
    dino_features_weight: float = _E["dino_features_weight"]
    ir_features_weight: float = _E["ir_features_weight"]
    seed: int = _E["seed"]
    resolution: int = _E["resolution"]
    rank: int = _E["rank"]
    early_stopping_max_count: int = _E["early_stopping_max_count"]
    early_stopping_threshold_percentage: float = _E["early_stopping_threshold_percentage"]
    train_text_encoder: bool = _E["train_text_encoder"]
    device: str = _E["device"]
    mixed_precision: str = _E["precision"]
    mode: str = _E["mode"]
    quantize: str = _E["quantize"]
    extra_args: str = ""


RECIPE_PARAMS = tuple(name for name in defaults.RECIPE_WIDGETS if name != "base_model_path")
CASTS = {"int": int, "float": float, "bool": bool, "str": lambda value: "" if value is None else str(value)}
Params = TypeVar("Params")


def from_widgets(cls: type[Params], widgets: dict[str, Any]) -> Params:
    """`cls` (SISOParams or EditParams) from a node's widget values: every field a widget of the same
    name sets, cast to the field's type; a recipe field at its widget default stays None."""
    values = {}
    for spec in dataclasses.fields(cls):
        if spec.name not in widgets or spec.name in ("model_family", "from_recipe"):
            continue
        value = widgets[spec.name]
        if cls is SISOParams and spec.name in RECIPE_PARAMS and (value is None or defaults.is_widget_default(spec.name, value)):
            continue  # None: the family's recipe
        values[spec.name] = CASTS[str(spec.type).split("|")[0].strip()](value)
    return cls(**values)


def with_recipe(params: SISOParams, family: str | None = None) -> SISOParams:
    """`params` with model_family set and every recipe field left None filled from that family's recipe."""
    family = family or (params.model_family if params.model_family in defaults.RECIPES else defaults.NODE_FAMILIES[0])
    recipe = defaults.recipe(family)
    filled = {name: recipe[defaults.RECIPE_WIDGETS[name]] for name in RECIPE_PARAMS if getattr(params, name) is None}
    return dataclasses.replace(params, **filled, model_family=family, from_recipe=tuple(params.from_recipe) + tuple(filled))


def recipe_notes(params: SISOParams) -> list[str]:
    """A note for each setting that took its family's recipe with a value other than the widget's default."""
    notes = []
    for name in params.from_recipe:
        value = getattr(params, name)
        if not defaults.is_widget_default(name, value):
            family = defaults.FAMILY_NAMES.get(params.model_family, params.model_family)
            notes.append(f"{name} {value} ({family} recipe; the widget's default means 'the family's recipe')")
    return notes
