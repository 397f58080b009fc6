"""Single-file checkpoints (one .safetensors holding a whole pipeline, as ComfyUI and A1111 keep
them): recognised by their tensor names, read from the file's header without loading a weight.

ComfyUI users keep SDXL-Turbo as `models/checkpoints/sd_xl_turbo_1.0_fp16.safetensors` (UNet,
VAE and both CLIP text encoders in the original Stability layout) and FLUX.1 either as one such
file (`model.diffusion_model.*`, `text_encoders.clip_l.*`, `text_encoders.t5xxl.*`, `vae.*`) or
as the transformer alone in `models/diffusion_models`. SISO optimises through the whole pipeline,
so a file must hold all of it; `generators/single_file.py` loads one with diffusers'
`from_single_file` and a config shipped with siso-lab. Nothing here imports torch: the checks run
before the models load, in milliseconds.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from ..errors import SISOInputError, setting

SINGLE_FILE_SUFFIXES = (".safetensors", ".sft")
HEADER_LIMIT = 100 * 1024 * 1024  # a safetensors header larger than this is no checkpoint header
# tensor-name fragments of each family's denoiser, and the prefix every part of a whole checkpoint
# has (a file without the text encoders or the VAE holds the denoiser only)
SINGLE_FILE_MARKERS = {
    "flux": ("double_blocks.", "single_blocks.", "single_transformer_blocks."),
    "sdxl": ("input_blocks.", "conditioner.embedders.", "label_emb."),
}
WHOLE_CHECKPOINT_PARTS = {
    "sdxl": ("conditioner.embedders.0.", "conditioner.embedders.1.", "first_stage_model."),
    "flux": ("text_encoders.clip_l.", "text_encoders.t5xxl.", "vae."),
}
FAMILY_WORDS = {"sdxl": "SDXL", "flux": "FLUX.1"}


def is_single_file(name_or_path: str | os.PathLike) -> bool:
    """True for an existing file with a single-file checkpoint's suffix (.safetensors)."""
    path = Path(name_or_path)
    return path.suffix.lower() in SINGLE_FILE_SUFFIXES and path.is_file()


def checkpoint_keys(path: str | os.PathLike) -> list[str]:
    """The tensor names of a .safetensors file, from its header; SISOInputError if it is not one."""
    try:
        with open(path, "rb") as handle:
            size_bytes = handle.read(8)
            if len(size_bytes) != 8:
                raise ValueError("shorter than a safetensors header")
            (size,) = struct.unpack("<Q", size_bytes)
            if size > HEADER_LIMIT:
                raise ValueError("its header size is not a safetensors one")
            header = json.loads(handle.read(size).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise SISOInputError(
            f"base model {str(path)!r} is not a readable .safetensors checkpoint ({error}): check "
            f"{setting('pretrained_model_name_or_path')}"
        ) from None
    if not isinstance(header, dict):
        raise SISOInputError(f"base model {str(path)!r} is not a .safetensors checkpoint (its header is no table)")
    return [key for key in header if key != "__metadata__"]


def family_of_keys(keys: list[str]) -> str | None:
    """'flux' or 'sdxl' for a checkpoint's tensor names, None for neither."""
    for family, markers in SINGLE_FILE_MARKERS.items():
        if any(marker in key for key in keys for marker in markers):
            return family
    return None


def missing_parts(keys: list[str], family: str) -> list[str]:
    """The parts of a whole `family` checkpoint the file lacks (by their key prefixes); [] when whole."""
    return [prefix.rstrip(".") for prefix in WHOLE_CHECKPOINT_PARTS[family] if not any(key.startswith(prefix) for key in keys)]


def single_file_family(path: str | os.PathLike) -> str:
    """The family of a whole single-file checkpoint; SISOInputError (one line) for a file of no known
    family, or one that holds only part of a pipeline (e.g. ComfyUI's diffusion_models files)."""
    keys = checkpoint_keys(path)
    family = family_of_keys(keys)
    if family is None:
        raise SISOInputError(
            f"base model {str(path)!r} is a .safetensors file of no pipeline SISO knows (neither an SDXL nor a FLUX.1 "
            "checkpoint): give an SDXL-Turbo or FLUX.1-schnell checkpoint, a diffusers folder or a hub id"
        )
    missing = missing_parts(keys, family)
    if missing:
        raise SISOInputError(
            f"base model {str(path)!r} holds only part of a {FAMILY_WORDS[family]} pipeline (no {', '.join(missing)}; e.g. "
            "ComfyUI's models/diffusion_models files are the denoiser alone): SISO trains through the text encoders and "
            "the VAE too, so give a whole checkpoint (models/checkpoints), a diffusers folder or a hub id"
        )
    return family


def check_single_file(path: str | os.PathLike, family: str) -> None:
    """A single-file base model must be a whole checkpoint of `family`."""
    from ..text import family_title

    found = single_file_family(path)
    if found != family:
        raise SISOInputError(
            f"base model {str(path)!r} is {'an' if found == 'sdxl' else 'a'} {FAMILY_WORDS[found]} checkpoint, "
            f"not {family_title(family, False)}: use "
            f"{setting('model_family', found)} or auto"
        )
