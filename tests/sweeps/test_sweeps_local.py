"""siso-sweep: a 2x2 grid gives 4 rows, a second invocation skips them, a failing run is a row
with its error (and the sweep goes on); plus the grid / file / claim logic, without running."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import shutil
import time

import psutil
import pytest

from siso_lib.sweeps.records import claim, claimed_by_other, release
from siso_lib.sweeps.results import EVAL_COLUMNS, EVAL_METRICS, write_results
from siso_lib.sweeps.spec import RESULTS, SweepError, build_sweep, load_spec, parse_grid_option, run_name
from siso_lib.cli.sweep import build_parser, main, sweep_from_args
from siso_lib.sweeps.local import run_sweep

from nb_helpers import REPO, TIMINGS, assets_dir, png_outputs, read_json


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
        assert row["model_family"] == "sdxl"  # "auto", read from the tiny SDXL folder, as the run did
    # progress across runs
    lines = small_sweep["lines"]
    assert any("[1/4]" in line for line in lines) and any("[4/4]" in line and "completed" in line for line in lines)


@pytest.mark.slow
def test_sweep_over_model_families_runs_each_familys_tiny_model(family_assets, tmp_path):
    """A grid over model_family: each run gets its family's tiny model and recipe; results.csv has a
    row per family, and the report labels and groups the runs by it."""
    from siso_lib.io.lora import read_metadata
    from siso_lib.notebooks.sweep_report import load_sweep, loss_overlay_figure

    sweep = build_sweep(
        name="families", grid={"model_family": ["sdxl", "flux", "flux2_klein"]},
        fixed={"models": "offline", "assets_dir": assets_dir(family_assets), "num_train_epochs": 2}, root=tmp_path,
    )
    lines: list[str] = []
    started = time.perf_counter()
    summary = run_sweep(sweep, echo=lines.append)
    TIMINGS["sweep over model_family [sdxl, flux, flux2_klein] (3 runs)"] = time.perf_counter() - started
    rows = read_rows(sweep.dir / RESULTS)
    assert summary.ran == 3 and [row["model_family"] for row in rows] == ["sdxl", "flux", "flux2_klein"], lines
    for row in rows:
        family = row["model_family"]
        assert row["status"] == "completed" and row["steps_run"] == "2", row
        parameters = read_json(row["run_json"])["parameters"]
        assert parameters["model_family"] == family and parameters["pretrained_model_name_or_path"] == family_assets[family]
        assert read_metadata(row["lora_path"])["siso.model_family"] == family
    assert os.path.isfile(rows[0]["kohya_path"]) and rows[1]["kohya_path"] == rows[2]["kohya_path"] == ""  # Kohya: SDXL only
    report = load_sweep(sweep.dir)
    assert report.families == ["sdxl", "flux", "flux2_klein"] and report.swept == ["model_family"]
    assert sorted(report.label(row) for row in report.rows) == ["model_family=flux", "model_family=flux2_klein", "model_family=sdxl"]
    assert [len(runs) for runs in report.by_family().values()] == [1, 1, 1]
    summary_html = report.family_summary_html()
    for family in ("sdxl", "flux", "flux2_klein"):
        assert f"<td style='text-align:left'>{family}</td><td style='text-align:left'>1</td><td style='text-align:left'>1</td>" in summary_html
    styles = {line.get_linestyle() for line in loss_overlay_figure(report).axes[0].get_lines() if line.get_marker() in ("None", None, "")}
    assert len(styles) == 3, "one line style per family"


def test_report_labels_runs_by_family_when_the_families_differ_unswept(tmp_path):
    """A sweep over base models ("auto"): the family is not swept, yet the runs differ in it."""
    from siso_lib.notebooks.sweep_report import load_sweep

    folder = tmp_path / "bases"
    folder.mkdir()
    (folder / "results.csv").write_text(
        "run,status,error,pretrained_model_name_or_path,model_family,best_total\n"
        "a,completed,,/m/sdxl,sdxl,-1.5\nb,completed,,/m/flux,flux,-1.7\nc,failed,boom,/m/sana,auto,\n"
    )
    (folder / "sweep.json").write_text(json.dumps({"grid": {"pretrained_model_name_or_path": ["/m/sdxl", "/m/flux", "/m/sana"]}}))
    report = load_sweep(folder)
    assert report.families == ["sdxl", "flux", "auto"]
    assert report.label(report.rows[1]) == "model_family=flux, pretrained_model_name_or_path=/m/flux"
    assert [row["run"] for row in report.by_family()["flux"]] == ["b"]
    table = report.table_html()
    assert "<th style='text-align:left'>model_family</th>" in table and table.index("/m/flux") < table.index("/m/sdxl")  # best first
    assert "-1.7000" in report.family_summary_html()
    # a results.csv written before FLUX and Sana has no model_family column: no family anywhere
    (folder / "results.csv").write_text("run,status,error,best_total\na,completed,,-1.5\n")
    old = load_sweep(folder)
    assert old.families == [] and "model_family" not in old.table_html()


def test_report_ranks_scored_runs_and_plots_each_score_against_each_swept_parameter(tmp_path):
    """results.csv with siso-sweep --eval's columns (written here): ranking by any score, highest
    first; unscored runs after; failed evaluations listed; one panel per parameter and score."""
    from siso_lib.notebooks.sweep_report import load_sweep, score_column, scores_figure

    folder = tmp_path / "scored"
    folder.mkdir()
    header = "run,status,error,learning_rate,rank,model_family,best_total,eval_dino,eval_clip_t,eval_ir,eval_delta_dino,eval_delta_clip_t,eval_delta_ir,eval_error\n"
    (folder / "results.csv").write_text(header + "".join([
        "a,completed,,0.0001,4,sdxl,-1.5,0.61,0.30,0.70,0.10,-0.01,0.20,\n",
        "b,completed,,0.001,4,sdxl,-1.7,0.72,0.25,0.65,0.21,-0.06,0.15,\n",
        "c,completed,,0.0001,8,sdxl,-1.6,0.55,0.31,0.80,0.04,0.00,0.30,\n",
        "d,completed,,0.001,8,sdxl,-1.8,,,,,,,SISOInputError: IR checkpoint '/x.pth' does not exist\n",
        "e,failed,boom,0.01,8,sdxl,,,,,,,,\n",
    ]))
    (folder / "sweep.json").write_text(json.dumps({"grid": {"learning_rate": [1e-4, 1e-3, 1e-2], "rank": [4, 8]}}))
    report = load_sweep(folder)
    assert report.has_scores
    assert [r["run"] for r in report.ranked_rows("dino")] == ["b", "a", "c", "d", "e"]
    assert [r["run"] for r in report.ranked_rows("ir")][:3] == ["c", "a", "b"]
    assert [r["run"] for r in report.ranked_rows("delta_clip_t")][:3] == ["c", "a", "b"]
    assert score_column("eval_clip_t") == "eval_clip_t" and score_column("Delta_IR") == "eval_delta_ir"
    with pytest.raises(ValueError, match="rank_by 'dinoo' is not a score: use one of dino, clip_i"):
        score_column("dinoo")
    table = report.ranking_html("clip_t")
    assert "CLIP-T (LoRA - base) ▼" in table and "CLIP-I" not in table  # only the scores results.csv has
    assert table.index("0.300 (-0.010)") > table.index("0.310 (+0.000)") > 0  # c (0.31) before a (0.30)
    assert "<code>d</code>: SISOInputError: IR checkpoint" in table and "Evaluations that failed" in table
    figure = scores_figure(report, "ir")
    assert len(figure.axes) == 2 * 3  # (learning_rate, rank) x (DINO, CLIP-T, IR)
    assert [ax.get_title() for ax in figure.axes[:3]] == ["IR  (ranking)", "DINO", "CLIP-T"]
    assert scores_figure(report, "delta_ir").axes[0].get_title() == "IR  (ranking: LoRA - base)"
    assert "No run has a eval_clip_i score" in report.ranking_html("clip_i") and "No run has" not in table
    lr_ir = figure.axes[0]
    assert lr_ir.get_xscale() == "log"  # 1e-4 .. 1e-3: a factor of 10
    lora_lines = [line for line in lr_ir.get_lines() if line.get_linestyle() == "-"]
    assert sorted(line.get_label() for line in lora_lines) == ["rank=4", "rank=8"]  # one line per value of the other parameter
    base = [line for line in lr_ir.get_lines() if line.get_label() == "base model (same seeds)"]
    assert len(base) == 1 and list(base[0].get_ydata()) == pytest.approx([0.70 - 0.20, 0.65 - 0.15])
    # a results.csv without scores: nothing to rank
    (folder / "results.csv").write_text("run,status,error,learning_rate,rank,best_total\na,completed,,0.0001,4,-1.5\n")
    assert not load_sweep(folder).has_scores


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


@pytest.mark.slow
def test_failing_run_is_a_row_with_its_error_and_the_sweep_goes_on(tiny_assets, tmp_path, subject_path, capsys):
    spec = tmp_path / "fail.yaml"
    missing = tmp_path / "not-a-photo.png"  # exists (so the sweep starts) but the run refuses it
    missing.write_text("these bytes are not a picture")
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
    assert "SISOInputError" in rows[0]["error"] and "not an image file" in rows[0]["error"]
    assert rows[0]["subject_image_path"] == str(missing)
    # bad input leaves only the record results.csv is built from (the error line says it all)
    failed_dir = tmp_path / "sweeps" / "fail" / rows[0]["run"]
    # only the run's record (and its claim's lock file, which stays as a lock file should)
    assert sorted(p.name for p in failed_dir.iterdir() if p.name != ".claim") == ["sweep_run.json"] and rows[0]["notebook"] == ""
    err = capsys.readouterr().err
    assert "FAILED" in err and "[2/2]" in err and "completed" in err


def test_grid_names_files_and_typos(tmp_path):
    # the command line's values stay text; the sweep gives each its parameter's type
    assert parse_grid_option("rank=4,8") == ("rank", ["4", "8"])
    assert parse_grid_option("learning_rate=1e-4,2e-4") == ("learning_rate", ["1e-4", "2e-4"])
    assert parse_grid_option('prompt=["a cat, smiling", "a cat"]') == ("prompt", ["a cat, smiling", "a cat"])
    assert parse_grid_option("prompt=[1984, 2.50, 1e-4]") == ("prompt", ["1984", "2.50", "1e-4"])  # the text written
    with pytest.raises(SweepError, match=r"^--grid 'rank=\[4,': not a JSON list \("):
        parse_grid_option("rank=[4,")
    one = run_name({"rank": 4}, {"rank": 4, "models": "hub"})
    assert one.startswith("rank-4__") and one == run_name({"rank": 4}, {"rank": 4, "models": "hub"})
    assert one != run_name({"rank": 4}, {"rank": 4, "models": "offline"})  # fixed values are part of a run
    assert one == run_name({"rank": 4}, {"rank": 4, "models": "hub", "device": "cuda:1"})  # placement is not
    spec = tmp_path / "s.yaml"
    spec.write_text("grid:\n  learning_rate: [1e-4, 2e-4]\nbase: {rank: 8}\n")
    loaded = load_spec(spec)
    assert loaded["name"] == "s" and loaded["grid"]["learning_rate"] == ["1e-4", "2e-4"] and loaded["fixed"] == {"rank": "8"}
    for photo in ("a.png", "b.png"):
        (tmp_path / photo).write_bytes(b"photo " + photo.encode())
    sweep = build_sweep(loaded["name"], loaded["grid"], loaded["fixed"], subjects=[str(tmp_path / "a.png"), str(tmp_path / "b.png")], root=tmp_path)
    assert len(sweep.runs()) == 4 and sweep.dir == tmp_path / "s"
    assert sweep.grid["learning_rate"] == [1e-4, 2e-4] and sweep.fixed == {"rank": 8}
    with pytest.raises(SweepError, match="learnig_rate"):
        build_sweep("x", {"learnig_rate": [1]}, root=tmp_path)
    with pytest.raises(SweepError, match="output_dir"):
        build_sweep("x", {"rank": [1]}, {"output_dir": "/tmp"}, root=tmp_path)
    assert main(["--grid", "rnak=1,2", "--output-root", str(tmp_path)]) == 2


@pytest.mark.parametrize("source", ["grid option", "set option", "json list", "json list unquoted", "yaml quoted", "yaml plain",
                                    "json file", "json file unquoted"])
def test_a_text_parameter_keeps_the_text_written(tmp_path, source):
    """Field report: `--grid prompt=1984,2001`, `--set prompt=007` and `prompt: ["1984"]` in a sweep
    file were turned into numbers, then refused as "prompt must be text"."""
    texts = {"grid option": ["--grid", "prompt=1984,007"], "set option": ["--set", "prompt=007", "--grid", "rank=4"],
             "json list": ["--grid", 'prompt=["1984", "007"]'], "json list unquoted": ["--grid", "prompt=[1984, 007]"]}
    if source in texts:
        sweep = sweep_from_args(build_parser().parse_args([*texts[source], "--output-root", str(tmp_path)]))
    else:
        spec = tmp_path / ("s.json" if source.startswith("json file") else "s.yaml")
        spec.write_text({"yaml quoted": 'grid: {prompt: ["1984", "007"]}\n', "yaml plain": "grid: {prompt: [1984, 007]}\n",
                         "json file": '{"grid": {"prompt": ["1984", "007"]}}',
                         "json file unquoted": '{"grid": {"prompt": [1984, 007]}}'}[source])
        sweep = sweep_from_args(build_parser().parse_args([str(spec), "--output-root", str(tmp_path)]))
    prompts = [run.params["prompt"] for run in sweep.runs()]
    assert prompts == (["007"] if source == "set option" else ["1984", "007"])
    assert all(isinstance(prompt, str) for prompt in prompts)
    numbers = sweep_from_args(build_parser().parse_args(["--grid", "rank=4,8", "--set", "learning_rate=1e-4", "--output-root", str(tmp_path)]))
    assert [run.params["rank"] for run in numbers.runs()] == [4, 8] and numbers.fixed["learning_rate"] == 1e-4


def test_dry_run_lists_the_runs_and_writes_nothing(tmp_path, small_sweep, capsys):
    root = tmp_path / "sweeps"
    assert main(["--grid", "rank=1,2", "--output-root", str(root), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert err.count(": would run {") == 2 and "nothing is written" in err
    assert not root.exists(), "a dry run writes nothing (no results.csv, sweep.json or folders)"
    # over an existing sweep: it reads the run folders and still changes nothing
    sweep = small_sweep["sweep"]
    before = sorted((p, p.stat().st_mtime_ns) for p in sweep.dir.rglob("*"))
    assert main(["--name", sweep.name, "--output-root", str(sweep.root), "--dry-run",
                 "--grid", "learning_rate=1e-3,5e-3", "--grid", "rank=2,4", *sum((["--set", f"{k}={v}"] for k, v in sweep.fixed.items()), [])]) == 0
    assert capsys.readouterr().err.count("completed earlier, would be skipped") == 4
    assert sorted((p, p.stat().st_mtime_ns) for p in sweep.dir.rglob("*")) == before


def _eval_cells(row: dict, variant_prefix: str = "eval_") -> dict[str, float | None]:
    return {m: (float(row[variant_prefix + m]) if row[variant_prefix + m] != "" else None) for m in EVAL_METRICS}


def test_eval_sweep_scores_each_run_with_judges_loaded_once(eval_sweep):
    """--eval: results.csv has the scores of each run, equal to its run.json evaluation; one
    Evaluator for the sweep, its DINO and CLIP loaded once for the two runs."""
    sweep, summary, calls = eval_sweep["sweep"], eval_sweep["summary"], eval_sweep["calls"]
    assert summary.ran == 2 and summary.scored == 2 and summary.eval_failed == 0, eval_sweep["lines"]
    rows = read_rows(sweep.dir / RESULTS)
    header = list(rows[0])
    assert header[header.index("last_total") + 1 : header.index("last_total") + 1 + len(EVAL_COLUMNS)] == list(EVAL_COLUMNS)
    assert header[-1] == "eval_metrics"
    for row in rows:
        assert row["status"] == "completed" and row["eval_error"] == "", row
        evaluation = read_json(row["run_json"])["evaluation"]
        lora, delta = _eval_cells(row), _eval_cells(row, "eval_delta_")
        assert lora == evaluation["summary"]["lora"] and delta == evaluation["summary"]["delta"], (row, evaluation)
        for metric in ("dino", "clip_i", "clip_t", "ir"):
            assert -1.0 <= lora[metric] <= 1.0 and -2.0 <= delta[metric] <= 2.0, (metric, lora, delta)
        assert 0.0 <= lora["seed_diversity"] <= 2.0  # 1 - cos, 2 seeds per prompt
        metrics = read_json(row["eval_metrics"])
        assert metrics["summary"] == evaluation["summary"] and metrics["seeds"] == [0, 1]
        assert metrics["prompts"] == ["a photo of a cat", "a cat on the beach"]  # --eval-prompts, class from the run's prompt
        assert metrics["judges"]["ir"] == read_json(row["run_json"])["parameters"]["ir_features_path"]  # the run's own IR
        assert os.path.isfile(os.path.join(row["run_dir"], "eval", "grid.png"))
    assert rows[0]["eval_dino"] != rows[1]["eval_dino"], "two LoRAs, two scores"
    # the judges: loaded once, by one Evaluator that scored both runs
    assert len(calls["load_dino"]) == 1 and len(calls["load_clip"]) == 1, calls
    assert len(calls["evaluate"]) == 2 and len(set(calls["evaluate"])) == 1, calls
    assert sum("loading the judges" in line for line in eval_sweep["lines"]) == 1
    assert sum(": scored in " in line for line in eval_sweep["lines"]) == 2


def test_resumed_eval_sweep_does_not_score_again_and_collect_reads_the_scores(eval_sweep, monkeypatch):
    from siso_lib.evaluation import Evaluator, Judges

    sweep = eval_sweep["sweep"]
    before = read_rows(sweep.dir / RESULTS)
    evaluated_at = [read_json(row["run_json"])["evaluation"]["evaluated_at"] for row in before]
    loads = []
    monkeypatch.setattr(Judges, "from_names", classmethod(lambda cls, *a, **k: loads.append(a) or pytest.fail("judges loaded")))
    monkeypatch.setattr(Evaluator, "evaluate", lambda self, *a, **k: pytest.fail("scored again"))
    lines: list[str] = []
    summary = run_sweep(build_sweep(sweep.name, sweep.grid, sweep.fixed, root=sweep.root, evaluation=sweep.evaluation), echo=lines.append)
    assert summary.ran == 0 and summary.skipped == 2 and summary.scored == 0 and not loads
    assert sum("completed earlier, skipped" in line for line in lines) == 2 and not any("scor" in line.split(":", 1)[1] for line in lines[1:-1])
    assert read_rows(sweep.dir / RESULTS) == before
    assert [read_json(row["run_json"])["evaluation"]["evaluated_at"] for row in before] == evaluated_at
    # results.csv rebuilt without --eval (siso-sweep --collect): the scores come back from run.json
    (sweep.dir / RESULTS).unlink()
    arguments = ["--name", sweep.name, "--output-root", str(sweep.root), "--grid", "rank=2,4", "--collect",
                 *sum((["--set", f"{k}={v}"] for k, v in sweep.fixed.items()), [])]
    assert main(arguments) == 0
    assert read_rows(sweep.dir / RESULTS) == before


@pytest.mark.slow
def test_failed_evaluation_is_recorded_and_a_later_eval_scores_the_completed_run(tiny_assets, tmp_path, capsys, monkeypatch):
    """A run completed without --eval is scored by a later --eval invocation; an evaluation that
    fails (its IR checkpoint is gone) is an eval_error, the run stays completed, exit code 1."""
    from siso_lib.evaluation import Judges

    ir = tmp_path / "ir_features.pth"
    shutil.copy(os.path.join(assets_dir(tiny_assets), "ir_features.pth"), ir)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a {class} in the snow\n")
    arguments = ["--name", "later", "--output-root", str(tmp_path / "sweeps"), "--grid", "rank=2", "--set", "models=offline",
                 "--set", f"assets_dir={assets_dir(tiny_assets)}", "--set", "num_train_epochs=1", "--set", f"ir_features_path={ir}"]
    started = time.perf_counter()
    assert main(arguments) == 0
    results = tmp_path / "sweeps" / "later" / RESULTS
    (row,) = read_rows(results)
    assert row["status"] == "completed" and "eval_dino" not in row, "no scores, no eval columns"
    ir.rename(tmp_path / "moved.pth")
    capsys.readouterr()
    scoring = [*arguments, "--eval", "--eval-seeds", "1", "--eval-prompts", str(prompts)]
    assert main(scoring) == 1
    (row,) = read_rows(results)
    assert row["status"] == "completed" and row["error"] == "" and row["eval_dino"] == "", row
    assert row["eval_error"].startswith("SISOInputError: IR checkpoint") and "does not exist" in row["eval_error"], row
    record = read_json(row["run_json"])
    assert record["status"] == "completed" and "evaluation" not in record
    err = capsys.readouterr().err
    assert "completed earlier, skipped" in err and "EVALUATION FAILED" in err and "1 evaluation FAILED" in err
    (tmp_path / "moved.pth").rename(ir)
    loads = []
    monkeypatch.setattr(Judges, "load_dino", lambda self, name, original=Judges.load_dino: loads.append(name) or original(self, name))
    assert main(scoring) == 0
    TIMINGS["sweep, then --eval twice (1 run, 1 prompt x 1 seed)"] = time.perf_counter() - started
    (row,) = read_rows(results)
    evaluation = read_json(row["run_json"])["evaluation"]
    assert row["eval_error"] == "" and _eval_cells(row) == evaluation["summary"]["lora"] and len(loads) == 1
    assert row["eval_seed_diversity"] == "" and evaluation["summary"]["lora"]["seed_diversity"] is None  # 1 seed: no seed diversity
    assert evaluation["seeds"] == [0] and evaluation["prompts"] == 1


@pytest.mark.slow
def test_eval_sweep_whose_runs_all_fail_loads_no_judge(tmp_path, monkeypatch):
    from siso_lib.evaluation import Judges

    monkeypatch.setattr(Judges, "from_names", classmethod(lambda cls, *a, **k: pytest.fail("judges loaded for failed runs")))
    photo = tmp_path / "not-a-photo.png"
    photo.write_text("not a picture")
    lines: list[str] = []
    from siso_lib.sweeps.spec import eval_options

    sweep = build_sweep("fails", {"rank": [2]}, {"models": "offline", "num_train_epochs": 1}, subjects=[str(photo)],
                        root=tmp_path, evaluation=eval_options(1))
    summary = run_sweep(sweep, echo=lines.append)
    assert summary.failed == 1 and summary.scored == 0 and summary.eval_failed == 0
    (row,) = read_rows(sweep.dir / RESULTS)
    assert row["status"] == "failed" and "eval_dino" not in row


def test_interrupted_while_scoring_leaves_the_run_completed_and_says_one_line(small_sweep, monkeypatch, capsys):
    """SIGINT while a completed run is being scored (no kernel runs: the guard raises at once)."""
    from siso_lib.cli.common import Interrupted
    from siso_lib.sweeps.scoring import SweepScorer

    sweep = small_sweep["sweep"]
    before = read_rows(sweep.dir / RESULTS)

    def interrupted(self, run_dir, params):
        raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(SweepScorer, "_evaluate", interrupted)
    capsys.readouterr()
    code = main(["--name", sweep.name, "--output-root", str(sweep.root), "--grid", "learning_rate=1e-3,5e-3", "--grid", "rank=2,4",
                 "--eval", *sum((["--set", f"{k}={v}"] for k, v in sweep.fixed.items()), [])])
    assert code == 130
    said = capsys.readouterr().err.strip().splitlines()
    assert said[-2].endswith("scoring it (no evaluation yet) ...") and "while scoring a run: it stays completed" in said[-1], said
    assert read_rows(sweep.dir / RESULTS) == before and not any(claimed_by_other(run) for run in sweep.dir.iterdir() if run.is_dir())


def test_scoring_frees_the_base_pipeline_on_an_accelerator_only(monkeypatch):
    """The next run's notebook kernel needs the GPU memory; on the CPU the pipeline is kept for the next run."""
    import torch

    from siso_lib import inference
    from siso_lib.evaluation import Evaluator

    where = {"device": torch.device("cpu")}
    monkeypatch.setattr(inference, "pipeline_device", lambda pipe: where["device"])
    evaluator = Evaluator(judges=None)
    evaluator._pipeline, evaluator._pipeline_key = object(), ("base", "sdxl", "auto", "auto")
    evaluator.release_pipeline()
    assert evaluator._pipeline is not None and evaluator._pipeline_key is not None
    where["device"] = torch.device("meta")  # any device that is not the CPU (no GPU here)
    evaluator.release_pipeline()
    assert evaluator._pipeline is None and evaluator._pipeline_key is None
    evaluator.release_pipeline()  # nothing loaded: nothing to do


