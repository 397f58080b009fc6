"""Both SISO run nodes plan memory and show the run live (issue 21), in a plain Python (no ComfyUI):

- `mode` (default auto) and `quantize` are widgets taken from the config fields, passed as --mode / --quantize;
- a run that ends out of memory has the command's one line (naming the mode predicted to fit) as its status;
- the command gets --preview_file in the run folder, and each progress record naming a preview sends that image
  once through ComfyUI's progress bar (update_absolute(value, total, ("JPEG", image, 512))); a preview that is
  missing or corrupt is skipped and the run goes on.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types

import pytest
import torch
from PIL import Image
from siso_comfy_helpers import fake

from comfyui import host, nodes
from comfyui.siso import commands, images, jobs
from comfyui.siso.params import EditParams, SISOParams, from_widgets
from siso_lib.config import MODES, QUANTIZE, SISOConfig, SISOEditConfig

Generator, Edit = nodes.SISOLoRAGenerator, nodes.SISOSubjectEdit
OOM_LINE = ("out of memory at iteration 3 in default mode: the memory model predicts low-memory fits this device: "
            "use --mode low-memory (or a smaller --resolution)")


def widget_defaults(node) -> dict:
    required = node.INPUT_TYPES()["required"]
    values = {name: spec[1]["default"] for name, spec in required.items() if len(spec) > 1 and "default" in spec[1]}
    values.pop("execute", None)
    return dict(values, extra_args="")


class FakeBar:
    """comfy.utils.ProgressBar: records every update_absolute(value, total, preview)."""

    updates: list = []
    fail_with_preview: Exception | None = None

    def __init__(self, total, node_id=None):
        self.total = total

    def update_absolute(self, value, total=None, preview=None):
        if preview is not None and FakeBar.fail_with_preview is not None:
            raise FakeBar.fail_with_preview
        FakeBar.updates.append((value, total, preview))


@pytest.fixture
def bar(monkeypatch):
    """A ComfyUI whose progress bar records its updates (nothing else of ComfyUI)."""
    FakeBar.updates, FakeBar.fail_with_preview = [], None
    monkeypatch.setitem(sys.modules, "comfy.utils", types.SimpleNamespace(ProgressBar=FakeBar))
    return FakeBar


@pytest.fixture
def argv(monkeypatch, tmp_path):
    path = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(path))
    return lambda: json.loads(path.read_text())


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def previews(updates) -> list:
    return [preview for _, _, preview in updates if preview is not None]


# ----------------------------------------------------------------------------- widgets


@pytest.mark.parametrize("node, config", [(Generator, SISOConfig), (Edit, SISOEditConfig)], ids=["generator", "edit"])
def test_mode_and_quantize_are_the_config_fields_widgets(node, config):
    required = node.INPUT_TYPES()["required"]
    assert required["mode"][0] == list(MODES) and required["quantize"][0] == list(QUANTIZE)
    assert required["mode"][1]["default"] == config().mode == "auto"
    assert required["quantize"][1]["default"] == config().quantize == "auto"
    assert list(required).index("quantize") == list(required).index("mode") + 1  # side by side on the node
    help_text = {spec.name: spec.metadata.get("help", "") for spec in dataclasses.fields(config)}
    assert required["quantize"][1]["tooltip"].startswith(help_text["quantize"])
    assert required["mode"][1]["tooltip"].startswith(help_text["mode"])
    for mode in MODES:  # every pair the widgets offer that the config takes reaches the params as it is
        for quantize in QUANTIZE:
            params = from_widgets(SISOParams if node is Generator else EditParams,
                                  dict(widget_defaults(node), mode=mode, quantize=quantize))
            assert (params.mode, params.quantize) == (mode, quantize)


# ----------------------------------------------------------------------------- the command


def test_the_commands_carry_mode_quantize_and_the_preview_file():
    params = SISOParams(mode="low-memory", quantize="int8", base_model_path="stabilityai/sdxl-turbo")
    argv = commands.build_command("python", "script.py", "siso-lab", "in.png", params, "w", "o", "/run/preview.jpg")
    assert (flag(argv, "--mode"), flag(argv, "--quantize"), flag(argv, "--preview_file")) == ("low-memory", "int8",
                                                                                               "/run/preview.jpg")
    assert "--quantize" in commands.build_command("python", "script.py", "siso-lab", "in.png", SISOParams(), "w", "o")
    upstream = commands.build_command("python", "authors.py", "upstream", "in.png", params, "w", "o", "")
    assert not {"--mode", "--quantize", "--preview_file"} & set(upstream)  # the authors' scripts have none of them
    edit = commands.build_edit_command("python", "edit.py", "s.png", "c.png", None, EditParams(mode="reference",
                                       quantize="none"), SISOParams(), "o", "/run/preview.jpg")
    assert (flag(edit, "--mode"), flag(edit, "--quantize"), flag(edit, "--preview_file")) == ("reference", "none",
                                                                                              "/run/preview.jpg")


def test_the_generator_passes_its_widgets_and_a_preview_file_in_the_run_folder(workdirs, image, bar, argv):
    values = widget_defaults(Generator)
    values.update(siso_script_path=fake("fake_preview"), python_executable=sys.executable, num_train_epochs=3,
                  mode="low-memory", quantize="fp8")
    job = Generator().run(torch.from_numpy(image), "3", **values)
    assert job.ok, job.status
    got = argv()
    assert (flag(got, "--mode"), flag(got, "--quantize")) == ("low-memory", "fp8")
    assert flag(got, "--preview_file") == f"{job.run_dir}/{jobs.PREVIEW_NAME}"
    assert not list(workdirs["runs"].rglob("*preview*"))  # the node's alone: gone with the run
    assert list(workdirs["temp"].iterdir()) == []


# ----------------------------------------------------------------------------- live preview


def test_each_progress_record_with_a_preview_sends_that_image_once(bar, tmp_path):
    path = tmp_path / "preview.jpg"
    Image.new("RGB", (64, 48), (200, 30, 10)).save(path)
    hooks = host.progress_hooks("3", 10)
    hooks.on_progress({"step": 4, "total": 10, "loss": -1.0, "preview": str(path)})
    assert len(bar.updates) == 1
    value, total, preview = bar.updates[0]
    assert (value, total) == (4, 10) and preview[0] == "JPEG" and preview[2] == images.PREVIEW_MAX_SIZE == 512
    assert isinstance(preview[1], Image.Image) and preview[1].size == (64, 48) and preview[1].mode == "RGB"
    assert max(abs(a - b) for a, b in zip(preview[1].getpixel((32, 24)), (200, 30, 10))) < 8
    path.unlink()  # read whole: the picture outlives the file (the child replaces it at the next iteration)
    assert preview[1].copy().getpixel((0, 0))
    hooks.on_progress({"step": 5, "total": 10, "loss": -1.0})  # no preview named: a plain progress update
    assert bar.updates[1] == (5, 10, None) and not hooks.should_cancel()


def test_a_run_sends_one_preview_per_iteration(workdirs, image, bar):
    values = dict(widget_defaults(Generator), siso_script_path=fake("fake_preview"), python_executable=sys.executable,
                  num_train_epochs=3)
    lora_path, status, _, _ = Generator().generate(torch.from_numpy(image), True, unique_id="3", **values)["result"]
    assert status == "Success" and lora_path
    sent = previews(bar.updates)
    assert len(sent) == 3  # one per iteration: the picture the file holds when the record is read (that one, or later)
    steps = [round(p[1].getpixel((0, 0))[0] / 40) for p in sent]
    assert steps == sorted(steps) and steps[-1] == 3 and all(1 <= step <= 3 for step in steps)


def test_the_edit_node_shows_its_preview_too(workdirs, bar, argv, monkeypatch):
    monkeypatch.setattr(Edit, "script_path", fake("fake_edit"))
    scene = torch.rand((1, 40, 56, 3))
    mask = torch.zeros((1, 40, 56))
    mask[0, 10:30, 10:40] = 1.0
    values = dict(widget_defaults(Edit), num_train_epochs=3, quantize="int8", mode="low-memory")
    _, status = Edit().edit(scene, scene, True, mask=mask, unique_id="4", **values)["result"]
    assert status == "Success", status
    assert (flag(argv(), "--mode"), flag(argv(), "--quantize")) == ("low-memory", "int8")
    assert flag(argv(), "--preview_file").endswith("/" + jobs.PREVIEW_NAME)
    assert len(previews(bar.updates)) == 3
    assert not list(workdirs["runs"].rglob("*preview*"))


@pytest.mark.parametrize("broken", ["missing", "corrupt"])
def test_a_broken_preview_never_ends_the_run(workdirs, image, bar, monkeypatch, broken):
    monkeypatch.setenv("FAKE_PREVIEW", broken)
    values = dict(widget_defaults(Generator), siso_script_path=fake("fake_preview"), python_executable=sys.executable,
                  num_train_epochs=3)
    lora_path, status, _, _ = Generator().generate(torch.from_numpy(image), True, unique_id="3", **values)["result"]
    assert status == "Success" and lora_path
    assert [(value, preview) for value, _, preview in bar.updates] == [(0, None), (1, None), (2, None), (3, None)]


def test_a_preview_comfyui_cannot_take_is_dropped_not_taken_for_cancel(bar, tmp_path):
    path = tmp_path / "preview.png"
    Image.new("RGB", (8, 8)).save(path)
    bar.fail_with_preview = ValueError("cannot send this preview")
    hooks = host.progress_hooks("3", 10)
    hooks.on_progress({"step": 2, "total": 10, "preview": str(path)})
    assert bar.updates == [(2, 10, None)] and not hooks.should_cancel()  # the bar still moved; no cancel


# ----------------------------------------------------------------------------- out of memory


def test_out_of_memory_is_the_commands_own_line(workdirs, image):
    values = dict(widget_defaults(Generator), siso_script_path=fake("fake_cli_oom"), python_executable=sys.executable)
    output = Generator().generate(torch.from_numpy(image), True, unique_id="3", **values)  # returns: the queue goes on
    lora_path, status, _, report = output["result"]
    assert status == f"Failed: {OOM_LINE}" and lora_path == ""
    assert report.splitlines()[0] == status and output["ui"]["text"] == [report]


def test_an_edit_out_of_memory_is_the_commands_own_line(workdirs, monkeypatch):
    monkeypatch.setattr(Edit, "script_path", fake("fake_cli_oom"))
    scene = torch.rand((1, 40, 56, 3))
    mask = torch.zeros((1, 40, 56))
    mask[0, 10:30, 10:40] = 1.0
    _, status = Edit().edit(scene, scene, True, mask=mask, **widget_defaults(Edit))["result"]
    assert status == f"Failed: {OOM_LINE}"
