"""The pack in a REAL ComfyUI (skipped unless SISO_COMFYUI_DIR points to a ComfyUI checkout).

    SISO_COMFYUI_DIR=/path/to/ComfyUI SISO_COMFYUI_PYTHON=/path/to/comfy-venv/bin/python \
        .venv/bin/python -m pytest -q tests/comfyui/test_comfyui_real.py

ComfyUI runs headless on CPU, on loopback, in its own Python (SISO_COMFYUI_PYTHON, default:
this one), with every folder under a temporary --base-directory and this pack symlinked into
its custom_nodes. The node runs SISO with THIS Python (siso-lab's environment) through its
python_executable input: the separate-environment setup. Workflows are posted to /prompt and
/history is polled; the SISO model is the tiny random-weight one.

The copied-folder route (ComfyUI-Manager, the Comfy Registry; test_comfyui_real_copied.py) gets a second ComfyUI whose
custom_nodes holds a COPY of the pack and whose Python is a fresh virtual environment that sees
SISO_COMFYUI_PYTHON's packages but not siso_lib: the node must name the one install command
(with --source: a copied pack has no siso-lab of its own, and siso-lab is not on the package
index), and after that command (install.py --source <a copy of this checkout>) the same workflow
must succeed with python_executable empty; install.py must change none of ComfyUI's packages
(a current ComfyUI's transformers 5.25 is within siso-lab's ranges).

Also: a whole single-file checkpoint picked from models/checkpoints, the labelled no-image
picture, and the templates' thumbnails; test_comfyui_real_killed.py kills a ComfyUI mid-run,
test_comfyui_real_copied.py takes the copied-folder route.

FLUX: the FLUX example workflow's generation half runs on the tiny FLUX.1 pipeline and on a tiny
FLUX.2 klein one (the LoRA that
lands in models/loras is the diffusers-format file; a Sana folder is refused in one line), and
ComfyUI's stock LoraLoader, in ComfyUI's own Python, applies every tensor of a full-size FLUX.1
LoRA written by siso_lib (model and text encoders built by ComfyUI on the meta device; ~2 min).

SISO_COMFYUI_FULL_CHECK=1 adds the full-size SDXL check (minutes, ~16 GB RAM): ComfyUI's stock
LoraLoader and SISO Load LoRA apply a rank-4 SISO LoRA in Kohya keys to a full-size
SDXL-architecture UNet and both CLIPs (random weights) with no "lora key not loaded".
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import comfy_server
from siso_comfy_helpers import REPO


COMFY_DIR = os.environ.get("SISO_COMFYUI_DIR", "")
COMFY_PYTHON = os.environ.get("SISO_COMFYUI_PYTHON", sys.executable)
WORKFLOWS = REPO / "comfyui" / "example_workflows"

pytestmark = [
    pytest.mark.slow,  # a real ComfyUI server
    pytest.mark.skipif(
        not COMFY_DIR or not (Path(COMFY_DIR) / "main.py").is_file(),
        reason="set SISO_COMFYUI_DIR to a ComfyUI checkout (and SISO_COMFYUI_PYTHON to its python) to test in a real ComfyUI",
    ),
]
GEN = "3"  # the SISO LoRA Generator's id in the example workflows


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A whole SDXL single-file checkpoint of a tiny model, and the config folder it loads with (SISO_SINGLE_FILE_CONFIG)."""
    from single_file_checkpoint import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):
    base = tmp_path_factory.mktemp("comfy-base")
    checkpoint, config = tiny_checkpoint
    (base / "models" / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint, base / "models" / "checkpoints" / checkpoint.name)
    started = time.monotonic()
    # the tiny checkpoint is not SDXL-Turbo's architecture: it loads with its own config (real ones use the shipped one)
    instance = comfy_server.start(COMFY_DIR, COMFY_PYTHON, base, env={"SISO_SINGLE_FILE_CONFIG": str(config)})
    instance.startup_seconds = time.monotonic() - started
    comfy_server.copy_input(instance, str(REPO / "data" / "cat.png"), "cat.png")
    yield instance
    instance.stop()


def generation(tiny_assets, **changes) -> dict:
    prompt = json.loads((WORKFLOWS / "api" / "siso_generate_lora_api.json").read_text())
    prompt[GEN]["inputs"].update(
        base_model_path=tiny_assets["sdxl"], dino_model_name=tiny_assets["dino"], ir_features_path=tiny_assets["ir"],
        resolution=64, num_train_epochs=3, learning_rate=5e-3, early_stopping_threshold_percentage=0.05, device="cpu",
        python_executable=sys.executable,
    )
    prompt[GEN]["inputs"].update(changes)
    return prompt


