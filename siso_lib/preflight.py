"""Everything a run can check before it loads a model, without importing torch.

`preflight(config, subject_image_path, ...)` validates the config, reads the subject photo,
checks the model paths (layout only; with HF_HUB_OFFLINE=1 also that a hub id is in the local
hub cache) and picks or checks the output folders, and returns a `PreparedRun`. `check_inputs`
is the same without the output folders (a sweep's --dry-run runs it for every run). Bad input raises `SISOInputError` with one line naming the input and the fix,
and leaves nothing behind. The command line calls it before the heavy imports (torch,
diffusers, timm, open_clip: seconds), so `siso-generate` answers a wrong path in well under a
second; `runner.run_siso` calls it too, so the library refuses the same inputs the same way.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import SISOConfig
from .errors import SISOInputError, setting
from .io.images import SubjectImage, load_subject_image
from .io.lora import DIFFUSERS_WEIGHT_NAME, KOHYA_WEIGHT_NAME
from .io.locations import runs_root
from .io.model_paths import (
    FAMILY_VAE_CLASSES,
    check_ir_checkpoint_path,
    check_local_base_model,
    check_local_dino,
    check_local_vae,
    is_hub_id,
)

@dataclass
class PreparedRun:
    """A run whose inputs passed every check that needs no model."""

    config: SISOConfig  # validated; local model paths absolute
    subject: SubjectImage
    output_dir: Path  # absolute
    weights_dir: Path  # absolute
    created_dirs: list[Path]  # folders made here (a fresh run folder, a new --output_dir and its new parents)

    def discard_if_empty(self) -> None:
        """Remove the folders made for this run if nothing was written into them (a failed run is no result)."""
        for folder in self.created_dirs:
            _remove_empty_tree(folder)


def fresh_run_dir(root: str | os.PathLike | None = None, label: str = "run") -> Path:
    """A new, empty folder `root/<YYYYmmdd-HHMMSS>-<label>[-N]` (never an existing one); absolute.
    `root` defaults to outputs/runs (io/locations.py: $SISO_OUTPUT_ROOT, or under the current folder).

    The label keeps letters of any script (a photo called 猫.jpg gives `...-猫`).
    """
    root = Path(root if root is not None else runs_root()).absolute()
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    label = re.sub(r"[^\w.-]+", "-", label).strip("-.")[:40] or "run"
    for attempt in range(1000):
        candidate = root / (f"{stamp}-{label}" + (f"-{attempt}" if attempt else ""))
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
        except OSError as error:
            raise SISOInputError(f"cannot create a run folder under {str(root)!r} ({error.strerror}): choose another {setting('output_dir')}") from error
    raise SISOInputError(f"could not find a free run folder name under {str(root)!r}")


def check_writable(folder: Path, what: str) -> None:
    """Create `folder` if needed and prove a file can be written in it; SISOInputError otherwise."""
    if folder.exists() and not folder.is_dir():
        raise SISOInputError(f"{what} {str(folder)!r} is a file, not a folder: choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".siso-write-test-"):
            pass
    except OSError as error:
        raise SISOInputError(
            f"{what} {str(folder)!r} is not writable ({error.strerror or error}): choose a folder you can write to"
        ) from error


def check_no_earlier_lora(folder: Path, overwrite: bool, option: str) -> None:
    existing = [name for name in (DIFFUSERS_WEIGHT_NAME, KOHYA_WEIGHT_NAME) if (folder / name).exists()]
    if existing and not overwrite:
        raise SISOInputError(
            f"{str(folder)!r} already holds a LoRA ({existing[0]}) from an earlier run: pass {setting('overwrite', True)} to replace "
            f"it, or give another {setting(option)} (without it every run gets a fresh folder)"
        )


def _first_missing_parent(folder: Path) -> Path | None:
    """The highest ancestor of `folder` that does not exist yet (what mkdir -p would create)."""
    missing = None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def prepare_output_dirs(
    output_dir: str | os.PathLike | None, weights_dir: str | os.PathLike | None, overwrite: bool, label: str
) -> tuple[Path, Path, list[Path]]:
    """Resolve and check the output folders (absolute); create a fresh run folder when none is given.

    Returns (output folder, weights folder, the folders this created). Folders created here are
    removed again when a check fails, so bad input leaves nothing behind.
    """
    out = Path(output_dir).absolute() if output_dir else None
    weights = Path(weights_dir).absolute() if weights_dir else None
    created = [p for p in (out and _first_missing_parent(out), weights and _first_missing_parent(weights)) if p]
    try:
        if out is None:
            missing_root = _first_missing_parent(runs_root())
            out = fresh_run_dir(label=label)
            created.append(missing_root or out)
        check_writable(out, "output folder")
        weights = weights or out
        if weights != out:
            check_writable(weights, "weights folder")
        check_no_earlier_lora(weights, overwrite, "weights_output_dir" if weights_dir else "output_dir")
    except SISOInputError:
        for folder in created:
            _remove_empty_tree(folder)
        raise
    return out, weights, created


def _remove_empty_tree(folder: Path) -> None:
    """Remove `folder` and its empty sub-folders; keep anything that holds a file."""
    if not folder.is_dir():
        return
    for child in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir() and not any(child.iterdir()):
            child.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


def hub_is_offline() -> bool:
    """HF_HUB_OFFLINE is on (read as huggingface_hub reads it): a hub model must already be in the cache."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


