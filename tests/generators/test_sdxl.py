import pytest
import torch

from siso_lib.errors import SISOInputError
from siso_lib.config import UNET_LORA_TARGETS
from siso_lib.generators.sdxl import SDXLGenerator, load_sdxl_pipeline


def add_lora(pipe, seed, train_text_encoder=True, rank=4, alpha=4.0):
    """SDXLGenerator.add_lora with the SDXL recipe's targets; all trainable parameters in one list."""
    groups = SDXLGenerator.add_lora(pipe, rank, alpha, seed, train_text_encoder, UNET_LORA_TARGETS)
    return [p for params in groups.values() for p in params]


def _generator(seed=42):
    return torch.Generator("cpu").manual_seed(seed)


def test_generation_equals_the_diffusers_pipeline_call(tiny_assets):
    pipe = load_sdxl_pipeline(tiny_assets["sdxl"])
    ours = SDXLGenerator(pipe, torch.device("cpu"), train_text_encoder=False)
    for steps in (1, 2):
        with torch.no_grad():
            image = ours.generate("a photo of a cat", _generator(), 64, 64, steps)
        reference = pipe(
            "a photo of a cat", num_inference_steps=steps, guidance_scale=0.0, height=64, width=64,
            generator=_generator(), output_type="pt",
        ).images
        assert image.shape == (1, 3, 64, 64) and image.dtype == torch.float32
        assert torch.equal(image, reference.float()), steps


def test_lora_targets_and_initial_state(tiny_assets):
    pipe = load_sdxl_pipeline(tiny_assets["sdxl"])
    params = add_lora(pipe, seed=42)
    names = [n for part in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2) for n, p in part.named_parameters() if p.requires_grad]
    assert len(names) == len(params) > 0
    assert all(".lora_A." in n or ".lora_B." in n for n in names)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names} >= {"to_q", "to_k", "to_v", "0", "q_proj", "k_proj", "v_proj", "out_proj"}
    assert all(p.dtype == torch.float32 for p in params)
    lora_b = [p for n, p in pipe.unet.named_parameters() if ".lora_B." in n]
    assert all(torch.count_nonzero(b) == 0 for b in lora_b)  # B starts at zero: the LoRA starts as a no-op


def test_lora_init_is_seeded(tiny_assets):
    first, second = (load_sdxl_pipeline(tiny_assets["sdxl"]) for _ in range(2))
    a = add_lora(first, seed=7)
    torch.rand(10)  # global RNG use elsewhere must not matter: the seed is set right before the adapters
    b = add_lora(second, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_gradients_reach_lora_a_and_b_and_nothing_frozen(tiny_assets):
    pipe = load_sdxl_pipeline(tiny_assets["sdxl"])
    params = add_lora(pipe, seed=0)
    generator = SDXLGenerator(pipe, torch.device("cpu"), train_text_encoder=True)
    optimizer = torch.optim.SGD(params, lr=1e-2)
    for _ in range(2):  # B is zero at first, so A only gets a gradient after one update of B
        optimizer.zero_grad()
        generator.generate("a cat", _generator(), 64, 64).mean().backward()
        optimizer.step()
    # SDXL reads text encoder 1's PENULTIMATE hidden state, so its last layer never gets a gradient
    last_layer_1 = f"layers.{pipe.text_encoder.config.num_hidden_layers - 1}."
    for part in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2):
        for name, param in part.named_parameters():
            if param.requires_grad and part is pipe.text_encoder and last_layer_1 in name:
                assert param.grad is None, name
            elif param.requires_grad:
                assert param.grad is not None and param.grad.abs().sum() > 0, name
            else:
                assert param.grad is None, name
    assert all(p.grad is None for p in pipe.vae.parameters())


def test_only_the_last_denoising_step_carries_gradients(tiny_assets):
    pipe = load_sdxl_pipeline(tiny_assets["sdxl"])
    add_lora(pipe, seed=0, train_text_encoder=False)
    calls = []
    pipe.unet.register_forward_hook(lambda module, args, output: calls.append(torch.is_grad_enabled()))
    SDXLGenerator(pipe, torch.device("cpu"), False).generate("a cat", _generator(), 64, 64, num_inference_steps=3)
    assert calls == [False, False, True]


def test_prompt_embeddings_are_cached_only_without_text_encoder_lora(tiny_assets):
    pipe = load_sdxl_pipeline(tiny_assets["sdxl"])
    generator = SDXLGenerator(pipe, torch.device("cpu"), train_text_encoder=False, cache_prompt_embeddings=True)
    first = generator.encode("a cat")
    assert generator.encode("a cat")[0] is first[0]
    assert generator.encode("a dog")[0] is not first[0]
    assert not SDXLGenerator(pipe, torch.device("cpu"), True, cache_prompt_embeddings=True).cache_prompt_embeddings


def test_bad_base_models_are_named(tmp_path, tiny_assets):
    with pytest.raises(SISOInputError, match="does not exist"):
        load_sdxl_pipeline(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SISOInputError, match="not a diffusers pipeline"):
        load_sdxl_pipeline(str(tmp_path / "empty"))
    sd15 = tmp_path / "sd15"
    sd15.mkdir()
    (sd15 / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": [], "vae": [], "text_encoder": [], "tokenizer": [], "scheduler": []}')
    with pytest.raises(SISOInputError, match="not SDXL-shaped.*text_encoder_2"):
        load_sdxl_pipeline(str(sd15))


def test_encoding_token_ids_equals_the_pipelines_encode_prompt(tiny_assets):
    """With text-encoder LoRA the prompt is encoded from ids each iteration; it must be encode_prompt's result."""
    pipe = load_sdxl_pipeline(tiny_assets["sdxl"])
    add_lora(pipe, seed=0)
    for param in pipe.text_encoder.parameters():  # non-zero LoRA B, so the adapters change the output
        if param.requires_grad:
            torch.nn.init.normal_(param, std=0.1)
    generator = SDXLGenerator(pipe, torch.device("cpu"), train_text_encoder=True)
    prompt = "a photo of a cat " * 30  # longer than CLIP's 77 tokens: truncated the same way
    expected_embeds, expected_pooled = generator.encode(prompt)
    embeds, pooled = generator.encode_ids(generator.tokenize(prompt))
    assert torch.equal(embeds, expected_embeds) and torch.equal(pooled, expected_pooled)
    assert embeds.requires_grad and pooled.requires_grad
