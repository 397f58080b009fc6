"""evaluate.py on a finished tiny run: what is rendered, scored and written, and what is kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from siso_lib.errors import SISOInputError
from siso_lib.evaluation import EvalSettings, Evaluator
from siso_lib.evaluation.evaluate import METRICS_FILE

SETTINGS = EvalSettings(templates=("a photo of a {class}", "a {class} on the beach"), seeds=(0, 1, 2))


@pytest.fixture
def evaluator(tiny_judges):
    return Evaluator(tiny_judges, device="cpu")


def test_a_run_is_scored_with_and_without_its_lora(evaluator, run_copy):
    report = evaluator.evaluate(run_copy, SETTINGS)
    record = json.loads((run_copy / "eval" / METRICS_FILE).read_text())
    assert record == json.loads(json.dumps(report.record))
    assert record["class_name"] == "cat" and record["prompts"] == ["a photo of a cat", "a cat on the beach"]
    assert record["render"] == dict(num_inference_steps=1, guidance_scale=0.0, resolution=64, lora_scale=1.0)
    assert len(record["images"]) == 2 * 3 * 2
    for row in record["images"]:
        assert (run_copy / "eval" / row["file"]).is_file()
        for metric in ("dino", "clip_i", "clip_t", "ir"):
            assert -1.0 <= row[metric] <= 1.0
    summary = record["summary"]
    assert set(summary) == {"lora", "base", "delta"}
    assert set(summary["lora"]) == {"dino", "clip_i", "clip_t", "ir", "seed_diversity", "paper_diversity_mse"}
    assert 0.0 < summary["lora"]["seed_diversity"] <= 2.0  # three seeds give three different pictures
    # the paper's diversity: each picture's MSE to the subject photo (its centre square at 64 px), recomputed here
    from PIL import Image

    from siso_lib.editing.geometry import resize_and_center_crop

    photo = np.asarray(resize_and_center_crop(Image.open(record["subject_image"]).convert("RGB"), 64), np.float64) / 255
    for row in record["images"][:3]:
        picture = np.asarray(Image.open(run_copy / "eval" / row["file"]).convert("RGB"), np.float64) / 255
        assert row["paper_diversity_mse"] == pytest.approx(((picture - photo) ** 2).mean(), abs=1e-6)
    assert "not the paper's" in record["definitions"]["seed_diversity"] and "Table 2" in record["definitions"]["paper_diversity_mse"]
    for metric, value in summary["delta"].items():
        assert value == pytest.approx(summary["lora"][metric] - summary["base"][metric], abs=2e-6)
    # the summary is the mean of the per-image scores
    lora_dino = [row["dino"] for row in record["images"] if row["variant"] == "lora"]
    assert summary["lora"]["dino"] == pytest.approx(np.mean(lora_dino), abs=1e-5)
    # run.json gains the summary; everything it held before stays
    run = json.loads((run_copy / "run.json").read_text())
    assert run["evaluation"]["summary"] == summary and run["status"] == "completed" and run["history"]
    assert (run_copy / "eval" / "grid.png").is_file()


def test_the_lora_changes_the_pictures_and_scale_zero_is_the_base_model(evaluator, run_copy):
    report = evaluator.evaluate(run_copy, SETTINGS, write=False)
    differences = [np.abs(np.asarray(report.images[(i, s, "lora")], float) - np.asarray(report.images[(i, s, "base")], float)).mean()
                   for i in range(2) for s in (0, 1, 2)]
    assert min(differences) > 0.5  # the optimised LoRA moved every picture
    off = evaluator.evaluate(run_copy, EvalSettings(templates=SETTINGS.templates, seeds=(0, 1), lora_scale=0.0), write=False)
    assert all(value == 0.0 for value in off.summary["delta"].values())
    assert not (run_copy / "eval").exists() and "evaluation" not in json.loads((run_copy / "run.json").read_text())


def test_the_base_model_is_loaded_once_for_many_runs(evaluator, run_copy, finished_run, monkeypatch):
    import siso_lib.inference as inference

    loads = []
    original = inference.load_pipeline_with_lora
    monkeypatch.setattr(inference, "load_pipeline_with_lora", lambda *a, **k: loads.append(a) or original(*a, **k))
    first = evaluator.evaluate(run_copy, SETTINGS, write=False)
    second = evaluator.evaluate(finished_run, SETTINGS, write=False)
    assert len(loads) == 1
    assert first.summary == second.summary  # the same LoRA, swapped in again, gives the same numbers


def test_a_failed_evaluation_keeps_the_earlier_one(evaluator, run_copy, monkeypatch):
    evaluator.evaluate(run_copy, SETTINGS)
    before = (run_copy / "eval" / METRICS_FILE).read_text()
    run_before = (run_copy / "run.json").read_text()
    import siso_lib.evaluation.grid as grid

    monkeypatch.setattr(grid, "score_grid", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        evaluator.evaluate(run_copy, EvalSettings(templates=("a {class} in the snow",), seeds=(5,)))
    assert (run_copy / "eval" / METRICS_FILE).read_text() == before
    assert (run_copy / "run.json").read_text() == run_before
    assert sorted(p.name for p in run_copy.iterdir() if p.name.startswith(".")) == []  # no staging folder left


def test_runs_without_a_final_lora_are_refused(tmp_path, run_copy):
    from siso_lib.evaluation import read_run

    record = json.loads((run_copy / "run.json").read_text())
    (run_copy / "run.json").write_text(json.dumps({**record, "status": "failed"}))
    with pytest.raises(SISOInputError, match="did not complete"):
        read_run(run_copy)
    with pytest.raises(SISOInputError, match="does not exist"):
        read_run(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SISOInputError, match="no pytorch_lora_weights.safetensors"):
        read_run(empty)


def test_a_moved_subject_photo_is_named(evaluator, run_copy, tmp_path):
    record = json.loads((run_copy / "run.json").read_text())
    record["subject_image"]["path"] = str(tmp_path / "moved.png")
    (run_copy / "run.json").write_text(json.dumps(record))
    with pytest.raises(SISOInputError, match="does not exist any more: pass subject_image_path"):
        evaluator.evaluate(run_copy, SETTINGS, write=False)
    photo = Path(__file__).resolve().parents[2] / "data" / "cat.png"
    report = evaluator.evaluate(run_copy, EvalSettings(templates=SETTINGS.templates, seeds=(0,), subject_image_path=str(photo)), write=False)
    assert report.record["subject_image"] == str(photo)
    assert report.summary["lora"]["seed_diversity"] is None  # one seed: no seed diversity
    assert report.summary["lora"]["paper_diversity_mse"] > 0  # the paper's needs no second seed


def test_a_klein_run_is_scored_beside_kleins_zero_shot_reference_mode(evaluator, tiny_config, subject_path, tmp_path):
    """The baseline a klein user asks about: the subject photo as klein's reference image, no LoRA.
    On tiny random-weight models this checks the plumbing only."""
    from siso_lib.runner import run_siso

    run_siso(tiny_config(model_family="flux2_klein", num_train_epochs=2), subject_path, output_dir=str(tmp_path / "run"))
    report = evaluator.evaluate(tmp_path / "run", EvalSettings(templates=("a photo of a {class}",), seeds=(0, 1), baseline="reference"))
    record = report.record
    assert set(record["summary"]) == {"lora", "base", "reference", "delta", "delta_reference"}
    assert "zero-shot reference mode" in record["baseline"]
    assert record["summary"]["delta_reference"]["dino"] == pytest.approx(
        record["summary"]["lora"]["dino"] - record["summary"]["reference"]["dino"], abs=2e-6)
    reference = [row for row in record["images"] if row["variant"] == "reference"]
    assert len(reference) == 2 and all((tmp_path / "run" / "eval" / row["file"]).is_file() for row in reference)
    # the reference image changes what klein draws: not the base model's picture
    base, ref = report.images[(0, 0, "base")], report.images[(0, 0, "reference")]
    assert np.abs(np.asarray(base, dtype=float) - np.asarray(ref, dtype=float)).max() > 0


def test_the_reference_baseline_is_for_klein_runs_only(evaluator, run_copy):
    with pytest.raises(SISOInputError, match="reference baseline is FLUX.2 klein's zero-shot reference mode; this is an SDXL run"):
        evaluator.evaluate(run_copy, EvalSettings(templates=("a photo of a {class}",), seeds=(0,), baseline="reference"))


def test_the_progress_line_counts_in_words(evaluator, run_copy, monkeypatch):
    """The fresh-user trial: "rendering 8 prompts x 1 seeds"."""
    said = []

    def stop(*args, **kwargs):
        raise RuntimeError("stop before loading")

    monkeypatch.setattr(evaluator, "pipeline", stop)
    with pytest.raises(RuntimeError, match="stop before loading"):
        evaluator.evaluate(run_copy, EvalSettings(templates=("a photo of a {class}",), seeds=(0,)), progress=said.append)
    assert said[0].startswith("rendering 1 prompt x 1 seed with"), said
