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


@pytest.fixture(scope="module")
def flux_run(tiny_assets, subject_path, tmp_path_factory):
    from siso_lib.offline import offline_config

    folder = tmp_path_factory.mktemp("flux-lora")
    run_siso(offline_config(tiny_assets, model_family="flux", num_train_epochs=1), subject_path, output_dir=str(folder))
    return folder


def test_a_lora_of_another_family_is_refused_before_the_base_model_loads(tiny_assets, flux_run, monkeypatch):
    """The fresh-user trial: a FLUX run's LoRA loaded into SDXL gave a pipeline without the LoRA and
    only diffusers' warning "No LoRA keys associated ..."."""
    from siso_lib.errors import SISOInputError
    from siso_lib.generators.sdxl import SDXLGenerator

    def never(*args, **kwargs):
        raise AssertionError("the base model was loaded before the LoRA's family was checked")

    monkeypatch.setattr(SDXLGenerator, "load_pipeline", classmethod(never))
    with pytest.raises(SISOInputError) as caught:
        load_pipeline_with_lora(tiny_assets["sdxl"], flux_run, device="cpu")
    message = str(caught.value)
    assert "optimised for FLUX (model_family flux)" in message and "is SDXL" in message and "\n" not in message


def test_the_run_json_names_the_family_of_a_file_without_metadata_and_a_lora_that_reaches_no_layer_is_refused(
        tiny_assets, flux_run, tmp_path):
    from safetensors.torch import load_file, save_file

    from siso_lib.errors import SISOInputError
    from siso_lib.inference import apply_lora

    state = load_file(flux_run / "pytorch_lora_weights.safetensors")
    pipe = load_pipeline_with_lora(tiny_assets["sdxl"], None, device="cpu")
    beside_run = tmp_path / "with-run-json"
    beside_run.mkdir()
    save_file(state, beside_run / "pytorch_lora_weights.safetensors")  # no siso.* metadata
    (beside_run / "run.json").write_text((flux_run / "run.json").read_text())
    with pytest.raises(SISOInputError, match=r"optimised for FLUX .* the pipeline \(StableDiffusionXLPipeline\) is SDXL"):
        apply_lora(pipe, beside_run)
    alone = tmp_path / "alone"
    alone.mkdir()
    # FLUX's CLIP-L part fits SDXL's first text encoder; nothing reaches the UNet
    save_file({k: v for k, v in state.items() if k.startswith("text_encoder.")}, alone / "pytorch_lora_weights.safetensors")
    with pytest.raises(SISOInputError, match="has no layer of this sdxl pipeline's unet"):
        apply_lora(pipe, alone)
    assert not any(pipe.get_list_adapters().values())  # the pipeline is left without a half-applied adapter
