"""Reusing a LoRA: `render` leaves the pipeline exactly as it found it, also when it fails."""

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from siso_lib.inference import load_pipeline_with_lora, render
from siso_lib.runner import run_siso


@pytest.fixture(scope="module")
def lora_run(tiny_assets, subject_path, tmp_path_factory):
    from siso_lib.offline import offline_config

    folder = tmp_path_factory.mktemp("lora")
    run_siso(offline_config(tiny_assets, num_train_epochs=3, learning_rate=0.05), subject_path, output_dir=str(folder))
    return folder


def lora_state(pipe):
    """Every LoRA layer's scales, active adapters and on/off switch, plus which weights train."""
    state = {}
    for part in ("unet", "text_encoder", "text_encoder_2"):
        for name, module in getattr(pipe, part).named_modules():
            if isinstance(module, BaseTunerLayer):
                state[f"{part}.{name}"] = (dict(module.scaling), list(module.active_adapters), module.disable_adapters)
    grads = {f"{part}.{n}": p.requires_grad for part in ("unet", "text_encoder", "text_encoder_2")
             for n, p in getattr(pipe, part).named_parameters()}
    return state, grads


def draw(pipe):
    generator = torch.Generator("cpu").manual_seed(3)
    return pipe("a photo of a cat", num_inference_steps=1, guidance_scale=0.0, height=64, width=64,
                generator=generator, output_type="pt").images


@pytest.mark.parametrize("scale", [0.5, 0.0, None])
def test_render_restores_the_users_adapter_settings(tiny_assets, lora_run, scale):
    """The field report: render(pipe, prompts, lora_scale=0.5) left the LoRA at 0.5 afterwards."""
    pipe = load_pipeline_with_lora(tiny_assets["sdxl"], lora_run, device="cpu")
    pipe.set_adapters(["siso"], adapter_weights=[0.8])  # the user's own setting
    before, reference = lora_state(pipe), draw(pipe)
    assert any(s[0].get("siso") not in (None, 1.0) for s in before[0].values())
    images = render(pipe, ["a cat on the beach"], seeds=[1], resolution=64, lora_scale=scale)
    assert images[0][0].size == (64, 64)
    assert lora_state(pipe) == before
    assert torch.equal(draw(pipe), reference)


def test_render_restores_the_pipeline_when_it_fails(tiny_assets, lora_run, monkeypatch):
    pipe = load_pipeline_with_lora(tiny_assets["sdxl"], lora_run, device="cpu")
    before = lora_state(pipe)

    def broken(self, *args, **kwargs):
        raise RuntimeError("simulated failure inside the pipeline")

    monkeypatch.setattr(type(pipe), "__call__", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        render(pipe, ["a cat"], seeds=[1], resolution=64, lora_scale=0.25)
    assert lora_state(pipe) == before


def test_a_bad_lora_file_is_one_line(tiny_assets, tmp_path):
    from siso_lib.errors import SISOInputError

    (tmp_path / "pytorch_lora_weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SISOInputError, match="could not be applied"):
        load_pipeline_with_lora(tiny_assets["sdxl"], tmp_path, device="cpu")
    with pytest.raises(SISOInputError, match="does not exist"):
        load_pipeline_with_lora(tiny_assets["sdxl"], tmp_path / "empty_dir_missing", device="cpu")


def test_a_file_that_is_not_a_lora_is_one_line(tmp_path, subject_path):
    """The fresh-user trial: notebook 02 with lora_path=cat.png showed a raw SafetensorError."""
    from siso_lib.errors import SISOInputError
    from siso_lib.io.lora import read_metadata

    with pytest.raises(SISOInputError, match="is not a safetensors LoRA file"):
        read_metadata(subject_path)
