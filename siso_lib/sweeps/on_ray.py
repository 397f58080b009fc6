"""Sweeps on Ray (`siso-sweep --ray` / `--ray-address ADDR`; docs/sweeps.md says what users see).
Imported only for those options: the core install has no Ray.

Each run of the grid is one Ray task (`--ray-gpus`, `--ray-cpus`) in a fresh temporary folder on
its node: the notebook and the subject photo travel with the task, the notebook is executed as
the local sweep does (`local.execute_sweep_run`), and every file of the run folder comes back as
bytes, the node's temporary paths in the JSON files replaced by the driver's. The driver installs
each folder atomically (io.atomic.replace_folder) and rewrites results.csv as results arrive.
A lost worker is retried by Ray (`--ray-retries`); a run that fails in the notebook is recorded
as failed, not retried. SIGINT / SIGTERM cancels the tasks and marks the started runs
interrupted. Progress: a task tails the notebook's JSON-lines progress file (io/progress.py) and
reports to a small actor on the driver's node, never parsing printed text.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..cli.common import Interrupted
from ..io.atomic import remove_leftovers, replace_folder, write_json
from ..io.progress import read_progress
from ..io.run_record import now_iso
from ..notebooks.papermill import SignalGuard, describe_error
from ..text import count
from .local import execute_sweep_run
from .records import claim, read_record, release, write_record
from .results import SweepSummary, collect, write_results
from .scoring import SweepScorer, score_completed_run, score_run
from .spec import RECORD, RESULTS, SPEC, Sweep, SweepError, SweepRun

LOSS_EVERY = 5.0  # seconds between two loss lines of one run in the log
WORK_PREFIX = "siso-ray-"  # a task's temporary folder on its node
PROGRESS_FILE = "progress.jsonl"  # in the task's temporary folder: the notebook's progress records


# ----------------------------------------------------------------------------- on the worker
class ProgressBoard:
    """A Ray actor on the driver's node: tasks report starts and losses, the driver drains them."""

    def __init__(self):
        self.events: list[tuple] = []

    def start(self, run: str, node_id: str, node_ip: str) -> None:
        """A task began a run (the driver counts the attempts: this actor may be restarted)."""
        self.events.append(("start", run, node_id, node_ip))

    def step(self, run: str, step: int, total: int, loss: float) -> None:
        self.events.append(("step", run, step, total, loss))

    def drain(self) -> list[tuple]:
        events, self.events = self.events, []
        return events