def report(entry: dict) -> str:
    return comfy_server.ui_text(entry, GEN)


def test_pack_loads_and_declares_its_nodes(server):
    info = server.get("/object_info/SISOLoRAGenerator")["SISOLoRAGenerator"]
    assert info["display_name"] == "SISO LoRA Generator" and info["category"] == "SISO"
    assert info["output_name"] == ["lora_path", "status", "preview", "report"]
    required = info["input"]["required"]
    assert required["subject_image"][0] == "IMAGE" and required["execute"][1]["forceInput"] is True
    assert required["base_model_path"][1]["default"] == "stabilityai/sdxl-turbo"
    assert required["resolution"][1]["default"] == 512 and required["num_train_epochs"][1]["default"] == 50
    loader = server.get("/object_info/SISOLoadLoRA")["SISOLoadLoRA"]
    assert loader["display_name"] == "SISO Load LoRA"
    assert any(e.endswith("siso_status.js") for e in server.get("/extensions"))
    templates = server.get("/workflow_templates")
    assert sorted(templates["siso-lab"]) == ["siso_flux_generate_and_render", "siso_generate_and_render", "siso_generate_lora",
                                             "siso_inference_with_lora", "siso_subject_edit"]
    for name in templates["siso-lab"]:  # the thumbnail the template browser asks for (frontend 1.27: <name>.jpg)
        picture = server.get(f"/api/workflow_templates/siso-lab/{name}.jpg", raw=True)
        assert picture[:3] == b"\xff\xd8\xff", name
    edit = server.get("/object_info/SISOSubjectEdit")["SISOSubjectEdit"]
    assert edit["display_name"] == "SISO Subject Edit" and edit["output_name"] == ["edited_image", "status"]
    assert edit["input"]["required"]["scene_image"][0] == "IMAGE" and edit["input"]["optional"]["mask"][0] == "MASK"
    assert not [line for line in server.log().splitlines() if "IMPORT FAILED" in line and "siso-lab" in line]


FILE_INPUTS = {"image", "ckpt_name", "unet_name", "clip_name1", "clip_name2", "vae_name", "lora_name"}  # the user's files


def combo_options(spec) -> list | None:
    """The choices of a COMBO input as /object_info lists it (V1: [[...], {...}]; V3: ["COMBO", {"options": [...]}])."""
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1:
        return spec[1].get("options")
    return None


def test_example_workflows_match_the_live_node_definitions(server):
    """Every node type and input in the API workflows exists in this ComfyUI, and every choice (sampler,
    scheduler, CLIP type, ...) is one it offers (the UI files are checked too)."""
    info = server.get("/object_info")
    for path in sorted((WORKFLOWS / "api").glob("*.json")):
        for node_id, node in json.loads(path.read_text()).items():
            assert node["class_type"] in info, (path.name, node["class_type"])
            declared = info[node["class_type"]]["input"]
            specs = {**declared.get("required", {}), **declared.get("optional", {})}
            assert set(node["inputs"]) <= set(specs), (path.name, node_id, set(node["inputs"]) - set(specs))
            for name, value in node["inputs"].items():
                options = combo_options(specs[name])
                if options is not None and name not in FILE_INPUTS and not isinstance(value, list):
                    assert value in options, (path.name, node_id, name, value, options)
    for path in sorted(WORKFLOWS.glob("*.json")):
        for node in json.loads(path.read_text())["nodes"]:
            assert node["type"] in info, (path.name, node["type"])


