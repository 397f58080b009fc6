"""The pack's one source of defaults: comfyui/defaults.json and comfyui/siso/kohya.py are what
comfyui/tools/make_defaults.py writes from siso_lib now, every widget holds values the config
accepts, and the pack runs on those files alone (no siso_lib in ComfyUI's Python)."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys

import pytest
from siso_comfy_helpers import REPO

from comfyui import nodes, widgets
from comfyui.siso import params, progress
from siso_lib.config import SISOConfig, SISOEditConfig, field_help
from siso_lib.errors import SISOInputError

PACK = REPO / "comfyui"
NUMBER_KINDS = ("INT", "FLOAT")
REPLACED_TOOLTIPS = {"base_model_path", "ir_features_path"}  # the node's own words: lookup folders, families


def make_defaults_tool():
    spec = importlib.util.spec_from_file_location("siso_make_defaults", PACK / "tools" / "make_defaults.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_defaults_json_is_what_the_tool_writes_from_siso_lib():
    tool = make_defaults_tool()
    assert (PACK / "defaults.json").read_text(encoding="utf-8") == tool.defaults_text(), \
        "comfyui/defaults.json is out of date: run python comfyui/tools/make_defaults.py"
    assert tool.main(["--check"]) == 0


def test_the_packs_kohya_module_is_the_generated_copy_of_siso_libs():
    copy = (PACK / "siso" / "kohya.py").read_text(encoding="utf-8")
    source = (REPO / "siso_lib" / "io" / "kohya.py").read_text(encoding="utf-8")
    assert copy.startswith("# GENERATED from siso_lib/io/kohya.py")
    assert copy == make_defaults_tool().kohya_text() and copy.endswith(source)
    assert "siso_lib" not in source.split('"""', 2)[2].replace("siso_lib/", "")  # it imports nothing from siso_lib


def config_widgets(node: type) -> list[tuple[str, str, tuple]]:
    """(widget, config field, declaration) of each widget of `node` that is a siso-lab setting."""
    fields = {spec.name for spec in dataclasses.fields(SISOEditConfig)}
    found = []
    for name, declared in node.INPUT_TYPES()["required"].items():
        field = widgets.FIELD_OF.get(name, name)
        if field in fields and len(declared) > 1:
            found.append((name, field, declared))
    return found


@pytest.mark.parametrize("node, config", [(nodes.SISOLoRAGenerator, SISOConfig), (nodes.SISOSubjectEdit, SISOEditConfig)],
                         ids=["generator", "edit"])
def test_every_widgets_min_max_default_and_choice_is_accepted_by_the_config(node, config):
    """A value a widget lets the user set must never be one siso-generate / siso-edit refuse."""
    base = {"input_image_path": "scene.png", "input_class": "cat"} if config is SISOEditConfig else {}
    checked = 0
    for name, field, (kind, options) in config_widgets(node):
        values = list(kind) if isinstance(kind, list) else [options["default"]]
        if kind in NUMBER_KINDS:
            assert "min" in options and "max" in options, name
            values += [options["min"], options["max"]]
        for value in values:
            if value == "" and field in ("ir_features_path", "input_class"):
                continue  # an empty widget means "none" here
            try:
                config(**base, **{field: value}).validate()
            except SISOInputError as error:
                pytest.fail(f"{node.__name__}.{name} = {value!r} is refused by {config.__name__}: {error}")
            checked += 1
    assert checked > 20


def test_the_two_nodes_offer_the_same_range_for_each_setting_they_share():
    """seed, resolution, rank, ... : the same minimum, maximum and step on both nodes (the config's)."""
    generator = dict((name, options) for name, _, (_, options) in config_widgets(nodes.SISOLoRAGenerator))
    edit = dict((name, options) for name, _, (_, options) in config_widgets(nodes.SISOSubjectEdit))
    shared = set(generator) & set(edit)
    assert {"seed", "resolution", "rank", "num_train_epochs", "learning_rate"} <= shared
    for name in shared:
        ranges = [{key: options.get(key) for key in widgets.RANGE_KEYS} for options in (generator[name], edit[name])]
        assert ranges[0] == ranges[1], name
    seed = next(spec for spec in dataclasses.fields(SISOConfig) if spec.name == "seed")
    assert generator["seed"]["max"] == edit["seed"]["max"] == seed.metadata["max"]