def test_eval_options_in_sweep_files_and_on_the_command_line(tmp_path):
    (tmp_path / "prompts.txt").write_text("a {class} in Paris\n")
    spec = tmp_path / "scored.yaml"
    spec.write_text("grid: {rank: [2, 4]}\neval: {seeds: 3, prompts: prompts.txt}\n")
    assert load_spec(spec)["eval"] == {"seeds": "3", "prompts": str(tmp_path / "prompts.txt")}  # beside the file, as written
    parse = lambda *extra: sweep_from_args(build_parser().parse_args([str(spec), "--output-root", str(tmp_path), *extra]))  # noqa: E731
    sweep = parse()
    assert (sweep.evaluation.seeds, sweep.evaluation.templates) == (3, ["a {class} in Paris"])
    assert parse("--eval-seeds", "1").evaluation.seeds == 1  # the command line wins
    assert parse().to_dict()["eval"] == {"seeds": 3, "prompts": str(tmp_path / "prompts.txt")}  # sweep.json says how
    spec.write_text("grid: {rank: [2]}\neval: true\n")
    assert load_spec(spec)["eval"] == {} and parse().evaluation.seeds == 4 and parse().evaluation.templates is None
    spec.write_text("grid: {rank: [2]}\neval: false\n")
    assert parse().evaluation is None and parse("--eval").evaluation.seeds == 4
    for wrong in ("eval: yes please", "eval: {seed: 2}"):
        spec.write_text(f"grid: {{rank: [2]}}\n{wrong}\n")
        with pytest.raises(SweepError, match="eval must be true, false or a mapping"):
            load_spec(spec)


