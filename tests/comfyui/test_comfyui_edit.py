"""The "SISO Subject Edit" node in a plain Python (no ComfyUI): declaration, defaults, the mask,
the siso-edit command, failures as one-line statuses, Cancel, caching; and once with the real
siso-edit (bundled launcher) on the tiny offline models."""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from siso_comfy_helpers import REPO, fake, pids

from comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, host, nodes
from comfyui.siso import images
from comfyui.siso.child import Hooks
from comfyui.siso.messages import InputProblem
from siso_lib.config import MODES, PRECISIONS, SISOEditConfig

Edit = nodes.SISOSubjectEdit
HEIGHT, WIDTH = 48, 80  # the scene: not square, so a channels-first mix-up would show
BOX = (slice(10, 40), slice(30, 60))  # rows, columns of the painted region


@pytest.fixture
def scene():
    """A ComfyUI IMAGE [1, H, W, 3]: left half blue, right half green."""
    array = torch.zeros((1, HEIGHT, WIDTH, 3))
    array[:, :, : WIDTH // 2, 2] = 1.0
    array[:, :, WIDTH // 2:, 1] = 1.0
    return array


@pytest.fixture
def painted():
    """A MASK [1, H, W] as Load Image's mask editor gives it: 1 where the subject goes."""
    mask = torch.zeros((1, HEIGHT, WIDTH))
    mask[(0, *BOX)] = 1.0
    return mask


@pytest.fixture
def fake_edit(monkeypatch, tmp_path):
    """The node runs the fake siso-edit and records its argv; returns a reader for it."""
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv_file))
    monkeypatch.setattr(Edit, "script_path", fake("fake_edit"))

    def argv() -> dict:
        values = json.loads(argv_file.read_text())
        return {"argv": values, "pairs": {values[i]: values[i + 1] for i in range(len(values) - 1) if values[i].startswith("--")}}

    return argv


def widget_defaults() -> dict:
    required = Edit.INPUT_TYPES()["required"]
    return {name: spec[1]["default"] for name, spec in required.items() if len(spec) > 1 and "default" in spec[1]}


def inputs(**changes) -> dict:
    values = widget_defaults()
    values.pop("execute", None)
    values.update(extra_args="", python_executable=sys.executable)
    values.update(changes)
    return values


def run_dir_of(report: str) -> str:
    return next(line.split(": ", 1)[1] for line in report.splitlines() if line.startswith("run folder"))


def test_declaration_and_defaults():
    assert NODE_CLASS_MAPPINGS["SISOSubjectEdit"] is Edit and NODE_DISPLAY_NAME_MAPPINGS["SISOSubjectEdit"] == "SISO Subject Edit"
    assert Edit.CATEGORY == "SISO" and Edit.OUTPUT_NODE and Edit.FUNCTION == "edit"
    assert Edit.RETURN_TYPES == ("IMAGE", "STRING") and Edit.RETURN_NAMES == ("edited_image", "status")
    types = Edit.INPUT_TYPES()
    required = types["required"]
    assert required["scene_image"][0] == "IMAGE" and required["subject_image"][0] == "IMAGE"
    assert required["execute"][1]["forceInput"] is True and required["seed"][1]["control_after_generate"] is False
    assert required["mixed_precision"][0] == list(PRECISIONS) and required["mode"][0] == list(MODES)
    assert types["optional"]["mask"][0] == "MASK" and types["hidden"] == {"unique_id": "UNIQUE_ID", "graph": "PROMPT"}
    config, defaults = SISOEditConfig(), widget_defaults()
    for name in ("prompt", "num_train_epochs", "learning_rate", "bg_mse_loss_weight", "inversion_max_step", "dino_features_weight",
                 "ir_features_weight", "seed", "resolution", "rank", "early_stopping_max_count",
                 "early_stopping_threshold_percentage", "train_text_encoder", "dino_model_name", "device", "mode"):
        assert defaults[name] == getattr(config, name), name
    assert defaults["base_model_path"] == config.pretrained_model_name_or_path and defaults["mixed_precision"] == config.precision
    assert (defaults["learning_rate"], defaults["bg_mse_loss_weight"], defaults["inversion_max_step"]) == (3e-4, 10.0, 0.75)
    assert defaults["input_class"] == "" and defaults["ir_features_path"] == ""
    for name, spec in required.items():  # the frontend rounds a FLOAT to its step's decimals
        if spec[0] == "FLOAT":
            decimals = max(0, -math.floor(math.log10(spec[1]["step"])))
            assert round(spec[1]["default"], decimals) == spec[1]["default"], name


