"""Sweeps: run `notebooks/01_generate_lora.ipynb` headless with papermill over a parameter grid.

    siso-sweep --name lr-rank --grid learning_rate=1e-4,2e-4 --grid rank=4,8 --subjects data/cat.png data/coffee.png
    siso-sweep sweep.yaml            # the same from a file (YAML or JSON, see `load_spec`)

    siso-sweep --name families --set models=offline --grid model_family=sdxl,flux,sana

Every combination of the grid is one run in `outputs/sweeps/<name>/<run>/`: the executed
notebook, the LoRA files, result.png, loss_curve.png, run.json, and `sweep_run.json` (this
module's record: parameters, status, error, wall time). `outputs/sweeps/<name>/results.csv` has
one row per run of the grid (parameters, the model family it ran, steps run, best iteration,
final losses, wall time, status, paths) and is rewritten after every run.

* `model_family` is an axis like any other: each run gets that family's recipe and model (with
  `models=offline` its tiny model, with real models the recipe's hub model unless the sweep
  names `pretrained_model_name_or_path`). The `model_family` column holds the family a run used
  ("auto" is replaced by the family read from the base model once the run has finished).

* Parameter names and values are checked against the notebook's parameters cell before anything
  runs (no model, no kernel, no torch is loaded for that, nor for --help or --dry-run); --dry-run
  lists the runs and writes nothing.
* A run that fails (a bad photo, a crash, a time-out) is recorded with its error; the sweep goes on.
  A run that failed on bad input keeps only its record (sweep_run.json); other failures also keep
  the executed notebook as the log.
* SIGINT / SIGTERM ends the running notebook's kernel, records that run as "interrupted" in
  results.csv, releases its claim and exits with 130 / 143 after one line; the next invocation
  runs it again.
* Running the same sweep again skips the runs that completed (failed ones are tried again unless
  `--no-retry-failed`). A run's folder name holds a short hash of its parameters, so changing a
  fixed parameter makes new runs instead of skipping them as done.
* Several GPUs or machines: `--ray` (a local Ray started for the sweep) or `--ray-address ADDR`
  (an existing cluster) runs each run as a Ray task (siso_lib/sweep_ray.py, imported only then;
  `pip install "siso-lab[cluster]"`). Without them the sweep runs here, one run at a time.
* A run being executed is claimed (`<run>/.claim`, created atomically, holding the host and
  pid): a second siso-sweep process on the same machine skips it, and a claim whose process is
  gone is taken over. (`--shard K/N` was removed: use --ray-address.)

Scores (`--eval`, or `eval: true` in a sweep file): each completed run's LoRA is scored as
`siso-eval RUN` does (siso_lib/evaluation: the run's prompt class in the built-in prompts or
`--eval-prompts FILE`, seeds 0..N-1 with `--eval-seeds N`, with and without the LoRA), right
after the run, by the sweep process itself:

    siso-sweep --name lr --grid learning_rate=1e-4,2e-4 --subjects data/cat.png --eval --eval-seeds 2

* One `Evaluator` serves the whole sweep: the judges (DINO, CLIP; IR from each run's own
  checkpoint) are loaded once, at the first run that is scored, so a sweep whose runs all fail
  or are skipped loads nothing. The judges are chosen as siso-eval's "auto": a run on the tiny
  offline models is judged by the tiny random-weight DINO and CLIP beside them, any other run by
  DreamBench's DINO ViT-S/16 and CLIP ViT-B/32. On a GPU the base pipeline is freed after each
  evaluation (the next run's notebook kernel needs the memory); the judges stay.
* Each run gains RUN/eval/ (metrics.json, grid.png, images/) and "evaluation" in its run.json;
  results.csv reads its columns back from there: `eval_dino eval_clip_i eval_clip_t eval_ir
  eval_diversity` (the LoRA's means), `eval_delta_*` (LoRA minus the base model, same seeds),
  `eval_error` and `eval_metrics` (metrics.json). The columns appear once some run has a score or
  an evaluation error; `--collect` and a resumed sweep show them too.
* A completed run that already has an evaluation is not scored again (whatever the settings;
  `siso-eval RUN` re-scores one); a run completed earlier without one is scored when the sweep
  is run again with --eval. An evaluation that fails (a missing IR checkpoint or subject photo,
  a judge that cannot be loaded) is written to `eval_error`; the run stays completed, the sweep
  goes on, the next --eval invocation tries again, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .atomic import write_json, write_text
from .errors import OneLineArgumentParser
from .model_paths import absolute_if_local
from .notebook_run import (
    GENERATE_NOTEBOOK,
    INPUT_ERRORS,
    REPO_ROOT,
    SISO_KNOBS,
    Interrupted,
    NotebookParameterError,
    SignalGuard,
    check_parameter_names,
    coerce_parameter,
    describe_error,
    execute_generate_notebook,
    notebook_parameter_names,
    now_iso,
    parse_value,
)

SWEEPS_ROOT = REPO_ROOT / "outputs" / "sweeps"
RECORD = "sweep_run.json"
CLAIM = ".claim"
RESULTS = "results.csv"
SPEC = "sweep.json"
# set by the sweep for every run: not sweepable
RESERVED = ("output_dir", "interactive", "overwrite")
# parameters that say where a run goes, not what it computes: not part of a run's identity, so
# that processes on different devices share the runs of one sweep
PLACEMENT = ("device",)
# parameters whose relative paths are made absolute (the notebook runs in notebooks/)
PATH_PARAMETERS = ("subject_image_path", "assets_dir", "ir_features_path", "pretrained_model_name_or_path", "dino_model_name")
SHORT_NAMES = {"subject_image_path": "subject"}
FAMILY_COLUMN = "model_family"  # always a column of results.csv: the family each run used
RESULT_COLUMNS_BEFORE = ("run", "status", "error")
RESULT_COLUMNS_AFTER = (
    "steps_run", "best_step", "stop_reason", "best_total", "best_dino", "best_ir", "last_total",
    "optimise_seconds", "wall_seconds", "started_at", "finished_at", "host", "device",
    "run_dir", "notebook", "lora_path", "kohya_path", "result_image", "loss_plot", "run_json",
)
# --eval: the scores (from run.json's "evaluation"), placed after EVAL_AFTER; the metrics file last
EVAL_METRICS = ("dino", "clip_i", "clip_t", "ir", "diversity")  # evaluation.evaluate.METRICS
EVAL_COLUMNS = (*(f"eval_{m}" for m in EVAL_METRICS), *(f"eval_delta_{m}" for m in EVAL_METRICS), "eval_error")
EVAL_AFTER = "last_total"
EVAL_PATH_COLUMN = "eval_metrics"


class SweepError(ValueError):
    """A sweep that cannot start (bad spec); nothing was run."""


@dataclass
class SweepRun:
    name: str
    params: dict[str, Any]  # what the notebook gets (fixed + swept), before output_dir etc.
    swept: dict[str, Any]  # the swept part, for names and tables


@dataclass
class EvalOptions:
    """`--eval`: how each completed run is scored (siso-eval's settings; build with `eval_options`)."""

    seeds: int = 4  # seeds 0..N-1 per prompt (siso-eval --seeds)
    prompts: str | None = None  # a prompt file (siso-eval --prompts); None: the built-in prompts
    templates: list[str] | None = None  # the file's templates, read when the sweep is checked

    def to_dict(self) -> dict:
        return {"seeds": self.seeds, "prompts": self.prompts}


@dataclass
class Sweep:
    name: str
    grid: dict[str, list] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    notebook: Path = GENERATE_NOTEBOOK
    root: Path = SWEEPS_ROOT
    evaluation: EvalOptions | None = None  # --eval: score each completed run

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.name

    def runs(self) -> list[SweepRun]:
        keys = list(self.grid)
        runs = []
        for combination in itertools.product(*(self.grid[k] for k in keys)):
            swept = dict(zip(keys, combination))
            params = {**self.fixed, **swept}
            runs.append(SweepRun(run_name(swept, params), params, swept))
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise SweepError("two runs of the grid have the same parameters: remove the repeated values")
        return runs

    def to_dict(self) -> dict:
        spec = {"name": self.name, "grid": self.grid, "fixed": self.fixed, "notebook": str(self.notebook)}
        return spec | ({"eval": self.evaluation.to_dict()} if self.evaluation else {})


# ----------------------------------------------------------------------------- building a sweep
def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def run_name(swept: dict[str, Any], params: dict[str, Any]) -> str:
    """Readable name from the swept values + a hash of every parameter that changes the result."""
    parts = []
    for key, value in swept.items():
        shown = Path(str(value)).stem if key == "subject_image_path" else _format(value)
        parts.append(f"{SHORT_NAMES.get(key, key)}-{shown}")
    readable = re.sub(r"[^A-Za-z0-9_.+=-]+", "-", "__".join(parts)).strip("-")[:90] or "run"
    identity = {k: v for k, v in params.items() if k not in PLACEMENT}
    photo = identity.get("subject_image_path")
    if isinstance(photo, str) and Path(photo).is_file():
        # the photo is named by its content: another photo under the same name is another run
        from .images import file_sha256

        identity["subject_image_path"] = "sha256:" + file_sha256(photo)
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{readable}__{digest}"


def notebook_parameters(notebook: str | Path) -> list[str]:
    """The names the notebook's `parameters` cell defines (the notebook's own check reads them the same way)."""
    try:
        return notebook_parameter_names(notebook)
    except NotebookParameterError as error:
        raise SweepError(str(error)) from None


def check_values(params: dict[str, Any]) -> None:
    """Give every known parameter its type once, as the notebook will, so that a value the notebook
    would refuse ("abc" for a number, an unknown precision) stops the sweep before anything runs."""
    from .config import SISOConfig

    try:
        typed = {name: coerce_parameter(name, value) for name, value in params.items()}
        SISOConfig().replace(**{name: typed[name] for name in SISO_KNOBS if typed.get(name) is not None}).validate()
    except ValueError as error:
        raise SweepError(str(error)) from None


def build_sweep(
    name: str | None = None,
    grid: dict[str, list] | None = None,
    fixed: dict[str, Any] | None = None,
    subjects: list[str] | None = None,
    notebook: str | Path | None = None,
    root: str | Path | None = None,
    evaluation: EvalOptions | None = None,
) -> Sweep:
    """Check a sweep against the notebook's parameters cell and return it (SweepError if wrong)."""
    grid = {k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in (grid or {}).items()}
    fixed = dict(fixed or {})
    if subjects:
        grid["subject_image_path"] = list(subjects)
    # local paths absolute (what the runs record and are identified by), subject photos checked now
    fixed = _absolute_paths(fixed)
    grid = {key: [_absolute_paths({key: value})[key] for value in values] for key, values in grid.items()}
    for photo in [fixed.get("subject_image_path"), *grid.get("subject_image_path", [])]:
        if isinstance(photo, str) and photo and not Path(photo).is_file():
            raise SweepError(f"subject photo {photo!r} does not exist: check the path (relative paths start from the current folder, or a sweep file's folder)")
    notebook = Path(notebook) if notebook else GENERATE_NOTEBOOK
    if not notebook.is_file():
        raise SweepError(f"notebook {str(notebook)!r} does not exist")
    known = notebook_parameters(notebook)
    for where, keys in (("grid", grid), ("fixed", fixed)):
        for key in keys:
            if key in RESERVED:
                raise SweepError(f"{key!r} cannot be set in a sweep: the sweep sets it for every run")
            try:
                check_parameter_names([key], known, f"{where} parameter")
            except NotebookParameterError as error:
                raise SweepError(str(error)) from None
    for key, values in grid.items():
        if not values:
            raise SweepError(f"grid entry {key!r} has no values")
    both = sorted(set(grid) & set(fixed))
    if both:
        raise SweepError(f"{', '.join(both)} is both swept and fixed: keep one")
    if not name:
        name = "+".join(SHORT_NAMES.get(k, k) for k in grid) or "sweep"
    if not re.fullmatch(r"[A-Za-z0-9_.+=-]{1,100}", name) or name in (".", ".."):
        raise SweepError(f"sweep name {name!r}: use letters, digits and _ . + = - only")
    sweep = Sweep(name=name, grid=grid, fixed=fixed, notebook=notebook, root=Path(root or SWEEPS_ROOT).absolute(),
                  evaluation=evaluation)
    for run in sweep.runs():
        check_values(run.params)
    return sweep


def load_spec(path: str | Path) -> dict[str, Any]:
    """A sweep file, YAML or JSON:

        name: lr-rank                  # optional: default the file's name
        fixed: {models: offline, num_train_epochs: 30}   # every run ("base" works too)
        grid: {learning_rate: [1e-4, 2e-4], rank: [4, 8]} # every combination
        subjects: [data/cat.png, data/coffee.png]        # shorthand for grid.subject_image_path
        notebook: notebooks/01_generate_lora.ipynb       # optional
        eval: true                     # optional: score each completed run (--eval), or with options:
        eval: {seeds: 2, prompts: eval_prompts.txt}      # --eval-seeds, --eval-prompts
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {str(path)!r} does not exist: give a YAML or JSON file (name, grid, fixed, subjects)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SweepError(f"cannot read sweep file {str(path)!r}: {error}") from error
    if not isinstance(data, dict):
        raise SweepError(f"sweep file {str(path)!r} must hold a mapping (name, grid, fixed, subjects)")
    allowed = {"name", "grid", "fixed", "base", "subjects", "notebook", "eval"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SweepError(f"sweep file {str(path)!r}: unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(allowed))}")
    spec = {
        "name": data.get("name") or path.stem,
        "grid": data.get("grid") or {},
        "fixed": {**(data.get("base") or {}), **(data.get("fixed") or {})},
        "subjects": data.get("subjects"),
        "notebook": data.get("notebook"),
        "eval": _spec_eval(data.get("eval"), path),
    }
    # YAML reads 1e-4 as a string: give such values their number type
    spec["grid"] = {k: [_yaml_number(v) for v in (vs if isinstance(vs, list) else [vs])] for k, vs in spec["grid"].items()}
    spec["fixed"] = {k: _yaml_number(v) for k, v in spec["fixed"].items()}
    # a relative path in the file means a path next to the file (as in docker-compose or a Makefile)
    here = path.resolve().parent
    beside = lambda value: str(here / value) if isinstance(value, str) and value and not os.path.isabs(value) and (here / value).exists() else value  # noqa: E731
    if isinstance(spec["subjects"], list):
        spec["subjects"] = [beside(v) for v in spec["subjects"]]
    if spec["eval"] and spec["eval"].get("prompts"):
        spec["eval"]["prompts"] = beside(spec["eval"]["prompts"])
    for key in PATH_PARAMETERS:
        if key in spec["fixed"]:
            spec["fixed"][key] = beside(spec["fixed"][key])
        if key in spec["grid"]:
            spec["grid"][key] = [beside(v) for v in spec["grid"][key]]
    return spec


def _spec_eval(value: Any, path: Path) -> dict | None:
    """A sweep file's `eval`: true / false, or a mapping of its options ({} when on)."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict) and set(value) <= {"seeds", "prompts"}:
        return dict(value)
    raise SweepError(f"sweep file {str(path)!r}: eval must be true, false or a mapping such as {{seeds: 2, prompts: FILE}}, not {value!r}")


def eval_options(seeds: Any = None, prompts: str | None = None) -> EvalOptions:
    """--eval's settings, checked (a seed count of 1 or more; a readable prompt file); SweepError if not."""
    from .errors import SISOInputError
    from .evaluation.prompts import read_prompt_file

    if seeds is None:
        seeds = EvalOptions.seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) and not (isinstance(seeds, str) and seeds.strip().isdigit()):
        raise SweepError(f"eval seeds {seeds!r}: give a whole number of seeds per prompt, e.g. --eval-seeds 2")
    if int(seeds) < 1:
        raise SweepError(f"eval seeds {seeds}: give 1 or more seeds per prompt (diversity needs 2), e.g. --eval-seeds 2")
    templates = None
    if prompts:
        try:
            templates = read_prompt_file(prompts)
        except SISOInputError as error:
            raise SweepError(f"--eval-prompts: {error}") from None
        prompts = os.path.abspath(prompts)
    return EvalOptions(seeds=int(seeds), prompts=prompts or None, templates=templates)


