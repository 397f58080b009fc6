"""siso-sweep on Ray (issue 13): a real two-node Ray cluster on this machine (ray.cluster_utils:
a head and a worker node, one CPU each), the tiny models, the 2x2 grid of the local sweep's test.

* a 2x2 sweep on the two nodes completes, and its results.csv equals the local default's;
* a worker node killed while it runs a run: Ray runs the task again, the sweep completes, and no
  half-written folder or pending row is left;
* SIGINT to a `siso-sweep --ray` process (a local Ray of its own) cancels the tasks, marks the
  run that had started interrupted, keeps the completed one, and a rerun would resume;
plus the pieces (atomic install of a returned folder, path replacement, options, packaging)."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip("ray", reason='siso-sweep --ray needs Ray: pip install "ray>=2.40"')

from siso_lib.sweeps.records import CLAIM, claimed_by_other
from siso_lib.sweeps.spec import RECORD, RESULTS, SweepError, build_sweep
from siso_lib.cli.sweep import RAY_INSTALL, main  # noqa: E402
from siso_lib.sweeps.on_ray import WORK_PREFIX, check_reachable, folder_files, install_run_folder, run_sweep_ray  # noqa: E402

from nb_helpers import REPO, TIMINGS, assets_dir, read_json  # noqa: E402

OBJECT_STORE = 100 * 1024**2  # bytes per node: a tiny run returns well under 1 MB
# columns that must be equal between the local default and Ray: what was run and what came out.
# Not compared: optimise_seconds, wall_seconds, started_at, finished_at, host (when and where it
# ran), device (it names the CPU threads: Ray gives each task its --ray-cpus threads); paths are
# compared relative to each sweep's folder; the losses to float32 precision (other thread counts
# add the same numbers in another order: they differ by ~1e-7).
SAME = ("run", "status", "error", "learning_rate", "rank", "model_family", "models", "assets_dir", "num_train_epochs",
        "steps_run", "best_step", "stop_reason")
LOSSES = ("best_total", "best_dino", "best_ir", "last_total")
PATHS = ("run_dir", "notebook", "lora_path", "kohya_path", "result_image", "loss_plot", "run_json")


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and a worker node (one CPU each, no dashboard) on this machine; this process is
    its driver. `worker` is replaced when a test kills it and adds another."""
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        started = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "object_store_memory": OBJECT_STORE, "include_dashboard": False})
        worker = cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        cluster.wait_for_nodes()
        TIMINGS["Ray cluster, 2 nodes (start)"] = time.perf_counter() - started
        try:
            yield {"cluster": cluster, "head": cluster.head_node, "worker": worker}
        finally:
            ray.shutdown()
            cluster.shutdown()


def same_sweep(local, root, **changes):
    return build_sweep(changes.get("name", local.name), changes.get("grid", local.grid), local.fixed, root=root)


def assert_like_the_local_run(row: dict, local_row: dict, sweep_dir: Path, local_dir: Path) -> None:
    assert {c: row[c] for c in SAME} == {c: local_row[c] for c in SAME}, (row, local_row)
    for column in LOSSES:
        assert float(row[column]) == pytest.approx(float(local_row[column]), rel=1e-5, abs=1e-6), column
    for column in PATHS:
        assert os.path.relpath(row[column], sweep_dir) == os.path.relpath(local_row[column], local_dir), column
        assert os.path.isfile(row[column]) or column == "run_dir", (column, row[column])
    ours, theirs = Path(row["run_dir"]), Path(local_row["run_dir"])
    # the same files (a local run keeps its claim's lock file; a run from Ray arrives without one)
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir() if p.name != ".claim")
    for name in ("run.json", RECORD, "01_generate_lora.ipynb"):  # the node's temporary paths are gone
        text = (ours / name).read_text()
        assert WORK_PREFIX not in text and str(ours) in text, name
    parameters = read_json(ours / "run.json")["parameters"]
    assert parameters == read_json(theirs / "run.json")["parameters"]  # the photo and the models: the same paths


