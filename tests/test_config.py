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


# every field, as text from a form / papermill / YAML -> the typed value a run uses
TEXT_VALUES = {
    "prompt": ("a photo of a dog", "a photo of a dog"),
    "pretrained_model_name_or_path": ("org/model", "org/model"),
    "dino_model_name": ("vit_small_patch14_dinov2", "vit_small_patch14_dinov2"),
    "ir_features_path": ("", None),
    "resolution": ("768", 768),
    "num_inference_steps": ("2", 2),
    "seed": ("7", 7),
    "num_train_epochs": ("1e2", 100),
    "learning_rate": ("1e-4", 1e-4),
    "lr_scheduler": ("cosine", "cosine"),
    "lr_warmup_steps": ("3", 3),
    "adam_beta1": ("0.8", 0.8),
    "adam_beta2": ("0.99", 0.99),
    "adam_weight_decay": ("0", 0.0),
    "adam_epsilon": ("1e-6", 1e-6),
    "max_grad_norm": ("2", 2.0),
    "rank": ("8", 8),
    "lora_alpha": ("None", None),
    "train_text_encoder": ("false", False),
    "dino_features_weight": ("0.5", 0.5),
    "ir_features_weight": ("2", 2.0),
    "early_stopping_threshold_percentage": ("5", 5.0),
    "early_stopping_max_count": ("10", 10),
    "device": ("cpu", "cpu"),
    "precision": ("bf16", "bf16"),
    "mode": ("low-memory", "low-memory"),
    "quantize": ("int8", "int8"),
    "gradient_checkpointing": ("yes", True),
    "compile": ("0", False),
    "cuda_graphs": ("False", False),
    "save_on_improve": ("TRUE", True),
    "model_family": ("sdxl", "sdxl"),
    "num_grad_steps": ("2", 2),
    "guidance_scale": ("1.5", 1.5),
    "max_sequence_length": ("128", 128),
    "lora_layers": ("to_q, to_v", "to_q, to_v"),
    "text_encoder_lr": ("1e-5", 1e-5),
    "adam_weight_decay_text_encoder": ("0", 0.0),
    "lr_num_cycles": ("2", 2),
    "lr_power": ("2", 2.0),
    "pretrained_vae_model_name_or_path": ("madebyollin/sdxl-vae-fp16-fix", "madebyollin/sdxl-vae-fp16-fix"),
    "revision": ("none", None),
    "variant": ("fp16", "fp16"),
    "cache_dir": ("", None),
}
BAD_VALUES = {
    "prompt": 3, "resolution": "512px", "num_inference_steps": "1.5", "seed": "forty-two", "num_train_epochs": [50],
    "learning_rate": "1e-4x", "lr_scheduler": "cosinee", "lr_warmup_steps": "-1", "adam_beta1": "1.5", "adam_beta2": "nan",
    "adam_weight_decay": "-0.1", "adam_epsilon": "0", "max_grad_norm": "inf", "rank": "four", "lora_alpha": "-4",
    "train_text_encoder": "maybe", "dino_features_weight": "heavy", "ir_features_weight": "-1",
    "early_stopping_threshold_percentage": "-3", "early_stopping_max_count": "0", "device": "gpu", "precision": "fp8",
    "mode": "turbo", "quantize": "int4", "gradient_checkpointing": "sometimes", "compile": 2, "cuda_graphs": "on please",
    "save_on_improve": None, "pretrained_model_name_or_path": " ", "dino_model_name": "", "ir_features_path": 5,
    "pretrained_vae_model_name_or_path": 1, "revision": 2, "variant": [], "cache_dir": 3.5, "model_family": "sd3", "num_grad_steps": "-1", "guidance_scale": "-1", "max_sequence_length": "1000",
    "lora_layers": "to_q;rm -rf", "text_encoder_lr": "0", "adam_weight_decay_text_encoder": "-1",
    "lr_num_cycles": "0", "lr_power": "0",
}


def test_every_field_is_covered_by_the_matrices():
    import dataclasses

    fields = {f.name for f in dataclasses.fields(SISOConfig)}
    assert set(TEXT_VALUES) == fields
    assert set(BAD_VALUES) == fields


@pytest.mark.parametrize("name", sorted(TEXT_VALUES))
def test_text_values_are_coerced_to_the_field_type(name):
    """The field report: SISOConfig(learning_rate="1e-4") gave a raw TypeError."""
    text, expected = TEXT_VALUES[name]
    config = SISOConfig(**{name: text})
    config.validate()
    assert getattr(config, name) == expected and type(getattr(config, name)) is type(expected)
    later = SISOConfig()  # a field set after construction (a widget callback) is coerced by validate()
    setattr(later, name, text)
    later.validate()
    assert getattr(later, name) == expected


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_bad_values_are_refused_in_one_line_naming_the_field(name):
    from siso_lib.errors import SISOInputError

    with pytest.raises(SISOInputError) as caught:
        SISOConfig(**{name: BAD_VALUES[name]}).validate()
    message = str(caught.value)
    assert name in message and "\n" not in message, message


