"""Sana behind the generator interface: equal to SanaPipeline (CFG, instruction prefix, resolution bin), files that reload."""

from __future__ import annotations

import pytest
import torch
from diffusers import SanaPipeline

from siso_lib.generators.sana import SanaGenerator

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def pipe(family_assets):
    pipe = SanaPipeline.from_pretrained(family_assets["sana"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("cache", [False, True])
def test_our_loop_equals_the_pipeline_bit_for_bit(pipe, cache):
    expected = pipe(PROMPT, num_inference_steps=3, guidance_scale=4.5, height=64, width=64, max_sequence_length=256,
                    generator=torch.Generator().manual_seed(42), output_type="pt").images.float()
    generator = SanaGenerator(pipe, torch.device("cpu"), cache_prompt_embeddings=cache, num_grad_steps=2)
    ours = generator.generate(PROMPT, torch.Generator().manual_seed(42), 64, 64, 3)
    assert ours.shape == (1, 3, 64, 64) and ours.requires_grad
    assert torch.equal(ours.detach(), expected)


def test_leaving_out_the_instruction_prefix_changes_the_image(pipe):
    """The trap variants.md measured: encode_prompt alone does not add the pipeline's instruction."""
    generator = SanaGenerator(pipe, torch.device("cpu"), num_grad_steps=1)
    with torch.no_grad():
        with_prefix = generator.generate(PROMPT, torch.Generator().manual_seed(42), 64, 64, 2)
        generator.instruction = None
        without = generator.generate(PROMPT, torch.Generator().manual_seed(42), 64, 64, 2)
    assert not torch.equal(with_prefix, without)


def test_a_sana_run_writes_a_lora_that_diffusers_reloads_exactly(family_assets, subject_path, tmp_path):
    from siso_lib.offline import offline_config
    from siso_lib.runner import run_siso

    config = offline_config(family_assets, model_family="sana", learning_rate=0.05, num_train_epochs=3,
                            num_inference_steps=3, num_grad_steps=2, early_stopping_threshold_percentage=0.0)
    outcome = run_siso(config, subject_path, output_dir=str(tmp_path))
    result = outcome.result
    assert result.best_step > 1 and outcome.artifacts.kohya_path is None
    assert set(result.best_lora) == {"transformer"}
    fresh = SanaPipeline.from_pretrained(config.pretrained_model_name_or_path)
    fresh.load_lora_weights(str(tmp_path))
    with torch.no_grad():
        again = SanaGenerator(fresh, torch.device("cpu"), num_grad_steps=2).generate(
            config.prompt, torch.Generator().manual_seed(config.seed), 64, 64, 3
        )
    assert torch.equal(again, result.best_image)