def _yaml_number(value: Any) -> Any:
    return parse_value(value) if isinstance(value, str) and re.fullmatch(r"[-+]?[0-9.]+(e[-+]?[0-9]+)?", value, re.I) else value


def parse_grid_option(text: str) -> tuple[str, list]:
    """'rank=4,8' -> ('rank', [4, 8]); 'prompt=["a, b", "c"]' (a JSON list) for values with commas."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip():
        raise SweepError(f"--grid {text!r}: write NAME=V1,V2,... (or NAME=[JSON list])")
    values = values.strip()
    if values.startswith("["):
        try:
            parsed = json.loads(values)
        except ValueError as error:
            raise SweepError(f"--grid {text!r}: not a JSON list ({error})") from error
        return key.strip(), list(parsed)
    return key.strip(), [parse_value(v) for v in values.split(",") if v.strip()]


def parse_set_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SweepError(f"--set {text!r}: write NAME=VALUE")
    return key.strip(), parse_value(value)


# ----------------------------------------------------------------------------- running
def _absolute_paths(params: dict[str, Any]) -> dict[str, Any]:
    """Local paths absolute, as run.json records them (the notebook's kernel runs in notebooks/):
    the subject photo always, other paths when they exist (hub ids and timm names stay names)."""
    out = dict(params)
    for key in PATH_PARAMETERS:
        value = out.get(key)
        if isinstance(value, str) and value:
            out[key] = os.path.abspath(value) if key == "subject_image_path" else absolute_if_local(value)
    return out


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def _claim(run_dir: Path) -> bool:
    """Take a run for this process (atomic create of run_dir/.claim); reclaim a dead local holder's."""
    path = run_dir / CLAIM
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": now_iso()}
    for _attempt in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}
            same_host = holder.get("host") == me["host"]
            if same_host and (holder.get("pid") == me["pid"] or not _pid_alive(holder.get("pid"))):
                path.unlink(missing_ok=True)  # left by a process that is gone
                continue
            return False
        with os.fdopen(descriptor, "w") as handle:
            json.dump(me, handle)
        return True
    return False


