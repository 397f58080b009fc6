"""The checks every run passes before anything starts, each failure one line naming the input and the fix.

Interpreter, script, base model (a hub id, or a local diffusers folder, also found by a bare name
in ComfyUI's model folders), IR weights, DINO model, extra_args, and the model family the base
model is of. A run that fails here starts no process and unloads none of ComfyUI's models.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil

from . import defaults, upstream
from .families import FamilyProblem, detect_family, pipeline_class
from .messages import InputProblem
from .pack import IS_WINDOWS, default_python
from .params import SISOParams, with_recipe

LOCAL_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")


def _looks_local(value: str) -> bool:
    return (
        os.path.isabs(value)
        or value.startswith((".", "~"))
        or value.lower().endswith(LOCAL_FILE_SUFFIXES)
        or (IS_WINDOWS and re.match(r"^[A-Za-z]:", value) is not None)
    )


def _family_models() -> list[str]:
    return [defaults.recipe(family)["pretrained_model_name_or_path"] for family in defaults.NODE_FAMILIES]


def _article(name: str) -> str:
    return "an" if name == "SDXL" else "a"  # as spoken: "an SDXL", "a FLUX.1"


def resolve_path(value: str, search_dirs: list[str] | None = None) -> str:
    """`value` as given if it exists, else the first `search_dirs/value` that exists, else `value`."""
    value = os.path.expanduser(value.strip())
    if not value or os.path.isabs(value) or os.path.exists(value):
        return value
    for folder in search_dirs or []:
        candidate = os.path.join(folder, value)
        if os.path.exists(candidate):
            return candidate
    return value


def resolve_base_model(value: str, search_dirs: list[str] | None = None) -> str:
    """A hub id stays as it is; a local folder or .safetensors checkpoint is resolved and must exist."""
    value = value.strip()
    models = " or ".join(_family_models())
    if not value:
        raise InputProblem(f"base_model_path is empty: give a hub id ({models}) or a local diffusers folder")
    resolved = resolve_path(value, search_dirs)
    if os.path.isfile(resolved):
        if not resolved.lower().endswith(tuple(defaults.SINGLE_FILE["suffixes"])):
            raise InputProblem(
                f"base_model_path {value!r} is a file but not a .safetensors checkpoint: give a whole SDXL or FLUX.1 "
                f"checkpoint (.safetensors), a diffusers folder or a hub id such as {models}"
            )
        return os.path.abspath(resolved)  # a whole checkpoint: its family (and wholeness) is checked next
    if os.path.isdir(resolved):
        if not os.path.isfile(os.path.join(resolved, "model_index.json")):
            raise InputProblem(
                f"base_model_path {value!r} is not a diffusers pipeline folder (no model_index.json): give a folder "
                f"saved with save_pretrained, e.g. a download of {models}"
            )
        return os.path.abspath(resolved)
    if _looks_local(value):
        raise InputProblem(f"base_model_path {value!r} does not exist: check the path (or give a hub id)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*", value):
        raise InputProblem(f"base_model_path {value!r} is neither an existing folder nor a hub id like {_family_models()[0]}")
    return value


def resolve_family(requested: str, base_model: str) -> str:
    """The family a run uses: `requested`, or with "auto" the one the (resolved) base model is of."""
    requested = (requested or "auto").strip().lower()
    if requested not in ("auto", *defaults.NODE_FAMILIES):
        offered = ", ".join(defaults.NODE_FAMILIES)
        if requested == "sana":
            raise InputProblem(f"model_family sana is not offered in ComfyUI (ComfyUI core has no Sana model): use auto, {offered}")
        raise InputProblem(f"model_family {requested!r} is unknown: use auto, {offered}")
    try:
        detected = detect_family(base_model)
    except FamilyProblem as problem:
        raise InputProblem(str(problem)) from problem
    if requested != "auto" and requested != detected and pipeline_class(base_model) is not None:
        names = defaults.FAMILY_NAMES
        raise InputProblem(
            f"base_model_path {base_model!r} is {_article(names[detected])} {names[detected]} model but model_family is "
            f"{requested}: give {_article(names[requested])} {names[requested]} model, or model_family auto"
        )
    return detected if requested == "auto" else requested


def check_python(python_executable: str) -> str:
    """The interpreter that runs SISO: the one given (it must exist), else default_python()."""
    python = os.path.expanduser(python_executable.strip() or default_python())
    if os.path.sep in python or (IS_WINDOWS and "/" in python):
        if not os.path.isfile(python):
            raise InputProblem(f"python_executable {python!r} does not exist: give the python of the environment SISO is installed in")
        if not IS_WINDOWS and not os.access(python, os.X_OK):
            raise InputProblem(f"python_executable {python!r} is not executable")
    elif shutil.which(python) is None:
        raise InputProblem(f"python_executable {python!r} is not on PATH: give its full path")
    return python


def check_inputs(params: SISOParams, python_executable: str, script_path: str, default_script: str,
                 search_dirs: dict[str, list[str]]) -> tuple[str, str, str, SISOParams]:
    """Resolve and check everything; (python, script, flavour, params with resolved paths, family and recipe)."""
    if not params.prompt or not params.prompt.strip():
        raise InputProblem("prompt is empty: give a short description of the subject, e.g. 'a photo of a cat'")
    python = check_python(python_executable)
    script = os.path.expanduser(script_path.strip()) or default_script
    if not os.path.isfile(script):
        raise InputProblem(
            f"siso_script_path {script!r} does not exist: leave it empty for the bundled siso-generate, "
            "or give the path of siso_generation_sdxl.py"
        )
    flavour = upstream.script_flavour(script)
    base = resolve_base_model(params.base_model_path, search_dirs.get("base_model"))
    ir = params.ir_features_path.strip()
    if ir:
        ir = resolve_path(ir, search_dirs.get("ir"))
        if not os.path.isfile(ir):
            raise InputProblem(
                f"ir_features_path {params.ir_features_path!r} does not exist: download ir_features.pth by hand "
                "(Kaggle dataset louieshao/guieweights0732, see the README) or leave it empty for DINO only"
            )
        ir = os.path.abspath(ir)
    elif flavour == "upstream":
        upstream.check_inputs(ir, params.ir_features_weight)
    dino = params.dino_model_name.strip()
    if not dino:
        raise InputProblem("dino_model_name is empty: use vit_large_patch14_dinov2.lvd142m or a local timm folder")
    dino_resolved = resolve_path(dino, search_dirs.get("dino"))
    if os.path.isdir(dino_resolved):
        dino = os.path.abspath(dino_resolved)
    elif _looks_local(dino):
        raise InputProblem(f"dino_model_name {dino!r} is a path that does not exist: give a timm name or a local timm folder")
    try:
        shlex.split(params.extra_args or "", posix=not IS_WINDOWS)  # the command splits it again
    except ValueError as error:
        raise InputProblem(f"extra_args cannot be parsed ({error}): quote values with spaces") from error
    family = resolve_family(params.model_family, base)
    if flavour == "upstream" and family not in ("sdxl", "flux"):
        raise InputProblem(f"siso_script_path {script!r} is one of the authors' scripts, which exist for SDXL and FLUX.1 "
                           f"only: leave siso_script_path empty for a {defaults.FAMILY_NAMES[family]} base model")
    resolved = dataclasses.replace(params, base_model_path=base, ir_features_path=ir, dino_model_name=dino)
    return python, script, flavour, with_recipe(resolved, family)


def check_edit_model(family: str, base_model_path: str) -> None:
    """SISO editing runs on SDXL(-Turbo) only."""
    if family != "sdxl":
        names = defaults.FAMILY_NAMES
        raise InputProblem(
            f"base_model_path {base_model_path!r} is a {names.get(family, family)} model: SISO editing runs on "
            f"SDXL(-Turbo): give an SDXL model, e.g. {defaults.recipe('sdxl')['pretrained_model_name_or_path']}"
        )
