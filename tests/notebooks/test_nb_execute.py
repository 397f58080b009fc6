"""Every notebook executes headless with papermill on the tiny offline models, and produces
what it should: artefacts on disk, PNG figures in the executed notebook, no error output."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import papermill
import pytest

from siso_lib.notebooks import setup as notebook_run
from siso_lib.config import FAMILY_RECIPES, RECIPE_FIELDS
from siso_lib.errors import SISOInputError
from siso_lib.io.lora import read_metadata
from siso_lib.offline import OFFLINE_OVERRIDES
from siso_lib.notebooks.setup import PARAMETER_NAMES, prepare_run
from siso_lib.notebooks.headless import run_headless
from siso_lib.sweeps.spec import RESULTS

from nb_helpers import FAMILY_ITERATIONS, ITERATIONS, NOTEBOOKS, TIMINGS, assert_clean_report, assets_dir, outputs_of, read_json


def test_generate_notebook_headless_is_make_demo(demo_run, capsys):
    assert demo_run["code"] == 0
    out = demo_run["dir"]
    for name in ("pytorch_lora_weights.safetensors", "siso_lora_kohya.safetensors", "result.png", "loss_curve.png", "run.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    record = read_json(out / "run.json")
    assert record["status"] == "completed" and record["steps_run"] == ITERATIONS
    assert record["parameters"]["resolution"] == 64  # the offline default, from siso_lib.offline
    # the live figure and the final report figure, besides the subject preview
    assert_clean_report(demo_run["notebook"], min_images=3)
    text = "".join(o.get("text", "") for o in outputs_of(demo_run["notebook"]) if o["output_type"] == "stream")
    assert f"iteration   {ITERATIONS}/{ITERATIONS}" in text
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs_of(demo_run["notebook"]) if "data" in o)
    assert "Stopped:" in markdown and str(out / "pytorch_lora_weights.safetensors") in markdown


def test_apply_notebook_renders_with_and_without_the_lora(demo_run, tmp_path):
    executed = tmp_path / "02_apply_lora.ipynb"
    prompts = ["a photo of a cat", "a cat on the moon"]
    started = time.perf_counter()
    papermill.execute_notebook(
        str(NOTEBOOKS / "02_apply_lora.ipynb"), str(executed), cwd=str(NOTEBOOKS), progress_bar=False,
        parameters={"lora_path": str(demo_run["dir"]), "prompts": prompts,
                    "seeds": [1, 2], "lora_scales": [0.0, 1.0, 2.0],
                    "output_dir": str(tmp_path / "applied")},
    )
    TIMINGS["02_apply_lora with scores (papermill)"] = time.perf_counter() - started
    assert_clean_report(executed, min_images=4)  # reference, with/without grid, the same with scores, scale sweep
    for name in ("with_and_without.png", "with_and_without_scores.png", "lora_scales.png"):
        assert (tmp_path / "applied" / name).stat().st_size > 1000
    text = "".join(o.get("text", "") for o in outputs_of(executed) if o["output_type"] == "stream")
    differences = [float(line.split("= ")[1].split()[0]) for line in text.splitlines() if "mean |with LoRA - base|" in line]
    assert len(differences) == 2 and all(d > 0 for d in differences), text  # the LoRA changes the images
    # evaluate=True (the default): the rendered images scored by the tiny judges, shown in tables
    scores = read_json(tmp_path / "applied" / "scores.json")
    assert scores["prompts"] == prompts and scores["seeds"] == [1, 2] and len(scores["images"]) == 2 * 2 * 2
    assert scores["judges"]["dino"].endswith("dino") and scores["judges"]["clip"].endswith("clip"), scores["judges"]  # tiny, offline
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs_of(executed) if "data" in o)
    assert "| score | base model | with the LoRA | LoRA - base |" in markdown and "Tiny random-weight judges" in markdown
    summary = scores["summary"]
    for name, label in (("dino", "DINO"), ("clip_i", "CLIP-I"), ("ir", "IR"), ("clip_t", "CLIP-T")):
        assert -1.0 <= summary["lora"][name] <= 1.0 and -1.0 <= summary["base"][name] <= 1.0, (name, summary)
        row = f"| {label} ({'prompt' if name == 'clip_t' else 'subject'}) | {summary['base'][name]:.3f} | {summary['lora'][name]:.3f} | {summary['delta'][name]:+.3f} |"
        assert row in markdown, (row, markdown)
    assert summary["lora"]["seed_diversity"] is not None  # two seeds per prompt
    for prompt in prompts:
        assert f"| {prompt} | " in markdown  # the per-prompt table
    lora = {(r["prompt_index"], r["seed"]): r["dino"] for r in scores["images"] if r["variant"] == "lora"}
    base = {(r["prompt_index"], r["seed"]): r["dino"] for r in scores["images"] if r["variant"] == "base"}
    assert lora.keys() == base.keys() and lora != base, "the LoRA's images score otherwise than the base model's"


@pytest.mark.parametrize("family", ["flux", "sana", "flux2_klein"])
def test_generate_notebook_headless_runs_each_model_family(family_run, family):
    """01 with -p model_family=flux / sana / flux2_klein, offline: the family's tiny model, its recipe, its LoRA file."""
    run = family_run(family)
    assert run["code"] == 0
    out = run["dir"]
    record = read_json(out / "run.json")
    parameters = record["parameters"]
    assert record["status"] == "completed" and record["steps_run"] == FAMILY_ITERATIONS
    assert parameters["model_family"] == family
    assert Path(parameters["pretrained_model_name_or_path"]).name == family, "the family's tiny model"
    # every knob the families differ in holds the family's recipe (except what the tiny models need)
    for name in RECIPE_FIELDS:
        if name != "pretrained_model_name_or_path" and name not in OFFLINE_OVERRIDES:
            assert parameters[name] == FAMILY_RECIPES[family][name], (family, name, parameters[name])
    metadata = read_metadata(out / "pytorch_lora_weights.safetensors")
    assert metadata["siso.model_family"] == family
    assert record["artifacts"]["kohya_path"] is None and not (out / "siso_lora_kohya.safetensors").exists()
    assert_clean_report(run["notebook"], min_images=3)
    table = "".join(o["data"].get("text/html", "") for o in outputs_of(run["notebook"]) if "data" in o)
    assert f"{family} recipe" in table and "sdxl recipe" not in table


