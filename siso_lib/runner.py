"""One whole SISO run, from a config and a photo to files on disk, as the CLI and notebooks use it.

`run_siso` checks the inputs before anything heavy is loaded, picks (or checks) the output
folders without ever overwriting an earlier run's LoRA unless asked, runs the optimiser with
the given callbacks, and always writes what it has (the best LoRA so far, the best image, the
loss plot, run.json), also when the run ends by Ctrl-C, a non-finite loss or out of memory.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .artifacts import RunArtifacts, save_run
from .config import SISOConfig
from .dino import check_dino_name
from .errors import SISOInputError
from .atomic import save_image
from .images import load_subject_image, tensor_to_pil
from .ir_features import check_ir_checkpoint_path
from .lora_io import DIFFUSERS_WEIGHT_NAME, KOHYA_WEIGHT_NAME, save_lora_files
from .optimizer import SISOOptimizer, SISOResult, StepEvent
from .sdxl import check_local_base_model

logger = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = "outputs/runs"


@dataclass
class RunOutcome:
    result: SISOResult
    artifacts: RunArtifacts
    optimizer: SISOOptimizer


def fresh_run_dir(root: str | os.PathLike = DEFAULT_RUNS_DIR, label: str = "run") -> Path:
    """A new, empty folder `root/<YYYYmmdd-HHMMSS>-<label>[-N]` (never an existing one)."""
    root = Path(root)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:40] or "run"
    for attempt in range(1000):
        candidate = root / (f"{stamp}-{label}" + (f"-{attempt}" if attempt else ""))
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
        except OSError as error:
            raise SISOInputError(f"cannot create a run folder under {str(root)!r} ({error.strerror}): choose another --output_dir") from error
    raise SISOInputError(f"could not find a free run folder name under {str(root)!r}")


def check_writable(folder: Path, what: str) -> None:
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
            f"{str(folder)!r} already holds a LoRA ({existing[0]}) from an earlier run: pass --overwrite to replace it, "
            f"or give another {option} (without it every run gets a fresh folder)"
        )


def prepare_output_dirs(
    output_dir: str | None, weights_dir: str | None, overwrite: bool, label: str
) -> tuple[Path, Path]:
    """Resolve and check the output folders; create a fresh run folder when none is given."""
    out = Path(output_dir) if output_dir else fresh_run_dir(label=label)
    check_writable(out, "output folder")
    weights = Path(weights_dir) if weights_dir else out
    if weights != out:
        check_writable(weights, "weights folder")
    check_no_earlier_lora(weights, overwrite, "--weights_output_dir" if weights_dir else "--output_dir")
    return out, weights


def check_model_inputs(config: SISOConfig) -> None:
    """Cheap checks of the model paths before the base model (GBs) is loaded."""
    check_local_base_model(config.pretrained_model_name_or_path)
    if config.dino_features_weight > 0:
        check_dino_name(config.dino_model_name)
    if config.ir_features_path:
        check_ir_checkpoint_path(config.ir_features_path)


def save_best_lora_now(optimizer: SISOOptimizer, weights_dir: Path) -> Callable[[StepEvent], None]:
    """A callback writing the best LoRA as soon as it improves (survives a hard kill)."""
    from .artifacts import lora_metadata

    def callback(event: StepEvent) -> None:
        if event.is_best:
            partial = optimizer.result("interrupted")
            sha = optimizer.subject.sha256 if optimizer.subject else None
            save_lora_files(
                weights_dir,
                partial.best_lora,
                optimizer.config.rank,
                optimizer.config.effective_lora_alpha,
                lora_metadata(optimizer.config, partial, sha) | {"in_progress": True},
            )

    return callback


def run_siso(
    config: SISOConfig,
    subject_image_path: str,
    output_dir: str | None = None,
    weights_dir: str | None = None,
    callbacks: list[Callable[[StepEvent], None]] | tuple = (),
    overwrite: bool = False,
    log_every_epoch: bool = False,
    optimizer_hook: Callable[[SISOOptimizer], None] | None = None,
    extra_record: dict | None = None,
) -> RunOutcome:
    """Validate, load, optimise and save. Raises SISOInputError for bad input (nothing written)."""
    try:
        config.validate()
    except ValueError as error:
        raise SISOInputError(str(error)) from error
    subject = load_subject_image(subject_image_path)
    check_model_inputs(config)
    out, weights = prepare_output_dirs(output_dir, weights_dir, overwrite, Path(subject_image_path).stem)
    for note in subject.notes:
        logger.info("subject image: %s", note)
    try:
        optimizer = SISOOptimizer(config, subject)
    except BaseException:
        if not output_dir and not any(out.iterdir()):
            out.rmdir()  # a fresh run folder with nothing in it is no result: do not leave it behind
        raise
    if optimizer_hook is not None:
        optimizer_hook(optimizer)
    all_callbacks = list(callbacks)
    if config.save_on_improve:
        all_callbacks.append(save_best_lora_now(optimizer, weights))
    if log_every_epoch:
        all_callbacks.append(lambda event: save_image(out / f"epoch_{event.step}.png", tensor_to_pil(event.image)))
    result = optimizer.run(all_callbacks)
    subject_info = {"path": subject.path, "sha256": subject.sha256, "size": list(subject.image.size), "notes": subject.notes}
    artifacts = save_run(
        result, config, out, weights, optimizer.device, optimizer.describe_runtime(), subject_info,
        extra={"uses_ir": optimizer.uses_ir, **(extra_record or {})},
    )
    return RunOutcome(result, artifacts, optimizer)
