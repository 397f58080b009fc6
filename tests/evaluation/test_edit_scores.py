"""An edit run is scored by what it produced (evaluation/edit_scores.py), never as a text-to-image
LoRA: the masked region of the edited photo against the subject, the background against the scene."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from siso_lib.evaluation import Evaluator


@pytest.fixture(scope="module")
def edit_run(tiny_assets, subject_path, tmp_path_factory):
    from siso_lib.config import SISOEditConfig
    from siso_lib.editing.runner import run_edit
    from siso_lib.io.locations import example_photo
    from siso_lib.offline import OFFLINE_OVERRIDES

    folder = tmp_path_factory.mktemp("edit")
    mask = np.zeros((400, 600), np.uint8)
    mask[100:300, 200:400] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    config = SISOEditConfig(
        input_image_path=str(example_photo("coffee.png")), mask_path=str(folder / "mask.png"), input_class="cup",
        prompt="a photo of a cat", pretrained_model_name_or_path=tiny_assets["sdxl"], dino_model_name=tiny_assets["dino"],
        ir_features_path=tiny_assets["ir"], **{**OFFLINE_OVERRIDES, "num_train_epochs": 2},
    )
    run_edit(config, subject_path, output_dir=folder / "run")
    return folder / "run"


def test_an_edit_run_is_scored_on_its_edited_photo_not_by_rendering_its_lora(tiny_judges, edit_run, tmp_path, monkeypatch):
    run = shutil.copytree(edit_run, tmp_path / "run")
    evaluator = Evaluator(tiny_judges, device="cpu")
    monkeypatch.setattr(Evaluator, "pipeline", lambda *a, **k: pytest.fail("an edit's LoRA was loaded to render prompts"))
    report = evaluator.evaluate(run)
    record = json.loads((run / "eval" / "metrics.json").read_text())
    summary = record["summary"]
    assert record["task"] == "edit" and set(summary) == {"edited", "scene", "delta"}
    assert set(summary["edited"]) == {"dino", "clip_i", "ir", "background_mse"}
    for variant in ("edited", "scene"):
        assert all(-1.0 <= summary[variant][name] <= 1.0 for name in ("dino", "clip_i", "ir"))
    # the background: MSE outside the mask between the edited square and the scene, recomputed from the files
    artifacts = json.loads((run / "run.json").read_text())["artifacts"]
    edited = np.asarray(Image.open(artifacts["result_square"]).convert("RGB"), np.float64) / 255
    scene = np.asarray(Image.open(artifacts["scene_image"]).convert("RGB"), np.float64) / 255
    keep = np.asarray(Image.open(artifacts["mask_image"])) <= 127
    assert summary["edited"]["background_mse"] == pytest.approx(((edited - scene) ** 2)[keep].mean(), abs=1e-7)
    assert summary["scene"]["background_mse"] == 0.0 and summary["edited"]["background_mse"] > 0
    assert summary["delta"]["dino"] == pytest.approx(summary["edited"]["dino"] - summary["scene"]["dino"], abs=1e-6)
    # the region scored is the mask's bounding box on the edit's square
    rows, columns = np.flatnonzero((~keep).any(axis=1)), np.flatnonzero((~keep).any(axis=0))
    assert record["region_box"] == [columns[0], rows[0], columns[-1] + 1, rows[-1] + 1]
    assert record["mask_fraction"] == pytest.approx((~keep).mean(), abs=1e-4) and "LPIPS" in record["definitions"]["background_mse"]
    assert json.loads((run / "run.json").read_text())["evaluation"]["task"] == "edit"
    assert (run / "eval" / "grid.png").is_file() and report.summary == summary


@pytest.mark.parametrize("extra", [[], ["--seeds", "2", "--prompt", "a {class} on the moon"]])
def test_siso_eval_on_an_edit_run_says_what_it_scores_and_warns_about_rendering_options(tiny_assets, edit_run, tmp_path, capsys, extra):
    from siso_lib.cli.evaluate import main

    run = shutil.copytree(edit_run, tmp_path / "run")
    code = main([str(run), "--device", "cpu", *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "an edit run: its edited photo is scored" in err and "edited photo: DINO" in err and "edited - scene:" in err
    warned = [line for line in err.splitlines() if "ignoring --" in line]
    assert len(warned) == (2 if extra else 0), warned
    assert all("nothing is rendered" in line for line in warned)


def test_an_edit_run_has_its_model_card_and_the_photo_at_the_scenes_size(edit_run):
    """Item 17 for editing: the run folder is a Hub page as it is (README.md parsed by
    huggingface_hub), tagged as an edit, its widget the edited photo, which has the scene's size."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(edit_run / "README.md")
    assert {"lora", "siso", "siso-editing", "image-to-image"} <= set(card.data.tags)
    assert "text-to-image" not in card.data.tags and card.data.pipeline_tag == "image-to-image"
    assert card.data.instance_prompt == "a photo of a cat" and card.data.widget[0]["output"]["url"] == "result.png"
    assert "**edit**" in card.text and "## Use" not in card.text  # no text-to-image usage for an edit's LoRA
    assert Image.open(edit_run / "result_square.png").size == (64, 64)
    # item 6a end to end: data/coffee.png at its size, every pixel outside the mask bit-identical to it
    from siso_lib.editing.inputs import load_scene
    from siso_lib.io.locations import example_photo

    scene, _, _ = load_scene(example_photo("coffee.png"), 64)
    result = np.asarray(Image.open(edit_run / "result.png").convert("RGB"))
    keep = np.asarray(Image.open(edit_run.parent / "mask.png")) <= 127
    assert result.shape == (400, 600, 3) and np.array_equal(result[keep], np.asarray(scene)[keep])
    assert not np.array_equal(result[~keep], np.asarray(scene)[~keep])  # the region itself was edited