def test_generate_workflow_succeeds(server, tiny_assets):
    started = time.monotonic()
    entry = server.wait(server.queue(generation(tiny_assets)))
    seconds = time.monotonic() - started
    text = report(entry)
    print(f"\nreal ComfyUI generation: {seconds:.1f} s (server start {server.startup_seconds:.1f} s)\n{text}")
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert text.splitlines()[0] == "Success"
    assert comfy_server.ui_text(entry, "4") == "Success"  # PreviewAny on the status output
    lora_path = comfy_server.ui_text(entry, "5")
    loras = server.base / "models" / "loras"
    assert lora_path.startswith(str(loras / "siso")) and lora_path.endswith("siso_lora_kohya.safetensors")
    assert Path(lora_path).is_file()
    # LoraLoader lists it right away, and only it: not the diffusers-format file it would apply only partly
    names = server.get("/object_info/LoraLoader")["LoraLoader"]["input"]["required"]["lora_name"][0]
    assert Path(lora_path).relative_to(loras).as_posix() in names
    assert [name for name in names if name.startswith("siso/")] == [Path(lora_path).relative_to(loras).as_posix()]
    run_dir = server.base / "output" / "siso" / Path(lora_path).parent.name
    assert (run_dir / "pytorch_lora_weights.safetensors").is_file() and (run_dir / "run.json").is_file()
    assert f"run folder (diffusers-format LoRA, result.png, loss_curve.png, run.json): {run_dir}" in text
    # the photo the run used stays in its folder and run.json names it there: siso-eval RUN needs no --subject_image_path
    from siso_lib.io.run_record import RunRecord

    assert RunRecord.read(run_dir).subject_image_path == str(run_dir / "subject.png") and (run_dir / "subject.png").is_file()
    # the preview on the node and in PreviewImage
    image = entry["outputs"][GEN]["images"][0]
    png = server.get(f"/view?filename={image['filename']}&subfolder={image['subfolder']}&type={image['type']}", raw=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert entry["outputs"]["6"]["images"]
    log = server.log()
    assert "[SISO] unloaded ComfyUI's models" in log and "[SISO] step 3/3 loss" in log
    assert not list((server.base / "tmp").glob("siso-comfyui-*"))  # the temporary subject image is gone
    server.generated_lora = lora_path


def test_unchanged_inputs_reuse_the_cached_result_and_changes_rerun(server, tiny_assets):
    prompt = generation(tiny_assets)
    runs_before = len(list((server.base / "models" / "loras" / "siso").iterdir()))
    started = time.monotonic()
    entry = server.wait(server.queue(prompt))
    cached_seconds = time.monotonic() - started
    cached = [m for m in entry["status"]["messages"] if m[0] == "execution_cached"]
    assert cached and GEN in cached[0][1]["nodes"], entry["status"]["messages"]
    assert len(list((server.base / "models" / "loras" / "siso").iterdir())) == runs_before
    started = time.monotonic()
    entry = server.wait(server.queue(generation(tiny_assets, seed=43)))
    rerun_seconds = time.monotonic() - started
    assert report(entry).startswith("Success")
    assert len(list((server.base / "models" / "loras" / "siso").iterdir())) == runs_before + 1
    print(f"\ncached: {cached_seconds:.2f} s; changed seed re-run: {rerun_seconds:.1f} s")


def test_execute_false_is_idle(server, tiny_assets):
    prompt = generation(tiny_assets, seed=44)
    prompt["2"]["inputs"]["value"] = False
    entry = server.wait(server.queue(prompt))
    assert entry["status"]["status_str"] == "success"
    assert report(entry) == "Idle: execute is False (nothing was run)"
    assert comfy_server.ui_text(entry, "5") == ""  # the lora_path box shows no earlier run's path


def test_bad_input_is_a_one_line_status(server, tiny_assets):
    entry = server.wait(server.queue(generation(tiny_assets, ir_features_path="/nonexistent/ir_features.pth")))
    assert entry["status"]["status_str"] == "success"
    status = comfy_server.ui_text(entry, "4")
    assert status.startswith("Failed: ir_features_path '/nonexistent/ir_features.pth' does not exist")
    assert "\n" not in status and "Traceback" not in status
    assert "5" in entry["outputs"] and comfy_server.ui_text(entry, "5") == ""  # not the previous run's path
    # the best-image box shows a picture labelled as no image (red stripes on grey), not a black square
    import io

    import numpy as np
    from PIL import Image

    shown = entry["outputs"]["6"]["images"][0]
    png = server.get(f"/view?filename={shown['filename']}&subfolder={shown['subfolder']}&type={shown['type']}", raw=True)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255
    assert pixels.shape == (288, 512, 3) and 0.1 < pixels.mean() < 0.6
    assert ((pixels[:14, :, 0] > 0.7) & (pixels[:14, :, 1] < 0.3)).any()


def test_a_cut_out_photo_gives_the_same_subject_as_the_command_line(server, tiny_assets, tmp_path):
    """Load Image drops the alpha of a cut-out PNG; its MASK (wired in the example) brings the white back."""
    import numpy as np
    from PIL import Image

    from siso_lib.io.images import load_subject_image

    height, width = 72, 96
    yy, xx = np.mgrid[0:height, 0:width]
    alpha = np.clip((30 - np.hypot(yy - height / 2, xx - width / 2)) * 60, 0, 255).astype(np.uint8)
    rgb = np.dstack([np.full((height, width), 180, np.uint8), (xx * 2).astype(np.uint8), np.full((height, width), 30, np.uint8)])
    rgb[alpha == 0] = 0
    source = tmp_path / "cut_out.png"
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(source)
    comfy_server.copy_input(server, str(source), "cut_out.png")
    prompt = generation(tiny_assets, seed=46, num_train_epochs=1)
    prompt["1"]["inputs"]["image"] = "cut_out.png"
    entry = server.wait(server.queue(prompt))
    text = report(entry)
    assert text.startswith("Success"), text
    assert "transparency (from subject_mask) flattened onto white" in text
    run_dir = next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("run folder"))
    with Image.open(Path(run_dir) / "subject.png") as picture:
        node = np.asarray(picture.convert("RGB"), np.int16)
    cli = np.asarray(load_subject_image(source).image, np.int16)
    difference = np.abs(node - cli).max()
    print(f"\ncut-out subject: node vs command line, max difference {difference} levels")
    assert difference <= 1