BAD_SWEEPS = {
    "help": ["--help"],
    "dry run": ["--grid", "rank=1,2", "--dry-run"],
    "unknown name": ["--grid", "learnig_rate=1e-4,2e-4"],
    "unknown fixed name": ["--set", "rnak=4", "--grid", "seed=1,2"],
    "bad grid syntax": ["--grid", "rank"],
    "bad number": ["--grid", "learning_rate=1e-4,abc"],
    "bad choice": ["--grid", "rank=4", "--set", "precision=fp64"],
    "bad yes/no": ["--grid", "rank=4", "--set", "compile=maybe"],
    "reserved name": ["--grid", "rank=4", "--set", "interactive=false"],
    "missing spec file": ["no-such-sweep.yaml"],
    "nothing to sweep": ["--set", "rank=4"],
    "removed --shard": ["--grid", "rank=4", "--shard", "0/2"],
    "ray dry run": ["--grid", "rank=1,2", "--ray", "--dry-run"],
    "ray resources without ray": ["--grid", "rank=4", "--ray-gpus", "0.5"],
    "bad ray gpus": ["--grid", "rank=4", "--ray", "--ray-gpus", "-1"],
    "misspelt option": ["--gird", "rank=4"],
    "missing notebook": ["--grid", "rank=4", "--notebook", "no-such.ipynb"],
    "family dry run": ["--grid", "model_family=sdxl,flux,sana,flux2_klein", "--dry-run"],
    "unknown family": ["--grid", "model_family=sdxl,flx"],
    "impossible family setting": ["--grid", "model_family=sdxl,sana", "--set", "train_text_encoder=true"],
    "eval dry run": ["--grid", "rank=1,2", "--dry-run", "--eval", "--eval-seeds", "2"],
    "eval option without --eval": ["--grid", "rank=4", "--eval-seeds", "2"],
    "no eval seeds": ["--grid", "rank=4", "--eval", "--eval-seeds", "0"],
    "missing eval prompt file": ["--grid", "rank=4", "--eval", "--eval-prompts", "no-such-prompts.txt"],
    "collect and eval": ["--grid", "rank=4", "--eval", "--collect"],
}