def test_execute_false_is_idle(scene):
    output = Edit().edit(scene, scene, False, unique_id="7", **inputs())
    image, status = output["result"]
    assert status == nodes.IDLE_STATUS and torch.equal(image, host.no_image(status)) and output["ui"]["text"] == [status]


def test_an_edit_with_a_painted_mask(workdirs, scene, painted, fake_edit, capsys):
    subject = torch.full((1, 40, 36, 3), 0.5)
    output = Edit().edit(scene, subject, True, unique_id="3", mask=painted,
                         **inputs(num_train_epochs=3, bg_mse_loss_weight=20.0, inversion_max_step=0.5, input_class="cup", resolution=64))
    image, status = output["result"]
    report = output["ui"]["text"][0]
    assert status == "Success", report
    assert tuple(image.shape) == (1, 64, 64, 3) and image.dtype == torch.float32  # result.png as IMAGE [B, H, W, C]
    assert image[0, 0, 0].tolist() == pytest.approx([0, 0, 1]) and image[0, 0, -1].tolist() == pytest.approx([0, 1, 0])
    run_dir = run_dir_of(report)
    assert run_dir.startswith(str(workdirs["runs"])) and "-edit-a-photo-of-a-cat" in run_dir
    assert report.splitlines()[0] == "Success" and f"edited image: {run_dir}/result.png" in report
    assert "best iteration 3 of 3 (total -1.3000, background 0.0067)" in report and "mask: 23% of the scene" in report
    got = fake_edit()
    pairs, argv = got["pairs"], got["argv"]
    # the inputs are written into the run folder and stay there (run.json records these paths)
    assert argv[:2] == ["--input_image_path", f"{run_dir}/scene_input.png"]
    assert pairs["--subject_image_path"] == f"{run_dir}/subject.png" and pairs["--mask"] == f"{run_dir}/mask_input.png"
    assert pairs["--prompt"] == "a photo of a cat" and pairs["--input_class"] == "cup" and pairs["--output_dir"] == run_dir
    assert (pairs["--bg_mse_loss_weight"], pairs["--inversion_max_step"], pairs["--learning_rate"]) == ("20.0", "0.5", "0.0003")
    assert "--no-train_text_encoder" in argv and pairs["--mode"] == SISOEditConfig.mode and "--quiet" in argv
    assert pairs["--pretrained_model_name_or_path"] == "stabilityai/sdxl-turbo"
    # what siso-edit got: the scene and the subject channels-last, the mask scene-sized and binary
    seen = json.loads(open(f"{run_dir}/fake_inputs.json").read())
    assert seen["scene"] == [WIDTH, HEIGHT] and seen["subject"] == [36, 40] and seen["subject_pixel"] == [128, 128, 128]
    assert seen["mask"] == {"size": [WIDTH, HEIGHT], "white": pytest.approx(30 * 30 / (HEIGHT * WIDTH)), "mode": "L"}
    kept = np.asarray(Image.open(f"{run_dir}/mask_input.png")) > 127
    assert kept[BOX].all() and kept.sum() == 30 * 30
    assert all((workdirs["runs"] / run_dir.rsplit("/", 1)[1] / name).is_file() for name in ("scene_input.png", "subject.png"))
    console = capsys.readouterr().out
    assert "[SISO] step 3/3 loss -1.3000 (dino -0.6000, ir -0.6000, background 0.0067)" in console
    assert f": {sys.executable} -u {fake('fake_edit')} --input_image_path " in console  # ComfyUI's python, unbuffered
    assert list(workdirs["temp"].iterdir()) == []  # no temporary PNGs


def test_without_a_painted_mask_the_class_is_found_automatically(workdirs, scene, fake_edit):
    empty = torch.zeros((1, 64, 64))  # Load Image's MASK for a photo without a painted mask: 64x64 zeros, any size
    image, status = Edit().edit(scene, scene, True, mask=empty, **inputs(input_class="cup", num_train_epochs=1))["result"]
    assert status == "Success"
    got = fake_edit()
    assert "--mask" not in got["argv"] and got["pairs"]["--input_class"] == "cup"
    output = Edit().edit(scene, scene, True, **inputs(input_class="cup", num_train_epochs=1))
    assert "no painted mask: Grounding-DINO + SAM look for 'cup' in the scene" in output["ui"]["text"][0]


