"""Every notebook executes headless with papermill on the tiny offline models, and produces
what it should: artefacts on disk, PNG figures in the executed notebook, no error output."""

from __future__ import annotations

import time

import papermill

from siso_lib.sweep import RESULTS

from nb_helpers import ITERATIONS, NOTEBOOKS, TIMINGS, assert_clean_report, outputs_of, read_json


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
    started = time.perf_counter()
    papermill.execute_notebook(
        str(NOTEBOOKS / "02_apply_lora.ipynb"), str(executed), cwd=str(NOTEBOOKS), progress_bar=False,
        parameters={"lora_path": str(demo_run["dir"]), "prompts": ["a photo of a cat", "a cat on the moon"],
                    "seeds": [1], "lora_scales": [0.0, 1.0, 2.0],
                    "output_dir": str(tmp_path / "applied")},
    )
    TIMINGS["02_apply_lora (papermill)"] = time.perf_counter() - started
    assert_clean_report(executed, min_images=3)  # reference, with/without grid, scale sweep
    for name in ("with_and_without.png", "lora_scales.png"):
        assert (tmp_path / "applied" / name).stat().st_size > 1000
    text = "".join(o.get("text", "") for o in outputs_of(executed) if o["output_type"] == "stream")
    differences = [float(line.split("= ")[1].split()[0]) for line in text.splitlines() if "mean |with LoRA - base|" in line]
    assert len(differences) == 2 and all(d > 0 for d in differences), text  # the LoRA changes the images


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
