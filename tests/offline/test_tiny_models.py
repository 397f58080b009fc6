"""The offline FLUX.1-schnell and Sana assets: on-disk layouts, round trips, manifest and full-size configs.

Tiny models only (a few seconds in all); the full-size architectures are built on the meta device.
"""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from siso_lib.offline.tiny_models import (
    PUBLISHED_PARAMETERS,
    build_flux_pipeline,
    build_sana_pipeline,
    write_test_assets,
)
from siso_lib.cli.make_test_assets import main as assets_main

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, str]:
    return write_test_assets(tmp_path_factory.mktemp("assets"), "tiny", families=("flux", "sana"))


def render_flux(pipe, steps: int) -> torch.Tensor:
    """(1, 3, 64, 64) in [0, 1]; schnell settings (guidance ignored, T5 length 256)."""
    generator = torch.Generator().manual_seed(0)
    return pipe(PROMPT, height=64, width=64, num_inference_steps=steps, guidance_scale=0.0,
                max_sequence_length=256, generator=generator, output_type="pt").images


def render_sana(pipe, steps: int) -> torch.Tensor:
    """(1, 3, 64, 64): SanaPipeline renders 512 px (its resolution bins) and resizes."""
    generator = torch.Generator().manual_seed(0)
    return pipe(PROMPT, height=64, width=64, num_inference_steps=steps, guidance_scale=4.5,
                generator=generator, output_type="pt").images


def sana_instruction() -> str:
    """The "complex human instruction" that SanaPipeline.__call__ prepends to every prompt by default."""
    from diffusers import SanaPipeline

    return "\n".join(inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default)


# Weights read back from disk are bit-identical (checked below), but on some CPUs the float32 matmul
# kernels round differently for the memory-mapped tensors safetensors returns than for freshly
# allocated ones (measured here: 1.3e-6 on a FLUX image); images are compared to that rounding.
ROUNDING = dict(rtol=0.0, atol=1e-5)


def assert_same_weights(built, loaded, names) -> None:
    for name in names:
        saved, read = getattr(built, name).state_dict(), getattr(loaded, name).state_dict()
        assert saved.keys() == read.keys() and all(torch.equal(saved[k], read[k]) for k in saved), name


def test_flux_round_trip_from_disk_gives_identical_images(assets):
    from diffusers import FluxPipeline

    built, loaded = build_flux_pipeline("tiny"), FluxPipeline.from_pretrained(assets["flux"])
    assert_same_weights(built, loaded, ("transformer", "text_encoder", "text_encoder_2", "vae"))
    for steps in (1, 4):
        image = render_flux(built, steps)
        assert image.shape == (1, 3, 64, 64)
        assert image.std() > 1e-3  # not a constant image, so equality below means something
        torch.testing.assert_close(image, render_flux(loaded, steps), **ROUNDING)
    # the T5 trap: a model built from a config trains with dropout 0.1 unless the config says 0
    # (dropout would change the image by far more than the rounding allowed here)
    loaded.text_encoder_2.train()
    torch.testing.assert_close(render_flux(loaded, 1), render_flux(built, 1), **ROUNDING)


def test_sana_round_trip_from_disk_gives_identical_images(assets):
    from diffusers import SanaPipeline

    built, loaded = build_sana_pipeline("tiny"), SanaPipeline.from_pretrained(assets["sana"])
    assert_same_weights(built, loaded, ("transformer", "text_encoder", "vae"))
    image = render_sana(built, 2)
    assert image.shape == (1, 3, 64, 64)
    assert image.std() > 1e-3
    torch.testing.assert_close(image, render_sana(loaded, 2), **ROUNDING)


def test_flux_layout_loads_with_the_diffusers_classes(assets):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

    pipe = FluxPipeline.from_pretrained(assets["flux"])
    expected = dict(transformer=FluxTransformer2DModel, vae=AutoencoderKL, text_encoder=CLIPTextModel,
                    text_encoder_2=T5EncoderModel, tokenizer=CLIPTokenizer, tokenizer_2=T5TokenizerFast,
                    scheduler=FlowMatchEulerDiscreteScheduler)
    for name, cls in expected.items():
        assert isinstance(pipe.components[name], cls), name
    assert pipe.vae_scale_factor == 8 and pipe.transformer.config.in_channels == 64
    assert not pipe.transformer.config.guidance_embeds
    vae = pipe.vae.config
    assert (vae.latent_channels, vae.scaling_factor, vae.shift_factor) == (16, 0.3611, 0.1159)
    assert not vae.use_quant_conv and not vae.use_post_quant_conv
    scheduler = pipe.scheduler.config
    assert (scheduler.shift, scheduler.use_dynamic_shifting, scheduler.num_train_timesteps) == (1.0, False, 1000)
    assert pipe.text_encoder_2.config.dropout_rate == 0.0
    # T5's special ids, and </s> appended
    t5 = pipe.tokenizer_2
    assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id) == (0, 1, 2)
    ids = t5(PROMPT).input_ids
    assert ids[-1] == 1 and 2 not in ids and len(ids) == 6  # one piece a word here, then </s>
    assert len(t5) <= pipe.text_encoder_2.config.vocab_size