class _Echo(logging.Handler):
    """--log-output: papermill logs the notebook's output lines; Ray forwards the worker's stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        if message.strip():
            print("    " + message.rstrip("\n"), file=sys.stderr, flush=True)


class _ProgressTail(threading.Thread):
    """Reads the run's progress file while the notebook runs and reports each iteration's loss."""

    def __init__(self, board, run: str, path: Path, every: float = 1.0):
        super().__init__(daemon=True)
        self.board, self.run, self.path, self.every = board, run, path, every
        self.stopped = threading.Event()
        self.offset = 0

    def poll(self) -> None:
        records, self.offset = read_progress(self.path, self.offset)
        for record in records:
            try:
                self.board.step.remote(self.run, int(record["step"]), int(record["total"]), float(record["loss"]))
            except Exception:  # noqa: BLE001 - progress is best effort; the run goes on
                return

    def run(self) -> None:  # noqa: D401 - threading's name
        while not self.stopped.wait(self.every):
            self.poll()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        self.poll()  # the last iterations


def replace_paths(data: Any, mapping: list[tuple[str, str]]) -> Any:
    """Every string in a JSON value with each `old` path replaced by its `new` (longest first)."""
    if isinstance(data, str):
        for old, new in mapping:
            if old in data:
                data = data.replace(old, new)
        return data
    if isinstance(data, list):
        return [replace_paths(value, mapping) for value in data]
    if isinstance(data, dict):
        return {replace_paths(key, mapping): replace_paths(value, mapping) for key, value in data.items()}
    return data


def folder_files(folder: Path, mapping: list[tuple[str, str]]) -> dict[str, bytes]:
    """{relative path: bytes} of every file under `folder`; JSON files (run.json, sweep_run.json,
    the executed notebook, eval/metrics.json) with the paths of `mapping` replaced."""
    import json

    mapping = sorted(mapping, key=lambda pair: len(pair[0]), reverse=True)
    files: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix in (".json", ".ipynb"):
            try:
                value = json.loads(data)
            except ValueError:
                pass
            else:
                indent = 1 if path.suffix == ".ipynb" else 2  # as nbformat and atomic.write_json write them
                data = (json.dumps(replace_paths(value, mapping), indent=indent, ensure_ascii=False) + "\n").encode()
        files[path.relative_to(folder).as_posix()] = data
    return files


def execute_remote(job: dict[str, Any], notebook: bytes, photo: bytes | None) -> dict[str, Any]:
    """The Ray task: one run of the sweep in a temporary folder on this node; returns its files.

    `job` holds the sweep's and the run's names, the run's parameters, and the driver's paths
    (run folder, notebook, subject photo) that the node's temporary ones are replaced by.
    A failed run is returned like a completed one (its record says why); only losing the worker
    raises, and Ray then runs the task again.
    """
    import ray

    context = ray.get_runtime_context()
    node_id, node_ip = context.get_node_id(), ray.util.get_node_ip_address()
    board = job.get("board")
    if board is not None:
        try:
            # not waited for: a task blocked in ray.get gives its CPU back to Ray, which would then
            # start more runs on the node than --ray-cpus allows (actor calls from one caller keep their order)
            board.start.remote(job["run"], node_id, node_ip)
        except Exception:  # noqa: BLE001 - progress is best effort
            board = None
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX)).resolve()
    papermill_logger = logging.getLogger("papermill")
    echo = _Echo(logging.INFO) if job.get("log_output") else None
    tail = _ProgressTail(board, job["run"], work / PROGRESS_FILE) if board is not None else None
    try:
        notebook_path = work / job["notebook_name"]
        notebook_path.write_bytes(notebook)
        params = dict(job["params"])
        mapping = [(str(work / "sweeps" / job["sweep"] / job["run"]), job["run_dir"]), (str(notebook_path), job["notebook"])]
        if photo is not None:
            photo_path = work / "photo" / Path(job["photo"]).name
            photo_path.parent.mkdir()
            photo_path.write_bytes(photo)
            params["subject_image_path"] = str(photo_path)
            mapping.append((str(photo_path), job["photo"]))
        mapping.append((str(work), str(Path(job["notebook"]).parent)))  # the kernel's working folder
        sweep = Sweep(name=job["sweep"], notebook=notebook_path, root=work / "sweeps")
        run = SweepRun(job["run"], params, job["swept"])
        if echo is not None:
            papermill_logger.addHandler(echo)
            papermill_logger.setLevel(logging.INFO)
            papermill_logger.propagate = False
        if tail is not None:
            tail.start()
        try:
            record = execute_sweep_run(sweep, run, timeout=job.get("timeout"), kernel_name=job.get("kernel_name"),
                                       log_output=echo is not None, progress_file=work / PROGRESS_FILE)
        finally:
            if tail is not None:
                tail.stop()
        record["ray"] = {"node_id": node_id, "node_ip": node_ip}  # the driver adds the attempt
        if photo is not None:
            record["subject_image_sha256"] = hashlib.sha256(photo).hexdigest()
        write_record(sweep.dir / run.name, record)
        return {"run": run.name, "status": record["status"], "files": folder_files(sweep.dir / run.name, mapping)}
    finally:
        if echo is not None:
            papermill_logger.removeHandler(echo)
            papermill_logger.propagate = True
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- on the driver
def install_run_folder(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write a returned run folder atomically over `run_dir` (io.atomic.replace_folder): a crash
    leaves either the old folder or the new one, never a half-written run."""
    with replace_folder(run_dir) as staging:
        for relative, data in files.items():
            target = (staging / relative).resolve()
            if staging.resolve() not in target.parents:
                raise ValueError(f"a returned file would land outside its run folder: {relative!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def connect(address: str | None, log_output: bool) -> bool:
    """ray.init: a new local Ray (address None) or an existing cluster; True if this call started
    or connected (and so shuts down at the end), False if Ray was already initialised here."""
    import ray

    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": log_output, "logging_level": logging.WARNING}
    if address is None:
        options.update(address="local", include_dashboard=False)
    else:
        check_reachable(address)
        options["address"] = address
    try:
        ray.init(**options)
    except (ConnectionError, ValueError, RuntimeError) as error:
        text = str(error).strip().splitlines()
        raise SweepError(f"cannot connect to Ray at {address!r}: {text[0] if text else type(error).__name__} "
                         "(give the head node's address, host:6379, or 'auto' on a cluster node)") from None
    return True


def check_reachable(address: str, seconds: float = 10.0) -> None:
    """A host:port address must answer before ray.init, which would wait minutes for a GCS that is
    not there ('auto' and ray:// addresses are left to Ray)."""
    import socket

    match = re.fullmatch(r"\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if not match:
        return
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=seconds).close()
    except OSError as error:
        raise SweepError(f"cannot reach the Ray cluster at {address}: {error.strerror or error} "
                         "(is `ray start --head` running there? give the head node's host:port, e.g. HEAD:6379)") from None


def task_resources(gpus: float | None, cpus: float) -> tuple[float, float]:
    """(GPUs, CPUs) per run; GPUs default to 1 when the cluster has a GPU, else 0. SweepError if
    no node of the cluster can ever give that much (Ray would wait forever)."""
    import ray

    nodes = [node.get("Resources") or {} for node in ray.nodes() if node.get("Alive")]
    cluster_gpus = sum(node.get("GPU", 0) for node in nodes)
    if gpus is None:
        gpus = 1.0 if cluster_gpus > 0 else 0.0
    if not any(node.get("GPU", 0) >= gpus and node.get("CPU", 0) >= cpus for node in nodes):
        largest = max(nodes, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)), default={})
        raise SweepError(
            f"no node of the Ray cluster has {count(gpus, 'GPU')} and {count(cpus, 'CPU')} for one run (the largest has "
            f"{count(largest.get('GPU', 0), 'GPU')}, {count(largest.get('CPU', 0), 'CPU')}): lower --ray-gpus / --ray-cpus")
    return gpus, cpus