def test_two_by_two_sweep_on_two_nodes_equals_the_local_default(ray_cluster, small_sweep, tmp_path):
    local = small_sweep["sweep"]
    sweep = same_sweep(local, tmp_path)
    lines: list[str] = []
    started = time.perf_counter()
    summary = run_sweep_ray(sweep, echo=lines.append, progress=False)
    TIMINGS["sweep 2x2 on 2 Ray nodes (cluster up)"] = time.perf_counter() - started
    assert summary.ran == 4 and summary.failed == 0, lines
    rows, local_rows = read_rows(sweep.dir / RESULTS), read_rows(local.dir / RESULTS)
    assert list(rows[0]) == list(local_rows[0]) and len(rows) == 4
    for row, local_row in zip(rows, local_rows):
        assert_like_the_local_run(row, local_row, sweep.dir, local.dir)
    nodes = {read_json(Path(row["run_dir"]) / RECORD)["ray"]["node_id"] for row in rows}
    assert nodes == {ray_cluster["head"].node_id, ray_cluster["worker"].node_id}, "the runs were spread over both nodes"
    assert sum(": started on node " in line for line in lines) == 4
    assert any(re.search(r": iteration \d/2, loss [-+]\d", line) for line in lines), "each run's latest loss is logged"
    assert sum(": completed in " in line for line in lines) == 4 and "4 completed; ran 4 on Ray" in lines[-1]
    assert not list(sweep.dir.glob(".*")) and not any(claimed_by_other(run) for run in sweep.dir.iterdir() if run.is_dir())
    # a second invocation submits nothing and changes nothing
    again: list[str] = []
    summary = run_sweep_ray(same_sweep(local, tmp_path), echo=again.append, progress=False)
    assert summary.ran == 0 and summary.skipped == 4 and read_rows(sweep.dir / RESULTS) == rows
    assert sum("completed earlier, skipped" in line for line in again) == 4
    assert "nothing left to run on Ray" in again[0]
    # nothing left to run: Ray is not even reached (an address where nothing listens is fine)
    summary = run_sweep_ray(same_sweep(local, tmp_path), address="127.0.0.1:9", echo=[].append, progress=False)
    assert summary.ran == 0 and summary.skipped == 4 and read_rows(sweep.dir / RESULTS) == rows


def test_a_worker_node_lost_mid_run_is_retried_and_the_sweep_completes(ray_cluster, small_sweep, tmp_path):
    """The worker node is removed (its raylet and workers killed) while it runs a run; another
    node joins. Ray runs the lost task again; nothing of the lost attempt reaches the sweep."""
    local = small_sweep["sweep"]
    sweep = same_sweep(local, tmp_path, name=local.name, grid={"learning_rate": [1e-3], "rank": [2, 4]})
    cluster = ray_cluster["cluster"]
    if not any(node["NodeID"] == ray_cluster["worker"].node_id and node["Alive"] for node in ray.nodes()):
        # a worker that died under an earlier test's load (a busy 2-core CI machine) is replaced first
        ray_cluster["worker"] = cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        cluster.wait_for_nodes()
    lost = ray_cluster["worker"]
    lines: list[str] = []
    killed: dict[str, str] = {}

    def echo(line: str) -> None:
        lines.append(line)
        if not killed and f"({lost.node_id[:12]})" in line and ": started on node " in line:
            time.sleep(2)  # the notebook's kernel is starting or loading the models: mid-run
            cluster.remove_node(lost)
            killed["run"] = line.split(":", 1)[0]
            ray_cluster["worker"] = cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)

    started = time.perf_counter()
    summary = run_sweep_ray(sweep, echo=echo, progress=False)
    TIMINGS["sweep 2 runs on Ray, worker node killed mid-run"] = time.perf_counter() - started
    assert killed, f"no run started on the worker node:\n{lines}"
    assert summary.ran == 2 and summary.failed == 0, lines
    rows = read_rows(sweep.dir / RESULTS)
    assert [row["status"] for row in rows] == ["completed", "completed"], rows
    local_rows = {row["run"]: row for row in read_rows(local.dir / RESULTS)}
    for row in rows:
        assert_like_the_local_run(row, local_rows[row["run"]], sweep.dir, local.dir)
    retried = read_json(sweep.dir / killed["run"] / RECORD)["ray"]
    assert retried["attempt"] == 2 and retried["node_id"] != lost.node_id, retried
    assert any(line.startswith(f"{killed['run']}: started on node") and "attempt 2" in line for line in lines), lines
    assert sorted(p.name for p in sweep.dir.iterdir()) == sorted([RESULTS, "sweep.json", *(row["run"] for row in rows)]), \
        "no temporary or half-written folder"


