"""FLUX.2 [klein] behind the generator interface: equal to Flux2KleinPipeline, gradients into the
transformer LoRA only, and a LoRA file diffusers' own loader reads back to the same image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import Flux2KleinPipeline
from PIL import Image

from siso_lib.config import FAMILY_RECIPES, FLUX2_KLEIN_LORA_TARGETS, SISOConfig
from siso_lib.errors import SISOInputError
from siso_lib.generators import get_family
from siso_lib.generators.flux2_klein import Flux2KleinGenerator

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def pipe(family_assets):
    pipe = Flux2KleinPipeline.from_pretrained(family_assets["flux2_klein"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("cache", [False, True])
def test_our_loop_equals_the_pipeline_bit_for_bit(pipe, steps, cache):
    expected = pipe(prompt=PROMPT, num_inference_steps=steps, height=64, width=64,
                    generator=torch.Generator().manual_seed(42), output_type="pt").images.float()
    generator = Flux2KleinGenerator(pipe, torch.device("cpu"), cache_prompt_embeddings=cache, num_grad_steps=1)
    ours = generator.generate(PROMPT, torch.Generator().manual_seed(42), 64, 64, steps)
    assert ours.shape == (1, 3, 64, 64) and ours.requires_grad
    assert torch.equal(ours.detach(), expected)


def test_a_base_checkpoint_gets_guidance_as_the_pipeline_gives_it(family_assets):
    """A not-distilled klein (the "base" models) renders with classifier-free guidance against the empty prompt."""
    base = Flux2KleinPipeline.from_pretrained(family_assets["flux2_klein"], is_distilled=False)
    base.set_progress_bar_config(disable=True)
    expected = base(prompt=PROMPT, num_inference_steps=2, guidance_scale=3.0, height=64, width=64,
                    generator=torch.Generator().manual_seed(7), output_type="pt").images.float()
    generator = Flux2KleinGenerator(base, torch.device("cpu"), guidance_scale=3.0)
    assert generator.guided
    with torch.no_grad():
        assert torch.equal(generator.generate(PROMPT, torch.Generator().manual_seed(7), 64, 64, 2), expected)


def test_gradients_reach_the_transformer_lora_and_follow_num_grad_steps(family_assets):
    pipe = Flux2KleinPipeline.from_pretrained(family_assets["flux2_klein"])
    family = get_family("flux2_klein")
    groups = family.add_lora(pipe, 4, 4.0, 42, False, FLUX2_KLEIN_LORA_TARGETS)
    assert set(groups) == {"transformer"}
    names = {name.split(".lora_")[0] for name, p in pipe.transformer.named_parameters() if p.requires_grad}
    assert any(name.endswith("single_transformer_blocks.0.attn.to_qkv_mlp_proj") for name in names)
    assert any(name.endswith("transformer_blocks.0.ff.linear_in") for name in names)
    assert not any(p.requires_grad for p in pipe.text_encoder.parameters()), "Qwen3 stays frozen"
    for parameter in groups["transformer"]:  # B starts at zero: give it a value so that A's gradients are non-zero too
        torch.nn.init.normal_(parameter, std=0.02)

    def gradient(num_grad_steps):
        for parameter in groups["transformer"]:
            parameter.grad = None
        generator = Flux2KleinGenerator(pipe, torch.device("cpu"), num_grad_steps=num_grad_steps)
        generator.generate(PROMPT, torch.Generator().manual_seed(42), 64, 64, 4).mean().backward()
        return torch.cat([p.grad.flatten() for p in groups["transformer"]])

    every_step, last_step = gradient(0), gradient(1)
    assert every_step.abs().sum() > 0 and last_step.abs().sum() > 0
    assert not torch.allclose(every_step, last_step)


def test_klein_keeps_its_text_encoder_frozen_and_names_its_recipe():
    config = SISOConfig(model_family="flux2_klein")
    config.validate()
    assert (config.num_inference_steps, config.num_grad_steps, config.max_sequence_length) == (4, 1, 512)
    assert config.pretrained_model_name_or_path == FAMILY_RECIPES["flux2_klein"]["pretrained_model_name_or_path"]
    with pytest.raises(SISOInputError, match="train_text_encoder is not available for FLUX.2 klein"):
        SISOConfig(model_family="flux2_klein", train_text_encoder=True).validate()


def test_a_klein_run_writes_a_lora_that_diffusers_loads_and_that_redraws_result_png(family_assets, subject_path, tmp_path):
    from siso_lib.io.lora import KOHYA_WEIGHT_NAME, read_metadata
    from siso_lib.offline import offline_config
    from siso_lib.runner import run_siso

    config = offline_config(family_assets, model_family="flux2_klein", num_train_epochs=4, early_stopping_threshold_percentage=0.0)
    outcome = run_siso(config, subject_path, output_dir=tmp_path)
    assert outcome.result.completed and outcome.result.best_step > 1
    assert read_metadata(outcome.artifacts.lora_path)["siso.model_family"] == "flux2_klein"
    assert outcome.artifacts.kohya_path is None and not (tmp_path / KOHYA_WEIGHT_NAME).exists()
    pipe = Flux2KleinPipeline.from_pretrained(family_assets["flux2_klein"])
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(tmp_path)  # diffusers' own loader, the file as written
    image = pipe(prompt=config.prompt, height=config.resolution, width=config.resolution, num_inference_steps=config.num_inference_steps,
                 generator=torch.Generator().manual_seed(config.seed), output_type="np").images[0]
    drawn = np.round(image * 255).astype(np.uint8)
    assert np.array_equal(drawn, np.asarray(Image.open(outcome.artifacts.result_image).convert("RGB")))