def _release(run_dir: Path) -> None:
    (run_dir / CLAIM).unlink(missing_ok=True)


def _claimed_by_other(run_dir: Path) -> bool:
    path = run_dir / CLAIM
    if not path.exists():
        return False
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return True
    if holder.get("host") == socket.gethostname():
        return holder.get("pid") != os.getpid() and _pid_alive(holder.get("pid"))
    return True


def read_record(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None


def _run_json_fields(run_json: Path) -> dict[str, Any]:
    try:
        data = json.loads(run_json.read_text())
    except (OSError, ValueError):
        return {}
    history = data.get("history") or []
    losses = data.get("best_losses") or {}
    artifacts = data.get("artifacts") or {}
    parameters = data.get("parameters") or {}
    return {
        # the family that ran; records from before run.json stored it: the one the parameters name
        "model_family": data.get("model_family") or (parameters.get("model_family") if parameters.get("model_family") != "auto" else None),
        "run_status": data.get("status"),
        "run_error": data.get("error"),
        "steps_run": data.get("steps_run"),
        "best_step": data.get("best_step"),
        "stop_reason": data.get("stop_reason"),
        "best_total": losses.get("total"),
        "best_dino": losses.get("dino"),
        "best_ir": losses.get("ir"),
        "last_total": history[-1].get("total") if history else None,
        "optimise_seconds": data.get("elapsed_seconds"),
        "device": (data.get("runtime") or {}).get("device"),
        "lora_path": artifacts.get("lora_path"),
        "kohya_path": artifacts.get("kohya_path"),
        "result_image": artifacts.get("result_image"),
        "loss_plot": artifacts.get("loss_plot"),
        "run_json": str(run_json),
    }


def execute_sweep_run(
    sweep: Sweep,
    run: SweepRun,
    timeout: float | None = None,
    kernel_name: str | None = None,
    log_output: bool = False,
    guard: SignalGuard | None = None,
) -> dict[str, Any]:
    """Execute one run's notebook with papermill and write its record; never raises for a failed run.

    A run that fails on bad input (the notebook raised SISOInputError or NotebookParameterError)
    keeps only its record, `sweep_run.json`, which results.csv is built from; any other failure
    also keeps the executed notebook, whose traceback and output are the log. A SIGINT/SIGTERM
    (through `guard`) records the run as "interrupted" and raises `Interrupted`.
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
    parameters = {**_absolute_paths(run.params), "output_dir": str(run_dir.resolve()), "overwrite": True}
    started = time.perf_counter()
    error = None
    try:
        write_json(run_dir / RECORD, record)
        execute_generate_notebook(executed, parameters, notebook=sweep.notebook, kernel_name=kernel_name,
                                  log_output=log_output, execution_timeout=int(timeout) if timeout else None,
                                  guard=guard)
    except Interrupted as interruption:
        record.update(status="interrupted", error=f"interrupted by {interruption.signal_name}",
                      wall_seconds=round(time.perf_counter() - started, 3), finished_at=now_iso())
        write_json(run_dir / RECORD, record)
        raise
    except Exception as failure:  # noqa: BLE001 - every failure of one run is recorded, not raised
        error = describe_error(failure)
        if getattr(failure, "ename", None) in INPUT_ERRORS:  # bad input: the error line is the whole story
            executed.unlink(missing_ok=True)
            record["notebook"] = None
    record["wall_seconds"] = round(time.perf_counter() - started, 3)
    record["finished_at"] = now_iso()
    fields = _run_json_fields(run_dir / "run.json")
    run_status, run_error = fields.pop("run_status", None), fields.pop("run_error", None)
    if error is None and not fields:
        error = "the notebook finished but wrote no run.json"
    record.update(fields)
    if error is not None:
        record.update(status="failed", error=error)
    else:
        record.update(status=run_status or "failed", error=run_error)
    write_json(run_dir / RECORD, record)
    return record


# ----------------------------------------------------------------------------- scoring (--eval)
def evaluation_of(run_dir: Path) -> dict | None:
    """The "evaluation" entry of a run's run.json (what siso-eval or --eval wrote), or None."""
    try:
        entry = json.loads((Path(run_dir) / "run.json").read_text()).get("evaluation")
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) and entry.get("summary") else None


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
            write_json(Path(run_dir) / RECORD, record)
        return summary, error, time.perf_counter() - started

    def _evaluate(self, run_dir: Path, params: dict[str, Any]):
        from .evaluation.evaluate import EvalSettings, read_run
        from .model_paths import check_ir_checkpoint_path, check_local_base_model

        info = read_run(run_dir)
        check_local_base_model(info.base_model, info.model_family)
        ir_path = (info.run.get("parameters") or {}).get("ir_features_path")  # a run without IR is scored without it
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
        from .evaluation.defaults import DEFAULT_CLIP_PRETRAINED, judge_names

        *names, tiny = judge_names(base_model)
        names = tuple(names)
        if names not in self.evaluators:
            from .evaluation import Evaluator, Judges
            from .notebook_run import quiet_model_loading

            quiet_model_loading()
            device, precision = str(params.get("device") or "auto"), str(params.get("precision") or "auto")
            self.echo("--eval: loading the judges: " + (
                "the tiny random-weight DINO and CLIP of the offline models (the numbers test the plumbing, not the picture)"
                if tiny else f"DINO {names[0]}, CLIP {names[1]} ({DEFAULT_CLIP_PRETRAINED}), IR from each run"))
            judges = Judges.from_names(names[0], names[1], DEFAULT_CLIP_PRETRAINED, None, device=device)
            self.evaluators[names] = Evaluator(judges, device=device, precision=precision)
        return self.evaluators[names]


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
        row["status"] = "running" if _claimed_by_other(run_dir) else "pending"
        return row
    if record.get("status") == "running" and not _claimed_by_other(run_dir):
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


