"""`siso-sweep --eval`: each completed run scored as `siso-eval RUN` does, by the sweep process.

One Evaluator serves the whole sweep (its judges are loaded at the first run scored, and never if
nothing is). A failed evaluation is recorded in the run's sweep_run.json (`eval_error`); the run
stays completed and the sweep goes on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from ..cli.common import Interrupted
from ..notebooks.papermill import describe_error
from .records import claim, read_record, release, write_record
from .results import SweepSummary, evaluation_of, write_results
from .spec import EvalOptions, Sweep, SweepRun


class SweepScorer:
    """`--eval`: scores completed runs as siso-eval does, with one Evaluator for the whole sweep,
    made at the first run scored (so its judges are loaded once, and never if nothing is scored)."""

    def __init__(self, options: EvalOptions, echo: Callable[[str], None] = print):
        self.options, self.echo = options, echo
        # (DINO, CLIP) -> Evaluator: one, unless a sweep mixes tiny offline and real base models
        self.evaluators: dict[tuple[str, str], Any] = {}

    @staticmethod
    def wants(run_dir: Path) -> bool:
        """A completed run without an evaluation in its run.json."""
        return (read_record(run_dir) or {}).get("status") == "completed" and evaluation_of(run_dir) is None

    def score(self, run_dir: Path, params: dict[str, Any]) -> tuple[dict | None, str | None, float]:
        """(summary, None, seconds) or (None, error line, seconds); the error (or None) goes into the
        run's sweep_run.json as eval_error. The run itself stays completed."""
        started = time.perf_counter()
        try:
            summary, error = self._evaluate(Path(run_dir), params).summary, None
        except Exception as failure:  # noqa: BLE001 - a failed evaluation is recorded, the sweep goes on
            summary, error = None, describe_error(failure)
        record = read_record(run_dir)
        if record is not None and (error or record.get("eval_error")):
            record["eval_error"] = error
            write_record(run_dir, record)
        return summary, error, time.perf_counter() - started

    def _evaluate(self, run_dir: Path, params: dict[str, Any]):
        from ..evaluation.evaluate import EvalSettings, read_run
        from ..io.model_paths import check_ir_checkpoint_path, check_local_base_model

        info = read_run(run_dir)
        check_local_base_model(info.base_model, info.model_family)
        ir_path = info.run.get("parameters", {}).get("ir_features_path")  # a run without IR is scored without it
        if ir_path:
            check_ir_checkpoint_path(ir_path)
        evaluator = self.evaluator(info.base_model, params)
        evaluator.judges.set_ir(ir_path or None)
        settings = EvalSettings(templates=self.options.templates, seeds=tuple(range(self.options.seeds)))
        try:
            return evaluator.evaluate(run_dir, settings)
        finally:
            evaluator.release_pipeline()  # the next run's notebook kernel needs the accelerator's memory

    def evaluator(self, base_model: str, params: dict[str, Any]):
        """The Evaluator for a run of `base_model`: siso-eval's "auto" judges, loaded on first use."""
        from ..evaluation.defaults import DEFAULT_CLIP_PRETRAINED, judge_names

        *names, tiny = judge_names(base_model)
        names = tuple(names)
        if names not in self.evaluators:
            from ..cli.common import quiet_libraries
            from ..evaluation import Evaluator, Judges

            quiet_libraries()
            device, precision = str(params.get("device") or "auto"), str(params.get("precision") or "auto")
            self.echo("--eval: loading the judges: " + (
                "the tiny random-weight DINO and CLIP of the offline models (the numbers test the plumbing, not the picture)"
                if tiny else f"DINO {names[0]}, CLIP {names[1]} ({DEFAULT_CLIP_PRETRAINED}), IR from each run"))
            judges = Judges.from_names(names[0], names[1], DEFAULT_CLIP_PRETRAINED, None, device=device)
            self.evaluators[names] = Evaluator(judges, device=device, precision=precision)
        return self.evaluators[names]


def score_completed_run(sweep: Sweep, scorer: SweepScorer, run: SweepRun, summary: SweepSummary,
                        echo: Callable[[str], None], prefix: str) -> None:
    """--eval on a run completed earlier without a score: claimed while it is scored (a second
    driver skips it), then results.csv rewritten. Used by the local and the Ray sweep."""
    run_dir = sweep.dir / run.name
    if not scorer.wants(run_dir):
        return
    if not claim(run_dir):
        echo(f"{prefix}: another process holds it: not scored now")
        return
    try:
        if scorer.wants(run_dir):  # not scored by another process meanwhile
            echo(f"{prefix}: scoring it (no evaluation yet) ...")
            echo(f"{prefix}: {score_run(scorer, run, run_dir, summary)[1]}")
    finally:
        release(run_dir)
    write_results(sweep)


def score_run(scorer: SweepScorer, run: SweepRun, run_dir: Path, summary: SweepSummary) -> tuple[float, str]:
    """Score one completed run (its claim held): (seconds, what to say)."""
    from ..cli.evaluate import format_summary

    try:
        result, error, seconds = scorer.score(run_dir, run.params)
    except Interrupted as interruption:
        interruption.while_scoring = True  # the run stays completed; main() says so
        raise
    if error is not None:
        summary.eval_failed += 1
        return seconds, f"EVALUATION FAILED after {seconds:.1f} s (the run stays completed; eval_error in results.csv): {error}"
    summary.scored += 1
    return seconds, f"scored in {seconds:.1f} s: {format_summary({k: v for k, v in result.items() if k != 'base'})}"