def test_cancel_stops_the_run_promptly(server, tiny_assets):
    marker = f"cancel-{os.getpid()}-{time.time_ns()}"
    declared = server.get("/object_info/SISOLoRAGenerator")["SISOLoRAGenerator"]["input"]["required"]
    steps = declared["num_train_epochs"][1]["max"]  # the widgets' maxima: a run far longer than the test
    prompt = generation(tiny_assets, prompt=f"a photo of a cat {marker}", num_train_epochs=steps,
                        early_stopping_max_count=declared["early_stopping_max_count"][1]["max"],
                        early_stopping_threshold_percentage=0.0)
    log_start = len(server.log())
    prompt_id = server.queue(prompt)
    server.wait_for_log(f"[SISO] step 2/{steps}", timeout=300, start=log_start)
    assert comfy_server.processes_with(marker), "the SISO child should be running"
    interrupted = time.monotonic()
    server.interrupt()
    entry = server.wait(prompt_id, timeout=60)
    seconds = time.monotonic() - interrupted
    print(f"\ncancel: the prompt ended {seconds:.1f} s after POST /interrupt; messages {comfy_server.messages(entry)}")
    assert "execution_interrupted" in comfy_server.messages(entry)
    assert seconds < 15
    assert comfy_server.processes_with(marker) == []  # no child left
    assert not list((server.base / "tmp").glob("siso-comfyui-*"))
    log = server.log()[log_start:]
    assert "cancel requested: sending SIGTERM" in log and "Cancelled" in log
    # the queue goes on: the next prompt runs normally
    entry = server.wait(server.queue(generation(tiny_assets, seed=45, num_train_epochs=1)))
    assert report(entry).startswith("Success")


EDIT = "4"  # the SISO Subject Edit's id in the edit example workflow


def subject_edit(assets, **changes) -> dict:
    """The edit example workflow on the tiny models; the scene's Load Image has no painted mask, so the tiny
    Grounding-DINO + SAM look for the workflow's input_class (extra_args names them)."""
    prompt = json.loads((WORKFLOWS / "api" / "siso_subject_edit_api.json").read_text())
    prompt[EDIT]["inputs"].update(
        base_model_path=assets["sdxl"], dino_model_name=assets["dino"], ir_features_path=assets["ir"], resolution=64,
        num_train_epochs=2, learning_rate=5e-3, early_stopping_threshold_percentage=0.05, device="cpu",
        python_executable=sys.executable,
        extra_args=f"--detector_model {assets['grounding_dino']} --segmenter_model {assets['sam']}",
    )
    prompt[EDIT]["inputs"].update(changes)
    return prompt