def _dry_run(sweep: Sweep, runs: list[SweepRun], retry_failed: bool, echo: Callable[[str], None]) -> SweepSummary:
    """List what a real invocation would do; read the run folders, write nothing."""
    echo(f"sweep {sweep.name}: {len(runs)} run(s) in {sweep.dir} (dry run: nothing is written)")
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
        to_run += 1
        again = f" again ({status} earlier)" if status else ""
        echo(f"{prefix}: would run{again} {json.dumps(run.params, default=str)}")
    scoring = f"; --eval: each run that completes would be scored, and {to_score} run(s) completed earlier without an evaluation" if sweep.evaluation else ""
    echo(f"sweep {sweep.name}: dry run: {to_run} would run, {summary.skipped} would be skipped{scoring}")
    return summary


def score_completed_run(sweep: Sweep, scorer: SweepScorer, run: SweepRun, summary: SweepSummary,
                        echo: Callable[[str], None], prefix: str) -> None:
    """--eval on a run completed earlier without a score: claimed while it is scored (a second
    driver skips it), then results.csv rewritten. Used by the local and the Ray sweep."""
    run_dir = sweep.dir / run.name
    if not scorer.wants(run_dir):
        return
    if not _claim(run_dir):
        echo(f"{prefix}: another process holds it: not scored now")
        return
    try:
        if scorer.wants(run_dir):  # not scored by another process meanwhile
            echo(f"{prefix}: scoring it (no evaluation yet) ...")
            echo(f"{prefix}: {_score(scorer, run, run_dir, summary)[1]}")
    finally:
        _release(run_dir)
    write_results(sweep)


