"""The interactive panel, driven in plain Python as a user would: set values, press Run, watch
the plot and images change, press Stop mid-run and get the best LoRA so far."""

from __future__ import annotations

import datetime
import time

import pytest
from safetensors import safe_open

from siso_lib.notebook_run import prepare_run
from siso_lib.notebook_ui import SISOPanel

from nb_helpers import TIMINGS, assets_dir, read_json

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def panel(tiny_assets, tmp_path):
    setup = prepare_run({"models": "offline", "assets_dir": assets_dir(tiny_assets)})
    built = SISOPanel.from_setup(setup, runs_root=tmp_path / "runs", refresh_seconds=0.0)
    yield built
    built.stop()
    built.wait(60)


def test_panel_builds_with_the_setup_values(panel, subject_path):
    config = panel.config()
    assert config == panel.base_config  # untouched widgets give back the notebook's config
    assert panel.subject_path.value == subject_path or panel.subject_path.value.endswith("cat.png")
    assert bytes(panel.subject_view.value).startswith(PNG) and bytes(panel.loss_plot.value).startswith(PNG)
    assert not panel.run_button.disabled and panel.stop_button.disabled
    assert "siso-panel" in panel.widget._dom_classes
    panel.set_values(rank=8, learning_rate=1e-3, train_text_encoder=False, seed=7, num_train_epochs=250)
    config = panel.config()
    assert (config.rank, config.learning_rate, config.train_text_encoder, config.seed, config.num_train_epochs) == (8, 1e-3, False, 7, 250)
    with pytest.raises(ValueError, match="no knob"):
        panel.set_values(rnak=4)


def test_panel_refuses_bad_input_without_running(panel, tmp_path):
    panel.set_values(subject_image_path=str(tmp_path / "missing.png"))
    assert "does not exist" in panel.status.value
    panel.run_button.click()
    assert panel.run is None and not panel.running and "Cannot run" in panel.status.value
    panel.set_values(subject_image_path=panel.examples.options[1][1], prompt="   ")
    panel.run_button.click()
    assert panel.run is None and "prompt is empty" in panel.status.value


def test_panel_run_updates_plot_images_and_finishes(panel):
    panel.set_values(num_train_epochs=3, learning_rate=1e-2, rank=2)
    empty_plot = panel.loss_plot.value
    plots = []
    panel.loss_plot.observe(lambda change: plots.append(change["new"]), names="value")
    started = time.perf_counter()
    panel.run_button.click()
    assert panel.running and panel.run_button.disabled and not panel.stop_button.disabled
    assert panel.wait(120)
    TIMINGS["panel run (3 iterations, in-process)"] = time.perf_counter() - started
    run = panel.run
    assert run.error is None, run.error
    result = run.outcome.result
    assert result.steps_run == 3 and result.stop_reason == "max_steps"
    assert panel.progress.value == 3 and panel.progress.bar_style == "success"
    assert "Finished" in panel.status.value
    assert len(plots) >= 3 and panel.loss_plot.value != empty_plot  # redrawn while running
    assert bytes(panel.current_view.value).startswith(PNG) and bytes(panel.best_view.value).startswith(PNG)
    assert "iteration 3" in panel.current_caption.value
    assert run.outcome.artifacts.lora_path in panel.result_info.value
    assert not panel.run_button.disabled and panel.stop_button.disabled
    assert read_json(run.outcome.artifacts.run_json)["parameters"]["rank"] == 2


def test_panel_stop_mid_run_keeps_the_best_lora(panel):
    # a long budget and no early stopping: only Stop ends this run
    panel.set_values(num_train_epochs=500, early_stopping_threshold_percentage=0.0, early_stopping_max_count=500)
    panel.run_button.click()
    deadline = time.monotonic() + 120
    while panel.progress.value < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert panel.running, "the run ended before Stop was pressed"
    panel.stop_button.click()
    assert panel.wait(60)
    run = panel.run
    result = run.outcome.result
    assert result.stop_reason == "stopped" and 2 <= result.steps_run < 500
    assert result.best_step is not None and 1 <= result.best_step <= result.steps_run
    lora = run.outcome.artifacts.lora_path
    with safe_open(lora, framework="pt") as handle:
        metadata = handle.metadata()
        assert len(list(handle.keys())) > 0
    assert metadata["siso.stop_reason"] == "stopped" and int(metadata["siso.best_step"]) == result.best_step
    assert panel.progress.bar_style == "warning" and "stopped on request" in panel.status.value


def test_panel_upload_becomes_the_subject(panel, subject_path, tmp_path):
    content = open(subject_path, "rb").read()
    panel.upload.value = ({"name": "my cat (1).png", "type": "image/png", "size": len(content),
                           "content": memoryview(content),
                           "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    uploaded = tmp_path / "uploads" / "my-cat-1-.png"
    assert panel.subject_path.value == str(uploaded) and uploaded.read_bytes() == content
    assert bytes(panel.subject_view.value).startswith(PNG) and "Press <b>Run</b>" in panel.status.value
    panel.examples.value = panel.examples.options[1][1]
    assert panel.subject_path.value == panel.examples.options[1][1]
