"""FLUX.1 behind the generator interface: equal to FluxPipeline, gradients into both LoRAs, files that reload exactly."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline

from siso_lib.config import FLUX_LORA_TARGETS
from siso_lib.generators.flux import FluxGenerator

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def pipe(family_assets):
    pipe = FluxPipeline.from_pretrained(family_assets["flux"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("cache", [False, True])
def test_our_loop_equals_the_pipeline_bit_for_bit(pipe, steps, cache):
    expected = pipe(PROMPT, num_inference_steps=steps, guidance_scale=0.0, height=64, width=64, max_sequence_length=256,
                    generator=torch.Generator().manual_seed(42), output_type="pt").images.float()
    generator = FluxGenerator(pipe, torch.device("cpu"), train_text_encoder=False, cache_prompt_embeddings=cache)
    ours = generator.generate(PROMPT, torch.Generator().manual_seed(42), 64, 64, steps)
    assert ours.shape == (1, 3, 64, 64) and ours.requires_grad
    assert torch.equal(ours.detach(), expected)


def test_gradients_reach_the_transformer_and_clip_loras_and_follow_num_grad_steps(family_assets):
    pipe = FluxPipeline.from_pretrained(family_assets["flux"])
    groups = FluxGenerator.add_lora(pipe, 4, 4.0, 42, True, FLUX_LORA_TARGETS)
    assert set(groups) == {"transformer", "text_encoder"}
    # B starts at zero: give it a value so that A's gradients are non-zero too
    for params in groups.values():
        for parameter in params:
            torch.nn.init.normal_(parameter, std=0.02)

    def gradients(num_grad_steps):
        for params in groups.values():
            for parameter in params:
                parameter.grad = None
        generator = FluxGenerator(pipe, torch.device("cpu"), True, True, num_grad_steps=num_grad_steps)
        generator.generate(PROMPT, torch.Generator().manual_seed(42), 64, 64, 4).mean().backward()
        return {part: torch.cat([p.grad.flatten() for p in params]) for part, params in groups.items()}

    every_step, last_step = gradients(0), gradients(1)
    for part in groups:
        assert every_step[part].abs().sum() > 0 and last_step[part].abs().sum() > 0, part
    assert not torch.allclose(every_step["transformer"], last_step["transformer"])


def test_a_flux_run_writes_a_lora_that_diffusers_reloads_exactly(family_assets, subject_path, tmp_path):
    from safetensors import safe_open

    from siso_lib.io.lora import KOHYA_WEIGHT_NAME, read_metadata
    from siso_lib.offline import offline_config
    from siso_lib.runner import run_siso

    config = offline_config(family_assets, model_family="flux", learning_rate=0.05, text_encoder_lr=0.01,
                            num_train_epochs=4, early_stopping_threshold_percentage=0.0)
    outcome = run_siso(config, subject_path, output_dir=str(tmp_path))
    result = outcome.result
    assert result.best_step > 1 and outcome.artifacts.kohya_path is None and not (tmp_path / KOHYA_WEIGHT_NAME).exists()
    # the authors' optimiser groups: CLIP-L with its own learning rate and weight decay
    lrs = sorted((group["lr"], group["weight_decay"]) for group in outcome.optimizer.optimizer.param_groups)
    assert lrs == [(0.01, 1e-3), (0.05, 1e-4)]
    metadata = read_metadata(outcome.artifacts.lora_path)
    assert metadata["siso.model_family"] == "flux"
    with safe_open(outcome.artifacts.lora_path, "pt") as handle:
        keys = list(handle.keys())
    assert any(k.startswith("transformer.") and k.endswith("lora_A.weight") for k in keys)
    assert any(k.startswith("text_encoder.text_model.") for k in keys)

    fresh = FluxPipeline.from_pretrained(config.pretrained_model_name_or_path)
    fresh.load_lora_weights(str(tmp_path))
    with torch.no_grad():
        again = FluxGenerator(fresh, torch.device("cpu"), False).generate(
            config.prompt, torch.Generator().manual_seed(config.seed), 64, 64, config.num_inference_steps
        )
    assert torch.equal(again, result.best_image)


def test_render_uses_the_flux_recipe(family_assets, tmp_path):
    from siso_lib.inference import load_pipeline_with_lora, render

    pipe = load_pipeline_with_lora(family_assets["flux"], None, device="cpu", precision="fp32")
    images = render(pipe, [PROMPT], seeds=(1, 2), resolution=64)
    assert len(images) == 1 and len(images[0]) == 2 and images[0][0].size == (64, 64)


def test_memory_options_change_memory_not_the_losses(family_assets, subject_path):
    """T5 (and CLIP-L without LoRA) encoded once, checkpointing of the transformer and the VAE
    decoder in low-memory mode: the same losses as re-encoding everything every iteration."""
    from siso_lib.io.images import load_subject_image
    from siso_lib.offline import offline_config
    from siso_lib.optimizer import SISOOptimizer

    subject = load_subject_image(subject_path)
    losses = {}
    for mode in ("default", "low-memory", "reference"):
        for train_text_encoder in (True, False):
            config = offline_config(family_assets, model_family="flux", mode=mode, num_train_epochs=3,
                                    train_text_encoder=train_text_encoder, learning_rate=0.05, text_encoder_lr=0.05)
            optimizer = SISOOptimizer(config, subject)
            inputs, pipe = optimizer.inputs, optimizer.pipe
            cached = mode != "reference"
            assert (inputs.t5_embeds is not None) == cached
            assert (inputs.pooled is not None) == (cached and not train_text_encoder)
            assert pipe.transformer.gradient_checkpointing == pipe.vae.decoder.gradient_checkpointing == (mode == "low-memory")
            losses[mode, train_text_encoder] = [h["total"] for h in optimizer.run().history]
    for train_text_encoder in (True, False):
        reference = losses["reference", train_text_encoder]
        for mode in ("default", "low-memory"):
            assert max(abs(a - b) for a, b in zip(losses[mode, train_text_encoder], reference)) < 1e-5, (mode, train_text_encoder)