def run_sweep_ray(
    sweep: Sweep,
    address: str | None = None,
    gpus: float | None = None,
    cpus: float = 1.0,
    retries: int = 3,
    retry_failed: bool = True,
    timeout: float | None = None,
    kernel_name: str | None = None,
    log_output: bool = False,
    echo: Callable[[str], None] = print,
    guard: SignalGuard | None = None,
    progress: bool = True,
) -> SweepSummary:
    """Run every (not yet completed) run of the sweep as a Ray task; see the module's docstring.

    With Ray already initialised in this process (tests, notebooks) that connection is used and
    kept; otherwise `address` None starts a local Ray for the sweep, and it is shut down at the end.
    """
    if not any(_needs_a_task(sweep, run, retry_failed) for run in sweep.runs()):
        # a resumed sweep with nothing left to run: no Ray to start (about 12 s) or to reach
        sweep.dir.mkdir(parents=True, exist_ok=True)
        echo(f"sweep {sweep.name}: {count(len(sweep.runs()), 'run')} in {sweep.dir}; nothing left to run on Ray")
        summary = SweepSummary(sweep, sweep.dir / RESULTS, [])
        scorer = SweepScorer(sweep.evaluation, echo) if sweep.evaluation else None
        _runs_to_submit(sweep, retry_failed, scorer, summary, echo)
        summary.rows = collect(sweep)
        summary.results_csv = write_results(sweep, summary.rows)
        _say_done(sweep, summary, scorer, echo)
        return summary

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from tqdm.auto import tqdm

    owns_ray = connect(address, log_output)
    if guard is not None:
        guard.reinstall()  # ray.init replaced the SIGTERM handler
    board = None
    try:
        gpus, cpus = task_resources(gpus, cpus)
        sweep.dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers(sweep.dir)
        write_json(sweep.dir / SPEC, sweep.to_dict())
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        echo(f"sweep {sweep.name}: {count(len(sweep.runs()), 'run')} in {sweep.dir}; on Ray ({count(len(nodes), 'node')}, "
             f"{count(gpus, 'GPU')} and {count(cpus, 'CPU')} per run)"
             + (f"; scoring each completed run on this machine ({count(sweep.evaluation.seeds, 'seed')} per prompt)" if sweep.evaluation else ""))
        summary = SweepSummary(sweep, sweep.dir / RESULTS, [])
        scorer = SweepScorer(sweep.evaluation, echo) if sweep.evaluation else None
        to_run = _runs_to_submit(sweep, retry_failed, scorer, summary, echo)
        if not to_run:
            summary.rows = collect(sweep)
            summary.results_csv = write_results(sweep, summary.rows)
            _say_done(sweep, summary, scorer, echo)
            return summary
        board = ray.remote(ProgressBoard).options(
            num_cpus=0, max_restarts=-1, max_task_retries=-1, scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True),
        ).remote()
        notebook_ref = ray.put(Path(sweep.notebook).read_bytes())
        photos: dict[str, Any] = {}
        task = ray.remote(execute_remote)
        in_flight: dict[Any, SweepRun] = {}
        for run in to_run:
            photo = run.params.get("subject_image_path")
            photo = photo if isinstance(photo, str) and photo else None
            if photo is not None and photo not in photos:
                photos[photo] = ray.put(Path(photo).read_bytes())
            job = {
                "sweep": sweep.name, "run": run.name, "params": run.params, "swept": run.swept,
                "notebook_name": Path(sweep.notebook).name, "notebook": str(Path(sweep.notebook).resolve()),
                "run_dir": str(sweep.dir / run.name), "photo": photo, "timeout": int(timeout) if timeout else None,
                "kernel_name": kernel_name, "log_output": log_output, "board": board,
            }
            # SPREAD: runs go to the least-loaded nodes first, so a sweep uses every machine at once
            # (the default packs them onto the driver's node while it has room)
            ref = task.options(num_cpus=cpus, num_gpus=gpus, max_retries=retries, retry_exceptions=False, scheduling_strategy="SPREAD",
                               name=f"siso-sweep:{run.name}").remote(job, notebook_ref, photos[photo] if photo else None)
            in_flight[ref] = run
        tracker = _Tracker(sweep, summary, echo, in_flight, progress, tqdm)
        try:
            _drive(ray, board, tracker, scorer, guard)
        except Interrupted:
            tracker.cancel(ray)
            summary.results_csv = write_results(sweep, tracker.rows())
            raise
        finally:
            tracker.close()
        summary.rows = collect(sweep)
        summary.results_csv = write_results(sweep, summary.rows)
        _say_done(sweep, summary, scorer, echo)
        return summary
    finally:
        if board is not None:
            try:
                ray.kill(board)
            except Exception:  # noqa: BLE001
                pass
        if owns_ray:
            ray.shutdown()


