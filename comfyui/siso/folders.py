"""Where a run's files go, and placing the LoRA file ComfyUI's LoraLoader applies fully.

Everything the script writes goes to a new run folder (`<runs>/<time>-<prompt>/`, never an
earlier run's); once the run succeeded, the one file LoraLoader applies fully (SDXL: the Kohya
file; FLUX: the diffusers file) goes to `<loras>/siso/<same name>/`, so that nothing LoraLoader
would apply only partly appears in its list. Outside a LoRA folder both are one folder.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .messages import InputProblem, slug

DIFFUSERS_NAME = "pytorch_lora_weights.safetensors"
KOHYA_NAME = "siso_lora_kohya.safetensors"
SUBJECT_NAME = "subject.png"  # the subject image as the run saw it (flattened, first of a batch)
SCENE_NAME = "scene_input.png"  # an edit's scene as the run saw it
MASK_NAME = "mask_input.png"  # an edit's MASK as a scene-sized black/white PNG
RUNS_SUBFOLDER = "siso"
EDIT_RUNS_PREFIX = "edit"


@dataclass
class Folders:
    """`run_dir` gets everything the script writes (its --output_dir and --weights_output_dir);
    `lora_dir` the file LoraLoader applies fully, once the run succeeded. They differ when the
    requested folder is under a folder LoraLoader lists."""

    run_dir: Path
    lora_dir: Path
    created: bool  # run_dir was made by this job (removed again if the run leaves it empty)

    @property
    def split(self) -> bool:
        return self.run_dir != self.lora_dir


def default_runs_root(loras_root: str) -> str:
    """Outside ComfyUI: a `siso_runs` folder beside the loras folder (never inside it)."""
    return str(Path(loras_root).resolve().parent / "siso_runs")


def run_name(label: str, now: _dt.datetime | None = None, prefix: str = "") -> str:
    """'<YYYYmmdd-HHMMSS>-[<prefix>-]<label as a slug>'."""
    return f"{(now or _dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}-{prefix + '-' if prefix else ''}{slug(label)}"


def listing_folder(path: str | os.PathLike, folders: list[str]) -> Path | None:
    """The folder of `folders` that holds `path` (or is it), else None."""
    real = Path(os.path.realpath(path))
    for folder in folders:
        root = Path(os.path.realpath(folder))
        if real == root or root in real.parents:
            return root
    return None


def unique_dir(parents: list[Path], base: str) -> str:
    """A name free under every parent; made (exclusively) under the first one."""
    for attempt in range(1000):
        name = base if attempt == 0 else f"{base}-{attempt}"
        if any((parent / name).exists() for parent in parents[1:]):
            continue
        try:
            (parents[0] / name).mkdir(parents=True, exist_ok=False)
            return name
        except FileExistsError:
            continue
        except OSError as error:
            raise InputProblem(f"cannot create a run folder under {str(parents[0])!r} ({error.strerror or error})") from error
    raise InputProblem(f"no free run folder name under {str(parents[0])!r}")


def _refuse_earlier_lora(folders: list[Path]) -> None:
    for folder in folders:
        for name in (DIFFUSERS_NAME, KOHYA_NAME):
            if (folder / name).exists():
                raise InputProblem(
                    f"weights_output_dir {str(folder)!r} already holds a LoRA ({name}) from an earlier run: "
                    "turn unique_subfolder on, or choose another folder"
                )


def _make_folder(folder: Path, what: str) -> bool:
    """Create `folder` (and its parents); True if it did not exist. InputProblem if it cannot be made."""
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputProblem(f"cannot create {what} {str(folder)!r} ({error.strerror or error})") from error
    return created


def choose_folders(loras_root: str, runs_root: str, requested: str, unique: bool, label: str,
                   now: _dt.datetime | None = None, loras_folders: list[str] | None = None) -> Folders:
    """Pick (and create) the run folder.

    Empty `requested`: the LoRA goes to `<loras_root>/siso/<time>-<label>/`, the rest to
    `<runs_root>/<same name>/`. A relative `requested` is taken under `loras_root`, an absolute one
    as it is. With `unique`, each run gets its own new sub-folder; without, the folder itself is
    used and must not hold an earlier LoRA. `loras_folders`: every folder LoraLoader lists.
    """
    loras_folders = list(loras_folders or [loras_root])
    requested = os.path.expanduser(requested.strip())
    if not requested:
        target = Path(loras_root) / RUNS_SUBFOLDER
        unique = True
    elif os.path.isabs(requested):
        target = Path(requested)
    else:
        target = Path(loras_root) / requested
    base = run_name(label, now)
    listed = listing_folder(target, loras_folders)
    if listed is None:  # LoraLoader does not list this folder: keep everything together
        if unique:
            name = unique_dir([target], base)
            return Folders(target / name, target / name, True)
        _refuse_earlier_lora([target])
        return Folders(target, target, _make_folder(target, "weights_output_dir"))
    runs = Path(runs_root)
    if listing_folder(runs, loras_folders) is not None:
        raise InputProblem(
            f"SISO's run folder {str(runs)!r} is inside a LoRA folder, where Load LoRA would list the diffusers-format "
            "file it cannot fully apply: set SISO_RUNS_DIR to a folder outside models/loras"
        )
    if unique:
        name = unique_dir([runs, target], base)
        return Folders(runs / name, target / name, True)
    relative = Path(os.path.realpath(target)).relative_to(listed).as_posix()
    run_dir = runs / slug(relative.replace("/", "-"))
    _refuse_earlier_lora([target, run_dir])
    return Folders(run_dir, target, _make_folder(run_dir, "the run folder"))


def place_copy(source: str, folder: Path) -> str:
    """A second name for `source` in `folder` (a hard link, else a copy made atomically); return it.
    An existing file of that name is never replaced: OSError."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / os.path.basename(source)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    try:
        os.link(source, target)
        return str(target)
    except OSError:
        pass
    partial = folder / f".{os.path.basename(source)}.{os.getpid()}.partial"
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()
    return str(target)


def place_file(source: str, folder: Path) -> str:
    """Move `source` into `folder` under its own name (across file systems too); return the new path.
    An existing file of that name is never replaced: OSError."""
    target = place_copy(source, folder)
    os.unlink(source)
    return target


def find_lora_files(folder: Path, result: dict | None) -> tuple[str, str]:
    """(diffusers path, kohya path) that exist, from SISO_RESULT or by their file names."""
    result = result or {}
    diffusers = result.get("lora_path") or str(folder / DIFFUSERS_NAME)
    kohya = result.get("kohya_path") or str(folder / KOHYA_NAME)
    return (diffusers if diffusers and os.path.isfile(diffusers) else "", kohya if kohya and os.path.isfile(kohya) else "")


def discard_if_only_inputs(run_dir: Path, inputs: tuple[str, ...], created: bool) -> bool:
    """A run folder holding nothing but the inputs written for the run (it failed before writing anything):
    remove those files, and the folder if this job made it; True when the folder is gone."""
    try:
        names = {entry.name for entry in run_dir.iterdir()}
    except OSError:
        return False
    if not names <= set(inputs):
        return False
    for name in names:
        try:
            (run_dir / name).unlink()
        except OSError:
            return False
    return created and remove_if_empty(run_dir)


def remove_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()
        return True
    except OSError:
        return False