def raylets() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] and "raylet" in p.info["name"]}


def kernels_since(moment: float) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "create_time"]):
        command = " ".join(process.info["cmdline"] or [])
        if "ipykernel_launcher" in command and process.info["create_time"] >= moment - 1:
            found.append(process)
    return found


def test_sigint_cancels_the_ray_tasks_marks_the_run_interrupted_and_a_rerun_resumes(ray_cluster, tiny_assets, tmp_path):
    """`siso-sweep --ray` (its own local Ray, two CPUs): a 1-iteration run completes while a
    5000-iteration run optimises; SIGINT then cancels, marks that run interrupted, exits 130 after
    one line, and stops the local Ray and the kernel. The rerun would skip the completed run."""
    arguments = [
        "--name", "long", "--output-root", str(tmp_path), "--set", "models=offline", "--set", f"assets_dir={assets_dir(tiny_assets)}",
        "--set", "early_stopping_max_count=5000", "--set", "early_stopping_threshold_percentage=0", "--grid", "num_train_epochs=1,5000",
    ]
    before, moment = raylets(), time.time()
    process = subprocess.Popen([sys.executable, "-m", "siso_lib.cli.sweep", "--ray", *arguments], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    said: list[str] = []
    try:
        completed = iterating = False
        for line in process.stderr:
            said.append(line)
            completed |= "num_train_epochs-1__" in line and ": completed in " in line
            iterating |= "num_train_epochs-5000__" in line and ": iteration " in line
            if completed and iterating:
                break
        else:
            pytest.fail("the sweep ended before it could be interrupted:\n" + "".join(said))
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=90)
        after = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 130, after
    # one line of ours besides a progress line that was already on its way ("...: iteration N/5000, loss ...")
    ours = [line for line in re.split(r"[\r\n]+", after) if line.startswith("siso-sweep:") and ": iteration " not in line]
    assert len(ours) == 1 and ours[0].startswith("siso-sweep: interrupted by SIGINT: the Ray tasks are cancelled"), after
    assert "Traceback" not in after
    rows = read_rows(tmp_path / "long" / RESULTS)
    assert [(row["num_train_epochs"], row["status"]) for row in rows] == [("1", "completed"), ("5000", "interrupted")], rows
    assert rows[1]["error"] == "interrupted by SIGINT" and float(rows[1]["wall_seconds"]) > 0
    assert not any(claimed_by_other(run) for run in (tmp_path / "long").iterdir() if run.is_dir())
    assert not list((tmp_path / "long").glob(".*"))
    deadline = time.time() + 30
    while time.time() < deadline and (raylets() - before or kernels_since(moment)):
        time.sleep(1)
    assert not raylets() - before, "the local Ray of the sweep is stopped"
    assert not kernels_since(moment), "the notebook kernel ended with its cancelled worker"
    # the same command again: the completed run is skipped, the interrupted one runs again
    done = subprocess.run([sys.executable, "-m", "siso_lib.cli.sweep", "--ray", "--dry-run", *arguments], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "num_train_epochs-1__" in done.stderr and "completed earlier, would be skipped" in done.stderr
    assert "would run again (interrupted earlier)" in done.stderr


def test_resources_no_node_can_give_are_refused_before_anything_runs(ray_cluster, tmp_path):
    sweep = build_sweep("gpu", {"rank": [2]}, {"models": "offline"}, root=tmp_path)
    with pytest.raises(SweepError, match=r"no node of the Ray cluster has 1 GPU and 1 CPU for one run \(the largest has 0 GPUs, .*lower --ray-gpus"):
        run_sweep_ray(sweep, gpus=1, echo=lambda line: None, progress=False)
    with pytest.raises(SweepError, match=r"has 0 GPUs and 4 CPUs.*the largest has 0 GPUs, 1 CPU\)"):
        run_sweep_ray(sweep, cpus=4, echo=lambda line: None, progress=False)
    assert not sweep.dir.exists()



def test_eval_with_ray_scores_each_run_on_the_driver_once_its_files_arrive(ray_cluster, tiny_assets, tmp_path):
    from siso_lib.sweeps.spec import eval_options

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a {class}\n")
    sweep = build_sweep("scored", {"rank": [2]}, {"models": "offline", "assets_dir": assets_dir(tiny_assets), "num_train_epochs": 1},
                        root=tmp_path / "sweeps", evaluation=eval_options(1, str(prompts)))
    lines: list[str] = []
    started = time.perf_counter()
    summary = run_sweep_ray(sweep, echo=lines.append, progress=False)
    TIMINGS["sweep 1 run on Ray with --eval (1 prompt x 1 seed)"] = time.perf_counter() - started
    assert summary.ran == 1 and summary.scored == 1 and summary.eval_failed == 0, lines
    (row,) = read_rows(sweep.dir / RESULTS)
    evaluation = read_json(row["run_json"])["evaluation"]
    assert row["status"] == "completed" and row["eval_error"] == "" and float(row["eval_dino"]) == evaluation["summary"]["lora"]["dino"]
    assert Path(row["eval_metrics"]).parent == Path(row["run_dir"]) / "eval" and os.path.isfile(row["eval_metrics"])
    assert any(line.endswith(": scoring it on this machine ...") for line in lines) and "scored 1" in lines[-1]

# ----------------------------------------------------------------------------- the pieces (no Ray)
def test_a_returned_folder_replaces_the_run_folder_atomically(tmp_path, monkeypatch):
    run_dir = tmp_path / "sweep" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / CLAIM).write_text("{}")
    (run_dir / "old.ipynb").write_text("an earlier failed attempt")
    install_run_folder(run_dir, {"run.json": b"{}", "eval/metrics.json": b"[]", "lora.safetensors": b"\x00\x01"})
    assert sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")) == ["eval", "eval/metrics.json", "lora.safetensors", "run.json"]
    assert (run_dir / "lora.safetensors").read_bytes() == b"\x00\x01" and oct(run_dir.stat().st_mode & 0o777) != "0o700"
    assert os.listdir(tmp_path / "sweep") == ["run"], "no temporary folder left"
    # a failure while writing (disk full, a signal): the folder is as it was, nothing half-written
    calls = []

    def failing_fsync(descriptor):
        calls.append(descriptor)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        install_run_folder(run_dir, {"run.json": b'{"new": 1}', "result.png": b"png"})
    assert (run_dir / "run.json").read_bytes() == b"{}" and not (run_dir / "result.png").exists()
    assert os.listdir(tmp_path / "sweep") == ["run"]
    with pytest.raises(ValueError, match="outside its run folder"):
        install_run_folder(run_dir, {"../escape.txt": b"x"})
    assert not (tmp_path / "sweep" / "escape.txt").exists() and os.listdir(tmp_path / "sweep") == ["run"]


