"""The interactive panel, driven in plain Python as a user would: set values, press Run, watch
the plot and images change, press Stop mid-run and get the best LoRA so far."""

from __future__ import annotations

import datetime
import html
import time
from pathlib import Path

import ipywidgets as widgets
import pytest
from safetensors import safe_open

from siso_lib.config import FAMILY_RECIPES
from siso_lib.notebooks.setup import prepare_run
from siso_lib.notebooks.panel import SISOPanel, _placeholder, number_label, upload_file_name

from nb_helpers import REPO, TIMINGS, assets_dir, read_json

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def panel(family_assets, tmp_path):
    """The panel on the offline models (the folder with the tiny FLUX and Sana models too: the
    model family control switches to them)."""
    setup = prepare_run({"models": "offline", "assets_dir": assets_dir(family_assets)})
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


def test_family_control_switches_the_model_and_the_recipe_knobs(panel, family_assets):
    """Choosing a family shows its recipe in every knob still at the old family's value (what a
    headless run with that model_family gets); knobs the user changed keep their values."""
    base = {"models": "offline", "assets_dir": assets_dir(family_assets)}
    assert panel.model_family.value == "auto" and "SDXL-Turbo" in panel.base_model_info.value
    panel.set_values(model_family="sana")
    sana = FAMILY_RECIPES["sana"]
    assert (panel.num_inference_steps.value, panel.early_stopping_max_count.value, panel.train_text_encoder.value) == (
        sana["num_inference_steps"], sana["early_stopping_max_count"], sana["train_text_encoder"])
    assert panel.train_text_encoder.disabled and family_assets["sana"] in panel.base_model_info.value
    assert panel.config() == prepare_run({**base, "model_family": "sana"}).config
    # a knob the user changed stays; the others follow the family
    panel.set_values(early_stopping_max_count=9, rank=8)
    panel.set_values(model_family="flux")
    flux = FAMILY_RECIPES["flux"]
    config = panel.config()
    assert (config.early_stopping_max_count, config.rank) == (9, 8)
    assert (config.num_inference_steps, config.train_text_encoder, config.text_encoder_lr) == (
        flux["num_inference_steps"], flux["train_text_encoder"], flux["text_encoder_lr"])
    assert config.pretrained_model_name_or_path == family_assets["flux"] and not panel.train_text_encoder.disabled
    assert config == prepare_run({**base, "model_family": "flux", "early_stopping_max_count": 9, "rank": 8}).config
    # the run uses the family shown
    panel.set_values(num_train_epochs=2)
    started = time.perf_counter()
    panel.run_button.click()
    assert panel.wait(300) and panel.run.error is None, panel.run.error
    TIMINGS["panel run, model_family=flux (2 iterations, in-process)"] = time.perf_counter() - started
    record = read_json(panel.run.outcome.artifacts.run_json)
    assert record["parameters"]["model_family"] == "flux" and record["steps_run"] == 2
    assert record["parameters"]["pretrained_model_name_or_path"] == family_assets["flux"]
    panel.set_values(model_family="auto")
    assert panel.config().family == "sdxl" and panel.config().early_stopping_max_count == 9


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
    uploaded = tmp_path / "uploads" / "my-cat-1.png"
    assert panel.subject_path.value == str(uploaded) and uploaded.read_bytes() == content
    assert bytes(panel.subject_view.value).startswith(PNG) and "Press <b>Run</b>" in panel.status.value
    panel.examples.value = panel.examples.options[1][1]
    assert panel.subject_path.value == panel.examples.options[1][1]