OFFLINE_FORBIDS = "HF_HUB_OFFLINE=1 forbids downloading"  # in check_in_hub_cache's message (siso-sweep looks for it)


def check_in_hub_cache(repo_id: str, filename: str | tuple[str, ...], what: str, option: str,
                       cache_dir: str | None = None, revision: str | None = None) -> None:
    """With HF_HUB_OFFLINE=1, SISOInputError (one line) when hub model `repo_id` is not in the local hub
    cache (its `filename`, or none of several alternatives, is there): the loaders would only say so
    after torch and diffusers have been imported (12-23 s). A cache lookup reads a few folders;
    nothing without HF_HUB_OFFLINE."""
    if not hub_is_offline():
        return
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:  # the loaders will say what is missing
        return
    names = (filename,) if isinstance(filename, str) else filename
    if any(isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache_dir, revision=revision), str) for name in names):
        return
    raise SISOInputError(
        f"{what} {repo_id!r} is not in the Hugging Face cache ({cache_dir or constants.HF_HUB_CACHE}) and {OFFLINE_FORBIDS} "
        f"it: download it where the hub is reachable (hf download {repo_id}), or give a local folder "
        f"as {setting(option)}"
    )


def dino_hub_id(name: str) -> str | None:
    """The hub repository a DINO name loads from: `hf-hub:org/name`, or timm's `timm/<model>.<tag>` for
    a timm name with its pretrained tag; None for a local folder or a name whose tag timm picks."""
    if name.startswith("hf-hub:"):
        return name[len("hf-hub:"):]
    if "/" in name or os.sep in name or "." not in name or os.path.exists(name):
        return None
    return f"timm/{name}"


def check_model_inputs(config: SISOConfig, only: "set[str] | frozenset[str] | None" = None) -> None:
    """Cheap checks of the model paths before the base model (GBs) is loaded. `only`: check only
    these config fields (a sweep's dry run: the models a run names itself, not the offline ones the
    run writes first)."""
    def wanted(name: str) -> bool:
        return only is None or name in only

    family = config.family
    base = config.pretrained_model_name_or_path
    vae = config.pretrained_vae_model_name_or_path
    hub: list[tuple] = []  # (id, file, what, option, cache_dir, revision): checked after every local path
    if wanted("pretrained_model_name_or_path"):
        check_local_base_model(base, family)
        if is_hub_id(base):
            hub.append((base, "model_index.json", "base model", "pretrained_model_name_or_path", config.cache_dir, config.revision))
    if vae and wanted("pretrained_vae_model_name_or_path"):
        check_local_vae(vae, FAMILY_VAE_CLASSES[family])
        if is_hub_id(vae):
            hub.append((vae, "config.json", "VAE", "pretrained_vae_model_name_or_path", config.cache_dir, None))
    if config.dino_features_weight > 0 and wanted("dino_model_name"):
        check_local_dino(config.dino_model_name)
        hub_id = dino_hub_id(config.dino_model_name)
        if hub_id:
            hub.append((hub_id, "config.json", "DINO model", "dino_model_name", None, None))
    if config.ir_features_path and config.ir_features_weight > 0 and wanted("ir_features_path"):
        check_ir_checkpoint_path(config.ir_features_path)
    # the hub cache last: the user's own mistyped path is named before a default model missing from the cache
    for repo_id, filename, what, option, cache_dir, revision in hub:
        check_in_hub_cache(repo_id, filename, what, option, cache_dir, revision)


def check_inputs(
    config: SISOConfig, subject_image_path: str | os.PathLike, only: "set[str] | frozenset[str] | None" = None,
) -> tuple[SISOConfig, SubjectImage]:
    """Every input check of a run that writes nothing: the config (validated, local paths made
    absolute), the subject photo, the model paths (`only`: see check_model_inputs). Returns the
    checked config and the photo; SISOInputError (one line) for the first problem."""
    config = config.replace()  # the caller's object is never changed
    config.validate()
    config = config.with_absolute_paths()
    subject = load_subject_image(subject_image_path)
    check_model_inputs(config, only)
    return config, subject


def preflight(
    config: SISOConfig,
    subject_image_path: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    label: str | None = None,
) -> PreparedRun:
    """Validate, read the photo, check model paths and output folders; nothing heavy is imported.
    A fresh run folder is named `<time>-<label>` (default: the photo's name)."""
    config, subject = check_inputs(config, subject_image_path)
    out, weights, created = prepare_output_dirs(output_dir, weights_dir, overwrite, label or Path(subject_image_path).stem)
    return PreparedRun(config, subject, out, weights, created)
