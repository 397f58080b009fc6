"""The model card beside every LoRA (io/model_card.py): written offline with huggingface_hub's
ModelCard API, and parsed back by it as the Hub would."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard

from siso_lib.config import SISOConfig
from siso_lib.io.model_card import hub_id_of, write_model_card

RESULT = SimpleNamespace(steps_run=12, best_step=9, best_losses={"dino": -0.5, "ir": -0.4, "total": -0.9})


def config_for(base: str, prompt: str = "a photo of a cat", **values) -> SISOConfig:
    config = SISOConfig(prompt=prompt, pretrained_model_name_or_path=base, **values)
    config.validate()
    return config


@pytest.mark.parametrize("base, family, licence", [
    ("stabilityai/sdxl-turbo", "stable-diffusion-xl", "other"),
    ("black-forest-labs/FLUX.1-schnell", "flux", "apache-2.0"),
    ("someone/an-sdxl-finetune", "stable-diffusion-xl", None),  # licence not known offline: left out, said in the text
])
def test_a_card_parses_back_with_the_hub_fields(tmp_path, base, family, licence):
    (tmp_path / "result.png").write_bytes(b"png")
    config = config_for(base, "a photo of a 'red' teapot: #1", model_family="flux" if "FLUX" in base else "sdxl")
    path = write_model_card(tmp_path, config, RESULT, image=tmp_path / "result.png")
    card = ModelCard.load(path)
    data = card.data
    assert data.base_model == base and data.library_name == "diffusers" and data.pipeline_tag == "text-to-image"
    assert {"lora", "text-to-image", "siso", family} <= set(data.tags)
    assert data.license == licence
    assert data.instance_prompt == "a photo of a 'red' teapot: #1"  # quotes and colons survive the YAML
    assert data.widget == [{"text": "a photo of a 'red' teapot: #1", "output": {"url": "result.png"}}]
    assert "pytorch_lora_weights.safetensors" in card.text and ("not known offline" in card.text) == (licence is None)


def test_a_run_writes_its_card_beside_its_lora(finished_run):
    card = ModelCard.load(finished_run / "README.md")
    assert (finished_run / "pytorch_lora_weights.safetensors").is_file()
    assert card.data.base_model is None and "a local folder" in card.text  # the tiny model is no hub repository
    assert card.data.widget[0]["output"]["url"] == "result.png" and (finished_run / "result.png").is_file()
    assert "siso" in card.data.tags and card.data.instance_prompt == "a photo of a cat"


def test_a_hub_cache_folder_names_its_repository_and_a_users_readme_is_kept(tmp_path, caplog):
    snapshot = tmp_path / "hub" / "models--stabilityai--sdxl-turbo" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    assert hub_id_of(str(snapshot)) == "stabilityai/sdxl-turbo" and hub_id_of(str(tmp_path)) is None
    (tmp_path / "README.md").write_text("# my notes\n")
    assert write_model_card(tmp_path, config_for("stabilityai/sdxl-turbo"), RESULT) is None
    assert (tmp_path / "README.md").read_text() == "# my notes\n" and "kept the README.md" in caplog.text


@pytest.mark.parametrize("family, base", [("sdxl", "stabilityai/sdxl-turbo"), ("flux", "black-forest-labs/FLUX.1-schnell"),
                                          ("sana", "Efficient-Large-Model/Sana_1600M_512px_diffusers"),
                                          ("flux2_klein", "black-forest-labs/FLUX.2-klein-4B")])
def test_a_card_names_only_the_files_its_family_writes_and_how_comfyui_takes_them(tmp_path, family, base):
    """The fresh-user trial: a klein card named a Kohya file that only SDXL runs write, and ComfyUI use."""
    text = ModelCard.load(write_model_card(tmp_path, config_for(base, model_family=family), RESULT)).text
    assert ("siso_lora_kohya.safetensors" in text) == (family == "sdxl")
    assert ("cannot apply this file" in text) == (family in ("sana", "flux2_klein"))
    assert ("torch.float16" in text) == (family == "sdxl")  # the FLUX-like families run in bf16