def test_subject_edit_workflow_succeeds(server, tiny_assets):
    comfy_server.copy_input(server, str(REPO / "data" / "coffee.png"), "coffee.png")
    started = time.monotonic()
    entry = server.wait(server.queue(subject_edit(tiny_assets)))
    seconds = time.monotonic() - started
    text = comfy_server.ui_text(entry, EDIT)
    print(f"\nreal ComfyUI subject edit (tiny SDXL, CPU): {seconds:.1f} s\n{text}")
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert text.splitlines()[0] == "Success" and comfy_server.ui_text(entry, "6") == "Success"
    assert "no painted mask: Grounding-DINO + SAM look for 'cup' in the scene" in text
    assert entry["outputs"]["5"]["images"] and entry["outputs"][EDIT]["images"]  # the edited scene, shown twice
    run_dir = Path(next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("run folder")))
    assert run_dir.parent == server.base / "output" / "siso" and "-edit-" in run_dir.name
    record = json.loads((run_dir / "run.json").read_text())
    assert record["task"] == "edit" and record["mask"]["source"] == "the automatic mask of 'cup'"
    assert "[SISO] unloaded ComfyUI's models" in server.log()
    assert not list((server.base / "tmp").glob("siso-comfyui-edit-*"))


def test_subject_edit_takes_the_region_painted_in_load_images_mask_editor(server, tiny_assets, tmp_path):
    """The mask editor saves the scene with alpha 0 where it was painted; Load Image's MASK is 1 there, and the
    edit uses exactly that region (no class, so no automatic mask could stand in for it)."""
    import numpy as np
    from PIL import Image

    with Image.open(REPO / "data" / "coffee.png") as photo:
        rgba = np.dstack([np.asarray(photo.convert("RGB")), np.full(photo.size[::-1], 255, np.uint8)])
    rgba[20:300, 170:410, 3] = 0  # painted over the cup
    painted = tmp_path / "coffee_painted.png"
    Image.fromarray(rgba, mode="RGBA").save(painted)
    comfy_server.copy_input(server, str(painted), "coffee_painted.png")
    prompt = subject_edit(tiny_assets, input_class="", seed=50)
    prompt["1"]["inputs"]["image"] = "coffee_painted.png"
    entry = server.wait(server.queue(prompt))
    text = comfy_server.ui_text(entry, EDIT)
    assert text.splitlines()[0] == "Success", text
    run_dir = Path(next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("run folder")))
    kept = np.asarray(Image.open(run_dir / "mask_input.png")) > 127
    assert kept.shape == (400, 600) and kept[20:300, 170:410].all() and kept.sum() == 280 * 240
    record = json.loads((run_dir / "run.json").read_text())
    assert record["mask"]["source"].endswith("mask_input.png") and record["scene_prompt"] == "a photo"


def test_subject_edit_without_a_region_is_a_one_line_status(server, tiny_assets):
    comfy_server.copy_input(server, str(REPO / "data" / "coffee.png"), "coffee.png")
    entry = server.wait(server.queue(subject_edit(tiny_assets, input_class="", seed=49)))
    status = comfy_server.ui_text(entry, "6")
    assert entry["status"]["status_str"] == "success"
    assert status.startswith("Failed: no region to edit: paint it in the scene's Load Image (mask editor)") and "\n" not in status


def flux_generation(assets, **changes) -> dict:
    """The FLUX example workflow's generation half (its rendering half needs the real FLUX.1 files)."""
    workflow = json.loads((WORKFLOWS / "api" / "siso_flux_generate_and_render_api.json").read_text())
    prompt = {node_id: node for node_id, node in workflow.items() if node_id in {"1", "2", GEN, "4", "5", "6"}}
    assert prompt[GEN]["inputs"]["base_model_path"] == "black-forest-labs/FLUX.1-schnell"
    prompt[GEN]["inputs"].update(
        base_model_path=assets["flux"], dino_model_name=assets["dino"], ir_features_path=assets["ir"], resolution=64,
        num_train_epochs=2, learning_rate=5e-3, device="cpu", python_executable=sys.executable,
    )
    prompt[GEN]["inputs"].update(changes)
    return prompt


FAMILY_LINES = {
    "flux": "model family: FLUX.1 (diffusers-format LoRA, which ComfyUI's LoraLoader reads as it is; no Kohya file)",
    "flux2_klein": "model family: FLUX.2 klein (diffusers-format LoRA, no Kohya file",
}


