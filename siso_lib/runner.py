"""One whole SISO run, from a config and a photo to files on disk, as the CLI and notebooks use it.

`run_siso` checks the inputs before anything heavy is loaded (preflight.py), picks (or checks)
the output folders without ever overwriting an earlier run's LoRA unless asked, runs the optimiser with
the given callbacks, and always writes what it has (the best LoRA so far, the best image, the
loss plot, run.json), also when the run ends by Ctrl-C, a non-finite loss or out of memory.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .io.run_folder import LOSS_PLOT, RESULT_IMAGE, RunArtifacts, save_run
from .io.atomic import save_image
from .config import SISOConfig
from .io.images import tensor_to_pil
from .io.lora import DIFFUSERS_WEIGHT_NAME, KOHYA_WEIGHT_NAME, save_lora_files
from .optimizer import SISOOptimizer, SISOResult, StepEvent
from .preflight import PreparedRun, fresh_run_dir, preflight  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    result: SISOResult
    artifacts: RunArtifacts
    optimizer: SISOOptimizer


def save_best_lora_now(optimizer: SISOOptimizer, weights_dir: Path) -> Callable[[StepEvent], None]:
    """A callback writing the best LoRA as soon as it improves (survives a hard kill)."""
    from .io.run_folder import lora_metadata

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
                family=optimizer.config.family,
                denoiser_targets=optimizer.config.lora_targets,
            )

    return callback


def run_siso(
    config: SISOConfig,
    subject_image_path: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    callbacks: list[Callable[[StepEvent], None]] | tuple = (),
    overwrite: bool = False,
    log_every_epoch: bool = False,
    optimizer_hook: Callable[[SISOOptimizer], None] | None = None,
    extra_record: dict | None = None,
    pipe=None,
) -> RunOutcome:
    """Validate, load, optimise and save. Raises SISOInputError for bad input (nothing written).

    `pipe` reuses a pipeline of the config's family already loaded in this process (its SISO
    adapter is replaced).
    """
    prepared = preflight(config, subject_image_path, output_dir, weights_dir, overwrite)
    return run_prepared(prepared, callbacks, log_every_epoch, optimizer_hook, extra_record, pipe=pipe)


def run_prepared(
    prepared: PreparedRun,
    callbacks: list[Callable[[StepEvent], None]] | tuple = (),
    log_every_epoch: bool = False,
    optimizer_hook: Callable[[SISOOptimizer], None] | None = None,
    extra_record: dict | None = None,
    pipe=None,
    task=None,
) -> RunOutcome:
    """The heavy half of `run_siso`, for inputs `preflight` has checked (the CLI checks them first).

    `task`: an `editing.EditTask` for SISO editing (see editing/runner.py), else None."""
    config, subject, out, weights = prepared.config, prepared.subject, prepared.output_dir, prepared.weights_dir
    for note in subject.notes:
        (logger.warning if note.startswith("WARNING") else logger.info)("subject image: %s", note)
    try:
        optimizer = SISOOptimizer(config, subject, pipe=pipe, task=task)
    except BaseException:
        prepared.discard_if_empty()  # a run that could not start is no result: leave no empty folder behind
        raise
    if optimizer_hook is not None:
        optimizer_hook(optimizer)
    all_callbacks = list(callbacks)
    earlier = earlier_run_files(out, weights)  # only there with --overwrite (or after a run that saved no LoRA)
    written: set[Path] = set()
    if config.save_on_improve:
        all_callbacks.append(save_best_lora_now(optimizer, weights))
    if log_every_epoch:
        def save_epoch_image(event: StepEvent) -> None:
            path = out / f"epoch_{event.step}.png"
            save_image(path, tensor_to_pil(event.image))
            written.add(path)

        all_callbacks.append(save_epoch_image)
    try:
        result = optimizer.run(all_callbacks)
    except BaseException:
        prepared.discard_if_empty()  # e.g. a user's callback raised before anything was written
        raise
    subject_info = {"path": subject.path, "sha256": subject.sha256, "size": list(subject.image.size), "notes": subject.notes}
    artifacts = save_run(
        result, config, out, weights, optimizer.device, optimizer.describe_runtime(), subject_info,
        extra={"uses_ir": optimizer.uses_ir, **(extra_record or {})},
    )
    # a folder holds one run: what an earlier run left there and this one did not write again goes
    written |= {Path(path) for path in artifacts.as_dict().values() if path}
    for path in earlier - written:
        path.unlink(missing_ok=True)
    return RunOutcome(result, artifacts, optimizer)


def earlier_run_files(output_dir: Path, weights_dir: Path) -> set[Path]:
    """Files under the names a run writes (images, plot, LoRAs) that are already in its folders."""
    found = {p for p in output_dir.glob("epoch_*.png") if re.fullmatch(r"epoch_\d+\.png", p.name)}
    found |= {output_dir / name for name in (RESULT_IMAGE, LOSS_PLOT)}
    found |= {weights_dir / name for name in (DIFFUSERS_WEIGHT_NAME, KOHYA_WEIGHT_NAME)}
    return {path for path in found if path.is_file()}
