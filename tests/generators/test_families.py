"""Model families: detection from the model folder, per-family recipes, and the command line's family errors."""

from __future__ import annotations

import json

import pytest

from siso_lib.config import FAMILY_RECIPES, SISOConfig
from siso_lib.errors import SISOInputError
from siso_lib.io.model_paths import detect_family


def test_the_family_is_read_from_the_model_folder_or_the_hub_id(family_assets):
    families = ("sdxl", "flux", "sana", "flux2_klein")
    assert [detect_family(family_assets[name]) for name in families] == list(families)
    assert detect_family("black-forest-labs/FLUX.1-schnell") == "flux"
    assert detect_family("black-forest-labs/FLUX.2-klein-4B") == "flux2_klein"
    assert detect_family("Efficient-Large-Model/Sana_1600M_512px_diffusers") == "sana"
    assert detect_family("stabilityai/sdxl-turbo") == "sdxl"


def test_a_folder_of_another_pipeline_is_refused_in_one_line(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    with pytest.raises(SISOInputError, match="StableDiffusion3Pipeline pipeline: SISO here runs SDXL") as caught:
        SISOConfig(pretrained_model_name_or_path=str(tmp_path)).validate()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("family", ["sdxl", "flux", "sana", "flux2_klein"])
def test_each_family_gets_its_recipe(family):
    config = SISOConfig(model_family=family)
    config.validate()
    for name, value in FAMILY_RECIPES[family].items():
        assert getattr(config, name) == value, name
    assert config.family == family


def test_the_recipe_follows_a_new_family_but_keeps_what_the_user_set():
    config = SISOConfig(learning_rate=1e-3)  # SDXL by default
    flux = config.replace(model_family="flux")
    assert (flux.learning_rate, flux.adam_weight_decay, flux.text_encoder_lr) == (1e-3, 1e-4, 5e-6)
    sana = flux.replace(model_family="sana")
    assert (sana.num_inference_steps, sana.guidance_scale, sana.train_text_encoder, sana.early_stopping_max_count) == (20, 4.5, False, 5)
    assert sana.pretrained_model_name_or_path == FAMILY_RECIPES["sana"]["pretrained_model_name_or_path"]
    assert sana.learning_rate == 1e-3


def test_a_folder_of_one_family_given_as_another_is_refused(family_assets):
    with pytest.raises(SISOInputError, match="is a FLUX pipeline .*, not SDXL: use model_family=.flux. or auto"):
        from siso_lib.preflight import check_model_inputs

        check_model_inputs(SISOConfig(model_family="sdxl", pretrained_model_name_or_path=family_assets["flux"]))


def test_sana_refuses_a_text_encoder_lora():
    with pytest.raises(SISOInputError, match="train_text_encoder is not available for Sana"):
        SISOConfig(model_family="sana", train_text_encoder=True).validate()


def test_the_cli_names_a_family_mismatch_before_loading_anything(family_assets, subject_path, tmp_path, capsys):
    from siso_lib.cli import generate

    code = generate.main([
        "--subject_image_path", subject_path, "--model_family", "sana",
        "--pretrained_model_name_or_path", family_assets["flux"], "--output_dir", str(tmp_path / "out"),
    ])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and error[-1].startswith("siso-generate: error: base model") and "is a FLUX pipeline" in error[-1]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("family", ["flux", "sana", "flux2_klein"])
def test_the_authors_command_runs_on_each_family_with_its_recipe(family, family_assets, subject_path, tmp_path, capsys):
    """Their README command's shape (family read from the folder), cut to 2 iterations on the tiny models."""
    from siso_lib.cli import generate

    out = tmp_path / "logs"
    command = [
        "--subject_image_path", subject_path, "--prompt", "a photo of a dog", "--output_dir", str(out),
        "--lr_warmup_steps", "0", "--lr_scheduler", "constant", "--train_batch_size", "1", "--resolution", "64",
        "--pretrained_model_name_or_path", family_assets[family], "--num_train_epochs", "2", "--seed=42",
        "--save_weights", "--weights_output_dir", str(tmp_path / "weights"), "--dino_model_name", family_assets["dino"],
        "--ir_features_path", family_assets["ir"], "--device", "cpu",
    ]
    command += (["--train_text_encoder"] if family == "flux" else
                ["--num_inference_steps", "3", "--num_grad_steps", "2", "--text_encoder_lr", "1e-5"])
    assert generate.main(command) == 0
    captured = capsys.readouterr()
    if family != "flux":  # an option the family leaves without effect is named, not silently ignored
        assert f"ignoring --text_encoder_lr: no text-encoder LoRA is trained in this run ({family})" in captured.err
    result = json.loads(next(line for line in captured.out.splitlines() if line.startswith("SISO_RESULT ")).split(" ", 1)[1])
    assert result["kohya_path"] is None and result["lora_path"].startswith(str(tmp_path / "weights"))
    record = json.loads((out / "run.json").read_text())
    parameters = record["parameters"]
    assert record["model_family"] == family
    assert parameters["model_family"] == "auto" and parameters["learning_rate"] == FAMILY_RECIPES[family]["learning_rate"]
    expected = {"flux": dict(text_encoder_lr=5e-6, num_grad_steps=0, train_text_encoder=True, early_stopping_max_count=7),
                "sana": dict(guidance_scale=4.5, num_grad_steps=2, train_text_encoder=False, early_stopping_max_count=5),
                "flux2_klein": dict(guidance_scale=1.0, num_grad_steps=2, train_text_encoder=False, max_sequence_length=512)}
    assert {name: parameters[name] for name in expected[family]} == expected[family]
