"""Which model family a base model is, read as siso-generate's `--model_family auto` reads it.

A local folder's model_index.json (or a cached hub model's) names the pipeline class; a single-file
checkpoint is judged by the tensor names in its header; a hub id not in the cache by its words.
The tables are siso_lib/io/model_paths.py's and io/single_file.py's, through defaults.json. The node refuses Sana (ComfyUI core cannot render it) and unknown pipelines in
one line each.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

from . import defaults

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# FLUX.2's original (BFL/ComfyUI) layout: modulation shared by all blocks, where FLUX.1 has one per block
FLUX2_MARKERS = ("double_stream_modulation_img.", "model.diffusion_model.double_stream_modulation_img.",
                 "diffusion_model.double_stream_modulation_img.")


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


def checkpoint_keys(path: str) -> list[str]:
    """The tensor names in a .safetensors file's header (no weight is read); FamilyProblem if it has none."""
    try:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            if size > 100 * 1024 * 1024:
                raise ValueError("not a safetensors header")
            header = json.loads(handle.read(size).decode("utf-8"))
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as error:
        raise FamilyProblem(f"base_model_path {path!r} is not a readable .safetensors checkpoint ({error})") from None
    return [key for key in header if key != "__metadata__"] if isinstance(header, dict) else []


def single_file_family(path: str) -> str:
    """The family of a whole single-file checkpoint (as siso_lib/io/single_file.py reads it), else FamilyProblem."""
    keys = checkpoint_keys(path)
    if any(key.startswith(FLUX2_MARKERS) for key in keys):
        raise FamilyProblem(f"base_model_path {path!r} is a FLUX.2 checkpoint in ComfyUI's single-file layout: SISO loads "
                            f"FLUX.2 klein from a diffusers folder or a hub id only (e.g. "
                            f"{defaults.recipe('flux2_klein')['pretrained_model_name_or_path']})")
    table = defaults.SINGLE_FILE
    family = next((fam for fam, markers in table["markers"].items() if any(m in key for key in keys for m in markers)), None)
    if family is None:
        raise FamilyProblem(f"base_model_path {path!r} is a .safetensors file of no pipeline SISO knows (neither an SDXL "
                            "nor a FLUX.1 checkpoint): give an SDXL-Turbo or FLUX.1-schnell checkpoint or diffusers folder")
    missing = [part.rstrip(".") for part in table["whole_parts"][family] if not any(key.startswith(part) for key in keys)]
    if missing:
        raise FamilyProblem(
            f"base_model_path {path!r} holds only part of a {defaults.FAMILY_NAMES[family]} pipeline (no {', '.join(missing)}; "
            "models/diffusion_models files are the denoiser alone): SISO trains through the text encoders and the VAE too, "
            "so pick a whole checkpoint (models/checkpoints), a diffusers folder or a hub id")
    return family


def detect_family(base_model: str) -> str:
    """'sdxl', 'flux' or 'flux2_klein' for a base model (a resolved local folder, a single-file checkpoint or a hub id);
    FamilyProblem (one line) for Sana, a pipeline SISO does not run, or part of a checkpoint."""
    names = defaults.FAMILY_NAMES
    if os.path.isfile(base_model):
        return single_file_family(base_model)
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
