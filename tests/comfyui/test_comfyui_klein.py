"""FLUX.2 [klein] in the SISO LoRA Generator (no ComfyUI): the family read from the base model, its recipe,
the diffusers-format LoRA under models/loras, and what is said where ComfyUI has no FLUX.2 model."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
import torch
from siso_comfy_helpers import fake

from comfyui import host, nodes
from comfyui.siso import checks, defaults, families, jobs
from comfyui.siso.messages import InputProblem
from comfyui.siso.params import SISOParams


def widget_values(**changes) -> dict:
    required = nodes.SISOLoRAGenerator.INPUT_TYPES()["required"]
    values = {name: spec[1]["default"] for name, spec in required.items() if len(spec) > 1 and "default" in spec[1]}
    values.pop("execute", None)
    values.update(changes)
    return values


def run_klein(workdirs, image, model_folders, tmp_path, monkeypatch, comfy_families, **changes):
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv_file))
    monkeypatch.setattr(host, "comfy_families", lambda: comfy_families)
    values = widget_values(siso_script_path=fake("fake_flux"), python_executable=sys.executable,
                           base_model_path=model_folders["flux2_klein"], num_train_epochs=2, **changes)
    output = nodes.SISOLoRAGenerator().generate(torch.from_numpy(image), True, unique_id="3", **values)
    return output["result"], json.loads(argv_file.read_text())


def test_a_klein_folder_is_run_as_flux2_klein_with_its_recipe(workdirs, image, model_folders, tmp_path, monkeypatch):
    (lora_path, status, _, report), argv = run_klein(workdirs, image, model_folders, tmp_path, monkeypatch, None)
    assert status == "Success", report
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    assert pairs["--model_family"] == "flux2_klein"
    klein = defaults.recipe("flux2_klein")  # the widgets at their (SDXL) defaults: klein's recipe values
    assert int(pairs["--num_inference_steps"]) == klein["num_inference_steps"] == 4
    assert float(pairs["--learning_rate"]) == klein["learning_rate"]
    assert "--no-train_text_encoder" in argv and klein["train_text_encoder"] is False
    assert "num_inference_steps 4 (FLUX.2 klein recipe" in report and "train_text_encoder False (FLUX.2 klein recipe" in report
    # the diffusers-format file under models/loras, no Kohya file (Kohya naming is SDXL's)
    assert lora_path.startswith(str(workdirs["loras"] / "siso")) and lora_path.endswith("pytorch_lora_weights.safetensors")
    assert "model family: FLUX.2 klein (diffusers-format LoRA, no Kohya file" in report
    assert not list(workdirs["root"].rglob("siso_lora_kohya.safetensors"))
    assert "this ComfyUI has no" not in report  # outside ComfyUI nothing is known about its models


def test_a_comfyui_without_flux2_says_its_loraloader_cannot_apply_the_lora(workdirs, image, model_folders, tmp_path,
                                                                           monkeypatch):
    (lora_path, status, _, report), _ = run_klein(workdirs, image, model_folders, tmp_path, monkeypatch, ("sdxl", "flux"))
    assert status == "Success" and Path(lora_path).is_file()
    assert ("this ComfyUI has no FLUX.2 klein model (ComfyUI 0.3.64 has none; later releases have FLUX.2), so its LoraLoader "
            "cannot apply this LoRA here") in report
    # a ComfyUI with FLUX.2 gets no such note
    (_, status, _, report), _ = run_klein(workdirs, image, model_folders, tmp_path, monkeypatch,
                                          ("sdxl", "flux", "flux2_klein"), seed=43)
    assert status == "Success" and "this ComfyUI has no" not in report


def test_comfy_families_reads_comfys_model_classes(monkeypatch):
    class ModelBase:  # ComfyUI 0.3.64's comfy.model_base: SDXL and Flux, no Flux2
        SDXL = Flux = object

    monkeypatch.setattr(host, "module", lambda name: ModelBase if name == "comfy.model_base" else None)
    assert host.comfy_families() == ("sdxl", "flux")
    ModelBase.Flux2 = object
    assert host.comfy_families() == ("sdxl", "flux", "flux2_klein")
    monkeypatch.setattr(host, "module", lambda name: None)
    assert host.comfy_families() is None


def write_header_only(path: Path, keys: list[str]) -> str:
    header = json.dumps({key: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
                         for i, key in enumerate(keys)}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4 * len(keys))
    return str(path)


def test_a_flux2_single_file_is_refused_in_one_line(tmp_path):
    path = write_header_only(tmp_path / "flux-2-klein-4b.safetensors",
                             ["double_blocks.0.img_attn.qkv.weight", "double_stream_modulation_img.lin.weight",
                              "single_blocks.0.linear1.weight"])
    with pytest.raises(families.FamilyProblem) as problem:
        families.detect_family(path)
    message = str(problem.value)
    assert "is a FLUX.2 checkpoint in ComfyUI's single-file layout" in message and "FLUX.2-klein-4B" in message
    assert "\n" not in message and "FLUX.1" not in message


def test_the_authors_scripts_are_refused_for_klein(workdirs, image, model_folders):
    job = jobs.run_job(jobs.JobRequest(image=image, params=SISOParams(base_model_path=model_folders["flux2_klein"], ir_features_weight=0.0),
                                       loras_root=str(workdirs["loras"]), runs_root=str(workdirs["runs"]),
                                       siso_script_path=fake("fake_upstream"), python_executable=sys.executable))
    assert job.status.startswith("Failed: siso_script_path ") and "for SDXL and FLUX.1 only" in job.status
    with pytest.raises(InputProblem, match="is an SDXL model but model_family is flux2_klein"):
        checks.resolve_family("flux2_klein", model_folders["sdxl"])
