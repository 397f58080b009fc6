"""Notebook 04_edit_image.ipynb (SISO editing): its parameters, a headless papermill run on the
tiny offline models, and the edit panel driven in plain Python as a user would."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import papermill
import pytest
from PIL import Image

from siso_lib.config import SISOEditConfig
from siso_lib.notebooks.edit import (
    BOX_MASK_NAME,
    DEFAULT_MASK_BOX,
    DEFAULT_SCENE,
    DEFAULT_SCENE_CLASS,
    EDIT_KNOBS,
    EDIT_NOTEBOOK,
    EDIT_PARAMETERS,
    box_mask_array,
    execute_edit_notebook,
    prepare_edit,
    write_box_mask,
)
from siso_lib.notebooks.setup import NotebookParameterError, notebook_parameter_names
from siso_lib.offline import OFFLINE_OVERRIDES

from nb_helpers import REPO, TIMINGS, assert_clean_report, assets_dir, outputs_of, read_json

PNG = b"\x89PNG\r\n\x1a\n"
ITERATIONS = 3


# ----------------------------------------------------------------------------- parameters (fast)
def test_the_parameters_cell_is_the_declared_table_and_every_knob_is_none():
    assert notebook_parameter_names(EDIT_NOTEBOOK) == list(EDIT_PARAMETERS)
    cell = papermill.inspect_notebook(str(EDIT_NOTEBOOK))
    for name in EDIT_KNOBS:
        assert cell[name]["default"] == "None", f"{name} must be None in the cell (the library default)"
        assert name in SISOEditConfig.__dataclass_fields__, name
    assert {"inversion_max_step", "bg_mse_loss_weight", "input_class"} <= set(EDIT_KNOBS)
    assert (cell["models"]["default"], cell["interactive"]["default"], cell["automatic_mask"]["default"]) == ('"auto"', "None", "False")
    assert cell["mask_path"]["default"] == cell["mask_box"]["default"] == "None"


def test_none_parameters_give_the_library_defaults(tiny_assets):
    hub = prepare_edit({"models": "hub", "interactive": False})
    expected = SISOEditConfig(input_image_path=str(DEFAULT_SCENE), input_class=DEFAULT_SCENE_CLASS)
    assert hub.config == expected and hub.config.bg_mse_loss_weight == 10.0 and hub.config.inversion_max_step == 0.75
    assert hub.mask_mode == "box" and hub.mask_box == DEFAULT_MASK_BOX and hub.config.mask_path is None
    assert hub.sources["input_class"] == "example scene" and hub.sources["learning_rate"] == "default"
    assert hub.subject_image_path == str(REPO / "data" / "cat.png")
    offline = prepare_edit({"models": "offline", "assets_dir": assets_dir(tiny_assets), "interactive": False})
    assert offline.config.pretrained_model_name_or_path == tiny_assets["sdxl"]
    for name, value in OFFLINE_OVERRIDES.items():
        assert getattr(offline.config, name) == value, name
    assert offline.sources["resolution"] == "offline default" and offline.sources["bg_mse_loss_weight"] == "default"
    html = offline.to_html()
    assert "a photo of a cup" in html and "the rectangle [0.28, 0.03, 0.7, 0.78]" in html and "bg_mse_loss_weight" in html


def _papermill_namespace(**injected):
    cell = "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in injected.items())
    return {"In": ["", "models = 'auto'", cell, "setup = prepare_edit(globals())"], **injected}


def test_text_values_get_their_types_and_mistakes_are_one_line(tmp_path):
    setup = prepare_edit(_papermill_namespace(models="hub", interactive="false", bg_mse_loss_weight="20", inversion_max_step="0.5",
                                              mask_box="[0.1, 0.2, 0.6, 0.9]", train_text_encoder="no", input_class="dog",
                                              input_image_path=str(REPO / "data" / "cat.png")))
    config = setup.config
    assert (config.bg_mse_loss_weight, config.inversion_max_step, config.train_text_encoder) == (20.0, 0.5, False)
    assert setup.mask_box == (0.1, 0.2, 0.6, 0.9) and setup.interactive is False
    assert config.input_class == "dog" and config.scene_prompt == "a photo of a dog" and setup.sources["input_class"] == "set"
    with pytest.raises(NotebookParameterError, match="did you mean 'mask_box'") as raised:
        prepare_edit(_papermill_namespace(models="hub", mask_bx="[0, 0, 1, 1]"))
    assert "\n" not in str(raised.value) and all(name in str(raised.value) for name in EDIT_PARAMETERS)
    mask = tmp_path / "mask.png"
    cases = [
        (dict(mask_path=str(mask), mask_box=[0, 0, 0.5, 0.5]), "give one mask"),
        (dict(mask_box=[0, 0, 0.5, 0.5], automatic_mask=True), "give one mask"),
        (dict(automatic_mask="yes", input_image_path=str(REPO / "data" / "cat.png")), "automatic_mask needs input_class"),
        (dict(mask_box=[0.5, 0, 0.4, 1]), "is not a rectangle inside the scene"),
        (dict(mask_box=[0, 0, 1]), "must be four numbers"),
        (dict(bg_mse_loss_weight=-1), "bg_mse_loss_weight -1 must be zero or positive"),
        (dict(inversion_max_step="1.5"), "inversion_max_step 1.5 must be between 0.25 and 1"),
    ]
    for values, message in cases:
        with pytest.raises(NotebookParameterError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            prepare_edit({"models": "hub", "interactive": False, **values})
    # automatic: no mask file, the class names the object to find
    auto = prepare_edit({"models": "hub", "interactive": False, "automatic_mask": True})
    assert auto.mask_mode == "auto" and auto.mask_box is None and auto.config.input_class == "cup"
    given = prepare_edit({"models": "hub", "interactive": False, "mask_path": str(mask)})
    assert given.mask_mode == "file" and given.config.mask_path == str(mask) and given.mask_box is None


def test_interactive_none_means_the_panel_only_where_a_jupyter_server_started_the_kernel(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert prepare_edit({"models": "hub"}).interactive is False  # papermill, nbclient
    monkeypatch.setenv("JPY_SESSION_NAME", "/notebooks/04_edit_image.ipynb")  # JupyterLab / Notebook
    assert prepare_edit({"models": "hub"}).interactive is True
    assert prepare_edit({"models": "hub", "interactive": False}).interactive is False


def test_the_rectangle_becomes_a_scene_sized_mask(tmp_path):
    array = box_mask_array((600, 400), (0.25, 0.5, 0.75, 1.0))
    assert array.shape == (400, 600) and set(np.unique(array)) == {0, 255}
    assert array[200:, 150:450].all() and not array[:200].any() and not array[:, :150].any() and not array[:, 450:].any()
    path = write_box_mask(DEFAULT_SCENE, DEFAULT_MASK_BOX, tmp_path / "mask.png")
    with Image.open(path) as mask, Image.open(DEFAULT_SCENE) as scene:
        assert mask.size == scene.size and mask.mode == "L"
        covered = (np.asarray(mask) > 127).mean()
    width = round(0.70 * 600) - round(0.28 * 600)
    height = round(0.78 * 400) - round(0.03 * 400)
    assert covered == pytest.approx(width * height / (600 * 400))


# ----------------------------------------------------------------------------- headless run
@pytest.fixture(scope="module")
def edit_notebook_run(tiny_assets, tmp_path_factory):
    """04_edit_image.ipynb executed by papermill with only the paths and a short budget: interactive
    None runs headless there, on the offline default (tiny models, the example photos and rectangle)."""
    import os

    folder = tmp_path_factory.mktemp("edit-notebook")
    output_dir, executed = folder / "run", folder / "04_edit_image.ipynb"
    environment = os.environ.pop("JPY_SESSION_NAME", None)  # as papermill from a terminal: no Jupyter server
    started = time.perf_counter()
    try:
        papermill.execute_notebook(str(EDIT_NOTEBOOK), str(executed), cwd=str(EDIT_NOTEBOOK.parent), progress_bar=False,
                                   parameters={"models": "offline", "assets_dir": assets_dir(tiny_assets),
                                               "output_dir": str(output_dir), "num_train_epochs": ITERATIONS})
    finally:
        if environment is not None:
            os.environ["JPY_SESSION_NAME"] = environment
    TIMINGS[f"04_edit_image headless (papermill, {ITERATIONS} iterations)"] = time.perf_counter() - started
    return {"dir": output_dir, "notebook": executed}


def test_the_notebook_headless_writes_the_edited_image_and_a_clean_report(edit_notebook_run):
    out, executed = edit_notebook_run["dir"], edit_notebook_run["notebook"]
    for name in ("result.png", "scene.png", "mask.png", "before_after.png", "loss_curve.png", "run.json",
                 "pytorch_lora_weights.safetensors", BOX_MASK_NAME):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    record = read_json(out / "run.json")
    assert record["task"] == "edit" and record["status"] == "completed" and record["steps_run"] == ITERATIONS
    assert record["scene_prompt"] == "a photo of a cup" and record["mask"]["source"] == str(out / BOX_MASK_NAME)
    assert record["parameters"]["resolution"] == OFFLINE_OVERRIDES["resolution"] and "background" in record["history"][0]
    # the edited photo at the scene's own size; the square the edit worked on beside it
    with Image.open(out / "result.png") as result, Image.open(record["parameters"]["input_image_path"]) as photo:
        assert result.size == photo.size
    with Image.open(out / "result_square.png") as square:
        assert square.size == (OFFLINE_OVERRIDES["resolution"],) * 2
    # the inputs figure, the live figure, the before/after strip and the final figure; no widget, no error
    assert_clean_report(executed, min_images=4)
    text = "".join(o.get("text", "") for o in outputs_of(executed) if o["output_type"] == "stream")
    assert f"iteration   {ITERATIONS}/{ITERATIONS}" in text and "background" in text
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs_of(executed) if "data" in o)
    assert "Stopped:" in markdown and str(out / "before_after.png") in markdown and "**Change from the scene**" in markdown
    assert "The background term (MSE outside the mask, weight 10) went from" in markdown
    html = "".join(o["data"].get("text/html", "") for o in outputs_of(executed) if "data" in o)
    assert "a photo of a cup" in html and "offline default" in html


@pytest.mark.slow
def test_an_unknown_parameter_fails_the_notebook_in_one_line(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        execute_edit_notebook(tmp_path / "out.ipynb", {"models": "hub", "mask_bx": "[0, 0, 1, 1]"})
    assert raised.value.ename == "NotebookParameterError" and "did you mean 'mask_box'" in raised.value.evalue


def test_a_mask_that_leaves_nothing_in_the_square_fails_before_anything_is_written(tiny_assets, tmp_path):
    from siso_lib.errors import SISOInputError
    from siso_lib.notebooks.edit import run_edit_headless

    setup = prepare_edit({"models": "offline", "assets_dir": assets_dir(tiny_assets), "interactive": False,
                          "mask_box": [0.0, 0.0, 0.1, 1.0]})  # the left strip: cropped away by the centre square
    setup.runs_root = str(tmp_path / "runs")
    with pytest.raises(SISOInputError, match="is empty"):
        run_edit_headless(setup, print_steps=False)
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


# ----------------------------------------------------------------------------- the panel
@pytest.fixture
def panel(tiny_assets, tmp_path):
    from siso_lib.notebooks.edit_panel import EditPanel

    setup = prepare_edit({"models": "offline", "assets_dir": assets_dir(tiny_assets), "interactive": True})
    built = EditPanel.from_setup(setup, runs_root=tmp_path / "runs", refresh_seconds=0.0)
    yield built
    built.stop()
    built.wait(60)


def test_the_panel_builds_headless_with_the_setup_values(panel, tiny_assets, tmp_path):
    assert "siso-edit-panel" in panel.widget._dom_classes
    assert panel.scene_path.value == str(DEFAULT_SCENE) and panel.mask_source.value == "box"
    assert panel.box == DEFAULT_MASK_BOX and not panel.mask_x.disabled and panel.mask_path.disabled
    assert bytes(panel.scene_view.value).startswith(PNG) and bytes(panel.subject_view.value).startswith(PNG)
    assert "47%" in panel.mask_note.value
    config = panel.config()
    mask = Path(config.mask_path)
    assert mask.parent == tmp_path / "uploads" and mask.name.startswith("mask-600x400-")
    headless = prepare_edit({"models": "offline", "assets_dir": assets_dir(tiny_assets), "interactive": False})
    assert config == headless.config.replace(mask_path=str(mask))  # the panel runs what a headless run would
    with Image.open(mask) as written:
        assert np.array_equal(np.asarray(written), box_mask_array((600, 400), DEFAULT_MASK_BOX))
    panel.set_values(bg_mse_loss_weight=20, inversion_max_step="0.5", input_class="mug", mask_box=[0.1, 0.1, 0.9, 0.9])
    config = panel.config()
    assert (config.bg_mse_loss_weight, config.inversion_max_step, config.input_class) == (20.0, 0.5, "mug")
    assert Path(config.mask_path) != mask and "the subject goes into" in panel.mask_note.value
    panel.set_values(bg_mse_loss_weight=7)  # a value outside the list is added under its own label
    assert panel.config().bg_mse_loss_weight == 7.0
    with pytest.raises(ValueError, match="no knob"):
        panel.set_values(num_inference_steps=4)  # generation knobs the edit does not use are not offered


def test_the_panel_mask_sources_and_bad_scenes(panel, tmp_path):
    panel.set_values(mask_path="")
    assert panel.mask_source.value == "file" and panel.mask_x.disabled and "give the path of a PNG" in panel.mask_note.value
    with pytest.raises(ValueError, match="the mask PNG box is empty"):
        panel.config()
    wrong = tmp_path / "small.png"
    Image.new("L", (10, 10), 255).save(wrong)
    panel.set_values(mask_path=str(wrong))
    assert "is 10x10 px but the scene photo is 600x400" in panel.mask_note.value
    mask = write_box_mask(DEFAULT_SCENE, (0.3, 0.3, 0.7, 0.7), tmp_path / "given.png")
    panel.set_values(mask_path=str(mask))
    assert panel.config().mask_path == str(mask) and "the subject goes into" in panel.mask_note.value
    panel.set_values(automatic_mask=True)
    assert panel.mask_source.value == "auto" and panel.config().mask_path is None
    assert "found when the run starts" in panel.mask_note.value
    panel.set_values(input_image_path=str(tmp_path / "missing.png"))
    assert "Scene photo" in panel.status.value and "does not exist" in panel.status.value
    panel.run_button.click()
    assert panel.run is None and "Cannot run: choose a readable scene photo first" in panel.status.value
    panel.scene_examples.value = panel.scene_examples.options[1][1]  # an example photo brings a scene back
    assert panel.scene_path.value == panel.scene_examples.options[1][1] and "Press <b>Run</b>" in panel.status.value


def test_the_panel_runs_an_edit_live_and_stop_keeps_the_best(panel):
    panel.set_values(num_train_epochs=ITERATIONS)
    plots = []
    panel.loss_plot.observe(lambda change: plots.append(change["new"]), names="value")
    started = time.perf_counter()
    panel.run_button.click()
    assert panel.wait(180)
    TIMINGS[f"edit panel run ({ITERATIONS} iterations, in-process)"] = time.perf_counter() - started
    run = panel.run
    assert run.error is None, run.traceback
    outcome = run.outcome
    assert outcome.result.steps_run == ITERATIONS and panel.progress.value == ITERATIONS and "Finished" in panel.status.value
    assert len(plots) >= ITERATIONS and bytes(panel.best_view.value).startswith(PNG)
    for path in (outcome.artifacts.result_image, outcome.before_after, outcome.mask_image):
        assert path in panel.result_info.value
    assert "outside the mask" in panel.result_info.value
    record = read_json(outcome.artifacts.run_json)
    assert record["task"] == "edit" and record["mask"]["source"].startswith(str(panel.upload_dir / "mask-600x400-"))
    # Stop: a long budget without early stopping ends only by Stop, keeping the best so far
    panel.set_values(num_train_epochs=500, early_stopping_threshold_percentage=0.0, early_stopping_max_count=500)
    panel.run_button.click()
    deadline = time.monotonic() + 120
    while panel.progress.value < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert panel.running, "the run ended before Stop was pressed"
    panel.stop_button.click()
    assert panel.wait(60)
    result = panel.run.outcome.result
    assert result.stop_reason == "stopped" and 2 <= result.steps_run < 500 and result.best_image is not None
    assert Path(panel.run.outcome.artifacts.result_image).is_file() and panel.progress.bar_style == "warning"


def test_offline_the_automatic_mask_runs_on_the_tiny_grounding_dino_and_sam(tiny_assets, tmp_path):
    from IPython.utils.capture import capture_output

    from siso_lib.notebooks.edit import run_edit_headless

    setup = prepare_edit({"models": "offline", "assets_dir": assets_dir(tiny_assets), "interactive": False,
                          "automatic_mask": True, "num_train_epochs": 2, "output_dir": str(tmp_path / "run")})
    assert (setup.config.detector_model, setup.config.segmenter_model) == (tiny_assets["grounding_dino"], tiny_assets["sam"])
    with capture_output():
        run = run_edit_headless(setup, print_steps=False)
    record = read_json(tmp_path / "run" / "run.json")
    assert run.outcome.result.steps_run == 2 and not (tmp_path / "run" / BOX_MASK_NAME).exists()
    assert record["mask"]["source"] == "the automatic mask of 'cup'" and record["mask"]["detector_model"] == tiny_assets["grounding_dino"]
