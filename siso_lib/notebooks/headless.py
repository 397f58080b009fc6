"""One notebook run: `execute_run` (what the panel's Run button and a headless run share),
`run_headless` (no widgets: one text line per iteration and a live figure, so an executed
notebook is a readable report), and the report at the end (`show_results`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..cli.common import quiet_libraries
from ..config import SISOConfig
from ..io.progress import ProgressLog, progress_record
from .figures import LiveFigure, RunRecorder, dashboard_figure, figure_png, step_line
from .setup import NotebookSetup

@dataclass
class NotebookRun:
    """One run's inputs and what it produced (also the panel's result)."""

    config: SISOConfig
    subject_image_path: str
    output_dir: str | None = None
    recorder: RunRecorder = field(default_factory=RunRecorder)
    outcome: Any = None  # runner.RunOutcome
    error: str | None = None
    traceback: str | None = None
    wall_seconds: float | None = None
    made_output_dir: bool = False  # output_dir is a fresh folder made for this run (removed again if it stays empty)

    @property
    def finished(self) -> bool:
        return self.outcome is not None


def run_output_dir(setup_output_dir: str | None, runs_root: str | Path, subject_image_path: str) -> str:
    """The folder a run writes into: the one asked for, or a fresh one under runs_root."""
    if setup_output_dir:
        return str(setup_output_dir)
    from ..runner import fresh_run_dir

    return str(fresh_run_dir(runs_root, label=Path(subject_image_path).stem))


def new_run(config: SISOConfig, subject_image_path: str, setup_output_dir: str | None, runs_root: str | Path) -> NotebookRun:
    """A NotebookRun writing into setup_output_dir, or into a fresh folder under runs_root."""
    output_dir = run_output_dir(setup_output_dir, runs_root, subject_image_path)
    return NotebookRun(config, subject_image_path, output_dir, made_output_dir=not setup_output_dir)


def discard_if_empty(folder: str | Path | None) -> None:
    """Remove a run folder that holds nothing (a run that failed before writing is no result)."""
    try:
        Path(folder).rmdir()  # only succeeds on an empty folder
    except (OSError, TypeError):
        pass


def execute_run(
    run: NotebookRun,
    overwrite: bool = False,
    callbacks: tuple | list = (),
    optimizer_hook: Callable | None = None,
) -> NotebookRun:
    """run_siso with the recorder first among the callbacks; fills run.outcome and wall time.

    A run that fails before writing anything (bad input, a model that does not load) leaves no
    empty folder behind: the fresh folder made for it is removed again.
    """
    from ..runner import run_siso

    started = time.perf_counter()
    try:
        run.outcome = run_siso(
            run.config,
            run.subject_image_path,
            output_dir=run.output_dir,
            callbacks=[run.recorder, *callbacks],
            overwrite=overwrite,
            optimizer_hook=optimizer_hook,
            extra_record={"driver": "notebook"},
        )
    except BaseException:
        if run.made_output_dir:
            discard_if_empty(run.output_dir)
        raise
    finally:
        run.wall_seconds = time.perf_counter() - started
    return run


def _subject_pil(path: str):
    from ..io.images import load_subject_image

    return load_subject_image(path).image


def run_headless(setup: NotebookSetup, live_every_seconds: float = 2.0, print_steps: bool = True) -> NotebookRun:
    """One SISO run without widgets: progress lines, a live inline figure, artefacts on disk."""
    from IPython.display import display, Markdown

    quiet_libraries()
    subject = _subject_pil(setup.subject_image_path)  # fails early, with a clear message, on a bad photo
    run = new_run(setup.config, setup.subject_image_path, setup.output_dir, setup.runs_root)
    display(Markdown(f"Running SISO, writing to `{run.output_dir}`"))
    live = LiveFigure(run.recorder, subject, title=f"SISO: {setup.config.prompt[:60]}", every_seconds=live_every_seconds)
    callbacks = [live]
    if print_steps:
        callbacks.insert(0, lambda event: print(step_line(event), flush=True))
    if setup.progress_file:
        log = ProgressLog(setup.progress_file)
        callbacks.append(lambda event: log.append(progress_record(event)))
    execute_run(run, overwrite=setup.overwrite, callbacks=callbacks)
    live.update(last_label="last")
    return run


def summary_markdown(run: NotebookRun) -> str:
    outcome = run.outcome
    result, artifacts = outcome.result, outcome.artifacts
    reason = outcome.optimizer.describe_stop(result.stop_reason, result)
    best = result.describe_best()
    losses = ", ".join(f"{k} {v:+.4f}" for k, v in result.best_losses.items())
    lines = [
        f"**Stopped:** {reason}. **Best:** {best} ({losses}). "
        f"**Time:** {result.elapsed_seconds:.1f} s optimising, {run.wall_seconds or 0:.1f} s with loading.",
    ]
    if not outcome.optimizer.uses_ir:
        lines.append("**Note:** optimised with DINO features only (no `ir_features_path`); the paper uses DINO + IR.")
    if result.error:
        lines.append(f"**Error:** {result.error}")
    if result.best_step == 1:
        lines.append("**Warning:** the best iteration is the first one, whose LoRA is still zero (the base model).")
    lines.append("")
    lines.append("| file | path |\n| --- | --- |")
    for label, path in artifacts.labelled():
        lines.append(f"| {label} | `{path}` |")
    return "\n".join(lines)


def show_results(run: NotebookRun | None) -> None:
    """The final report of a run: loss curves and images, the stop reason, the files written."""
    from IPython.display import Image, Markdown, display

    if run is None or not run.finished:
        message = run.error if run is not None and run.error else "No finished run yet: press **Run** in the panel above, then run this cell again."
        display(Markdown(message))
        return
    subject = _subject_pil(run.subject_image_path)
    figure = dashboard_figure(run.recorder.snapshot(), subject, title=f"SISO: {run.config.prompt[:60]}", last_label="last")
    display(Image(data=figure_png(figure), format="png"))
    display(Markdown(summary_markdown(run)))
