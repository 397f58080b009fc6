import pytest

from siso_lib.config import SISOConfig


def test_defaults_are_the_documented_sdxl_command():
    config = SISOConfig()
    assert config.pretrained_model_name_or_path == "stabilityai/sdxl-turbo"
    assert (config.resolution, config.num_inference_steps, config.num_train_epochs) == (512, 1, 50)
    assert config.learning_rate == 2e-4 and config.lr_scheduler == "constant" and config.lr_warmup_steps == 0
    assert (config.rank, config.effective_lora_alpha, config.train_text_encoder) == (4, 4.0, True)
    assert (config.early_stopping_threshold_percentage, config.early_stopping_max_count) == (3.0, 7)
    assert config.seed == 42
    assert config.dino_model_name == "vit_large_patch14_dinov2.lvd142m"
    assert (config.adam_beta1, config.adam_beta2, config.adam_weight_decay, config.adam_epsilon) == (0.9, 0.999, 1e-2, 1e-8)
    config.validate()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(prompt="   "), "prompt is empty"),
        (dict(prompt="x" * 5000), "under 2000"),
        (dict(resolution=500), "multiple of 8"),
        (dict(resolution=16), "between 64 and 2048"),
        (dict(rank=0), "rank"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(dino_features_weight=0.0, ir_features_weight=0.0), "nothing to optimise"),
        (dict(precision="fp8"), "precision"),
        (dict(mode="turbo"), "mode"),
    ],
)
def test_validate_names_the_problem(change, message):
    with pytest.raises(ValueError, match=message):
        SISOConfig(**change).validate()


def test_from_dict_rejects_typos():
    with pytest.raises(ValueError, match="unknown SISO setting.*learnig_rate"):
        SISOConfig.from_dict({"learnig_rate": 1e-3})
    assert SISOConfig.from_dict({"rank": 8}).rank == 8
