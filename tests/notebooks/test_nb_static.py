"""The committed notebooks: no outputs, parameters that take every default from the library,
Colab badge + Colab-only install cell, the paper linked. Fast: nothing is executed."""

from __future__ import annotations

import dataclasses
import json

import nbformat
import papermill
import pytest

from siso_lib.config import SISOConfig
from siso_lib.notebook_run import (
    GITHUB_REPO,
    NOTEBOOK_OPTIONS,
    PAPER_URL,
    SISO_KNOBS,
    colab_badge_url,
    coerce_knob,
    prepare_run,
)

from nb_helpers import NOTEBOOKS, assets_dir

NAMES = ("01_generate_lora.ipynb", "02_apply_lora.ipynb", "03_sweep_report.ipynb")


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
    """Every SISOConfig field is a parameter of 01 and is None there: the defaults come from the library."""
    parameters = papermill.inspect_notebook(str(NOTEBOOKS / "01_generate_lora.ipynb"))
    fields = {f.name for f in dataclasses.fields(SISOConfig)} - {"extra"}
    assert set(SISO_KNOBS) == fields
    assert set(parameters) == set(SISO_KNOBS) | set(NOTEBOOK_OPTIONS)
    for name in SISO_KNOBS:
        assert parameters[name]["default"] == "None", f"{name} must be None in the parameters cell (library default)"
    assert parameters["interactive"]["default"] == "True"
    assert parameters["models"]["default"] == '"auto"'


def test_none_parameters_give_the_library_defaults(tiny_assets):
    from siso_lib.offline import offline_config

    namespace = {name: None for name in SISO_KNOBS}
    hub = prepare_run({**namespace, "models": "hub"})
    assert hub.config == SISOConfig() and set(hub.sources.values()) == {"default"}
    offline = prepare_run({**namespace, "models": "offline", "assets_dir": assets_dir(tiny_assets)})
    assert offline.config == offline_config(tiny_assets)
    assert offline.sources["resolution"] == "offline default" and offline.sources["prompt"] == "default"
    changed = prepare_run({**namespace, "models": "hub", "rank": "8", "learning_rate": "1e-3", "train_text_encoder": "false"})
    assert (changed.config.rank, changed.config.learning_rate, changed.config.train_text_encoder) == (8, 1e-3, False)
    assert changed.sources["rank"] == "set"
    assert "<table>" in changed.to_html() and "rank" in changed.to_html()


def test_bad_parameters_are_refused_with_the_name():
    with pytest.raises(ValueError, match="rank"):
        coerce_knob("rank", 2.5)
    with pytest.raises(ValueError, match="models"):
        prepare_run({"models": "gpu"})
    with pytest.raises(ValueError, match="resolution"):
        prepare_run({"models": "hub", "resolution": 100})


def test_apply_notebook_defaults_come_from_the_library_or_the_lora():
    parameters = papermill.inspect_notebook(str(NOTEBOOKS / "02_apply_lora.ipynb"))
    for name in ("lora_path", "base_model", "prompts", "num_inference_steps", "resolution", "device", "precision"):
        assert parameters[name]["default"] == "None", name


def test_colab_badges_point_at_the_notebooks():
    for name in NAMES:
        url = colab_badge_url(name)
        assert url.endswith(f"/blob/main/notebooks/{name}") and GITHUB_REPO in url
        assert (NOTEBOOKS / name).is_file()
    assert json.loads(json.dumps(GITHUB_REPO)).count("/") == 1