def _needs_a_task(sweep: Sweep, run: SweepRun, retry_failed: bool) -> bool:
    """Whether `_runs_to_submit` could send this run to Ray (not completed; not a failure kept by --no-retry-failed)."""
    status = (read_record(sweep.dir / run.name) or {}).get("status")
    return status != "completed" and not (status == "failed" and not retry_failed)


def _runs_to_submit(sweep: Sweep, retry_failed: bool, scorer: SweepScorer | None, summary: SweepSummary,
                    echo: Callable[[str], None]) -> list[SweepRun]:
    """The runs this invocation sends to Ray, each claimed (a second driver on this machine skips
    them); completed runs are skipped (and scored on the driver with --eval if they have no score)."""
    runs, to_run = sweep.runs(), []
    for position, run in enumerate(runs, 1):
        prefix = f"[{position}/{len(runs)}] {run.name}"
        run_dir = sweep.dir / run.name
        record = read_record(run_dir) or {}
        if record.get("status") == "completed":
            summary.skipped += 1
            echo(f"{prefix}: completed earlier, skipped")
            if scorer is not None:
                score_completed_run(sweep, scorer, run, summary, echo, prefix)
            continue
        if record.get("status") == "failed" and not retry_failed:
            summary.skipped += 1
            echo(f"{prefix}: failed earlier ({record.get('error')}), skipped (--no-retry-failed)")
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        if not claim(run_dir):
            summary.elsewhere += 1
            echo(f"{prefix}: another process is running it, skipped")
            continue
        to_run.append(run)
    return to_run