def _score(scorer: SweepScorer, run: SweepRun, run_dir: Path, summary: SweepSummary) -> tuple[float, str]:
    """Score one completed run (its claim held): (seconds, what to say)."""
    from .evaluation.cli import format_summary

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
        return _dry_run(sweep, runs, retry_failed, echo)
    sweep.dir.mkdir(parents=True, exist_ok=True)
    write_json(sweep.dir / SPEC, sweep.to_dict())
    echo(f"sweep {sweep.name}: {len(runs)} run(s) in {sweep.dir}"
         + (f"; scoring each completed run ({sweep.evaluation.seeds} seed(s) per prompt)" if sweep.evaluation else ""))
    summary = SweepSummary(sweep, sweep.dir / RESULTS, [])
    scorer = SweepScorer(sweep.evaluation, echo) if sweep.evaluation else None
    durations: list[float] = []
    to_do = [r for r in runs if (read_record(sweep.dir / r.name) or {}).get("status") != "completed"]
    remaining = len(to_do)
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
                remaining -= 1
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            if not _claim(run_dir):
                summary.elsewhere += 1
                remaining -= 1
                echo(f"{prefix}: another process is running it, skipped")
                continue
            try:
                if (read_record(run_dir) or {}).get("status") == "completed":  # finished by another process meanwhile
                    summary.skipped += 1
                    remaining -= 1
                    echo(f"{prefix}: completed by another process, skipped")
                    if scorer is not None and scorer.wants(run_dir):
                        echo(f"{prefix}: {_score(scorer, run, run_dir, summary)[1]}")
                    continue
                swept = ", ".join(f"{SHORT_NAMES.get(k, k)}={_format(v)}" for k, v in run.swept.items())
                echo(f"{prefix}: running ({swept}) ...")
                record = execute_sweep_run(sweep, run, timeout=timeout, kernel_name=kernel_name,
                                           log_output=log_output, guard=guard)
                summary.ran += 1
                remaining -= 1
                seconds = record.get("wall_seconds") or 0.0
                if record["status"] == "completed":
                    losses = f"best {record.get('best_total'):+.4f} at iteration {record.get('best_step')}" if record.get("best_total") is not None else ""
                    said = f"{prefix}: completed in {record['wall_seconds']:.1f} s, {record.get('steps_run')} iterations, {losses}"
                    if scorer is not None:
                        echo(f"{said}; scoring it ...")
                        scoring_seconds, said = _score(scorer, run, run_dir, summary)
                        seconds += scoring_seconds
                        said = f"{prefix}: {said}"
                else:
                    summary.failed += 1
                    said = f"{prefix}: {record['status'].upper()} after {record['wall_seconds']:.1f} s: {record.get('error')}"
                durations.append(seconds)
                if remaining > 0 and durations:
                    said += f"; about {remaining * sum(durations) / len(durations):.0f} s left for {remaining} run(s)"
                echo(said)
            finally:
                _release(run_dir)
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
        scores = f", scored {summary.scored}" + (f" ({summary.eval_failed} evaluation(s) FAILED: eval_error)" if summary.eval_failed else "")
    echo(f"sweep {sweep.name}: {counts}; ran {summary.ran}, skipped {summary.skipped}{scores}; results: {summary.results_csv}")
    return summary


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="siso-sweep",
        description="Run notebooks/01_generate_lora.ipynb headless (papermill) over a parameter grid; "
        "collect outputs/sweeps/<name>/results.csv. Re-running skips completed runs.",
        epilog="example: siso-sweep --name lr-rank --set models=offline --grid learning_rate=1e-3,5e-3 "
        "--grid rank=2,4 --subjects data/cat.png data/coffee.png",
    )
    p.add_argument("spec", nargs="?", help="a sweep file (YAML or JSON: name, fixed, grid, subjects, notebook)")
    p.add_argument("--name", help="sweep name (folder under --output-root); default: the file's name or the swept keys")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                   help="sweep a notebook parameter over values (repeatable; NAME=[JSON list] for values with commas)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="fix a notebook parameter for every run")
    p.add_argument("--subjects", nargs="+", metavar="IMAGE", help="subject photos to sweep over")
    p.add_argument("--notebook", help=f"notebook to execute (default {GENERATE_NOTEBOOK.relative_to(REPO_ROOT)})")
    p.add_argument("--output-root", default=str(SWEEPS_ROOT), help="folder holding the sweeps (default %(default)s)")
    p.add_argument("--shard", default=None, help=argparse.SUPPRESS)  # removed: says to use --ray-address
    p.add_argument("--no-retry-failed", action="store_true", help="skip runs that failed before instead of trying them again")
    p.add_argument("--timeout", type=float, default=None, help="seconds one notebook cell may run before the run is failed")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    p.add_argument("--log-output", action="store_true", help="echo each run's notebook output (progress lines) to stderr")
    p.add_argument("--dry-run", action="store_true", help="list the runs that would run, run none")
    p.add_argument("--collect", action="store_true", help="only rebuild results.csv from the run folders")
    cluster = p.add_argument_group('several GPUs or machines (Ray: pip install "siso-lab[cluster]")')
    cluster.add_argument("--ray", action="store_true",
                         help="run each run as a Ray task on a local Ray started for the sweep (all this machine's GPUs)")
    cluster.add_argument("--ray-address", default=None, metavar="ADDR",
                         help="run on an existing Ray cluster (host:6379 of its head, or 'auto' on a cluster node)")
    cluster.add_argument("--ray-gpus", type=float, default=None, metavar="N",
                         help="GPUs per run (fractions share a GPU, e.g. 0.5); default 1 when the cluster has GPUs, else 0")
    cluster.add_argument("--ray-cpus", type=float, default=None, metavar="N", help="CPUs per run (default 1)")
    cluster.add_argument("--ray-retries", type=int, default=None, metavar="N",
                         help="times Ray runs a task again after losing its worker or node (default 3); "
                         "a run that fails in the notebook is recorded as failed, not retried")
    scores = p.add_argument_group("scores (siso-eval after each run; columns eval_* in results.csv)")
    scores.add_argument("--eval", action="store_true",
                        help="score each completed run's LoRA as siso-eval does (judges loaded once for the sweep); "
                        "runs completed earlier without an evaluation are scored too")
    scores.add_argument("--eval-seeds", type=int, default=None, metavar="N",
                        help="seeds 0..N-1 per prompt (default 4, as siso-eval; diversity needs 2 or more)")
    scores.add_argument("--eval-prompts", default=None, metavar="FILE",
                        help="prompt templates, one a line ({class} or DreamBench's {0} {1}); default: siso-eval's built-in prompts")
    return p


