import pytest
import torch
from safetensors.torch import load_file

from siso_lib.io.images import load_subject_image
from siso_lib.io.lora import DIFFUSERS_WEIGHT_NAME
from siso_lib.optimizer import SISOOptimizer
from siso_lib.runner import run_siso
from siso_lib.generators.base import LoRASnapshotter
from siso_lib.generators.sdxl import SDXLGenerator


def test_the_loss_goes_down_over_twenty_steps(tiny_config, subject_path):
    config = tiny_config(num_train_epochs=20, early_stopping_threshold_percentage=0.0, early_stopping_max_count=20)
    result = SISOOptimizer(config, load_subject_image(subject_path)).run()
    totals = [row["total"] for row in result.history]
    assert len(totals) == 20
    assert totals[-1] < totals[0] - 0.02
    decreasing = sum(b < a for a, b in zip(totals, totals[1:]))
    assert decreasing >= 15, totals
    assert result.best_step == 20 and result.stop_reason == "max_steps"


def test_saved_lora_is_the_best_state_not_the_last(tiny_config, subject_path, tmp_path):
    # a learning rate far too high: the loss improves for a few steps, then gets worse
    config = tiny_config(learning_rate=1.0, num_train_epochs=10, early_stopping_threshold_percentage=0.0, early_stopping_max_count=50)
    live = {}
    outcome = run_siso(config, subject_path, output_dir=str(tmp_path), optimizer_hook=lambda o: live.setdefault("o", o))
    result = outcome.result
    assert result.best_step is not None and 1 < result.best_step < result.steps_run, [r["total"] for r in result.history]
    saved = load_file(tmp_path / DIFFUSERS_WEIGHT_NAME)
    final = LoRASnapshotter(SDXLGenerator.lora_modules(live["o"].pipe, True))()
    # the file holds the snapshot taken at the best step...
    best_unet = result.best_lora["unet"]
    key = next(k for k in best_unet if ".lora_B." in k)
    saved_key = "unet." + key.replace(".lora_B.weight", ".lora.up.weight")
    assert torch.equal(saved[saved_key], best_unet[key])
    # ...which is not the state the weights ended in (the upstream aliasing bug would make them equal)
    assert not torch.equal(best_unet[key], final["unet"][key])
    assert result.best_losses["total"] == min(r["total"] for r in result.history)


def test_stop_request_ends_cleanly_and_keeps_the_best(tiny_config, subject_path):
    optimizer = SISOOptimizer(tiny_config(num_train_epochs=30), load_subject_image(subject_path))

    def stop_after_three(event):
        if event.step == 3:
            optimizer.request_stop()

    result = optimizer.run([stop_after_three])
    assert result.stop_reason == "stopped" and result.steps_run == 3
    assert result.best_lora and result.best_image.shape == (1, 3, 64, 64)


def test_early_stopping_ends_the_run(tiny_config, subject_path):
    config = tiny_config(num_train_epochs=40, early_stopping_threshold_percentage=50.0, early_stopping_max_count=3)
    result = SISOOptimizer(config, load_subject_image(subject_path)).run()
    assert result.stop_reason == "early_stopping" and result.steps_run == 4


def test_events_carry_what_consumers_need(tiny_config, subject_path):
    events = []
    SISOOptimizer(tiny_config(num_train_epochs=3), load_subject_image(subject_path)).run([events.append])
    assert [e.step for e in events] == [1, 2, 3]
    assert set(events[0].losses) == {"total", "dino", "ir"}
    assert events[-1].stop_reason == "max_steps" and events[0].stop_reason is None
    assert all(e.image.shape == (1, 3, 64, 64) and e.image.device.type == "cpu" for e in events)
    assert events[-1].elapsed_seconds >= events[0].elapsed_seconds > 0


def test_same_seed_same_losses(tiny_config, subject_path):
    runs = [SISOOptimizer(tiny_config(num_train_epochs=5), load_subject_image(subject_path)).run() for _ in range(2)]
    assert [r["total"] for r in runs[0].history] == [r["total"] for r in runs[1].history]


def test_dino_only_run_says_so(tiny_config, subject_path, caplog):
    config = tiny_config(num_train_epochs=2, ir_features_path=None)
    with caplog.at_level("WARNING"):
        optimizer = SISOOptimizer(config, load_subject_image(subject_path))
    assert "NO IR CHECKPOINT" in caplog.text
    assert not optimizer.uses_ir
    assert set(optimizer.run().history[0]) >= {"dino", "total"}


@pytest.mark.parametrize("mode", ["reference", "low-memory"])
def test_modes_run(tiny_config, subject_path, mode):
    optimizer = SISOOptimizer(tiny_config(num_train_epochs=2, mode=mode), load_subject_image(subject_path))
    feature_params = list(optimizer.loss.parameters())
    assert all(p.requires_grad for p in feature_params) == (mode == "reference")
    assert optimizer.settings.gradient_checkpointing == (mode == "low-memory")
    assert optimizer.run().steps_run == 2