def test_python_executable_says_it_is_the_python_that_runs_siso():
    for node in (nodes.SISOLoRAGenerator, nodes.SISOSubjectEdit):
        tooltip = node.INPUT_TYPES()["required"]["python_executable"][1]["tooltip"]
        assert tooltip.startswith("The Python that runs SISO") and "install.py --venv" in tooltip and "user folder" in tooltip


def test_inversion_max_step_stays_where_the_turbo_schedule_keeps_a_step():
    options = nodes.SISOSubjectEdit.INPUT_TYPES()["required"]["inversion_max_step"][1]
    assert 0.25 <= options["min"] <= options["default"] <= options["max"] <= 1.0
    with pytest.raises(SISOInputError):
        SISOEditConfig(input_image_path="scene.png", input_class="cat", inversion_max_step=options["min"] - options["step"]).validate()


@pytest.mark.parametrize("node, config", [(nodes.SISOLoRAGenerator, SISOConfig), (nodes.SISOSubjectEdit, SISOEditConfig)],
                         ids=["generator", "edit"])
def test_widget_tooltips_are_the_configs_help(node, config):
    for name, field, (_, options) in config_widgets(node):
        if name not in REPLACED_TOOLTIPS:
            assert options["tooltip"].startswith(field_help(config, field, rules=False)), name


def test_every_setting_the_scripts_get_is_a_widget_of_the_same_name():
    """params.from_widgets maps widgets by field name: each field must be a widget of that name."""
    generator = set(nodes.SISOLoRAGenerator.INPUT_TYPES()["required"]) | set(nodes.SISOLoRAGenerator.INPUT_TYPES()["optional"])
    edit = set(nodes.SISOSubjectEdit.INPUT_TYPES()["required"]) | set(nodes.SISOSubjectEdit.INPUT_TYPES()["optional"])
    assert {f.name for f in dataclasses.fields(params.SISOParams)} - {"model_family", "from_recipe"} <= generator
    assert {f.name for f in dataclasses.fields(params.EditParams)} <= edit
    built = params.from_widgets(params.SISOParams, {"seed": "7", "learning_rate": 2e-4, "train_text_encoder": False,
                                                    "ir_features_path": None, "unload_models": True})
    assert (built.seed, built.learning_rate, built.train_text_encoder, built.ir_features_path) == (7, None, False, "")


def test_the_pack_runs_without_siso_lib():
    """ComfyUI's Python usually lacks siso_lib: the pack must import, declare and check inputs on defaults.json alone."""
    code = (
        "import sys; sys.modules['siso_lib'] = None\n"
        "from comfyui import NODE_CLASS_MAPPINGS\n"
        "from comfyui.siso import jobs, params\n"
        "for node in NODE_CLASS_MAPPINGS.values(): node.INPUT_TYPES()\n"
        "job = jobs.run_job(jobs.JobRequest(image=None, params=params.SISOParams(), loras_root='.', python_executable='/no/python'))\n"
        "print(job.status)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Failed: python_executable '/no/python' does not exist: give the python of the environment SISO is installed in"


def test_the_progress_protocol_is_read_as_siso_lib_writes_it():
    from siso_lib.io import progress as protocol

    assert (progress.PROGRESS, progress.RESULT) == (protocol.PROGRESS, protocol.RESULT)
    for line in ('SISO_PROGRESS {"step": 3, "total": 50, "loss": -1.5}', 'SISO_RESULT {"status": "success"}',
                 "SISO_PROGRESS {not json", "SISO_PROGRESS [1, 2]", "siso: hello", "", "  SISO_RESULT   {}  ",
                 protocol.format_line(protocol.PROGRESS, {"step": 1, "total": 2, "dino": -0.5})):
        assert progress.parse_line(line) == protocol.parse_line(line), line