def sweep_from_args(args: argparse.Namespace) -> Sweep:
    spec: dict[str, Any] = {"name": None, "grid": {}, "fixed": {}, "subjects": None, "notebook": None}
    if args.spec:
        spec = load_spec(args.spec)
    swept_here = set()
    for text in args.grid:
        key, values = parse_grid_option(text)
        spec["grid"][key] = values
        swept_here.add(key)
    for text in args.set:
        key, value = parse_set_option(text)
        if key in swept_here:
            raise SweepError(f"{key} is given to both --grid and --set: sweep it or fix it, not both")
        spec["grid"].pop(key, None)  # --set overrides a sweep file's grid entry
        spec["fixed"][key] = value
    if args.timeout is not None and not args.timeout > 0:
        raise SweepError(f"--timeout {args.timeout:g}: give a positive number of seconds, or leave it out for no limit")
    subjects = args.subjects or spec.get("subjects")
    if not spec["grid"] and not subjects:
        raise SweepError("nothing to sweep: give a sweep file, --grid NAME=V1,V2 or --subjects")
    return build_sweep(
        name=args.name or spec.get("name"), grid=spec["grid"], fixed=spec["fixed"], subjects=subjects,
        notebook=args.notebook or spec.get("notebook"), root=args.output_root, evaluation=_eval_from_args(args, spec.get("eval")),
    )