@pytest.mark.parametrize("case, expected", [
    ("no region", "Failed: no region to edit: paint it in the scene's Load Image (mask editor) and connect its MASK to mask, "
                  "or give input_class"),
    ("mask of another size", f"Failed: mask is 56x40 pixels but scene_image is {WIDTH}x{HEIGHT}: paint the mask on the scene's own Load Image"),
    ("mask everywhere", "Failed: mask covers the whole scene, so nothing of it would be kept"),
    ("scene too small", "Failed: scene_image is 20x16 pixels: give a photo at least 32 pixels on each side"),
    ("flux model", "SISO editing runs on SDXL(-Turbo)"),
    ("no python", "Failed: python_executable '/no/such/python' does not exist"),
])
def test_bad_input_is_one_line_and_starts_nothing(workdirs, scene, painted, fake_edit, model_folders, case, expected):
    values, mask, picture = inputs(), painted, scene
    if case == "no region":
        mask = None
    elif case == "mask of another size":
        mask = torch.ones((1, 40, 56)) * 0.9
        mask[:, :5] = 0
    elif case == "mask everywhere":
        mask = torch.ones((1, HEIGHT, WIDTH))
    elif case == "scene too small":
        picture = torch.zeros((1, 16, 20, 3))
    elif case == "flux model":
        values = inputs(base_model_path=model_folders["flux"])
    elif case == "no python":
        values = inputs(python_executable="/no/such/python")
    image, status = Edit().edit(picture, scene, True, mask=mask, **values)["result"]
    assert expected in status and status.startswith("Failed: ") and "\n" not in status
    assert torch.equal(image, host.no_image(status))  # labelled as no image, never the unedited scene
    assert pids(workdirs) == [] and not (workdirs["runs"].exists() and list(workdirs["runs"].iterdir()))
    assert list(workdirs["temp"].iterdir()) == []


def test_a_failed_run_is_a_status_and_a_labelled_no_image_picture(workdirs, scene, painted, monkeypatch):
    monkeypatch.setattr(Edit, "script_path", fake("fake_oom"))
    image, status = Edit().edit(scene, scene, True, mask=painted, **inputs())["result"]
    assert status.startswith("Failed: out of GPU memory (Tried to allocate 2.00 GiB)") and torch.equal(image, host.no_image(status))
    monkeypatch.setattr(Edit, "script_path", fake("fake_cli_error"))
    status = Edit().edit(scene, scene, True, mask=painted, **inputs())["result"][1]
    assert status == "Failed: resolution 500 is not usable: give a multiple of 8 between 64 and 2048 (512 for SDXL-Turbo)"
    assert not list(workdirs["runs"].iterdir())  # nothing was written: the run folder is gone again


def test_cancel_stops_the_process_group_and_raises(workdirs, scene, painted, monkeypatch):
    from siso_comfy_helpers import alive

    monkeypatch.setattr(Edit, "script_path", fake("fake_hang"))
    started = time.monotonic()

    def should_cancel():
        return time.monotonic() - started > 1.0

    monkeypatch.setattr(Edit, "hooks", staticmethod(lambda unique_id, total: Hooks(should_cancel=should_cancel)))
    with pytest.raises(nodes.SISOCancelled, match="Cancelled"):
        Edit().edit(scene, scene, True, mask=painted, **inputs())
    assert time.monotonic() - started < 15
    assert pids(workdirs) and not any(alive(pid) for pid in pids(workdirs))  # the child and its grandchild
    assert list(workdirs["temp"].iterdir()) == []


def test_unloading_comfyuis_models_comes_after_the_checks(workdirs, scene, painted, fake_edit, monkeypatch):
    calls = []
    monkeypatch.setattr(Edit, "unload_models", staticmethod(lambda: calls.append("unload")))
    Edit().edit(scene, scene, True, mask=None, **inputs())  # bad input: nothing unloaded
    assert calls == []
    Edit().edit(scene, scene, True, mask=painted, **inputs(num_train_epochs=1))
    assert calls == ["unload"]
    Edit().edit(scene, scene, True, mask=painted, **inputs(num_train_epochs=1, unload_models=False))
    assert calls == ["unload"]


