"""Where models come from: hub ids versus local folders, and the cheap checks of a local layout.

Nothing here imports torch, diffusers or timm, so the command lines can refuse a wrong path in
a fraction of a second, before they load any heavy library. The loaders (generators/, features/) run the same checks again, so the library gives the same one-line errors.

A model input is one of:

* a Hugging Face hub id, ``org/name`` that is not an existing path (base models, and DINO through
  ``hf-hub:org/name``): kept as it is, resolved through the hub cache by the loader;
* a timm model name such as ``vit_large_patch14_dinov2.lvd142m`` (no path separator);
* a local file or folder: recorded as an absolute path, so a run's files still point at it
  when they are read from another working directory.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import SISOInputError, check_file, setting
from ..text import FAMILY_TITLES, family_title  # noqa: F401  (messages import them from here too)
from .single_file import WHOLE_CHECKPOINT_PARTS, check_single_file, is_single_file, single_file_family

LOCAL_DIR_PREFIX = "local-dir:"  # timm's spelling of a local model folder
DINO_FOLDER_LAYOUT = "a timm folder with config.json (architecture, pretrained_cfg) and model.safetensors, as timm.models.save_for_hf writes"
DINO_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def is_hub_id(name_or_path: str) -> bool:
    """'org/name' that is not an existing path: a Hugging Face hub id, loaded through the hub cache."""
    return not os.path.exists(name_or_path) and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name_or_path) is not None


def absolute_if_local(name_or_path: str | None) -> str | None:
    """An existing local path (also timm's ``local-dir:PATH``) made absolute; anything else unchanged.

    Hub ids, timm names and paths that do not exist stay as given (the checks below name them).
    """
    if not name_or_path:
        return name_or_path
    if name_or_path.startswith(LOCAL_DIR_PREFIX):
        return LOCAL_DIR_PREFIX + os.path.abspath(name_or_path[len(LOCAL_DIR_PREFIX):])
    return os.path.abspath(name_or_path) if os.path.exists(name_or_path) else name_or_path


def _read_json(path: Path, what: str, fix: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise SISOInputError(f"{what} {str(path)!r} is unreadable ({reason}): {fix}") from error


# what a diffusers folder of each model family holds (model_index.json names them, save_pretrained writes them)
FAMILY_COMPONENTS = {
    "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
    "flux": ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
    "sana": ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    "flux2_klein": ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
}
SDXL_COMPONENTS = FAMILY_COMPONENTS["sdxl"]
FAMILY_VAE_CLASSES = {"sdxl": "AutoencoderKL", "flux": "AutoencoderKL", "sana": "AutoencoderDC", "flux2_klein": "AutoencoderKLFlux2"}
# diffusers pipeline class (model_index.json's _class_name) -> family
PIPELINE_FAMILIES = {
    "StableDiffusionXLPipeline": "sdxl", "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux",
    "SanaPipeline": "sana", "SanaSprintPipeline": "sana",
    "Flux2KleinPipeline": "flux2_klein",
}
# words in a hub id that name its family (hub ids cannot be opened offline before loading)
# (the first word found wins: "FLUX.2-klein" before "flux")
HUB_ID_FAMILIES = (("flux.2-klein", "flux2_klein"), ("flux2-klein", "flux2_klein"), ("flux", "flux"), ("sana", "sana"))


def _model_index(path: Path) -> dict:
    index = path / "model_index.json"
    if not index.is_file():
        raise SISOInputError(
            f"base model folder {str(path)!r} is not a diffusers pipeline (no model_index.json): give a folder saved "
            "with save_pretrained, e.g. a download of stabilityai/sdxl-turbo or black-forest-labs/FLUX.1-schnell"
        )
    components = _read_json(index, "base model index", "re-download the model folder")
    if not isinstance(components, dict):
        raise SISOInputError(f"base model index {str(index)!r} is not a JSON object: re-download the model folder")
    return components


def _cached_model_index(hub_id: str) -> dict | None:
    """The model_index.json of a hub id from the local Hugging Face cache, or None (no download)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(hub_id, "model_index.json")
    except Exception:  # an old or absent huggingface_hub: fall back to the id's words
        return None
    if not isinstance(cached, str):
        return None
    try:
        return json.loads(Path(cached).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def family_of_pipeline_class(class_name: str | None, where: str) -> str:
    """The family of a diffusers pipeline class name, or SISOInputError naming the supported ones."""
    family = PIPELINE_FAMILIES.get(class_name or "")
    if family is None:
        raise SISOInputError(
            f"base model {where!r} is a {class_name or 'unnamed'} pipeline: SISO here runs SDXL (e.g. stabilityai/sdxl-turbo), "
            "FLUX (black-forest-labs/FLUX.1-schnell), Sana (Efficient-Large-Model/Sana_1600M_512px_diffusers) or FLUX.2 klein "
            "(black-forest-labs/FLUX.2-klein-4B)"
        )
    return family


def detect_family(name_or_path: str) -> str | None:
    """'sdxl', 'flux', 'sana' or 'flux2_klein' for a base model, read without loading it; None when it cannot tell.

    A local folder: its model_index.json's pipeline class (SISOInputError for another class). A hub
    id: the cached model_index.json if there is one, else the words in the id ("FLUX.1-schnell" ->
    flux, "FLUX.2-klein-4B" -> flux2_klein, "Sana_1600M" -> sana), else sdxl (this package's first family; loading a hub model of
    another family then fails with the pipeline's own message). A path that does not exist, or a
    folder without model_index.json, gives None (the folder check names the problem).
    """
    if not name_or_path:
        return None
    if is_single_file(name_or_path):
        return single_file_family(name_or_path)
    if is_hub_id(name_or_path):
        index = _cached_model_index(name_or_path)
        if isinstance(index, dict) and index.get("_class_name"):
            return family_of_pipeline_class(index.get("_class_name"), name_or_path)
        lowered = name_or_path.lower()
        return next((family for word, family in HUB_ID_FAMILIES if word in lowered), "sdxl")
    path = Path(name_or_path)
    if not (path / "model_index.json").is_file():
        return None
    return family_of_pipeline_class(_model_index(path).get("_class_name"), name_or_path)


def check_model_folder(path: Path, family: str = "sdxl") -> None:
    """A diffusers pipeline folder of `family`: model_index.json naming every component, and their folders."""
    components = _model_index(path)
    named = components.get("_class_name")
    if named in PIPELINE_FAMILIES and PIPELINE_FAMILIES[named] != family:
        raise SISOInputError(
            f"base model {str(path)!r} is {family_title(PIPELINE_FAMILIES[named])} pipeline ({named}), not {family_title(family, False)}: "
            f"use {setting('model_family', PIPELINE_FAMILIES[named])} or auto"
        )
    expected = FAMILY_COMPONENTS[family]
    missing = [name for name in expected if not any(components.get(name) or ())]
    if missing:
        raise SISOInputError(
            f"base model {str(path)!r} is not {FAMILY_TITLES.get(family, family)}-shaped (it has no "
            f"{', '.join(missing)}): give {family_title(family)} diffusers folder, or the right {setting('model_family')}"
        )
    absent = [name for name in expected if not (path / name).is_dir()]
    if absent:
        raise SISOInputError(
            f"base model folder {str(path)!r} lacks the sub-folder(s) {', '.join(absent)} that model_index.json names: "
            "the download is incomplete; download the whole folder again"
        )


def check_sdxl_folder(path: Path) -> None:
    """A diffusers SDXL pipeline folder: model_index.json naming every SDXL component."""
    check_model_folder(path, "sdxl")


def check_local_base_model(name_or_path: str, family: str = "sdxl") -> None:
    """If `name_or_path` names a local folder (not a hub id), check it is a diffusers folder of `family`."""
    if not is_hub_id(name_or_path):
        if not Path(name_or_path).exists():
            raise SISOInputError(
                f"base model folder {name_or_path!r} does not exist: check {setting('pretrained_model_name_or_path')}"
            )
        if is_single_file(name_or_path) and family in WHOLE_CHECKPOINT_PARTS:
            check_single_file(name_or_path, family)  # a whole checkpoint, loaded with diffusers' from_single_file
            return
        if not Path(name_or_path).is_dir():
            raise SISOInputError(
                f"base model {name_or_path!r} is a file, not a diffusers folder: give a folder saved with save_pretrained, "
                "or a whole SDXL or FLUX.1 single-file checkpoint (.safetensors)"
            )
        check_model_folder(Path(name_or_path), family)


def check_local_vae(name_or_path: str, class_name: str = "AutoencoderKL") -> None:
    """A separate VAE given as a local folder must hold a diffusers VAE of `class_name` (config.json)."""
    if is_hub_id(name_or_path):
        return
    path = Path(name_or_path)
    if not path.is_dir():
        raise SISOInputError(
            f"VAE {name_or_path!r} {'is not a folder' if path.exists() else 'does not exist'}: give a diffusers "
            f"{class_name} folder (config.json + weights) or a hub id, or leave out {setting('pretrained_vae_model_name_or_path')}"
        )
    config_path = path / "config.json"
    config = None
    if config_path.is_file():
        config = _read_json(config_path, "VAE config", f"give a diffusers {class_name} folder (config.json + weights)")
    if not isinstance(config, dict) or config.get("_class_name") not in (None, class_name):
        raise SISOInputError(
            f"VAE folder {name_or_path!r} is not a diffusers {class_name} (config.json missing or of another class): "
            f"give a folder saved with {class_name}.save_pretrained"
        )


DETECTOR_FOLDER_LAYOUT = (
    "a Grounding-DINO folder as transformers' save_pretrained writes it "
    "(config.json, model.safetensors, processor and tokenizer files)"
)
SEGMENTER_FOLDER_LAYOUT = "a SAM folder as transformers' save_pretrained writes it (config.json, model.safetensors, processor files)"


def check_local_transformers_folder(name_or_path: str, what: str, layout: str, example: str) -> None:
    """A transformers model given as a local folder (not a hub id) must exist and hold config.json."""
    if is_hub_id(name_or_path):
        return
    path = Path(name_or_path)
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise SISOInputError(f"{what} {name_or_path!r} {state}: give a hub id such as {example!r} or {layout}")
    if not (path / "config.json").is_file():
        raise SISOInputError(f"{what} folder {name_or_path!r} has no config.json: expected {layout}")


def dino_local_folder(name: str) -> Path | None:
    """The local folder a DINO name points at, or None for a timm / hub name."""
    if name.startswith(LOCAL_DIR_PREFIX):
        return Path(name[len(LOCAL_DIR_PREFIX):])
    if name.startswith("hf-hub:"):
        return None
    if os.path.isdir(name):
        return Path(name)
    if os.path.exists(name) or os.path.sep in name or (os.path.altsep and os.path.altsep in name) or name.startswith("."):
        raise SISOInputError(f"DINO model folder {name!r} does not exist or is not a folder: give a timm model name or {DINO_FOLDER_LAYOUT}")
    return None


def check_dino_folder(folder: Path) -> None:
    """A local timm model folder: config.json with an architecture and its pretrained_cfg, and weights."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise SISOInputError(f"DINO model folder {str(folder)!r} has no config.json: expected {DINO_FOLDER_LAYOUT}")
    config = _read_json(config_path, "DINO config", f"expected {DINO_FOLDER_LAYOUT}")
    missing = [key for key in ("architecture", "pretrained_cfg") if not isinstance(config, dict) or not config.get(key)]
    if missing:
        raise SISOInputError(
            f"DINO config {str(config_path)!r} has no {' or '.join(missing)}: expected {DINO_FOLDER_LAYOUT}"
        )
    if not isinstance(config["pretrained_cfg"], dict) or not isinstance(config["architecture"], str):
        raise SISOInputError(f"DINO config {str(config_path)!r} is malformed (pretrained_cfg must be an object): expected {DINO_FOLDER_LAYOUT}")
    if not any((folder / name).is_file() for name in DINO_WEIGHT_FILES):
        raise SISOInputError(f"DINO model folder {str(folder)!r} has no weights (model.safetensors): expected {DINO_FOLDER_LAYOUT}")


def check_local_dino(name: str) -> None:
    """Refuse a DINO name that points at a missing or malformed local folder (timm names pass)."""
    if not isinstance(name, str) or not name.strip():
        raise SISOInputError("DINO model name is empty: give a timm name such as 'vit_large_patch14_dinov2.lvd142m' or a local folder")
    folder = dino_local_folder(name)
    if folder is not None:
        check_dino_folder(folder)


def check_ir_checkpoint_path(path: str | os.PathLike) -> Path:
    """Refuse a missing, empty or non-file IR checkpoint path without reading it."""
    path = check_file(
        path, "IR checkpoint", "give the path of the ir_features.pth file itself (Kaggle dataset louieshao/guieweights0732)",
        f"download ir_features.pth (Kaggle dataset louieshao/guieweights0732) and pass its path, or leave out "
        f"{setting('ir_features_path')} to use DINO only",
    )
    if path.stat().st_size == 0:
        raise SISOInputError(f"IR checkpoint {str(path)!r} is empty (0 bytes): the download was cut off; re-download ir_features.pth")
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except PermissionError as error:
        raise SISOInputError(f"IR checkpoint {str(path)!r} is not readable (permission denied): fix its permissions") from error
    if not head.startswith(TORCH_CHECKPOINT_STARTS):
        kind = next((name for start, name in KNOWN_FILE_STARTS if head.startswith(start)), "unknown content")
        raise SISOInputError(
            f"IR checkpoint {str(path)!r} is not a PyTorch checkpoint (it is {kind}): give the ir_features.pth "
            "file from the Kaggle dataset louieshao/guieweights0732"
        )
    return path


# torch.save writes a zip archive; older PyTorch wrote a pickle (protocol 2+ starts with 0x80)
TORCH_CHECKPOINT_STARTS = (b"PK\x03\x04", b"\x80")
KNOWN_FILE_STARTS = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"), (b"RIFF", "a RIFF/WebP file"),
    (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"), (b"<", "an HTML/XML page, perhaps a download error page"),
    (b"{", "a JSON file"), (b"version https://git-lfs", "a Git LFS pointer, not the weights"),
)


CLIP_FOLDER_LAYOUT = "a folder with open_clip_config.json and open_clip_model.safetensors (open_clip's local-dir layout)"


def clip_local_folder(name: str) -> Path | None:
    """The local folder a CLIP name points at (`local-dir:` prefix optional), or None for a library name."""
    if name.startswith("local-dir:"):
        return Path(name[len("local-dir:"):])
    if name.startswith("hf-hub:"):
        return None
    return Path(name) if (os.path.isdir(name) or os.path.sep in name or name.startswith(".")) else None


def check_clip_name(name: str) -> None:
    """Refuse a CLIP name that points at a missing or incomplete local folder (library names pass)."""
    if not name or not name.strip():
        raise SISOInputError(f"CLIP model name is empty: give an open_clip name such as 'ViT-B-32' or {CLIP_FOLDER_LAYOUT}")
    folder = clip_local_folder(name)
    if folder is None:
        return
    if not folder.is_dir():
        raise SISOInputError(f"CLIP model folder {str(folder)!r} does not exist: give an open_clip model name or {CLIP_FOLDER_LAYOUT}")
    if not (folder / "open_clip_config.json").is_file():
        raise SISOInputError(f"CLIP model folder {str(folder)!r} has no open_clip_config.json: expected {CLIP_FOLDER_LAYOUT}")