def test_the_nodes_temporary_paths_are_replaced_in_the_json_files_only(tmp_path):
    work = tmp_path / "siso-ray-abc"
    run = work / "sweeps" / "s" / "r"
    (run / "eval").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"output_dir": str(run), "parameters": {"subject_image_path": str(work / "photo" / "cat.png")},
                                              "working_directory": str(work), "artifacts": [str(run / "result.png")]}))
    (run / "eval" / "metrics.json").write_text(json.dumps({"images": {str(run / "eval" / "a.png"): 0.5}}))
    (run / "nb.ipynb").write_text(json.dumps({"cells": [{"source": [f"writing to `{run}`"]}]}))
    (run / "broken.json").write_text(f"not json {run}")
    (run / "lora.safetensors").write_bytes(str(run).encode())
    mapping = [(str(work), "/repo/notebooks"), (str(run), "/out/s/r"), (str(work / "photo" / "cat.png"), "/data/cat.png")]
    files = folder_files(run, mapping)
    assert json.loads(files["run.json"]) == {"output_dir": "/out/s/r", "parameters": {"subject_image_path": "/data/cat.png"},
                                            "working_directory": "/repo/notebooks", "artifacts": ["/out/s/r/result.png"]}
    assert json.loads(files["eval/metrics.json"]) == {"images": {"/out/s/r/eval/a.png": 0.5}}
    assert json.loads(files["nb.ipynb"]) == {"cells": [{"source": ["writing to `/out/s/r`"]}]}
    assert files["broken.json"] == f"not json {run}".encode() and files["lora.safetensors"] == str(run).encode()