@pytest.mark.parametrize("family", ["flux", "flux2_klein"])
def test_apply_notebook_takes_a_loras_family_and_recipe_from_its_metadata(family_run, family, tmp_path):
    run = family_run(family)
    metadata = read_metadata(run["dir"] / "pytorch_lora_weights.safetensors")
    assert int(metadata["siso.best_step"]) > 1, "the LoRA of iteration 1 is zero: nothing to compare"
    executed = tmp_path / "02_apply_lora.ipynb"
    started = time.perf_counter()
    papermill.execute_notebook(
        str(NOTEBOOKS / "02_apply_lora.ipynb"), str(executed), cwd=str(NOTEBOOKS), progress_bar=False,
        parameters={"lora_path": str(run["dir"]), "prompts": ["a photo of a cat", "a cat on the moon"],
                    "seeds": [1], "lora_scales": [0.0, 1.0], "output_dir": str(tmp_path / "applied"), "evaluate": "false"},
    )
    TIMINGS[f"02_apply_lora, {family} LoRA, evaluate=false (papermill)"] = time.perf_counter() - started
    assert_clean_report(executed, min_images=3)
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs_of(executed) if "data" in o)
    assert "Not scored (`evaluate = False`)" in markdown and "| score |" not in markdown
    assert not (tmp_path / "applied" / "scores.json").exists()
    text = "".join(o.get("text", "") for o in outputs_of(executed) if o["output_type"] == "stream")
    recipe = FAMILY_RECIPES[family]
    assert f"{family} base model {metadata['siso.base_model']}," in text, text
    assert f"rendering with {recipe['num_inference_steps']} step(s), guidance {recipe['guidance_scale']:g}" in text, text
    differences = [float(line.split("= ")[1].split()[0]) for line in text.splitlines() if "mean |with LoRA - base|" in line]
    assert len(differences) == 2 and all(d > 0 for d in differences), text


def test_sweep_report_notebook_shows_the_sweep(small_sweep, tmp_path):
    sweep = small_sweep["sweep"]
    assert (sweep.dir / RESULTS).is_file()
    executed = tmp_path / "03_sweep_report.ipynb"
    started = time.perf_counter()
    papermill.execute_notebook(
        str(NOTEBOOKS / "03_sweep_report.ipynb"), str(executed), cwd=str(NOTEBOOKS), progress_bar=False,
        parameters={"sweep_dir": str(sweep.dir)},
    )
    TIMINGS["03_sweep_report (papermill)"] = time.perf_counter() - started
    assert_clean_report(executed, min_images=3)  # overlaid losses, steps to stop, best images
    html = "".join(o["data"].get("text/html", "") for o in outputs_of(executed) if "data" in o)
    assert html.count("<tr>") >= 5  # header + 4 runs
    assert "completed" in html and "learning_rate" in html
    assert "<td style='text-align:left'>sdxl</td>" in html  # the model_family column and the per-family summary
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs_of(executed) if "data" in o)
    assert "No scores in this sweep's `results.csv`" in markdown and "▼" not in html  # a sweep without --eval