@pytest.mark.parametrize("family", ["flux", "flux2_klein"])
def test_flux_generation_workflow_puts_the_diffusers_lora_in_the_lora_list(server, family_assets, family):
    started = time.monotonic()
    entry = server.wait(server.queue(flux_generation(family_assets, base_model_path=family_assets[family])))
    seconds = time.monotonic() - started
    text = report(entry)
    print(f"\nreal ComfyUI {family} generation (tiny model, CPU): {seconds:.1f} s\n{text}")
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert text.splitlines()[0] == "Success" and comfy_server.ui_text(entry, "4") == "Success"
    assert FAMILY_LINES[family] in text
    # ComfyUI 0.3.64 has no FLUX.2 model: the report says its LoraLoader cannot apply a klein LoRA (read from comfy.model_base)
    no_flux2 = "class Flux2(" not in (Path(COMFY_DIR) / "comfy" / "model_base.py").read_text()
    assert ("this ComfyUI has no FLUX.2 klein model" in text) == (family == "flux2_klein" and no_flux2)
    lora_path = comfy_server.ui_text(entry, "5")
    loras = server.base / "models" / "loras"
    assert lora_path.startswith(str(loras / "siso")) and lora_path.endswith("/pytorch_lora_weights.safetensors")
    names = server.get("/object_info/LoraLoader")["LoraLoader"]["input"]["required"]["lora_name"][0]
    name = Path(lora_path).relative_to(loras).as_posix()
    assert name in names and f"LoraLoader name: {name}" in text
    assert not list(server.base.rglob(f"{Path(lora_path).parent.name}/siso_lora_kohya.safetensors"))  # no Kohya file
    from safetensors import safe_open

    with safe_open(lora_path, framework="pt") as handle:
        keys = list(handle.keys())
    # FLUX.1: transformer + CLIP-L; FLUX.2 klein: the transformer only (its recipe trains no text encoder)
    prefixes = ("transformer.", "text_encoder.text_model.") if family == "flux" else ("transformer.",)
    assert keys and all(key.startswith(prefixes) for key in keys)
    run_dir = server.base / "output" / "siso" / Path(lora_path).parent.name
    assert (run_dir / "pytorch_lora_weights.safetensors").is_file() and (run_dir / "run.json").is_file()
    assert json.loads((run_dir / "run.json").read_text())["parameters"]["model_family"] == family
    assert f"--model_family {family} " in server.log()


def test_a_sana_model_is_refused_in_one_line(server, family_assets):
    entry = server.wait(server.queue(flux_generation(family_assets, base_model_path=family_assets["sana"], seed=48)))
    assert entry["status"]["status_str"] == "success"
    status = comfy_server.ui_text(entry, "4")
    assert status.startswith(f"Failed: base_model_path '{family_assets['sana']}' is a Sana pipeline (SanaPipeline): Sana is not "
                             "offered in ComfyUI (ComfyUI core has no Sana model to render with the LoRA)"), status
    assert "\n" not in status and comfy_server.ui_text(entry, "5") == ""


def test_stock_lora_loader_applies_every_tensor_of_a_full_size_flux_lora(tmp_path_factory):
    """siso_lib's FLUX LoRA file (full-size FLUX.1-schnell architecture, rank 4, CLIP-L too) through ComfyUI's own
    LoraLoader node on ComfyUI's FLUX model and FLUX CLIP (built by ComfyUI on the meta device)."""
    assets = Path(os.environ.get("SISO_FULL_FLUX_ASSETS_DIR") or tmp_path_factory.mktemp("full-flux"))
    here = Path(__file__).parent
    started = time.monotonic()
    subprocess.run([sys.executable, str(here / "make_full_flux_lora.py"), str(assets)], check=True)
    made = time.monotonic() - started
    counts = json.loads((assets / "counts.json").read_text())
    done = subprocess.run([COMFY_PYTHON, str(here / "comfy_flux_lora_check.py"), COMFY_DIR, str(assets)],
                          capture_output=True, text=True, timeout=1800)
    line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    assert line, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(line[len("RESULT "):])
    print(f"\nfull-size FLUX LoRA (made in {made:.0f} s): {counts}\nComfyUI {result['comfyui_version']} stock LoraLoader: "
          f"{result['applied_tensors']}/{result['lora_tensors']} tensors applied, {result['model_patches']} patches on "
          f"{result['patched_model_weights']} model weights + {result['patched_clip_weights']} CLIP weights, "
          f"{result['weights_value_checked']} weights value-checked (max |diff| {result['max_abs_difference']}), "
          f"{result['seconds']} s\nSISO Load LoRA: {result['siso_load_lora']}")
    assert result["model_config"] == "FluxSchnell"
    assert result["unet_config"] == {"hidden_size": 3072, "depth": 19, "depth_single_blocks": 38, "guidance_embed": False}
    assert counts["transformer_modules"] == 342 and counts["clip_modules"] == 48 and counts["tensors"] == 780
    assert result["lora_tensors"] == counts["tensors"]
    assert result["applied_tensors"] == result["lora_tensors"]  # EVERY tensor of the file is in ComfyUI's patches
    assert result["not_loaded_count"] == 0 and result["errors"] == [] and result["shape_errors"] == []
    assert result["model_patches"] == counts["transformer_modules"]  # q/k/v fused: fewer weights than patches
    assert result["patched_clip_weights"] == counts["clip_modules"]
    assert result["weights_value_checked"] == result["patched_model_weights"] + result["patched_clip_weights"]
    assert result["max_abs_difference"] == 0.0  # each patched slice is exactly B @ A (scale 1: alpha = rank)
    assert result["siso_load_lora"] == (
        f"pytorch_lora_weights.safetensors: 390 LoRA modules in the file (transformer 342, CLIP-L 48); weights patched: "
        f"transformer {result['patched_model_weights']}, CLIP 48; keys not loaded: 0"
    )