def test_two_runs_on_one_pipeline_equal_two_fresh_runs(tiny_config, subject_path):
    """The field report: a second SISOOptimizer on a loaded pipeline failed ("Adapter with name
    default already exists"). Runs on one pipeline must give what runs on fresh pipelines give,
    whatever the first run changed (rank, text-encoder LoRA, gradient checkpointing)."""
    from siso_lib.features.dino import DinoFeatures
    from siso_lib.features.ir import IRFeatures
    from siso_lib.generators.sdxl import load_sdxl_pipeline

    subject = load_subject_image(subject_path)
    configs = [
        tiny_config(num_train_epochs=3, learning_rate=0.05, mode="low-memory"),
        tiny_config(num_train_epochs=3, learning_rate=0.01, rank=8, train_text_encoder=False),
        tiny_config(num_train_epochs=3, learning_rate=0.05, mode="reference"),
        tiny_config(num_train_epochs=3, learning_rate=0.05),
    ]
    fresh = [SISOOptimizer(config, subject).run() for config in configs]
    pipe = load_sdxl_pipeline(configs[0].pretrained_model_name_or_path)
    dino, ir = DinoFeatures.from_pretrained(configs[0].dino_model_name), IRFeatures.from_checkpoint(configs[0].ir_features_path)
    for config, expected in zip(configs, fresh):
        optimizer = SISOOptimizer(config, subject, pipe=pipe, dino=dino, ir=ir)
        frozen = optimizer.settings.freeze_feature_networks
        assert all(p.requires_grad != frozen for p in optimizer.loss.parameters())  # as this run's mode says
        result = optimizer.run()
        assert [row["total"] for row in result.history] == [row["total"] for row in expected.history]
        assert result.best_lora.keys() == expected.best_lora.keys()
        for part, state in expected.best_lora.items():
            assert all(torch.equal(result.best_lora[part][key], value) for key, value in state.items()), part
    assert not pipe.unet.is_gradient_checkpointing  # the low-memory run's setting did not stick
    # and the pipeline still renders plainly afterwards
    image = pipe("a photo of a cat", num_inference_steps=1, guidance_scale=0.0, height=64, width=64).images[0]
    assert image.size == (64, 64)


@pytest.mark.parametrize("train_text_encoder", [True, False])
@pytest.mark.parametrize("mode", ["default", "low-memory", "reference"])
def test_runtime_record_describes_what_ran(tiny_config, subject_path, mode, train_text_encoder):
    """run.json's `runtime` must say what the run did, not what was asked (the field report saw
    cache_prompt_embeddings true while text-encoder training had turned the cache off)."""
    optimizer = SISOOptimizer(tiny_config(num_train_epochs=1, mode=mode, train_text_encoder=train_text_encoder),
                              load_subject_image(subject_path))
    runtime = optimizer.describe_runtime()
    pipe = optimizer.pipe
    assert runtime["cache_prompt_embeddings"] == optimizer.generator.cache_prompt_embeddings == (optimizer.inputs.embeds is not None)
    assert runtime["gradient_checkpointing"] == pipe.unet.is_gradient_checkpointing == pipe.vae.is_gradient_checkpointing
    assert runtime["freeze_feature_networks"] == (not any(p.requires_grad for p in optimizer.loss.parameters()))
    assert runtime["dtype"] == {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[pipe.unet.dtype]
    assert runtime["offload_text_encoders"] == (pipe.text_encoder.device != optimizer.device)
    assert runtime["fused_adamw"] == bool(optimizer.optimizer.defaults.get("fused"))
    assert runtime["cuda_graphs"] == (optimizer.graphed is not None)
    if not train_text_encoder:
        assert runtime["cache_prompt_embeddings"] == (mode != "reference")


def test_a_callback_can_stop_the_run_and_a_failing_callback_leaves_no_folder(tiny_config, subject_path, tmp_path, monkeypatch):
    """The fresh-user trial: the README's way to stop from a callback did not exist."""
    def stop_at_two(event):
        if event.step == 2:
            event.request_stop()

    result = run_siso(tiny_config(num_train_epochs=10), subject_path, output_dir=str(tmp_path / "a"), callbacks=[stop_at_two]).result
    assert result.stop_reason == "stopped" and result.steps_run == 2

    def broken(event):
        raise TypeError("a bug in the user's callback")

    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match="user's callback"):
        run_siso(tiny_config(num_train_epochs=3), subject_path, callbacks=[broken])
    assert not list((tmp_path / "outputs" / "runs").glob("*"))


def test_a_run_that_reaches_its_last_iteration_says_so_even_when_patience_ran_out_there(tiny_config, subject_path):
    """Patience 3 runs out at iteration 4 of 4: the run was not ended early, it reached its limit."""
    config = tiny_config(num_train_epochs=4, early_stopping_threshold_percentage=50.0, early_stopping_max_count=3)
    optimizer = SISOOptimizer(config, load_subject_image(subject_path))
    result = optimizer.run()
    assert result.steps_run == 4 and result.stop_reason == "max_steps" and result.reference_step == 1
    assert optimizer.describe_stop(result.stop_reason, result) == "reached the last iteration (num_train_epochs 4)"
