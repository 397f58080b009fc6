"""SISO editing end to end on tiny models: the task's renderer and loss, and what a run writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from siso_lib.config import SISOEditConfig
from siso_lib.editing.task import EditLoss, background_mse


def _mask_png(path, size, box):
    mask = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 255
    Image.fromarray(mask).save(path)
    return str(path)


@pytest.fixture
def edit_config(tiny_assets, tmp_path):
    from siso_lib.io.locations import example_photo
    from siso_lib.offline import OFFLINE_OVERRIDES

    scene = example_photo("coffee.png")
    width, height = Image.open(scene).size
    mask = _mask_png(tmp_path / "mask.png", (width, height), (width // 3, height // 4, 2 * width // 3, 3 * height // 4))

    def make(**overrides):
        values = dict(
            input_image_path=str(scene), mask_path=mask, input_class="cup", prompt="a photo of a cat",
            pretrained_model_name_or_path=tiny_assets["sdxl"], dino_model_name=tiny_assets["dino"],
            ir_features_path=tiny_assets["ir"], **{**OFFLINE_OVERRIDES, "num_train_epochs": 6},
        )
        return SISOEditConfig(**{**values, **overrides})

    return make


def test_the_background_term_is_the_mean_squared_error_outside_the_mask_and_has_no_gradient_inside():
    scene = torch.rand(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0
    image = torch.rand(1, 3, 8, 8, requires_grad=True)
    loss = background_mse(image, scene, mask)
    outside = (mask == 0).expand(1, 3, 8, 8)
    assert loss.item() == pytest.approx(((image - scene)[outside] ** 2).mean().item(), rel=1e-6)
    loss.backward()
    assert torch.all(image.grad[(mask == 1).expand(1, 3, 8, 8)] == 0) and image.grad[outside].abs().sum() > 0


def test_the_edit_loss_adds_the_weighted_background_term(tiny_assets):
    from siso_lib.features.dino import DinoFeatures
    from siso_lib.losses import SubjectSimilarityLoss

    subject = torch.rand(1, 3, 64, 64)
    subject_loss = SubjectSimilarityLoss(subject, DinoFeatures.from_pretrained(tiny_assets["dino"]), None)
    scene, mask = torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64)
    mask[..., :32, :] = 1
    image = torch.rand(1, 3, 64, 64)
    losses = EditLoss(subject_loss, scene, mask, 10.0)(image)
    assert set(losses) == {"dino", "background", "total"}
    assert losses["total"].item() == pytest.approx(losses["dino"].item() + 10 * losses["background"].item(), rel=1e-5)
    assert set(EditLoss(subject_loss, scene, mask, 0.0)(image)) == {"dino", "total"}


def test_an_edit_run_writes_its_files_and_keeps_the_background_better_than_without_the_term(edit_config, subject_path, tmp_path):
    from siso_lib.editing.runner import run_edit

    kept = run_edit(edit_config(), subject_path, output_dir=tmp_path / "kept")
    free = run_edit(edit_config(bg_mse_loss_weight=0.0, num_train_epochs=6), subject_path, output_dir=tmp_path / "free")
    folder = tmp_path / "kept"
    for name in ("result.png", "result_square.png", "scene.png", "mask.png", "before_after.png", "loss_curve.png", "run.json",
                 "pytorch_lora_weights.safetensors"):
        assert (folder / name).is_file(), name
    record = json.loads((folder / "run.json").read_text())
    assert record["task"] == "edit" and record["status"] == "completed"
    assert record["renoise"]["strength"] == 0.75 and record["scene_prompt"] == "a photo of a cup"
    assert "background" in record["history"][0] and record["mask"]["covered_fraction"] > 0
    mask = np.asarray(Image.open(folder / "mask.png")) > 127
    assert set(np.unique(np.asarray(Image.open(folder / "mask.png")))) <= {0, 255}
    scene = np.asarray(Image.open(folder / "scene.png"), dtype=np.float32) / 255

    def background_error(run_folder):
        edited = np.asarray(Image.open(run_folder / "result_square.png"), dtype=np.float32) / 255
        return float(((edited - scene)[~mask] ** 2).mean())

    # measured against the scene photo itself: the weighted term keeps the background closer
    assert background_error(folder) < background_error(tmp_path / "free")
    assert kept.result.history[-1]["background"] < kept.result.history[0]["background"]
    # result.png is the user's photo at its own size: changed inside the mask, bit-identical outside it
    photo = np.asarray(Image.open(record["scene_image"]["path"]).convert("RGB"))
    edited = np.asarray(Image.open(folder / "result.png"))
    painted = np.asarray(Image.open(record["mask"]["path"])) > 127
    assert edited.shape == photo.shape == (400, 600, 3) and Image.open(folder / "result_square.png").size == (64, 64)
    assert np.array_equal(edited[~painted], photo[~painted]) and (edited[painted] != photo[painted]).mean() > 0.5
    assert kept.result_square == str(folder / "result_square.png") == record["artifacts"]["result_square"]
    # the model card beside the LoRA names the task
    from huggingface_hub import ModelCard

    card = ModelCard.load(record["artifacts"]["model_card"])
    assert {"siso", "siso-editing", "image-to-image"} <= set(card.data.tags) and card.data.widget[0]["output"]["url"] == "result.png"


def test_edit_settings_are_checked_with_the_edits_own_defaults():
    from siso_lib.errors import SISOInputError

    with pytest.raises(SISOInputError, match=r"learning_rate -1 must be positive \(the default is 0.0003\)"):
        SISOEditConfig(input_image_path="scene.png", input_class="cup", learning_rate=-1).validate()
    with pytest.raises(SISOInputError, match="between 0.25 and 1"):
        SISOEditConfig(input_image_path="scene.png", input_class="cup", inversion_max_step=0.2).validate()
    SISOEditConfig(input_image_path="scene.png", input_class="cup", inversion_max_step=0.25).validate()