@pytest.mark.skipif(os.environ.get("SISO_COMFYUI_FULL_CHECK") != "1", reason="set SISO_COMFYUI_FULL_CHECK=1 (minutes, ~16 GB RAM)")
def test_full_size_sdxl_lora_keys_all_load(server, tmp_path_factory):
    """A rank-4 SISO LoRA on the full SDXL architecture: every key applied by LoraLoader and SISO Load LoRA."""
    assets = Path(os.environ.get("SISO_FULL_ASSETS_DIR") or tmp_path_factory.mktemp("full-sdxl"))
    started = time.monotonic()
    subprocess.run([sys.executable, str(Path(__file__).with_name("make_full_sdxl_lora.py")), str(assets)], check=True)
    made = time.monotonic() - started
    models = server.base / "models"
    (models / "vae").mkdir(exist_ok=True)
    for name, folder in (("unet.safetensors", "diffusion_models"), ("clip_l.safetensors", "text_encoders"),
                         ("clip_g.safetensors", "text_encoders"), ("vae.safetensors", "vae")):
        target = models / folder / f"siso_full_{name}"
        if not target.exists():
            target.symlink_to(assets / name)
    lora_dir = models / "loras" / "siso_full"
    lora_dir.mkdir(exist_ok=True)
    for name in ("siso_lora_kohya.safetensors", "pytorch_lora_weights.safetensors"):
        if not (lora_dir / name).exists():
            (lora_dir / name).symlink_to(assets / name)
    lora = lora_dir / "siso_lora_kohya.safetensors"
    expected = json.loads((assets / "counts.json").read_text())
    prompt = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "siso_full_unet.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "siso_full_clip_l.safetensors",
                                                         "clip_name2": "siso_full_clip_g.safetensors", "type": "sdxl"}},
        "3": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["2", 0],
                                                     "lora_name": "siso_full/siso_lora_kohya.safetensors",
                                                     "strength_model": 1.0, "strength_clip": 1.0}},
        "4": {"class_type": "SISOLoadLoRA", "inputs": {"model": ["1", 0], "clip": ["2", 0], "lora_path": str(lora),
                                                       "strength_model": 1.0, "strength_clip": 1.0}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["4", 2]}},
    }
    log_start = len(server.log())
    started = time.monotonic()
    entry = server.wait(server.queue(prompt), timeout=900)
    applied = time.monotonic() - started
    assert entry["status"]["status_str"] == "success", entry["status"]
    log = server.log()[log_start:]
    not_loaded = len(re.findall(r"lora key not loaded|NOT LOADED", log))
    info = comfy_server.ui_text(entry, "6")
    print(f"\nfull-size SDXL key check: made in {made:.0f} s, loaded+applied in {applied:.0f} s; "
          f"file: {expected}; SISO Load LoRA: {info}; 'not loaded' lines in the log: {not_loaded}")
    assert not_loaded == 0
    match = re.search(r"weights patched: UNet (\d+), CLIP (\d+); keys not loaded: (\d+)", info)
    assert match, info
    unet, clip, missing = (int(x) for x in match.groups())
    assert missing == 0
    assert unet == expected["unet_modules"] == 560
    assert clip == expected["te1_modules"] + expected["te2_modules"] == 48 + 128

    # negative control: the diffusers-key file. Stock LoraLoader skips its UNet keys (the check above
    # can see that); SISO Load LoRA converts it and applies everything.
    prompt["3"]["inputs"]["lora_name"] = "siso_full/pytorch_lora_weights.safetensors"
    prompt["4"]["inputs"]["lora_path"] = str(lora_dir / "pytorch_lora_weights.safetensors")
    log_start = len(server.log())
    entry = server.wait(server.queue(prompt), timeout=900)
    assert entry["status"]["status_str"] == "success", entry["status"]
    log = server.log()[log_start:]
    stock_not_loaded = len(re.findall(r"lora key not loaded", log))
    info = comfy_server.ui_text(entry, "6")
    print(f"diffusers-key file: stock LoraLoader 'lora key not loaded' lines: {stock_not_loaded}; SISO Load LoRA: {info}")
    assert stock_not_loaded == 2 * 560  # lora.down + lora.up of every UNet module
    match = re.search(r"weights patched: UNet (\d+), CLIP (\d+); keys not loaded: (\d+)", info)
    assert match and [int(x) for x in match.groups()] == [560, 176, 0], info

    # and an image through the inference graph of the example workflow (SISO Load LoRA -> SDXL-Turbo
    # sampling, 1 step at 256 px): the patched weights are really computed and used
    render = json.loads((WORKFLOWS / "api" / "siso_inference_with_lora_api.json").read_text())
    render["9"]["inputs"]["value"] = str(lora)
    del render["10"]
    render["21"] = prompt["1"]
    render["22"] = prompt["2"]
    render["23"] = {"class_type": "VAELoader", "inputs": {"vae_name": "siso_full_vae.safetensors"}}
    render["11"]["inputs"].update(model=["21", 0], clip=["22", 0])
    render["18"]["inputs"]["vae"] = ["23", 0]
    render["14"]["inputs"].update(width=256, height=256)
    log_start = len(server.log())
    started = time.monotonic()
    entry = server.wait(server.queue(render), timeout=1200)
    seconds = time.monotonic() - started
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = entry["outputs"]["19"]["images"][0]
    assert (server.base / "output" / saved["subfolder"] / saved["filename"]).is_file()
    assert not re.findall(r"lora key not loaded|NOT LOADED", server.log()[log_start:])
    print(f"render through SISO Load LoRA on the full-size SDXL (CPU, 1 step, 256 px): {seconds:.0f} s -> {saved['filename']}")