def test_sweep_report_notebook_ranks_runs_by_their_scores(eval_sweep, tmp_path):
    import csv
    import re

    sweep = eval_sweep["sweep"]
    executed = tmp_path / "03_sweep_report.ipynb"
    started = time.perf_counter()
    papermill.execute_notebook(
        str(NOTEBOOKS / "03_sweep_report.ipynb"), str(executed), cwd=str(NOTEBOOKS), progress_bar=False,
        parameters={"sweep_dir": str(sweep.dir), "rank_by": "clip_t"},
    )
    TIMINGS["03_sweep_report with scores (papermill)"] = time.perf_counter() - started
    assert_clean_report(executed, min_images=4)  # scores vs rank, losses, steps, best images
    with open(sweep.dir / RESULTS, newline="") as handle:
        rows = list(csv.DictReader(handle))
    (ranking,) = [h for h in ("".join(o["data"].get("text/html", "")) for o in outputs_of(executed) if "data" in o) if "▼" in h]
    assert "CLIP-T (LoRA - base) ▼" in ranking
    expected = sorted(rows, key=lambda r: -float(r["eval_clip_t"]))
    cells = [f"{float(r['eval_clip_t']):.3f} ({float(r['eval_delta_clip_t']):+.3f})" for r in expected]
    assert all(cell in ranking for cell in cells) and ranking.index(cells[0]) < ranking.index(cells[1])
    ranks = re.findall(r"<tr><td style='text-align:left'>(\d)</td><td style='text-align:left'>sdxl</td><td style='text-align:left'>(\d)</td>", ranking)
    assert ranks == [("1", expected[0]["rank"]), ("2", expected[1]["rank"])], ranking
    with pytest.raises(papermill.PapermillExecutionError, match="rank_by 'clipt' is not a score"):
        papermill.execute_notebook(str(NOTEBOOKS / "03_sweep_report.ipynb"), str(tmp_path / "typo.ipynb"), cwd=str(NOTEBOOKS),
                                   progress_bar=False, parameters={"sweep_dir": str(sweep.dir), "rank_by": "clipt"})


def _papermill(*arguments, cwd):
    """The papermill command line, as people type it (its -p turns only True/False/None/numbers into values)."""
    command = [sys.executable, "-m", "papermill", str(NOTEBOOKS / "01_generate_lora.ipynb"), "out.ipynb", "--no-progress-bar", *arguments]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_papermill_lowercase_false_runs_headless_with_typed_values(tiny_assets, tmp_path):
    run_dir = tmp_path / "run"
    started = time.perf_counter()
    done = _papermill("-p", "interactive", "false", "-p", "models", "offline", "-p", "assets_dir", assets_dir(tiny_assets),
                      "-p", "num_train_epochs", "1", "-r", "learning_rate", "1e-2", "-p", "train_text_encoder", "no",
                      "-p", "output_dir", str(run_dir), cwd=tmp_path)
    TIMINGS["papermill CLI, 1 iteration"] = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    record = read_json(run_dir / "run.json")
    assert record["steps_run"] == 1
    assert record["parameters"]["learning_rate"] == 1e-2 and record["parameters"]["train_text_encoder"] is False
    assert_clean_report(tmp_path / "out.ipynb", min_images=2)  # headless: figures, no panel widget


def test_papermill_unknown_parameter_fails_the_run_listing_the_valid_names(tiny_assets, tmp_path):
    run_dir = tmp_path / "run"
    done = _papermill("-p", "interactive", "false", "-p", "models", "offline", "-p", "assets_dir", assets_dir(tiny_assets),
                      "-p", "learnig_rate", "1e-4", "-p", "output_dir", str(run_dir), cwd=tmp_path)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("NotebookParameterError:")]
    assert len(lines) == 1 and "'learnig_rate' (did you mean 'learning_rate'?)" in lines[0], done.stderr[-3000:]
    assert all(name in lines[0] for name in PARAMETER_NAMES)
    assert not run_dir.exists()


def test_a_headless_run_that_fails_on_bad_input_leaves_no_folder(tiny_assets, tmp_path):
    setup = prepare_run({"models": "offline", "assets_dir": assets_dir(tiny_assets), "interactive": False,
                         "ir_features_path": str(tmp_path / "missing.pth")})
    setup.runs_root = str(tmp_path / "runs")
    with pytest.raises(SISOInputError, match="missing.pth"):
        run_headless(setup, print_steps=False)
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


@pytest.mark.slow
def test_make_demo_on_bad_input_says_one_line_and_leaves_nothing(tiny_assets, tmp_path, monkeypatch, capsys):
    from siso_lib.cli.demo import main as demo_main

    monkeypatch.setenv("SISO_OUTPUT_ROOT", str(tmp_path))
    code = demo_main(["--notebook", "--assets_dir", assets_dir(tiny_assets), "--subject_image_path", str(tmp_path / "no.png")])
    assert code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("siso-demo: error: subject image") and "no.png" in last
    assert not (tmp_path / "runs").exists()  # the photo is checked before any folder is made
    with pytest.raises(SystemExit) as raised:  # a misspelt -p is refused before anything runs
        demo_main(["--notebook", "-p", "learnig_rate=1e-4"])
    assert raised.value.code == 2 and "did you mean 'learning_rate'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name, parameters", [
    ("02_apply_lora.ipynb", {"lora_pth": "x", "seeds": "1,2"}),
    ("03_sweep_report.ipynb", {"sweep_dri": "x"}),
])
def test_other_notebooks_fail_on_an_unknown_parameter(name, parameters, tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        papermill.execute_notebook(str(NOTEBOOKS / name), str(tmp_path / name), parameters=parameters,
                                   cwd=str(NOTEBOOKS), progress_bar=False)
    assert raised.value.ename == "NotebookParameterError" and "did you mean" in raised.value.evalue