@pytest.mark.slow
def test_a_missing_ray_is_one_line_before_anything_runs(tmp_path):
    script = (
        "import json, sys\nsys.modules['ray'] = None  # as if Ray were not installed\n"
        "from siso_lib.cli.sweep import main\n"
        "code = main(json.loads(sys.argv[1]))\n"
        "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules}))\n"
    )
    for option in (["--ray"], ["--ray-address", "10.0.0.1:6379"]):
        done = subprocess.run([sys.executable, "-c", script, json.dumps(["--grid", "rank=2,4", "--output-root", str(tmp_path), *option])],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result == {"code": 2, "torch": False}, done.stderr
        assert done.stderr.strip().splitlines() == [f'siso-sweep: error: {option[0]} needs Ray: {RAY_INSTALL}']
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("arguments", "said"), [
    (["--ray-gpus", "1"], "--ray-gpus sets the resources of Ray tasks: add --ray"),
    (["--ray", "--ray-address", "10.0.0.1:6379"], "give one of them"),
    (["--ray", "--ray-gpus", "-1"], "--ray-gpus -1: give 0 or more GPUs per run"),
    (["--ray", "--ray-cpus", "0"], "--ray-cpus 0: give more than 0 CPUs"),
    (["--ray", "--collect"], "--collect only rebuilds results.csv"),
])
def test_ray_options_that_cannot_work_are_refused(arguments, said, tmp_path, capsys):
    assert main(["--grid", "rank=2,4", "--output-root", str(tmp_path), *arguments]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err
    assert not list(tmp_path.iterdir())


def test_an_address_where_no_ray_answers_is_one_line_at_once():
    """ray.init would wait minutes for a head that is not there."""
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(SweepError, match=rf"cannot reach the Ray cluster at 127.0.0.1:{port}: .*HEAD:6379"):
        check_reachable(f"127.0.0.1:{port}")
    assert time.perf_counter() - started < 10
    check_reachable("auto")  # left to Ray

def test_ray_is_an_extra_not_a_core_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(re.match(r"ray\b", dependency) for dependency in project["dependencies"])
    assert any(dependency.startswith("ray") for dependency in project["optional-dependencies"]["cluster"])
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().split() if "==" in line)
    assert pins["ray"] == ray.__version__, "constraints.txt pins the tested Ray"
    assert "cluster" in (REPO / "Makefile").read_text().split("-e \".[", 1)[1].split("]", 1)[0], "make test installs the extra"



def test_a_signal_inside_rays_own_wait_is_read_back_as_the_guards_signal():
    """Ray's C code turns the guard's Interrupted into a plain KeyboardInterrupt when the signal
    lands inside ray.wait/ray.get (a fresh-user trial saw a traceback and runs left "running"):
    _drive raises the guard's Interrupted, so the caller cancels and marks the runs."""
    import signal
    import types

    from siso_lib.cli.common import Interrupted
    from siso_lib.sweeps.on_ray import _drive

    def wait(*args, **kwargs):
        raise KeyboardInterrupt

    fake_ray = types.SimpleNamespace(wait=wait, get=lambda *a, **k: [])
    tracker = types.SimpleNamespace(in_flight={"ref": "run"}, signal_name=None, events=lambda events: None)
    board = types.SimpleNamespace(drain=types.SimpleNamespace(remote=lambda: None))
    guard = types.SimpleNamespace(signum=signal.SIGTERM)
    with pytest.raises(Interrupted) as caught:
        _drive(fake_ray, board, tracker, None, guard)
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_code == 143 and tracker.signal_name == "SIGTERM"
    with pytest.raises(Interrupted) as caught:
        _drive(fake_ray, board, tracker, None, None)  # no guard: Ctrl-C
    assert caught.value.exit_code == 130
