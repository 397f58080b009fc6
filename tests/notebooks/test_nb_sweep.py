"""siso-sweep: a 2x2 grid gives 4 rows, a second invocation skips them, a failing run is a row
with its error (and the sweep goes on); plus the grid / file / claim logic, without running."""

from __future__ import annotations

import csv
import json
import os
import socket
import time

import pytest

from siso_lib.sweep import (
    CLAIM,
    RESULTS,
    SweepError,
    _claim,
    _release,
    build_sweep,
    load_spec,
    main,
    parse_grid_option,
    run_name,
    run_sweep,
)

from nb_helpers import TIMINGS, assets_dir, png_outputs


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_by_two_sweep_gives_four_completed_rows(small_sweep):
    sweep, summary = small_sweep["sweep"], small_sweep["summary"]
    rows = read_rows(sweep.dir / RESULTS)
    assert len(rows) == 4 and summary.ran == 4
    assert {(float(r["learning_rate"]), int(r["rank"])) for r in rows} == {(1e-3, 2), (1e-3, 4), (5e-3, 2), (5e-3, 4)}
    for row in rows:
        assert row["status"] == "completed", row
        assert row["steps_run"] == "2" and row["best_step"] in ("1", "2") and row["stop_reason"] == "max_steps"
        assert float(row["best_total"]) < 0 and float(row["wall_seconds"]) > 0 and row["error"] == ""
        for column in ("lora_path", "result_image", "run_json", "notebook"):
            assert os.path.isfile(row[column]), (column, row[column])
        assert png_outputs(row["notebook"]), "the executed notebook of each run holds its figures"
        run_json = json.loads(open(row["run_json"]).read())
        assert run_json["parameters"]["rank"] == int(row["rank"])
        assert run_json["parameters"]["learning_rate"] == float(row["learning_rate"])
    # progress across runs
    lines = small_sweep["lines"]
    assert any("[1/4]" in line for line in lines) and any("[4/4]" in line and "completed" in line for line in lines)


def test_second_invocation_skips_finished_runs(small_sweep):
    sweep = small_sweep["sweep"]
    before = {row["run"]: row["finished_at"] for row in read_rows(sweep.dir / RESULTS)}
    lines: list[str] = []
    started = time.perf_counter()
    summary = run_sweep(build_sweep(sweep.name, sweep.grid, sweep.fixed, root=sweep.root), echo=lines.append)
    seconds = time.perf_counter() - started
    TIMINGS["sweep 2x2 (second invocation, all skipped)"] = seconds
    assert summary.ran == 0 and summary.skipped == 4
    assert sum("completed earlier, skipped" in line for line in lines) == 4
    after = read_rows(sweep.dir / RESULTS)
    assert {row["run"]: row["finished_at"] for row in after} == before and seconds < 10


def test_failing_run_is_a_row_with_its_error_and_the_sweep_goes_on(tiny_assets, tmp_path, subject_path, capsys):
    spec = tmp_path / "fail.yaml"
    missing = tmp_path / "no-such-photo.png"
    spec.write_text(
        "fixed:\n  models: offline\n  num_train_epochs: 1\n"
        f"  assets_dir: {assets_dir(tiny_assets)}\n"
        f"subjects: [{missing}, {subject_path}]\n"
    )
    started = time.perf_counter()
    code = main([str(spec), "--output-root", str(tmp_path / "sweeps")])
    TIMINGS["sweep with a failing run (CLI, 2 runs)"] = time.perf_counter() - started
    assert code == 1  # some run failed; the sweep itself finished
    rows = read_rows(tmp_path / "sweeps" / "fail" / RESULTS)
    assert [row["status"] for row in rows] == ["failed", "completed"]
    assert "SISOInputError" in rows[0]["error"] and "does not exist" in rows[0]["error"]
    assert rows[0]["subject_image_path"] == str(missing)
    err = capsys.readouterr().err
    assert "FAILED" in err and "[2/2]" in err and "completed" in err


def test_grid_names_files_and_typos(tmp_path):
    assert parse_grid_option("rank=4,8") == ("rank", [4, 8])
    assert parse_grid_option("learning_rate=1e-4,2e-4") == ("learning_rate", [1e-4, 2e-4])
    assert parse_grid_option('prompt=["a cat, smiling", "a cat"]') == ("prompt", ["a cat, smiling", "a cat"])
    one = run_name({"rank": 4}, {"rank": 4, "models": "hub"})
    assert one.startswith("rank-4__") and one == run_name({"rank": 4}, {"rank": 4, "models": "hub"})
    assert one != run_name({"rank": 4}, {"rank": 4, "models": "offline"})  # fixed values are part of a run
    assert one == run_name({"rank": 4}, {"rank": 4, "models": "hub", "device": "cuda:1"})  # placement is not
    spec = tmp_path / "s.yaml"
    spec.write_text("grid:\n  learning_rate: [1e-4, 2e-4]\nbase: {rank: 8}\n")
    loaded = load_spec(spec)
    assert loaded["name"] == "s" and loaded["grid"]["learning_rate"] == [1e-4, 2e-4] and loaded["fixed"] == {"rank": 8}
    sweep = build_sweep(loaded["name"], loaded["grid"], loaded["fixed"], subjects=["a.png", "b.png"], root=tmp_path)
    assert len(sweep.runs()) == 4 and sweep.dir == tmp_path / "s"
    with pytest.raises(SweepError, match="learnig_rate"):
        build_sweep("x", {"learnig_rate": [1]}, root=tmp_path)
    with pytest.raises(SweepError, match="output_dir"):
        build_sweep("x", {"rank": [1]}, {"output_dir": "/tmp"}, root=tmp_path)
    assert main(["--grid", "rnak=1,2", "--output-root", str(tmp_path)]) == 2
    assert main(["--grid", "rank=1,2", "--output-root", str(tmp_path), "--dry-run"]) == 0
    assert [row["status"] for row in read_rows(tmp_path / "rank" / RESULTS)] == ["pending", "pending"]


def test_claims_keep_two_processes_off_the_same_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert _claim(run_dir)
    # a live process on this host holds it
    (run_dir / CLAIM).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
    assert not _claim(run_dir)
    # a holder that is gone: its claim is taken over
    (run_dir / CLAIM).write_text(json.dumps({"host": socket.gethostname(), "pid": 2 ** 22 + 12345}))
    assert _claim(run_dir)
    _release(run_dir)
    assert not (run_dir / CLAIM).exists()
