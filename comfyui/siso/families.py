"""Which model family a base model is, read as siso-generate's `--model_family auto` reads it.

A local folder's model_index.json (or a cached hub model's) names the pipeline class; a hub id
not in the cache is judged by its words. The tables are siso_lib/io/model_paths.py's, through
defaults.json. The node refuses Sana (ComfyUI core cannot render it) and unknown pipelines in
one line each.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from . import defaults

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
    """'sdxl' or 'flux' for a base model (a resolved local folder or a hub id); FamilyProblem (one
    line) for Sana or a pipeline SISO does not run."""
    names = defaults.FAMILY_NAMES
    class_name = pipeline_class(base_model)
    if class_name is not None or os.path.isdir(base_model):
        family = defaults.PIPELINE_FAMILIES.get(class_name or "")
        if family is not None:
            what = f"a {names.get(family, family)} pipeline ({class_name})"
        else:
            what = f"a {class_name} pipeline" if class_name else "a diffusers folder whose model_index.json names no pipeline"
    else:
        lowered = base_model.lower()
        family = next((fam for word, fam in defaults.HUB_ID_FAMILIES if word in lowered), "sdxl")
        what = f"a {names.get(family, family)} model (by its name)"
    offered = " or ".join(f"{names[f]} (e.g. {defaults.recipe(f)['pretrained_model_name_or_path']})" for f in defaults.NODE_FAMILIES)
    if family == "sana":
        raise FamilyProblem(
            f"base_model_path {base_model!r} is {what}: Sana is not offered in ComfyUI (ComfyUI core has no Sana model "
            f"to render with the LoRA); give {offered}, or run siso-generate --model_family sana outside ComfyUI"
        )
    if family not in defaults.NODE_FAMILIES:
        raise FamilyProblem(f"base_model_path {base_model!r} is {what}: the SISO node runs {offered}")
    return family