def test_scheduler_names_are_diffusers_names():
    from diffusers.optimization import SchedulerType

    from siso_lib.config import LR_SCHEDULERS

    assert set(LR_SCHEDULERS) == {kind.value for kind in SchedulerType}


def test_every_field_has_help_text_and_its_bounds_are_checked():
    """One text per field for --help, the panels and the ComfyUI widgets, and the same bounds in validate()."""
    import dataclasses

    from siso_lib.config import SISOEditConfig
    from siso_lib.errors import SISOInputError

    for cls in (SISOConfig, SISOEditConfig):
        for spec in dataclasses.fields(cls):
            assert spec.metadata.get("help"), f"{cls.__name__}.{spec.name} has no help text"
            rules = spec.metadata
            if "min" in rules or "above" in rules:
                low = rules.get("min", rules.get("above"))
                too_low = low - 1 if "min" in rules else low
                with pytest.raises(SISOInputError, match=spec.name):
                    cls(**{spec.name: too_low, "input_image_path": "x.png", "input_class": "cup"}
                        if cls is SISOEditConfig else {spec.name: too_low}).validate()


def test_range_errors_name_the_family_default():
    """A stale default in a message misleads: Sana's patience is 5 and FLUX's lr 2e-4, not SDXL's."""
    from siso_lib.errors import SISOInputError

    with pytest.raises(SISOInputError, match=r"early_stopping_max_count 0 must be at least 1 \(the default is 5\)"):
        SISOConfig(model_family="sana", early_stopping_max_count=0).validate()
    with pytest.raises(SISOInputError, match=r"adam_weight_decay -1 must be zero or positive \(the default is 0.0001\)"):
        SISOConfig(model_family="flux", adam_weight_decay=-1).validate()


def test_messages_name_config_fields_from_python_and_flags_on_a_command_line():
    from siso_lib.errors import flags_in_messages, setting

    assert setting("mode", "low-memory") == "mode='low-memory'" and setting("train_text_encoder", False) == "train_text_encoder=False"
    with flags_in_messages():
        assert setting("mode", "low-memory") == "--mode low-memory"
        assert setting("train_text_encoder", False) == "--no-train_text_encoder"
        assert setting("precision", "fp32") == "--mixed_precision fp32" and setting("mask_path") == "--mask"
    assert setting("learning_rate") == "learning_rate"


def test_text_that_looks_like_a_number_stays_text_for_a_text_field():
    """A sweep's --grid prompt=1984 or a YAML "007": a text setting keeps the text the user wrote."""
    from siso_lib.config import coerce_value
    from siso_lib.errors import SISOInputError

    assert SISOConfig(prompt="1984").prompt == "1984" and SISOConfig(prompt="007").prompt == "007"
    assert coerce_value("seed", "int", "1e2") == 100 and coerce_value("seed", "int", "9223372036854775807") == 2**63 - 1
    for kind, value in (("int", True), ("float", False), ("int", "4.5"), ("float", "nan"), ("bool", "2"), ("str", 1984)):
        with pytest.raises(SISOInputError):
            coerce_value("x", kind, value)


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_a_bad_single_value_is_refused_when_the_config_is_made(name):
    """The fresh-user trial: SISOConfig(mode="fast") and SISOConfig(resolution=63) were made without a
    word; only validate() refused them. A value that is wrong on its own is refused at once."""
    from siso_lib.errors import SISOInputError

    with pytest.raises(SISOInputError) as caught:
        SISOConfig(**{name: BAD_VALUES[name]})
    assert name in str(caught.value) and "\n" not in str(caught.value)


def test_replace_checks_the_new_value_and_validate_keeps_the_cross_field_checks():
    from siso_lib.errors import SISOInputError

    with pytest.raises(SISOInputError, match="resolution 63"):
        SISOConfig().replace(resolution=63)
    both_zero = SISOConfig(dino_features_weight=0, ir_features_weight=0)  # each value alone is fine
    with pytest.raises(SISOInputError, match="nothing to optimise"):
        both_zero.validate()


def test_field_help_gives_the_valid_values_too():
    from siso_lib.config import SISOEditConfig, field_help

    assert field_help(SISOConfig, "learning_rate") == "AdamW learning rate of the denoiser's LoRA; positive"
    assert field_help(SISOConfig, "resolution").endswith("; between 64 and 2048")
    assert field_help(SISOConfig, "mode").endswith("; one of auto, default, low-memory, reference")
    assert field_help(SISOConfig, "adam_beta1") == "AdamW beta1; between 0 and 1 (1 excluded)"
    assert field_help(SISOEditConfig, "box_threshold").endswith("; between 0 and 1")
    assert field_help(SISOConfig, "prompt") == "a simple prompt naming the subject's class"  # no rule: the text alone
    assert field_help(SISOConfig, "learning_rate", rules=False) == "AdamW learning rate of the denoiser's LoRA"
