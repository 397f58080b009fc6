"""One whole SISO run, from a config and a photo to files on disk, as the CLI and notebooks use it.

`run_siso` checks the inputs before anything heavy is loaded (preflight.py), picks (or checks)
the output folders without ever overwriting an earlier run's LoRA unless asked, runs the optimiser with
the given callbacks, and always writes what it has (the best LoRA so far, the best image, the
loss plot, run.json), also when the run ends by Ctrl-C, a non-finite loss or out of memory.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .artifacts import RunArtifacts, save_run
from .atomic import save_image
from .config import SISOConfig
from .images import tensor_to_pil
from .lora_io import save_lora_files
from .optimizer import SISOOptimizer, SISOResult, StepEvent
from .preflight import DEFAULT_RUNS_DIR, PreparedRun, fresh_run_dir, preflight  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    result: SISOResult
    artifacts: RunArtifacts
    optimizer: SISOOptimizer


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

    `pipe` reuses an SDXL pipeline already loaded in this process (its SISO adapter is replaced).
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
) -> RunOutcome:
    """The heavy half of `run_siso`, for inputs `preflight` has checked (the CLI checks them first)."""
    config, subject, out, weights = prepared.config, prepared.subject, prepared.output_dir, prepared.weights_dir
    for note in subject.notes:
        (logger.warning if note.startswith("WARNING") else logger.info)("subject image: %s", note)
    try:
        optimizer = SISOOptimizer(config, subject, pipe=pipe)
    except BaseException:
        prepared.discard_if_empty()  # a run that could not start is no result: leave no empty folder behind
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