def _eval_from_args(args: argparse.Namespace, from_file: dict | None) -> EvalOptions | None:
    """--eval and its options, over a sweep file's `eval`; None when the runs are not to be scored."""
    given = [name for name, value in (("--eval-seeds", args.eval_seeds), ("--eval-prompts", args.eval_prompts)) if value is not None]
    if not (args.eval or from_file is not None):
        if given:
            raise SweepError(f"{given[0]} sets how runs are scored, but scoring is off: add --eval (or eval: true in the sweep file)")
        return None
    if args.collect and (args.eval or given):
        raise SweepError("--collect only rebuilds results.csv (scores included); to score the completed runs, run the sweep with --eval and without --collect")
    from_file = from_file or {}
    seeds = args.eval_seeds if args.eval_seeds is not None else from_file.get("seeds")
    return eval_options(seeds, args.eval_prompts or from_file.get("prompts"))


def _strip_cell_output_newline(record) -> bool:
    """papermill logs each output chunk with its own newline: one line, not a line and a blank one."""
    record.msg = str(record.msg).rstrip("\n")
    return bool(record.msg.strip())


@dataclass
class RayOptions:
    """--ray / --ray-address and the resources of each run's task (sweep_ray.run_sweep_ray)."""

    address: str | None = None  # None: a local Ray started for the sweep
    gpus: float | None = None  # None: 1 when the cluster has GPUs, else 0
    cpus: float = 1.0
    retries: int = 3
    option: str = "--ray"  # what the user typed, for messages


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The Ray options, checked (SweepError); None without --ray / --ray-address."""
    if args.shard is not None:
        raise SweepError("--shard was removed: run the sweep on a Ray cluster with --ray-address ADDR "
                         "(or --ray on one machine with several GPUs)")
    given = [name for name, value in (("--ray-gpus", args.ray_gpus), ("--ray-cpus", args.ray_cpus),
                                      ("--ray-retries", args.ray_retries)) if value is not None]
    if not (args.ray or args.ray_address):
        if given:
            raise SweepError(f"{given[0]} sets the resources of Ray tasks: add --ray (a local Ray) or --ray-address ADDR")
        return None
    if args.ray and args.ray_address:
        raise SweepError("--ray starts a local Ray, --ray-address joins an existing cluster: give one of them")
    if args.ray_address is not None and not args.ray_address.strip():
        raise SweepError("--ray-address is empty: give the head node's address (host:6379), or 'auto' on a cluster node")
    if args.ray_gpus is not None and not args.ray_gpus >= 0:
        raise SweepError(f"--ray-gpus {args.ray_gpus:g}: give 0 or more GPUs per run (fractions such as 0.5 share a GPU)")
    if args.ray_cpus is not None and not args.ray_cpus > 0:
        raise SweepError(f"--ray-cpus {args.ray_cpus:g}: give more than 0 CPUs per run, e.g. 1")
    if args.ray_retries is not None and args.ray_retries < 0:
        raise SweepError(f"--ray-retries {args.ray_retries}: give 0 or more")
    if args.collect:
        raise SweepError("--collect only rebuilds results.csv from the run folders here: leave out --ray / --ray-address")
    return RayOptions(
        address=args.ray_address.strip() if args.ray_address else None, gpus=args.ray_gpus,
        cpus=args.ray_cpus if args.ray_cpus is not None else 1.0,
        retries=args.ray_retries if args.ray_retries is not None else 3,
        option="--ray-address" if args.ray_address else "--ray",
    )


def ray_available() -> bool:
    """Whether Ray can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 every run completed (and, with --eval, was scored); 1 some run failed, or its
    evaluation did (recorded in results.csv: error, eval_error); 2 bad sweep; 130 / 143 interrupted
    by SIGINT / SIGTERM (the current run is recorded as interrupted; a run being scored stays completed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    echo = lambda line: print(f"siso-sweep: {line}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        ray = ray_options(args)
        sweep = sweep_from_args(args)
    except SweepError as error:
        print(f"siso-sweep: error: {error}", file=sys.stderr)
        return 2
    if ray is not None and not ray_available():
        print(f'siso-sweep: error: {ray.option} needs Ray: pip install "siso-lab[cluster]"', file=sys.stderr)
        return 2
    if args.collect:
        echo(f"results: {write_results(sweep)}")
        return 0
    if args.dry_run:
        run_sweep(sweep, retry_failed=not args.no_retry_failed, dry_run=True, echo=echo)
        return 0
    if args.log_output:  # papermill logs each run's cell output at INFO
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("    %(message)s"))
        handler.addFilter(_strip_cell_output_newline)
        papermill_logger = logging.getLogger("papermill")
        papermill_logger.addHandler(handler)
        papermill_logger.setLevel(logging.INFO)
    try:
        with SignalGuard() as guard:
            if ray is not None:
                from .sweep_ray import run_sweep_ray

                summary = run_sweep_ray(
                    sweep, address=ray.address, gpus=ray.gpus, cpus=ray.cpus, retries=ray.retries,
                    retry_failed=not args.no_retry_failed, timeout=args.timeout, kernel_name=args.kernel,
                    log_output=args.log_output, echo=echo, guard=guard,
                )
            else:
                summary = run_sweep(
                    sweep, retry_failed=not args.no_retry_failed, timeout=args.timeout,
                    kernel_name=args.kernel, log_output=args.log_output, echo=echo, guard=guard,
                )
    except SweepError as error:  # found once connected to Ray (resources, address); nothing ran
        print(f"siso-sweep: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as interruption:
        if ray is not None:
            echo(f"interrupted by {interruption.signal_name}: the Ray tasks are cancelled, the runs that had started are "
                 f"marked interrupted in {sweep.dir / RESULTS}; run the same command again to go on")
        elif getattr(interruption, "while_scoring", False):
            echo(f"interrupted by {interruption.signal_name} while scoring a run: it stays completed, without an "
                 f"evaluation; run the same command again to go on ({sweep.dir / RESULTS})")
        else:
            echo(f"interrupted by {interruption.signal_name}: the current run is marked interrupted in "
                 f"{sweep.dir / RESULTS}; run the same command again to go on")
        return interruption.exit_code
    print(summary.results_csv)
    failed = any(row["status"] in ("failed", "interrupted") or row.get("eval_error") for row in summary.rows)
    return 1 if failed else 0


if __name__ == "__main__":
    # `python -m siso_lib.sweep`: run the package's module, not this __main__ copy of it, so that
    # siso_lib.sweep_ray raises the same SweepError class that main() catches
    from siso_lib.sweep import main as package_main

    raise SystemExit(package_main())