def test_is_changed_caches_a_success_and_reruns_a_failure_or_a_vanished_picture(workdirs, scene, painted, fake_edit, monkeypatch):
    import os

    Edit._history.clear()
    good = inputs(num_train_epochs=1)
    first = Edit.IS_CHANGED(**good)
    assert first == Edit.IS_CHANGED(**good) and first != Edit.IS_CHANGED(**dict(good, bg_mse_loss_weight=5.0))
    report = Edit().edit(scene, scene, True, mask=painted, **good)["ui"]["text"][0]
    assert Edit.IS_CHANGED(**good) == first
    os.remove(f"{run_dir_of(report)}/result.png")
    assert math.isnan(Edit.IS_CHANGED(**good))
    monkeypatch.setattr(Edit, "script_path", fake("fake_oom"))
    bad = inputs(seed=7)
    Edit().edit(scene, scene, True, mask=painted, **bad)
    assert math.isnan(Edit.IS_CHANGED(**bad))


def test_the_mask_threshold_and_batches(tmp_path):
    mask = np.zeros((2, 40, 50), np.float32)
    mask[0, :10, :10] = 0.6
    mask[0, 10:20, :10] = 0.4  # soft edges below one half are not the region
    notes = images.region_to_png(mask, 50, 40, str(tmp_path / "m.png"))
    region = np.asarray(Image.open(tmp_path / "m.png")) > 127
    assert region.sum() == 100 and region[:10, :10].all()
    assert notes[0] == "mask is a batch of 2: SISO uses its first mask only" and notes[1].startswith("mask: 5% of the scene")
    assert images.region_to_png(np.zeros((1, 64, 64)), 50, 40, str(tmp_path / "n.png")) is None
    with pytest.raises(InputProblem, match="NaN"):
        images.region_to_png(np.full((40, 50), np.nan), 50, 40, str(tmp_path / "o.png"))


@pytest.mark.slow  # a real siso child process on the tiny models
def test_the_node_runs_the_real_siso_edit_on_the_tiny_models(tiny_assets, workdirs, painted, scene):
    """The bundled launcher (comfyui/siso_edit.py) and siso-edit itself, in a child process (~10 s)."""
    with Image.open(REPO / "data" / "coffee.png") as photo:
        scene_image = torch.from_numpy(np.asarray(photo.convert("RGB"), np.float32) / 255.0)[None]
    mask = torch.zeros((1, *scene_image.shape[1:3]))
    mask[:, 20:300, 170:410] = 1.0  # the cup
    with Image.open(REPO / "data" / "cat.png") as photo:
        subject = torch.from_numpy(np.asarray(photo.convert("RGB"), np.float32) / 255.0)[None]
    values = inputs(base_model_path=tiny_assets["sdxl"], dino_model_name=tiny_assets["dino"], ir_features_path=tiny_assets["ir"],
                    resolution=64, num_train_epochs=2, learning_rate=5e-3, early_stopping_threshold_percentage=0.05, device="cpu",
                    input_class="cup")
    started = time.monotonic()
    output = Edit().edit(scene_image, subject, True, unique_id="1", mask=mask, **values)
    seconds = time.monotonic() - started
    image, status = output["result"]
    report = output["ui"]["text"][0]
    print(f"\nSISO Subject Edit with the real siso-edit (tiny models, CPU): {seconds:.1f} s\n{report}")
    assert status == "Success", report
    # the whole scene back at its own size (only the masked region edited); the square beside it in the folder
    assert tuple(image.shape) == (1, *scene_image.shape[1:3], 3) and image.std() > 0
    run_dir = run_dir_of(report)
    record = json.loads(open(f"{run_dir}/run.json").read())
    assert record["task"] == "edit" and record["steps_run"] == 2 and record["scene_prompt"] == "a photo of a cup"
    assert record["parameters"]["bg_mse_loss_weight"] == 10.0 and "background" in record["history"][-1]
    for name in ("result.png", "before_after.png", "mask.png", "scene.png", "mask_input.png", "scene_input.png", "subject.png",
                 "pytorch_lora_weights.safetensors"):
        assert (workdirs["runs"] / run_dir.rsplit("/", 1)[1] / name).is_file(), name
    assert list(workdirs["temp"].iterdir()) == []
