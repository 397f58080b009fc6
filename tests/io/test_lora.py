import torch
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import load_file

from siso_lib.io.images import load_subject_image
from siso_lib.inference import load_pipeline_with_lora
from siso_lib.io.lora import KOHYA_WEIGHT_NAME, read_metadata, to_kohya_state_dict
from siso_lib.runner import run_siso
from siso_lib.generators.sdxl import SDXLGenerator


def reload_and_generate(config, folder):
    """A fresh base pipeline + the saved LoRA through diffusers' loader, then our generator."""
    pipe = StableDiffusionXLPipeline.from_pretrained(config.pretrained_model_name_or_path)
    pipe.load_lora_weights(str(folder))
    with torch.no_grad():
        return SDXLGenerator(pipe, torch.device("cpu"), False).generate(
            config.prompt, torch.Generator("cpu").manual_seed(config.seed), config.resolution, config.resolution
        )


def test_reloaded_lora_reproduces_the_best_image_exactly(tiny_config, subject_path, tmp_path):
    config = tiny_config(learning_rate=0.05, num_train_epochs=6, early_stopping_threshold_percentage=0.0)
    outcome = run_siso(config, subject_path, output_dir=str(tmp_path))
    result = outcome.result
    assert result.best_step > 1
    assert torch.equal(reload_and_generate(config, tmp_path), result.best_image)
    # and the inference helper does the same through the public pipeline call
    helper = load_pipeline_with_lora(config.pretrained_model_name_or_path, str(tmp_path), device="cpu")
    again = helper(config.prompt, num_inference_steps=1, guidance_scale=0.0, height=64, width=64,
                   generator=torch.Generator("cpu").manual_seed(config.seed), output_type="pt").images
    assert torch.equal(again.float(), result.best_image)


def test_kohya_file_has_every_trained_layer_with_alpha(tiny_config, subject_path, tmp_path):
    config = tiny_config(num_train_epochs=2)
    result = run_siso(config, subject_path, output_dir=str(tmp_path)).result
    kohya = load_file(tmp_path / KOHYA_WEIGHT_NAME)
    for part, prefix in (("unet", "lora_unet_"), ("text_encoder", "lora_te1_"), ("text_encoder_2", "lora_te2_")):
        modules = {key.rsplit(".lora_", 1)[0] for key in result.best_lora[part]}
        assert modules
        for module in modules:
            if part != "unet" and not module.startswith("text_model."):
                module = "text_model." + module  # transformers >= 5.6 has no text_model level; the files keep it
            name = prefix + module.replace(".", "_")
            assert {f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha"} <= set(kohya), name
            assert kohya[f"{name}.alpha"].item() == 4.0
    assert len(kohya) == 3 * sum(len(v) // 2 for v in result.best_lora.values())
    assert any(k.startswith("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0.") for k in kohya)
    assert any(k.startswith("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.") for k in kohya)


def test_files_carry_the_run_metadata(tiny_config, subject_path, tmp_path):
    config = tiny_config(num_train_epochs=2)
    run_siso(config, subject_path, output_dir=str(tmp_path))
    subject_sha = load_subject_image(subject_path).sha256
    for name in ("pytorch_lora_weights.safetensors", KOHYA_WEIGHT_NAME):
        meta = read_metadata(tmp_path / name)
        assert meta["siso.prompt"] == config.prompt and meta["siso.seed"] == "42"
        assert meta["siso.base_model"] == config.pretrained_model_name_or_path
        assert meta["siso.steps_run"] == "2" and meta["siso.best_step"] in ("1", "2")
        assert meta["siso.subject_image_sha256"] == subject_sha
        assert "total" in meta["siso.final_losses"] and meta["siso.version"]


def test_text_encoder_keys_are_normalised_and_alpha_is_kept():
    state = {"text_encoder": {"encoder.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(2, 4),
                              "encoder.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(4, 2)}}
    kohya = to_kohya_state_dict(state, alpha=8)
    assert set(kohya) == {
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight",
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha",
    }
    assert kohya["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha"].item() == 8.0


def test_alpha_other_than_rank_reloads_with_the_right_scale(tiny_config, subject_path, tmp_path):
    config = tiny_config(learning_rate=0.05, num_train_epochs=3, early_stopping_threshold_percentage=0.0, rank=4, lora_alpha=8.0)
    result = run_siso(config, subject_path, output_dir=str(tmp_path)).result
    assert torch.equal(reload_and_generate(config, tmp_path), result.best_image)