def _front_end_values(name, widget):
    """(shown text, value) for values the browser can give this widget: a choice's index, a slider
    step, a typed number or text. The text is what the widget displays (its label or readout)."""
    if isinstance(widget, (widgets.Dropdown, widgets.SelectionSlider)):
        return [(label, value) for label, value in zip(widget._options_labels, widget._options_values)]
    if isinstance(widget, widgets.FloatLogSlider):  # the front end moves the exponent in steps
        count = round((widget.max - widget.min) / widget.step)
        return [(format(v, widget.readout_format), v) for v in (widget.base ** (widget.min + k * widget.step) for k in range(count + 1))]
    if isinstance(widget, widgets.FloatSlider):
        count = round((widget.max - widget.min) / widget.step)
        return [(format(v, widget.readout_format), v) for v in (widget.min + k * widget.step for k in range(count + 1))]
    if isinstance(widget, widgets.IntSlider):
        return [(str(v), v) for v in (widget.min, (widget.min + widget.max) // 2, widget.max)]
    if isinstance(widget, widgets.IntText):
        return [(str(v), v) for v in (0, 7, 123456789)]
    if isinstance(widget, widgets.Checkbox):
        return [("false", False), ("true", True)]
    if isinstance(widget, widgets.Text):
        return [(v, v) for v in ({"prompt": ("a photo of a dog", "  a cat, smiling  "),
                                  "ir_features_path": ("", widget.value)}[name])]
    raise AssertionError(f"no front-end model for {type(widget).__name__}")


def test_every_knob_holds_what_it_shows_and_a_headless_run_gets_the_same(panel, family_assets):
    """For each knob and each value the browser can give it: the text shown reads back as exactly the
    value held; the run's config gets that value; a headless run given the shown text gets the same config."""
    base = {"models": "offline", "assets_dir": assets_dir(family_assets)}
    checked = 0
    for name in SISOPanel.KNOBS:
        widget = getattr(panel, name)
        start = widget.value
        for shown, value in _front_end_values(name, widget):
            if isinstance(widget, (widgets.Dropdown, widgets.SelectionSlider)):
                widget.index = widget._options_values.index(value)  # the browser sends the index
            else:
                widget.value = value
            held = widget.value
            if isinstance(held, float):
                assert float(shown) == held, f"{name} shows {shown!r} but holds {held!r}"
            else:
                assert shown == str(held).lower() if isinstance(held, bool) else shown == str(held), (name, shown, held)
            config = panel.config()
            expected = None if name == "ir_features_path" and held == "" else held
            assert getattr(config, name) == expected and type(getattr(config, name)) is type(expected), (name, held)
            headless = prepare_run({**base, name: shown}).config  # papermill -p NAME SHOWN passes the text
            assert headless == config, f"{name}={shown!r}: the panel and a headless run differ"
            checked += 1
        widget.value = start
    assert checked > 100
    # the values of the issue: the label, the value and the run agree
    panel.set_values(learning_rate=5e-3)
    assert (panel.learning_rate.label, panel.learning_rate.value, panel.config().learning_rate) == ("0.005", 5e-3, 5e-3)
    panel.set_values(learning_rate=2e-4)
    assert (panel.learning_rate.label, panel.config().learning_rate) == ("0.0002", 2e-4)
    panel.set_values(learning_rate=1.2345e-4)  # not one of the choices: added with its own exact label
    assert (panel.learning_rate.label, panel.config().learning_rate) == ("0.00012345", 1.2345e-4)
    panel.set_values(dino_features_weight="0.15", rank="16")
    assert (panel.dino_features_weight.label, panel.config().dino_features_weight, panel.config().rank) == ("0.15", 0.15, 16)


@pytest.mark.parametrize("value", [5e-3, 2e-4, 1e-6, 3e-5, 0.1, 0.0050119, 1 / 3, 2.5e-7, 123.0, 7])
def test_number_labels_read_back_exactly(value):
    label = number_label(value)
    assert float(label) == value and type(value)(label) == value, label
    assert number_label(5e-3) == "0.005" and number_label(2e-5) == "2e-5"


def _upload(panel, name, content):
    """What the browser's FileUpload sets (ipywidgets 8: a tuple of dicts)."""
    panel.upload.value = ({"name": name, "type": "image/jpeg", "size": len(content), "content": memoryview(content),
                           "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def test_each_upload_replaces_the_subject_even_under_the_same_name(panel, tmp_path):
    """Phones call every photo image.jpg: the second one must become the preview, the check and the run input."""
    from PIL import Image

    from siso_lib.io.images import file_sha256, load_subject_image
    from siso_lib.notebooks.figures import pil_png

    cat, coffee = (REPO / "data" / "cat.png").read_bytes(), (REPO / "data" / "coffee.png").read_bytes()
    _upload(panel, "image.jpg", cat)
    first_path, first_view = panel.subject_path.value, bytes(panel.subject_view.value)
    _upload(panel, "image.jpg", coffee)
    second_path = panel.subject_path.value
    assert second_path != first_path and Path(second_path).read_bytes() == coffee
    assert Path(first_path).read_bytes() == cat, "an earlier upload (an earlier run's subject) is never overwritten"
    assert Path(second_path).name == "image-2.jpg" and Path(second_path).suffix == ".jpg"
    assert bytes(panel.subject_view.value) == pil_png(load_subject_image(second_path).image, max_side=256) != first_view
    # the run gets the photo the panel shows
    panel.set_values(num_train_epochs=1)
    panel.run_button.click()
    assert panel.wait(120) and panel.run.error is None, panel.run.error
    record = read_json(panel.run.outcome.artifacts.run_json)
    assert record["subject_image"]["sha256"] == file_sha256(second_path)
    # uploading the same photo again reuses its file
    _upload(panel, "image.jpg", coffee)
    assert panel.subject_path.value == second_path
    # garbage under the same name: refused, nothing kept, no subject, Run refused
    _upload(panel, "image.jpg", b"this is not an image at all" * 10)
    assert "upload 'image.jpg'" in html.unescape(panel.status.value) and "not an image" in panel.status.value
    assert panel.subject_path.value == "" and bytes(panel.subject_view.value) == _placeholder("no photo")
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == ["image-2.jpg", "image.jpg"]
    runs = len(panel.runs)
    panel.run_button.click()
    assert len(panel.runs) == runs and not panel.running and "Cannot run" in panel.status.value
    # a good photo after the garbage makes it runnable again
    _upload(panel, "image.jpg", cat)
    assert panel.subject_path.value == first_path and "Press <b>Run</b>" in panel.status.value
    assert Image.open(first_path).size == load_subject_image(first_path).image.size


@pytest.mark.parametrize("name, stored", [
    ("猫.jpg", "猫.jpg"),
    ("Фото 1.JPG", "Фото-1.JPG"),
    ("my cat (1).png", "my-cat-1.png"),
    ("../../etc/passwd.png", "passwd.png"),
    ("C:\\Users\\me\\Pictures\\写真.webp", "写真.webp"),
    ("cafe\u0301.jpeg", "caf\u00e9.jpeg"),  # NFD (macOS) becomes NFC
    (".png", "upload.png"),
    ("image", "image"),
])
def test_stored_upload_names_keep_the_stem_and_extension(name, stored):
    assert upload_file_name(name) == stored
    assert len(upload_file_name("猫" * 200 + ".jpg").encode()) <= 160


def test_non_ascii_upload_is_the_subject(panel, tmp_path):
    content = (REPO / "data" / "cat.png").read_bytes()
    _upload(panel, "猫.jpg", content)
    assert panel.subject_path.value == str(tmp_path / "uploads" / "猫.jpg")
    assert (tmp_path / "uploads" / "猫.jpg").read_bytes() == content and "Press <b>Run</b>" in panel.status.value


def test_a_panel_run_that_fails_on_bad_input_leaves_no_folder(panel, tmp_path):
    panel.set_values(ir_features_path=str(tmp_path / "missing.pth"), num_train_epochs=1)
    panel.run_button.click()
    assert panel.wait(120)
    assert panel.run.outcome is None and "missing.pth" in panel.run.error and "Failed" in panel.status.value
    runs_root = tmp_path / "runs"
    assert not runs_root.exists() or list(runs_root.iterdir()) == [], "a failed run must not leave an (empty) run folder"
