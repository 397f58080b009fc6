import pytest
import torch
from safetensors.torch import load_file

from siso_lib.images import load_subject_image
from siso_lib.lora_io import DIFFUSERS_WEIGHT_NAME
from siso_lib.optimizer import SISOOptimizer
from siso_lib.runner import run_siso
from siso_lib.sdxl import lora_state_dicts


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
    final = lora_state_dicts(live["o"].pipe, True)
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