def test_sana_layout_loads_with_the_diffusers_classes(assets):
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Model, GemmaTokenizerFast

    pipe = SanaPipeline.from_pretrained(assets["sana"])
    expected = dict(transformer=SanaTransformer2DModel, vae=AutoencoderDC, text_encoder=Gemma2Model,
                    tokenizer=GemmaTokenizerFast, scheduler=DPMSolverMultistepScheduler)
    for name, cls in expected.items():
        assert isinstance(pipe.components[name], cls), name
    assert pipe.vae_scale_factor == 32 and pipe.transformer.config.sample_size == 16
    assert pipe.vae.config.scaling_factor == 0.41407
    assert pipe.transformer.config.caption_channels == pipe.text_encoder.config.hidden_size
    scheduler = pipe.scheduler.config
    assert scheduler.use_flow_sigmas and scheduler.flow_shift == 3.0 and scheduler.prediction_type == "flow_prediction"
    # Gemma's special ids; <bos> first, right padding; any text encodes (byte fallback) and decodes back
    gemma = pipe.tokenizer
    assert (gemma.pad_token_id, gemma.eos_token_id, gemma.bos_token_id) == (0, 1, 2)
    assert gemma.padding_side == "right"
    text = sana_instruction() + " Ünïcode 日本 café!"
    ids = gemma(text).input_ids
    assert ids[0] == 2 and gemma.unk_token_id not in ids
    assert gemma.decode(ids, skip_special_tokens=True) == text
    assert max(ids) < pipe.text_encoder.config.vocab_size
    # about as many tokens as words (the real Gemma: ~1.3 a word), not one a character
    assert len(gemma.encode(sana_instruction())) < 2.5 * len(sana_instruction().split())


def test_assets_json_lists_the_families_written(tmp_path):
    write_test_assets(tmp_path / "a")
    sdxl_only = json.loads((tmp_path / "a" / "ASSETS.json").read_text())
    always = {"size", "sdxl", "dino", "ir", "clip", "grounding_dino", "sam"}  # every run's models, the judges, the edit's mask models
    assert set(sdxl_only) == always
    assert not (tmp_path / "a" / "flux").exists() and not (tmp_path / "a" / "sana").exists()

    assert assets_main([str(tmp_path / "a"), "--model_family", "sana"]) == 0
    manifest = json.loads((tmp_path / "a" / "ASSETS.json").read_text())
    assert set(manifest) == always | {"sana"}
    assert manifest["sana"] == str(tmp_path / "a" / "sana")

    # a later call for another family keeps listing what the folder still holds
    paths = write_test_assets(tmp_path / "a", families=("sdxl", "flux"))
    manifest = json.loads((tmp_path / "a" / "ASSETS.json").read_text())
    assert set(manifest) == always | {"flux", "sana"}
    assert paths == {k: v for k, v in manifest.items() if k != "size"}

    with pytest.raises(ValueError, match="unknown model families"):
        write_test_assets(tmp_path / "b", families=("flux2",))


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_size_parameter_counts_match_the_published_models():
    flux, sana = build_flux_pipeline("full", device="meta"), build_sana_pipeline("full", device="meta")
    counts = {
        "flux.transformer": parameters(flux.transformer),
        "flux.text_encoder_2": parameters(flux.text_encoder_2),
        "sana.transformer": parameters(sana.transformer),
        "sana.text_encoder": parameters(sana.text_encoder),
    }
    for name, published in PUBLISHED_PARAMETERS.items():
        assert abs(counts[name] / published - 1) < 0.02, (name, counts[name], published)
    assert len(flux.transformer.transformer_blocks) == 19 and len(flux.transformer.single_transformer_blocks) == 38
    assert flux.transformer.dtype == torch.bfloat16  # FLUX's published dtype (float32 would need 67 GB)
    assert flux.text_encoder_2.config.d_model == 4096 and flux.text_encoder_2.config.vocab_size == 32128
    assert flux.vae_scale_factor == 8 and sana.vae_scale_factor == 32