@pytest.mark.slow
def test_help_dry_run_and_bad_sweeps_answer_without_heavy_imports(tmp_path):
    """`siso-sweep --help`, `--dry-run` and every error that needs no run must not import torch & co."""
    script = (
        "import json, sys\n"
        "from siso_lib.cli.sweep import main\n"
        "try:\n    code = main(json.loads(sys.argv[1]))\nexcept SystemExit as exit:\n    code = exit.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'transformers', 'timm', 'open_clip',"
        " 'papermill', 'nbclient', 'jupyter_client', 'zmq', 'matplotlib', 'ipywidgets', 'kornia', 'peft', 'ray'})\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    for label, arguments in BAD_SWEEPS.items():
        done = subprocess.run([sys.executable, "-c", script, json.dumps([*arguments, "--output-root", str(tmp_path / "out")])],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["heavy"] == [], f"{label}: imported {result['heavy']}"
        assert result["code"] == (0 if label in ("help", "dry run", "family dry run", "eval dry run", "ray dry run") else 2), (label, result, done.stderr)
        if result["code"] == 2:
            said = done.stderr.strip().splitlines()
            assert len(said) == 1 and "error" in said[0], (label, done.stderr)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_claims_keep_two_processes_off_the_same_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert claim(run_dir) and claim(run_dir)  # taking it again in the same process is fine
    assert not claimed_by_other(run_dir)  # our own claim is not another's
    release(run_dir)
    # another process holds it: refused, and shown as held
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from siso_lib.sweeps.records import claim; "
         "assert claim(sys.argv[1]); print('held', flush=True); time.sleep(60)", str(run_dir)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not claim(run_dir) and claimed_by_other(run_dir)
    finally:
        holder.kill()
        holder.wait()
    # its holder died without releasing it: the operating system released the lock
    assert not claimed_by_other(run_dir) and claim(run_dir)
    release(run_dir)
    assert not claimed_by_other(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_marks_the_run_interrupted_releases_it_and_says_one_line(tiny_assets, tmp_path, signum):
    """A real `siso-sweep` process, signalled while a run's notebook is optimising."""
    command = [
        sys.executable, "-m", "siso_lib.cli.sweep", "--name", "long", "--output-root", str(tmp_path), "--log-output",
        "--set", "models=offline", "--set", f"assets_dir={assets_dir(tiny_assets)}", "--set", "num_train_epochs=500",
        "--set", "early_stopping_max_count=500", "--set", "early_stopping_threshold_percentage=0", "--grid", "rank=2,4",
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        before = []
        for line in process.stderr:  # --log-output echoes the notebook's progress lines
            before.append(line)
            if "iteration   1/500" in line:
                break
        else:
            pytest.fail(f"the run never started iterating:\n{''.join(before)}")
        children = psutil.Process(process.pid).children(recursive=True)
        assert children, "the notebook's kernel runs as a child process"
        process.send_signal(signum)
        code = process.wait(timeout=60)
        after = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 128 + signum
    # what the sweep itself says after the signal: one line (indented lines are notebook output echoed before it)
    said = [line for line in after.splitlines() if line.strip() and not line.startswith("    ")]
    assert len(said) == 1 and said[0].startswith(f"siso-sweep: interrupted by {signal.Signals(signum).name}"), after
    assert "Traceback" not in after and "Kernel died" not in after
    rows = read_rows(tmp_path / "long" / RESULTS)
    assert [row["status"] for row in rows] == ["interrupted", "pending"]
    assert rows[0]["error"] == f"interrupted by {signal.Signals(signum).name}" and float(rows[0]["wall_seconds"]) > 0
    assert not any(claimed_by_other(run) for run in (tmp_path / "long").iterdir() if run.is_dir()), "the claim is released"
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"the kernel outlived the sweep: {alive}"


def test_subject_photos_are_absolute_named_by_content_and_checked_first(tmp_path, monkeypatch, capsys):
    """The fresh-user trial: a sweep started from another folder took a different cat.png for the
    completed run of the first one, and a missing photo passed --dry-run. Photos are recorded with
    absolute paths, a run is identified by the photo's content, and a missing photo stops the sweep
    before anything runs (exit 2, nothing written)."""
    from PIL import Image

    first, second = tmp_path / "one", tmp_path / "two"
    for folder, colour in ((first, (200, 30, 30)), (second, (30, 30, 200))):
        folder.mkdir()
        Image.new("RGB", (64, 64), colour).save(folder / "cat.png")
    runs = {}
    for folder in (first, second):
        monkeypatch.chdir(folder)
        sweep = build_sweep("same", {"rank": [4]}, {}, subjects=["cat.png"], root=tmp_path / "sweeps")
        (run,) = sweep.runs()
        assert run.params["subject_image_path"] == str(folder / "cat.png")
        runs[folder] = run.name
    assert runs[first] != runs[second]
    monkeypatch.chdir(first)
    shutil.copy(first / "cat.png", first / "copy.png")
    same_photo = build_sweep("same", {"rank": [4]}, {}, subjects=["copy.png"], root=tmp_path / "sweeps")
    assert same_photo.runs()[0].name.rsplit("__", 1)[1] == runs[first].rsplit("__", 1)[1]  # same content, same run identity
    monkeypatch.chdir(tmp_path)
    code = main(["--name", "x", "--grid", "rank=4,8", "--subjects", "nope.png", "--dry-run", "--output-root", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and "subject photo" in err and "does not exist" in err and not (tmp_path / "s").exists()
    spec = first / "sweep.yaml"
    spec.write_text("grid: {rank: [4]}\nsubjects: [cat.png]\n")
    assert load_spec(spec)["subjects"] == [str(first / "cat.png")]  # relative to the sweep file


def test_contradictory_or_impossible_options_are_refused(tmp_path, capsys):
    code = main(["--name", "x", "--set", "learning_rate=1e-3", "--grid", "learning_rate=1e-3,2e-3", "--dry-run",
                 "--output-root", str(tmp_path)])
    assert code == 2 and "both --grid and --set" in capsys.readouterr().err
    code = main(["--name", "x", "--grid", "rank=4,8", "--timeout", "-5", "--dry-run", "--output-root", str(tmp_path)])
    assert code == 2 and "--timeout -5" in capsys.readouterr().err


def test_the_report_takes_a_sweeps_name(tmp_path, monkeypatch):
    """The fresh-user trial: notebook 03 with `-p sweep_dir t1` (a name, as its comment says) failed."""
    from siso_lib.notebooks import sweep_report

    (tmp_path / "sweeps" / "t1").mkdir(parents=True)
    (tmp_path / "sweeps" / "t1" / "results.csv").write_text("run,status\nr1,failed\n")
    monkeypatch.setenv("SISO_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert sweep_report.load_sweep("t1").directory == tmp_path / "sweeps" / "t1"
    with pytest.raises(ValueError, match="give a sweep's name or folder"):
        sweep_report.load_sweep("t2")


def test_a_misspelt_name_is_matched_against_the_names_a_sweep_can_set(tmp_path):
    """The fresh-user trial: `--grid learnig_rate=...` listed output_dir, interactive, overwrite and
    progress_file among the valid names, though the sweep refuses them."""
    from siso_lib.sweeps.spec import RESERVED

    with pytest.raises(SweepError) as caught:
        build_sweep("x", {"learnig_rate": ["1e-4"]}, root=tmp_path)
    message = str(caught.value)
    assert "did you mean 'learning_rate'" in message
    valid = message.split("valid names: ")[1].split(", ")
    assert "learning_rate" in valid and "models" in valid and not set(RESERVED) & set(valid)


def test_a_dry_run_makes_each_runs_own_input_checks(tmp_path, capsys):
    """The fresh-user trial: --dry-run reported runs as fine although ir_features_path did not exist;
    the real runs then failed one by one."""
    root = tmp_path / "sweeps"
    bad = ["--grid", "rank=2,4", "--set", "models=offline", "--set", "ir_features_path=/path/to/ir_features.pth",
           "--output-root", str(root), "--dry-run"]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert err.count("WOULD FAIL on bad input: IR checkpoint '/path/to/ir_features.pth' does not exist") == 2, err
    assert "0 would run, 2 would fail on bad input" in err and not root.exists()
    photo = tmp_path / "notes.png"
    photo.write_text("not a picture")
    assert main(["--subjects", str(photo), "--output-root", str(root), "--dry-run"]) == 2
    assert "WOULD FAIL on bad input: subject image" in capsys.readouterr().err
    assert main(["--grid", "rank=2,4", "--set", "models=offline", "--output-root", str(root), "--dry-run"]) == 0
    assert "2 would run, 0 would be skipped" in capsys.readouterr().err and not root.exists()


def test_without_papermill_a_sweep_refuses_before_writing_anything(tmp_path, monkeypatch, capsys):
    """The fresh-user trial (a wheel without the notebooks extra): every run failed with
    ModuleNotFoundError and results.csv was written anyway."""
    monkeypatch.setitem(sys.modules, "papermill", None)
    root = tmp_path / "sweeps"
    assert main(["--grid", "rank=2,4", "--set", "models=offline", "--output-root", str(root)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("siso-sweep: error: executing a notebook needs papermill"), err
    assert "--kernel" not in err[0] and not root.exists()
    assert main(["--grid", "rank=2,4", "--output-root", str(root), "--dry-run"]) == 0  # a dry run needs no kernel
    monkeypatch.delitem(sys.modules, "papermill")
    assert main(["--grid", "rank=2", "--kernel", "no-such-kernel", "--output-root", str(root)]) == 2
    assert "no Jupyter kernel named 'no-such-kernel'" in capsys.readouterr().err and not root.exists()


def test_the_time_left_is_each_familys_mean_of_the_runs_done(tmp_path):
    """The fresh-user trial: after an SDXL run the estimate was 65 s for a FLUX and a Sana run, which took 146 s."""
    from siso_lib.sweeps.local import time_left
    from siso_lib.sweeps.spec import SweepRun

    def run(family):
        return SweepRun(family, {"model_family": family}, {"model_family": family})

    seconds, guessed = time_left([run("sdxl"), run("flux"), run("sana")], {"sdxl": [30.0, 34.0], "flux": [60.0]})
    assert seconds == 32 + 60 + (30 + 34 + 60) / 3 and guessed == ["sana"]
    assert time_left([run("flux")], {"flux": [50.0, 70.0]}) == (60.0, [])


def test_the_kernel_of_a_tiny_cpu_run_gets_one_thread(tmp_path, monkeypatch):
    """The fresh-user trial: sweep runs on the tiny models were 3-4x slower than siso-demo's, whose
    process runs with OMP_NUM_THREADS=1; the kernels the sweep started did not."""
    from siso_lib.sweeps import local

    given = {}
    monkeypatch.setattr(local, "execute_generate_notebook", lambda *args, **kwargs: given.update(kwargs))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    sweep = build_sweep("t", {"rank": [2]}, {"models": "offline"}, root=tmp_path)
    local.execute_sweep_run(sweep, sweep.runs()[0])
    assert given["kernel_env"] == {"OMP_NUM_THREADS": "1"}
    hub = build_sweep("h", {"rank": [2]}, {"models": "hub"}, root=tmp_path)
    local.execute_sweep_run(hub, hub.runs()[0])
    assert given["kernel_env"] == {}
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the caller's own setting is kept
    local.execute_sweep_run(sweep, sweep.runs()[0])
    assert given["kernel_env"] == {}