def _with_attempt(record: bytes, attempt: int | None) -> bytes:
    """sweep_run.json with "ray": {"attempt": N}: how many tasks the driver saw start for the run."""
    import json

    data = json.loads(record)
    data.setdefault("ray", {})["attempt"] = attempt
    return (json.dumps(data, indent=2, default=str) + "\n").encode()


class _Tracker:
    """The driver's view of the tasks in flight: the bar, the log lines, results.csv's "running"."""

    def __init__(self, sweep: Sweep, summary: SweepSummary, echo, in_flight: dict, progress: bool, tqdm):
        self.sweep, self.summary, self.echo, self.in_flight = sweep, summary, echo, in_flight
        self.started: dict[str, dict] = {}  # run name -> {"node", "attempt", "at", "clock"}
        self.attempts: dict[str, int] = {}  # run name -> tasks started for it (Ray's retries included)
        self.last_loss: dict[str, float] = {}
        self.done = self.failed = 0
        self.bar = tqdm(total=len(in_flight), desc=f"sweep {sweep.name}", unit="run", file=sys.stderr,
                        disable=not progress, dynamic_ncols=True, leave=True)
        self._update_bar()

    def say(self, line: str) -> None:
        with self.bar.external_write_mode(file=sys.stderr):
            self.echo(line)

    def _update_bar(self, refresh: bool = True) -> None:
        running = sum(1 for run in self.in_flight.values() if run.name in self.started)
        self.bar.set_postfix_str(f"done {self.done}, failed {self.failed}, running {running}", refresh=refresh)

    def events(self, events: list[tuple]) -> None:
        now = time.monotonic()
        for event in events:
            if event[0] == "start":
                _, run, node_id, node_ip = event
                attempt = self.attempts[run] = self.attempts.get(run, 0) + 1
                self.started[run] = {"node": node_id, "attempt": attempt, "at": now_iso(), "clock": time.perf_counter()}
                again = f" (attempt {attempt}: Ray runs it again after losing its worker)" if attempt and attempt > 1 else ""
                self.say(f"{run}: started on node {node_ip} ({node_id[:12]}){again}")
                self.write()
            elif event[0] == "step":
                _, run, step, total, loss = event
                if run in self.last_loss and now - self.last_loss[run] < LOSS_EVERY and step < total:
                    continue
                self.last_loss[run] = now
                self.say(f"{run}: iteration {step}/{total}, loss {loss:+.4f}")
        if events:
            self._update_bar()

    def rows(self) -> list[dict[str, Any]]:
        rows = collect(self.sweep)
        running = {run.name for run in self.in_flight.values() if run.name in self.started}
        for row in rows:
            if row["run"] in running and row["status"] in ("pending", "failed", "interrupted"):
                row["status"], row["error"] = "running", ""
        return rows

    def write(self) -> None:
        write_results(self.sweep, self.rows())

    def finished(self, ref, result: dict | None, error: BaseException | None) -> SweepRun:
        run = self.in_flight[ref]
        run_dir = self.sweep.dir / run.name
        if result is not None:
            files = dict(result["files"])
            files[RECORD] = _with_attempt(files[RECORD], self.attempts.get(run.name))
            install_run_folder(run_dir, files)  # the claimed folder is replaced as a whole
            release(run_dir)
            record = read_record(run_dir) or {}
        else:
            record = self._lost_record(run, error)
            write_record(run_dir, record)
            release(run_dir)
        del self.in_flight[ref]  # only now: a signal during the install leaves it to cancel()
        self.summary.ran += 1
        if record.get("status") == "completed":
            self.done += 1
            best = f", best {record['best_total']:+.4f} at iteration {record.get('best_step')}" if record.get("best_total") is not None else ""
            where = (record.get("ray") or {}).get("node_ip")
            self.say(f"{run.name}: completed in {record.get('wall_seconds', 0):.1f} s on {where}, "
                     f"{count(record.get('steps_run') or 0, 'iteration')}{best}")
        else:
            self.failed += 1
            self.summary.failed += 1
            self.say(f"{run.name}: {str(record.get('status')).upper()} after {record.get('wall_seconds') or 0:.1f} s: {record.get('error')}")
        self.started.pop(run.name, None)
        self._update_bar(refresh=False)
        self.bar.update(1)
        return run

    def _lost_record(self, run: SweepRun, error: BaseException | None) -> dict[str, Any]:
        """A task that raised: its worker was lost more often than Ray retries, or the task itself
        broke outside the notebook."""
        started = self.started.get(run.name) or {}
        cause = getattr(error, "cause", None) or error
        return {
            "run": run.name, "status": "failed", "error": f"Ray: {describe_error(cause) if cause else 'the task failed'}",
            "params": run.params, "swept": run.swept, "started_at": started.get("at"), "finished_at": now_iso(),
            "wall_seconds": round(time.perf_counter() - started["clock"], 3) if started else None,
            "run_dir": str(self.sweep.dir / run.name), "notebook": None,
            "ray": {"node_id": started.get("node"), "attempt": started.get("attempt")},
        }

    def cancel(self, ray) -> None:
        """SIGINT / SIGTERM: cancel every task; the runs that had started are interrupted, the others
        stay pending. Their claims are released."""
        for ref in self.in_flight:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - finished meanwhile, or its node is gone
                pass
        signal_name = "a signal"
        for ref, run in self.in_flight.items():
            run_dir = self.sweep.dir / run.name
            started = self.started.get(run.name)
            if started is not None:
                record = {
                    "run": run.name, "status": "interrupted", "error": f"interrupted by {self.signal_name or signal_name}",
                    "params": run.params, "swept": run.swept, "started_at": started["at"], "finished_at": now_iso(),
                    "wall_seconds": round(time.perf_counter() - started["clock"], 3), "run_dir": str(run_dir),
                    "ray": {"node_id": started["node"], "attempt": started["attempt"]},
                }
                write_record(run_dir, record)
            release(run_dir)
            if started is None and run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()
        self.interrupted = sum(1 for run in self.in_flight.values() if run.name in self.started)
        self.started.clear()

    signal_name: str | None = None
    interrupted = 0

    def close(self) -> None:
        self.bar.close()


