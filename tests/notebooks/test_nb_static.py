"""The committed notebooks: no outputs, parameters that take every default from the library,
Colab badge + Colab-only install cell, the paper linked. Fast: nothing is executed."""

from __future__ import annotations

import dataclasses
import json

import nbformat
import papermill
import pytest

from siso_lib.config import FAMILY_RECIPES, MODEL_FAMILIES, RECIPE_FIELDS, SISOConfig
from siso_lib.notebooks.setup import (
    CELL_DEFAULTS,
    GITHUB_REPO,
    NOTEBOOK_OPTIONS,
    PAPER_URL,
    PARAMETER_NAMES,
    SISO_KNOBS,
    NotebookParameterError,
    colab_badge_url,
    coerce_knob,
    family_recipe_markdown,
    notebook_parameter_names,
    prepare_run,
    read_parameters,
)
from siso_lib.notebooks.apply import APPLY_PARAMETERS
from siso_lib.io.run_record import LoraInfo
from siso_lib.notebooks.sweep_report import REPORT_PARAMETERS

from nb_helpers import NOTEBOOKS, assets_dir

NAMES = ("01_generate_lora.ipynb", "02_apply_lora.ipynb", "03_sweep_report.ipynb", "04_edit_image.ipynb")


def load(name):
    return nbformat.read(str(NOTEBOOKS / name), as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs_and_valid(name):
    nb = load(name)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: commit notebooks without outputs"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_has_badge_paper_link_parameters_and_colab_cell(name):
    nb = load(name)
    first_markdown = next(c for c in nb.cells if c.cell_type == "markdown").source
    assert colab_badge_url(name) in first_markdown and "colab-badge.svg" in first_markdown
    assert PAPER_URL in "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    colab = next(c for c in nb.cells if c.cell_type == "code").source
    assert 'if "google.colab" in sys.modules:' in colab, "the first code cell must do nothing outside Colab"
    assert f"https://github.com/{GITHUB_REPO}" in colab and "pip" in colab and "torch.cuda.is_available()" in colab
    installs = [line for line in colab.splitlines() if '"install"' in line]
    assert installs and all("torch" not in line for line in installs), "the Colab install must keep Colab's torch"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters' (papermill)"


def test_generate_parameters_cell_has_every_knob_and_no_copied_default():
    """Every SISOConfig field is a parameter of 01 and is None there: the defaults come from the library.
    model_family is the exception: "auto", SISOConfig's own default, so that papermill reads it as a str."""
    parameters = papermill.inspect_notebook(str(NOTEBOOKS / "01_generate_lora.ipynb"))
    fields = {f.name for f in dataclasses.fields(SISOConfig)}
    assert set(SISO_KNOBS) == fields
    assert set(parameters) == set(SISO_KNOBS) | set(NOTEBOOK_OPTIONS)
    assert CELL_DEFAULTS == {"model_family": "auto"} == {"model_family": SISOConfig().model_family}
    for name in SISO_KNOBS:
        expected = json.dumps(CELL_DEFAULTS[name]) if name in CELL_DEFAULTS else "None"
        assert parameters[name]["default"] == expected, f"{name} must be {expected} in the parameters cell (library default)"
    assert parameters["model_family"]["inferred_type_name"] == "str"
    assert parameters["interactive"]["default"] == "True"
    assert parameters["models"]["default"] == '"auto"'


def test_none_parameters_give_the_library_defaults(tiny_assets):
    from siso_lib.offline import offline_config

    namespace = {name: None for name in SISO_KNOBS}
    hub = prepare_run({**namespace, "models": "hub"})
    assert hub.config == SISOConfig() and set(hub.sources.values()) == {"default", "sdxl recipe"}
    assert {name for name, source in hub.sources.items() if source == "sdxl recipe"} == set(RECIPE_FIELDS)
    assert prepare_run({**namespace, "models": "hub", "model_family": "auto"}).sources["model_family"] == "default"
    offline = prepare_run({**namespace, "models": "offline", "assets_dir": assets_dir(tiny_assets)})
    assert offline.config == offline_config(tiny_assets).replace(model_family="auto")  # "auto" stays auto: read from the tiny SDXL folder
    assert offline.family == "sdxl"
    assert offline.sources["resolution"] == "offline default" and offline.sources["prompt"] == "default"
    changed = prepare_run({**namespace, "models": "hub", "rank": "8", "learning_rate": "1e-3", "train_text_encoder": "false"})
    assert (changed.config.rank, changed.config.learning_rate, changed.config.train_text_encoder) == (8, 1e-3, False)
    assert changed.sources["rank"] == "set"
    assert "<table>" in changed.to_html() and "rank" in changed.to_html()


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_model_family_picks_the_familys_model_and_recipe(family, family_assets):
    """offline: the family's tiny model; hub: the recipe's hub model; both with the family's recipe."""
    from siso_lib.offline import offline_config

    offline = prepare_run({"models": "offline", "assets_dir": assets_dir(family_assets), "model_family": family})
    assert offline.config == offline_config(family_assets, model_family=family)
    assert offline.config.pretrained_model_name_or_path == family_assets[family] and offline.family == family
    assert offline.sources["model_family"] == "set" and offline.sources["early_stopping_max_count"] == f"{family} recipe"
    hub = prepare_run({"models": "hub", "model_family": family})
    assert hub.config == SISOConfig(model_family=family)
    for name in RECIPE_FIELDS:  # e.g. Sana: 20 steps, lr 8e-4, no text-encoder LoRA, patience 5
        assert getattr(hub.config, name) == FAMILY_RECIPES[family][name], name
        assert hub.sources[name] == f"{family} recipe"
    assert f"{family} recipe" in hub.to_html() and FAMILY_RECIPES[family]["pretrained_model_name_or_path"] in hub.to_html()
    # a base model the sweep or the user names wins over the recipe's
    named = prepare_run({"models": "hub", "model_family": family, "pretrained_model_name_or_path": "me/my-model"})
    assert named.config.pretrained_model_name_or_path == "me/my-model" and named.config.learning_rate == FAMILY_RECIPES[family]["learning_rate"]
    # "auto" with a base model folder of this family: that family, offline too
    auto = prepare_run({"models": "offline", "assets_dir": assets_dir(family_assets), "pretrained_model_name_or_path": family_assets[family]})
    assert auto.config.model_family == "auto" and auto.family == family
    assert auto.config.num_inference_steps == FAMILY_RECIPES[family]["num_inference_steps"]


def test_unknown_or_impossible_model_family_is_one_line():
    with pytest.raises(NotebookParameterError, match=r"^model_family 'flx' is unknown: use auto, sdxl, flux, sana, flux2_klein$"):
        prepare_run({"models": "hub", "model_family": "flx"})
    with pytest.raises(NotebookParameterError, match="not available for Sana") as raised:
        prepare_run({"models": "hub", "model_family": "sana", "train_text_encoder": True})
    assert "\n" not in str(raised.value)


def test_explanation_cell_holds_the_recipe_of_each_family():
    """01's explanation cell shows config.FAMILY_RECIPES as a table, generated from it (it cannot drift)."""
    table = family_recipe_markdown()
    explanation = next(c.source for c in load("01_generate_lora.ipynb").cells if c.source.startswith("## What one SISO iteration does"))
    assert table in explanation
    for family in MODEL_FAMILIES:
        recipe = FAMILY_RECIPES[family]
        assert recipe["pretrained_model_name_or_path"] in table and f"`{family}`" in table
        assert f"{recipe['num_inference_steps']} ({recipe['num_grad_steps']})" in table
        assert f"| {recipe['early_stopping_max_count']} |" in table.splitlines()[-1]


def test_lora_info_takes_the_family_from_the_metadata(tmp_path):
    path = tmp_path / "pytorch_lora_weights.safetensors"
    old = LoraInfo(path, {"prompt": "a photo of a dog"})  # written before FLUX and Sana: no model_family
    assert old.model_family == "sdxl" and old.base_model == FAMILY_RECIPES["sdxl"]["pretrained_model_name_or_path"]
    assert "not stored: an SDXL LoRA" in old.to_markdown()
    sana = LoraInfo(path, {"model_family": "sana"})
    assert sana.base_model == FAMILY_RECIPES["sana"]["pretrained_model_name_or_path"]
    assert sana.render_settings() == (FAMILY_RECIPES["sana"]["num_inference_steps"], FAMILY_RECIPES["sana"]["guidance_scale"])
    assert sana.render_settings(4, 1.5) == (4, 1.5) and sana.render_settings(None, 0)[1] == 0.0
    flux = LoraInfo(path, {"model_family": "flux", "base_model": "/models/flux"})
    assert flux.base_model == "/models/flux" and flux.render_settings()[0] == FAMILY_RECIPES["flux"]["num_inference_steps"]


def test_bad_parameters_are_refused_with_the_name():
    with pytest.raises(ValueError, match="rank"):
        coerce_knob("rank", 2.5)
    with pytest.raises(ValueError, match="models"):
        prepare_run({"models": "gpu"})
    with pytest.raises(ValueError, match="resolution"):
        prepare_run({"models": "hub", "resolution": 100})


def test_apply_notebook_defaults_come_from_the_library_or_the_lora():
    parameters = papermill.inspect_notebook(str(NOTEBOOKS / "02_apply_lora.ipynb"))
    for name in ("lora_path", "base_model", "prompts", "num_inference_steps", "guidance_scale", "resolution", "device", "precision"):
        assert parameters[name]["default"] == "None", name


def test_colab_badges_point_at_the_notebooks():
    for name in NAMES:
        url = colab_badge_url(name)
        assert url.endswith(f"/blob/main/notebooks/{name}") and GITHUB_REPO in url
        assert (NOTEBOOKS / name).is_file()
    assert json.loads(json.dumps(GITHUB_REPO)).count("/") == 1


def _papermill_namespace(**injected):
    """A kernel's globals after papermill ran its injected cell (IPython keeps each cell's source in `In`)."""
    cell = "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in injected.items())
    return {"In": ["", "import sys", "models = 'auto'\ninteractive = True\n", cell, "setup = prepare_run(globals())"],
            "models": "hub", **injected}


TRUE_TEXT, FALSE_TEXT = ("true", "True", "TRUE", "1", "yes", "on"), ("false", "False", "0", "no", "off", "No")


@pytest.mark.parametrize("text", TRUE_TEXT + FALSE_TEXT)
def test_yes_no_text_is_a_bool_for_every_bool_parameter(text):
    """papermill -p interactive false passes the text "false"; it must mean False (and so on)."""
    expected = text in TRUE_TEXT
    setup = prepare_run(_papermill_namespace(interactive=text, overwrite=text))
    assert setup.interactive is expected and setup.overwrite is expected
    for spec in dataclasses.fields(SISOConfig):
        if str(spec.type).startswith("bool"):
            value = getattr(prepare_run(_papermill_namespace(**{spec.name: text})).config, spec.name)
            assert value is expected, (spec.name, text, value)


def test_number_text_is_a_number_for_every_number_parameter():
    defaults = SISOConfig()
    checked = 0
    for spec in dataclasses.fields(SISOConfig):
        kind = str(spec.type).split("|")[0].strip()
        if kind not in ("int", "float"):
            continue
        value = getattr(defaults, spec.name)
        value = value if value is not None else 8.0
        texts = [str(value), f"{value:e}", f" {value} "] if kind == "float" else [str(value), f"{value}.0", f"+{value}"]
        for text in texts:
            got = getattr(prepare_run(_papermill_namespace(**{spec.name: text})).config, spec.name)
            assert got == value and type(got) is type(value), (spec.name, text, got)
            checked += 1
    assert checked >= 30
    setup = prepare_run(_papermill_namespace(learning_rate="1e-4", rank="8", seed="7"))
    assert (setup.config.learning_rate, setup.config.rank, setup.config.seed) == (1e-4, 8, 7)


def test_an_unknown_injected_parameter_fails_with_the_valid_names():
    with pytest.raises(NotebookParameterError) as raised:
        prepare_run(_papermill_namespace(learnig_rate=1e-4))
    message = str(raised.value)
    assert "'learnig_rate'" in message and "did you mean 'learning_rate'" in message and "\n" not in message
    assert all(name in message for name in PARAMETER_NAMES)
    assert raised.value._render_traceback_() == [f"NotebookParameterError: {message}"]  # IPython: one line
    with pytest.raises(NotebookParameterError, match="learning_rate must be a number"):
        prepare_run(_papermill_namespace(learning_rate="abc"))
    with pytest.raises(NotebookParameterError, match="interactive must be true or false"):
        prepare_run(_papermill_namespace(interactive="maybe"))
    with pytest.raises(NotebookParameterError, match="did you mean 'rank'"):
        prepare_run({"models": "hub"}, rnak=4)
    # names defined by hand (not injected by papermill) are no parameters and are not checked
    assert prepare_run({"models": "hub", "my_note": 1, "In": ["my_note = 1"]}).config == SISOConfig()


def test_parameter_names_read_from_the_notebook_are_papermills():
    notebook = NOTEBOOKS / "01_generate_lora.ipynb"
    assert notebook_parameter_names(notebook) == list(papermill.inspect_notebook(str(notebook))) == list(PARAMETER_NAMES)


@pytest.mark.parametrize("name, types", [("02_apply_lora.ipynb", APPLY_PARAMETERS), ("03_sweep_report.ipynb", REPORT_PARAMETERS)])
def test_other_notebooks_declare_the_type_of_each_parameter(name, types):
    assert notebook_parameter_names(NOTEBOOKS / name) == list(types)


def test_apply_parameters_get_their_types_and_unknown_names_fail():
    values = read_parameters(_papermill_namespace(seeds="3", lora_scales="0,1.5", prompts="a cat, smiling", guidance_scale="4.5",
                                                  num_inference_steps="4", resolution="none", lora_path=None, evaluate=True), APPLY_PARAMETERS)
    assert (values["seeds"], values["lora_scales"], values["prompts"]) == ([3], [0.0, 1.5], ["a cat, smiling"])
    assert values["guidance_scale"] == 4.5
    assert (values["num_inference_steps"], values["resolution"], values["lora_path"]) == (4, None, None)
    values = read_parameters(_papermill_namespace(seeds="[1, 2]", lora_scales=1, prompts=["a", "b"], evaluate="yes"), APPLY_PARAMETERS)
    assert (values["seeds"], values["lora_scales"], values["prompts"]) == ([1, 2], [1.0], ["a", "b"])
    assert values["evaluate"] is True
    assert read_parameters(_papermill_namespace(seeds=[1], lora_scales=[1], evaluate="false"), APPLY_PARAMETERS)["evaluate"] is False
    with pytest.raises(NotebookParameterError, match="evaluate must be true or false"):
        read_parameters(_papermill_namespace(seeds=[1], lora_scales=[1], evaluate="maybe"), APPLY_PARAMETERS)
    with pytest.raises(NotebookParameterError, match="seeds"):
        read_parameters(_papermill_namespace(seeds="one"), APPLY_PARAMETERS)
    with pytest.raises(NotebookParameterError, match="did you mean 'lora_scales'.*valid names: lora_path"):
        read_parameters(_papermill_namespace(lora_scale=[1.0]), APPLY_PARAMETERS)
    with pytest.raises(NotebookParameterError, match="did you mean 'sweep_dir'"):
        read_parameters(_papermill_namespace(sweep_dri="x"), REPORT_PARAMETERS)