def test_a_checkpoint_picked_from_models_checkpoints_is_the_base_model(server, tiny_checkpoint, tiny_assets):
    """ComfyUI's own model files in the base_model pick-list; a whole SDXL checkpoint is optimised (from_single_file,
    no hub); ComfyUI's diffusion_models file (the denoiser alone) is one line."""
    checkpoint, _ = tiny_checkpoint
    choice = f"checkpoints/{checkpoint.name}"
    declared = server.get("/object_info/SISOLoRAGenerator")["SISOLoRAGenerator"]["input"]["required"]["base_model"]
    options = combo_options(declared)
    assert options[0] == "hub id or diffusers folder (base_model_path)" and choice in options
    entry = server.wait(server.queue(generation(tiny_assets, base_model=choice, base_model_path="stabilityai/sdxl-turbo",
                                                num_train_epochs=2, seed=51)))
    text = report(entry)
    assert text.splitlines()[0] == "Success", text
    run_dir = Path(next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("run folder")))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["parameters"]["pretrained_model_name_or_path"] == str(server.base / "models" / "checkpoints" / checkpoint.name)
    assert "--pretrained_model_name_or_path " + str(server.base / "models" / "checkpoints" / checkpoint.name) in server.log()

    (server.base / "models" / "diffusion_models" / "unet_only.safetensors").write_bytes(
        (lambda header: len(header).to_bytes(8, "little") + header)(json.dumps(
            {"input_blocks.0.0.weight": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}).encode()))
    entry = server.wait(server.queue(generation(tiny_assets, base_model="diffusion_models/unet_only.safetensors", seed=52)))
    status = comfy_server.ui_text(entry, "4")
    assert status.startswith("Failed: base_model_path ") and "holds only part of a SDXL pipeline" in status and "\n" not in status
