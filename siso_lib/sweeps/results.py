"""results.csv: one row per run of the grid, rebuilt from the run folders.

Each row holds the run's parameters, the family it used, its status and error (sweep_run.json),
what its run.json says (steps, best iteration, losses, files) and, once some run has been
scored (`--eval`), the evaluation's means (eval_*) and the LoRA-minus-base deltas (eval_delta_*).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.atomic import write_text
from ..io.run_record import RunRecord
from .records import claimed_by_other, read_record
from .spec import RESULTS, Sweep, SweepRun

FAMILY_COLUMN = "model_family"  # always a column of results.csv: the family each run used
RESULT_COLUMNS_BEFORE = ("run", "status", "error")
RESULT_COLUMNS_AFTER = (
    "steps_run", "best_step", "stop_reason", "best_total", "best_dino", "best_ir", "last_total",
    "optimise_seconds", "wall_seconds", "started_at", "finished_at", "host", "device",
    "run_dir", "notebook", "lora_path", "kohya_path", "result_image", "loss_plot", "run_json",
)
# --eval: the scores (from run.json's "evaluation"), placed after EVAL_AFTER; the metrics file last
EVAL_METRICS = ("dino", "clip_i", "clip_t", "ir", "seed_diversity", "paper_diversity_mse")  # evaluation.evaluate.METRICS
EVAL_COLUMNS = (*(f"eval_{m}" for m in EVAL_METRICS), *(f"eval_delta_{m}" for m in EVAL_METRICS), "eval_error")
EVAL_AFTER = "last_total"
EVAL_PATH_COLUMN = "eval_metrics"


@dataclass
class SweepSummary:
    sweep: Sweep
    results_csv: Path
    rows: list[dict[str, Any]]
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    elsewhere: int = 0
    scored: int = 0  # --eval: evaluations made by this invocation
    eval_failed: int = 0

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts


def run_json_fields(run_dir: Path) -> dict[str, Any]:
    """The results.csv cells that come from the run's run.json ({} without a readable one)."""
    record = RunRecord.find(run_dir)
    if record is None:
        return {}
    history, losses, artifacts = record.history, record.best_losses, record.artifacts
    return {
        "model_family": record.model_family,  # the family that ran
        "run_status": record.status,
        "run_error": record.error,
        "steps_run": record.get("steps_run"),
        "best_step": record.get("best_step"),
        "stop_reason": record.get("stop_reason"),
        "best_total": losses.get("total"),
        "best_dino": losses.get("dino"),
        "best_ir": losses.get("ir"),
        "last_total": history[-1].get("total") if history else None,
        "optimise_seconds": record.get("elapsed_seconds"),
        "device": record.runtime.get("device"),
        "lora_path": artifacts.get("lora_path"),
        "kohya_path": artifacts.get("kohya_path"),
        "result_image": artifacts.get("result_image"),
        "loss_plot": artifacts.get("loss_plot"),
        "run_json": str(record.path),
    }


def evaluation_of(run_dir: Path) -> dict | None:
    """The "evaluation" entry of a run's run.json (what siso-eval or --eval wrote), or None."""
    record = RunRecord.find(run_dir)
    return record.evaluation if record is not None else None


def _eval_fields(run_dir: Path, record: dict) -> dict[str, Any]:
    """A run's eval_* cells: the scores in its run.json, or the error of its last evaluation."""
    fields: dict[str, Any] = {column: "" for column in (*EVAL_COLUMNS, EVAL_PATH_COLUMN)}
    entry = evaluation_of(run_dir) if record.get("status") == "completed" else None
    if entry is None:
        fields["eval_error"] = record.get("eval_error") or ""
        return fields
    summary = entry["summary"]
    for metric in EVAL_METRICS:
        for column, variant in ((f"eval_{metric}", "lora"), (f"eval_delta_{metric}", "delta")):
            value = (summary.get(variant) or {}).get(metric)
            fields[column] = "" if value is None else value
    fields[EVAL_PATH_COLUMN] = entry.get("metrics_file") or ""
    return fields


def _columns(param_columns: list[str], scores: bool) -> list[str]:
    """results.csv's columns: the scores (EVAL_COLUMNS) after the losses, their metrics file last."""
    after = list(RESULT_COLUMNS_AFTER)
    if scores:
        position = after.index(EVAL_AFTER) + 1
        after[position:position] = EVAL_COLUMNS
        after.append(EVAL_PATH_COLUMN)
    return [*RESULT_COLUMNS_BEFORE, *param_columns, *after]


def _row(sweep: Sweep, run: SweepRun, param_columns: list[str]) -> dict[str, Any]:
    run_dir = sweep.dir / run.name
    record = read_record(run_dir)
    row: dict[str, Any] = {column: "" for column in _columns(param_columns, scores=True)}
    row.update({"run": run.name, "run_dir": str(run_dir)})
    for key in param_columns:
        row[key] = run.params.get(key, "")
    requested = run.params.get(FAMILY_COLUMN) or "auto"
    row[FAMILY_COLUMN] = requested
    if requested == "auto" and record is not None and record.get(FAMILY_COLUMN):
        row[FAMILY_COLUMN] = record[FAMILY_COLUMN]  # the family read from the run's base model
    if record is None:
        row["status"] = "running" if claimed_by_other(run_dir) else "pending"
        return row
    if record.get("status") == "running" and not claimed_by_other(run_dir):
        record["status"], record["error"] = "failed", record.get("error") or "the run did not finish (its process ended)"
    for column in (*RESULT_COLUMNS_BEFORE, *RESULT_COLUMNS_AFTER):
        if column in record and record[column] is not None:
            row[column] = record[column]
    row.update(_eval_fields(run_dir, record))
    row["run"] = run.name
    return row


def collect(sweep: Sweep) -> list[dict[str, Any]]:
    """One row per run of the grid, from the run folders' records (and the scores in their run.json:
    the eval_* columns are there when some run has a score or an evaluation error)."""
    param_columns = list(sweep.grid) + sorted(k for k in sweep.fixed if k not in sweep.grid)
    if FAMILY_COLUMN not in param_columns:
        param_columns.insert(len(sweep.grid), FAMILY_COLUMN)
    rows = [_row(sweep, run, param_columns) for run in sweep.runs()]
    if any(row[column] != "" for row in rows for column in EVAL_COLUMNS):
        return rows
    return [{column: row[column] for column in _columns(param_columns, scores=False)} for row in rows]


def write_results(sweep: Sweep, rows: list[dict[str, Any]] | None = None) -> Path:
    rows = collect(sweep) if rows is None else rows
    path = sweep.dir / RESULTS
    buffer = io.StringIO()
    columns = list(rows[0]) if rows else list(RESULT_COLUMNS_BEFORE + RESULT_COLUMNS_AFTER)
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in row.items()})
    write_text(path, buffer.getvalue())
    return path
