"""Running a sweep here, one run at a time: each run executes notebook 01 with papermill.

A run that fails (a bad photo, a crash, a time-out) is recorded with its error and the sweep
goes on; a run that failed on bad input keeps only its record (sweep_run.json), other failures
also keep the executed notebook as the log. SIGINT / SIGTERM ends the running notebook's kernel,
records that run as "interrupted", releases its claim and raises `Interrupted`. Running the same
sweep again skips the runs that completed (failed ones are tried again unless retry_failed is
off). Several machines: on_ray.py.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from ..cli.common import Interrupted
from ..io.atomic import write_json
from ..io.run_record import now_iso
from ..text import count
from ..notebooks.papermill import INPUT_ERRORS, SignalGuard, describe_error, execute_generate_notebook
from ..offline import single_thread_env
from .records import claim, read_record, release, write_record
from .results import SweepSummary, collect, evaluation_of, run_json_fields, write_results
from .scoring import SweepScorer, score_completed_run, score_run
from .spec import RESULTS, SHORT_NAMES, SPEC, Sweep, SweepRun, _format, absolute_paths, run_input_problem


def execute_sweep_run(
    sweep: Sweep,
    run: SweepRun,
    timeout: float | None = None,
    kernel_name: str | None = None,
    log_output: bool = False,
    guard: SignalGuard | None = None,
    progress_file: str | Path | None = None,
) -> dict[str, Any]:
    """Execute one run's notebook with papermill and write its record; never raises for a failed run.

    A run that fails on bad input (the notebook raised SISOInputError or NotebookParameterError)
    keeps only its record, `sweep_run.json`, which results.csv is built from; any other failure
    also keeps the executed notebook, whose traceback and output are the log. A SIGINT/SIGTERM
    (through `guard`) records the run as "interrupted" and raises `Interrupted`. With a
    `progress_file`, the notebook appends each iteration's progress record there (io/progress.py).
    """
    run_dir = sweep.dir / run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    executed = run_dir / Path(sweep.notebook).name
    (run_dir / "run.json").unlink(missing_ok=True)  # a retry must not read an earlier attempt's result
    record: dict[str, Any] = {
        "run": run.name, "status": "running", "error": None, "params": run.params, "swept": run.swept,
        "started_at": now_iso(), "host": socket.gethostname(), "pid": os.getpid(),
        "run_dir": str(run_dir), "notebook": str(executed),
    }
    parameters = {**absolute_paths(run.params), "output_dir": str(run_dir.resolve()), "overwrite": True}
    # the tiny models on the CPU: the kernel starts with one torch thread, as siso-demo's runs
    kernel_env = single_thread_env(run.params.get("models"), run.params.get("device"))
    if progress_file is not None:
        parameters["progress_file"] = str(progress_file)
    started = time.perf_counter()
    error = None
    try:
        write_record(run_dir, record)
        execute_generate_notebook(executed, parameters, notebook=sweep.notebook, kernel_name=kernel_name,
                                  log_output=log_output, execution_timeout=int(timeout) if timeout else None,
                                  guard=guard, kernel_env=kernel_env)
    except Interrupted as interruption:
        record.update(status="interrupted", error=f"interrupted by {interruption.signal_name}",
                      wall_seconds=round(time.perf_counter() - started, 3), finished_at=now_iso())
        write_record(run_dir, record)
        raise
    except Exception as failure:  # noqa: BLE001 - every failure of one run is recorded, not raised
        error = describe_error(failure)
        if getattr(failure, "ename", None) in INPUT_ERRORS:  # bad input: the error line is the whole story
            executed.unlink(missing_ok=True)
            record["notebook"] = None
    record["wall_seconds"] = round(time.perf_counter() - started, 3)
    record["finished_at"] = now_iso()
    fields = run_json_fields(run_dir)
    run_status, run_error = fields.pop("run_status", None), fields.pop("run_error", None)
    if error is None and not fields:
        error = "the notebook finished but wrote no run.json"
    record.update(fields)
    if error is not None:
        record.update(status="failed", error=error)
    else:
        record.update(status=run_status or "failed", error=run_error)
    write_record(run_dir, record)
    return record


def show_dry_run(sweep: Sweep, runs: list[SweepRun], retry_failed: bool, echo: Callable[[str], None]) -> SweepSummary:
    """List what a real invocation would do; read the run folders, write nothing. Each run that would
    run gets the input checks the run itself makes first (`run_input_problem`: the photo, the
    settings together, the model paths and files it names); one that fails them is listed with
    the error line and counted in `summary.failed`."""
    echo(f"sweep {sweep.name}: {count(len(runs), 'run')} in {sweep.dir} (dry run: nothing is written)")
    summary = SweepSummary(sweep, sweep.dir / RESULTS, [])
    to_run = to_score = 0
    for position, run in enumerate(runs, 1):
        prefix = f"[{position}/{len(runs)}] {run.name}"
        record = read_record(sweep.dir / run.name) or {}
        status = record.get("status")
        if status == "completed" or (status == "failed" and not retry_failed):
            summary.skipped += 1
            unscored = sweep.evaluation is not None and status == "completed" and evaluation_of(sweep.dir / run.name) is None
            to_score += unscored
            echo(f"{prefix}: {status} earlier, would be skipped" + ("; it has no evaluation: would be scored" if unscored else ""))
            continue
        again = f" again ({status} earlier)" if status else ""
        problem = run_input_problem(run)
        if problem is not None:
            summary.failed += 1
            echo(f"{prefix}: WOULD FAIL on bad input: {problem}")
            continue
        to_run += 1
        echo(f"{prefix}: would run{again} {json.dumps(run.params, default=str)}")
    scoring = f"; --eval: each run that completes would be scored, and {count(to_score, 'run')} completed earlier without an evaluation" if sweep.evaluation else ""
    failing = f", {summary.failed} would fail on bad input (fix them first)" if summary.failed else ""
    echo(f"sweep {sweep.name}: dry run: {to_run} would run{failing}, {summary.skipped} would be skipped{scoring}")
    return summary


def runs_to_execute(sweep: Sweep, retry_failed: bool = True) -> list[SweepRun]:
    """The runs an invocation would execute: not completed, and not failed when failed runs are not retried."""
    def wanted(run: SweepRun) -> bool:
        status = (read_record(sweep.dir / run.name) or {}).get("status")
        return status != "completed" and not (status == "failed" and not retry_failed)

    return [run for run in sweep.runs() if wanted(run)]


def family_of_run(run: SweepRun) -> str:
    """The model_family a run names ("auto" when it names none): what its speed depends on most."""
    return str(run.params.get("model_family") or "auto")


def time_left(upcoming: list[SweepRun], seconds: dict[str, list[float]]) -> tuple[float, list[str]]:
    """(seconds, families not timed yet) for the `upcoming` runs: each run takes the mean time of the
    finished runs of its model family (`seconds`: family -> wall times; FLUX's or Sana's runs take
    several times an SDXL run's), a family none of whose runs has finished yet the mean of all."""
    every = [value for values in seconds.values() for value in values]
    if not every:
        return 0.0, sorted({family_of_run(run) for run in upcoming})
    overall = sum(every) / len(every)
    total, guessed = 0.0, []
    for run in upcoming:
        family = family_of_run(run)
        times = seconds.get(family)
        total += sum(times) / len(times) if times else overall
        if not times and family not in guessed:
            guessed.append(family)
    return total, guessed


def run_sweep(
    sweep: Sweep,
    retry_failed: bool = True,
    timeout: float | None = None,
    kernel_name: str | None = None,
    log_output: bool = False,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    guard: SignalGuard | None = None,
) -> SweepSummary:
    """Run every (not yet completed) run of the sweep; a failed run is recorded and the sweep goes on.

    With `sweep.evaluation` (--eval), each completed run without an evaluation is scored (one
    SweepScorer: judges loaded once). `dry_run` only lists the runs and writes nothing. With a
    `guard` (the command line's), SIGINT or SIGTERM marks the current run "interrupted" (a run
    being scored stays completed), releases its claim, rewrites results.csv and raises `Interrupted`.
    """
    runs = sweep.runs()
    total = len(runs)
    if dry_run:
        return show_dry_run(sweep, runs, retry_failed, echo)
    sweep.dir.mkdir(parents=True, exist_ok=True)
    write_json(sweep.dir / SPEC, sweep.to_dict())
    echo(f"sweep {sweep.name}: {count(len(runs), 'run')} in {sweep.dir}"
         + (f"; scoring each completed run ({count(sweep.evaluation.seeds, 'seed')} per prompt)" if sweep.evaluation else ""))
    summary = SweepSummary(sweep, sweep.dir / RESULTS, [])
    scorer = SweepScorer(sweep.evaluation, echo) if sweep.evaluation else None
    durations: dict[str, list[float]] = {}  # model family -> wall times of the runs done here (for the time left)
    to_do = {run.name for run in runs_to_execute(sweep, retry_failed)}
    try:
        for position, run in enumerate(runs, 1):
            prefix = f"[{position}/{total}] {run.name}"
            run_dir = sweep.dir / run.name
            record = read_record(run_dir) or {}
            status = record.get("status")
            if status == "completed":
                summary.skipped += 1
                echo(f"{prefix}: completed earlier, skipped")
                if scorer is not None:
                    score_completed_run(sweep, scorer, run, summary, echo, prefix)
                continue
            if status == "failed" and not retry_failed:
                summary.skipped += 1
                echo(f"{prefix}: failed earlier ({record.get('error')}), skipped (--no-retry-failed)")
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            if not claim(run_dir):
                summary.elsewhere += 1
                echo(f"{prefix}: another process is running it, skipped")
                continue
            try:
                if (read_record(run_dir) or {}).get("status") == "completed":  # finished by another process meanwhile
                    summary.skipped += 1
                    echo(f"{prefix}: completed by another process, skipped")
                    if scorer is not None and scorer.wants(run_dir):
                        echo(f"{prefix}: {score_run(scorer, run, run_dir, summary)[1]}")
                    continue
                swept = ", ".join(f"{SHORT_NAMES.get(k, k)}={_format(v)}" for k, v in run.swept.items())
                echo(f"{prefix}: running ({swept}) ...")
                record = execute_sweep_run(sweep, run, timeout=timeout, kernel_name=kernel_name,
                                           log_output=log_output, guard=guard)
                summary.ran += 1
                seconds = record.get("wall_seconds") or 0.0
                if record["status"] == "completed":
                    losses = f"best {record.get('best_total'):+.4f} at iteration {record.get('best_step')}" if record.get("best_total") is not None else ""
                    said = f"{prefix}: completed in {record['wall_seconds']:.1f} s, {count(record.get('steps_run') or 0, 'iteration')}, {losses}"
                    if scorer is not None:
                        echo(f"{said}; scoring it ...")
                        scoring_seconds, said = score_run(scorer, run, run_dir, summary)
                        seconds += scoring_seconds
                        said = f"{prefix}: {said}"
                else:
                    summary.failed += 1
                    said = f"{prefix}: {record['status'].upper()} after {record['wall_seconds']:.1f} s: {record.get('error')}"
                durations.setdefault(family_of_run(run), []).append(seconds)
                upcoming = [later for later in runs[position:] if later.name in to_do]
                if upcoming:
                    left, guessed = time_left(upcoming, durations)
                    said += f"; about {left:.0f} s left for {count(len(upcoming), 'run')}"
                    if guessed:
                        said += f" ({', '.join(guessed)} not timed yet: a guess)"
                echo(said)
            finally:
                release(run_dir)
            write_results(sweep)
            if guard is not None:
                guard.raise_if_interrupted()
    except Interrupted:
        summary.results_csv = write_results(sweep)  # the interrupted run shows as such, not as pending
        raise
    summary.rows = collect(sweep)
    summary.results_csv = write_results(sweep, summary.rows)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()))
    scores = ""
    if scorer is not None:
        scores = f", scored {summary.scored}" + (f" ({count(summary.eval_failed, 'evaluation')} FAILED: eval_error)" if summary.eval_failed else "")
    echo(f"sweep {sweep.name}: {counts}; ran {summary.ran}, skipped {summary.skipped}{scores}; results: {summary.results_csv}")
    return summary