def _drive(ray, board, tracker: _Tracker, scorer: SweepScorer | None, guard: SignalGuard | None = None) -> None:
    """Wait for the tasks; install each result as it arrives; drain the progress board.

    A signal that arrives while Ray's own wait or get runs comes out of Ray's C code as a plain
    KeyboardInterrupt (it drops the guard's `Interrupted`): it is read back as the guard's signal.
    """
    from ray.exceptions import RayError

    while tracker.in_flight:
        try:
            ready, _ = ray.wait(list(tracker.in_flight), num_returns=1, timeout=1.0)
            _drain(ray, board, tracker)
            for ref in ready:
                try:
                    result, error = ray.get(ref), None
                except RayError as failure:
                    result, error = None, failure
                run = tracker.finished(ref, result, error)
                run_dir = tracker.sweep.dir / run.name
                if scorer is not None and result is not None and scorer.wants(run_dir):
                    tracker.say(f"{run.name}: scoring it on this machine ...")
                    tracker.say(f"{run.name}: {score_run(scorer, run, run_dir, tracker.summary)[1]}")
                tracker.write()
        except KeyboardInterrupt as interruption:
            if not isinstance(interruption, Interrupted):
                interruption = Interrupted(guard.signum if guard is not None and guard.signum else signal.SIGINT)
            tracker.signal_name = interruption.signal_name
            try:
                _drain(ray, board, tracker)
            except KeyboardInterrupt:
                pass  # a second signal while recording: what was drained is enough
            raise interruption from None


def _drain(ray, board, tracker: _Tracker) -> None:
    try:
        events = ray.get(board.drain.remote(), timeout=10)
    except KeyboardInterrupt:
        raise
    except Exception:  # noqa: BLE001 - progress is best effort
        return
    tracker.events(events)


def _say_done(sweep: Sweep, summary: SweepSummary, scorer: SweepScorer | None, echo: Callable[[str], None]) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()))
    scores = ""
    if scorer is not None:
        scores = f", scored {summary.scored}" + (f" ({count(summary.eval_failed, 'evaluation')} FAILED: eval_error)" if summary.eval_failed else "")
    echo(f"sweep {sweep.name}: {counts}; ran {summary.ran} on Ray, skipped {summary.skipped}{scores}; results: {summary.results_csv}")

