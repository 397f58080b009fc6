"""The user's own models as the base model: ComfyUI's model folders in a pick-list, whole single-file
checkpoints accepted and their family read from the file, partial ones refused in one line. No
ComfyUI: its folder_paths is a stand-in; the files are .safetensors headers naming the tensors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from siso_comfy_helpers import fake
from test_comfyui_runner import Recorder, request

from comfyui.siso import jobs


def header_only_checkpoint(path: Path, keys: list[str]) -> Path:
    """A .safetensors file whose header names `keys` (zero-size tensors): what the checks read."""
    import struct

    header = json.dumps({key: {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for key in keys}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


SDXL_WHOLE = ["model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.transformer.text_model.x",
              "conditioner.embedders.1.model.positional_embedding", "first_stage_model.decoder.conv_in.weight"]


def test_the_base_model_is_picked_from_comfyuis_model_folders(tmp_path, monkeypatch):
    """checkpoints, diffusion_models (.safetensors files) and diffusers folders, after 'hub id or diffusers folder'."""
    import types

    from comfyui import host, nodes

    models = tmp_path / "models"
    header_only_checkpoint(models / "checkpoints" / "sd_xl_turbo_1.0_fp16.safetensors", SDXL_WHOLE)
    (models / "checkpoints" / "old.ckpt").write_bytes(b"x")
    header_only_checkpoint(models / "diffusion_models" / "flux1-schnell.safetensors", ["double_blocks.0.img_attn.qkv.weight"])
    (models / "diffusers" / "my-sdxl").mkdir(parents=True)
    (models / "diffusers" / "my-sdxl" / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    listing = {kind: [p.name for p in sorted((models / kind).iterdir())] for kind in ("checkpoints", "diffusion_models")}
    fake = types.SimpleNamespace(
        get_filename_list=lambda kind: listing[kind],
        get_full_path=lambda kind, name: str(models / kind / name) if (models / kind / name).exists() else None,
        get_folder_paths=lambda kind: [str(models / kind)], models_dir=str(models))
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    choices = host.base_model_choices()
    assert choices == [host.HUB_OR_FOLDER, "checkpoints/sd_xl_turbo_1.0_fp16.safetensors",
                       "diffusion_models/flux1-schnell.safetensors", "diffusers/my-sdxl"]
    assert host.resolve_base_model(choices[0], "stabilityai/sdxl-turbo") == "stabilityai/sdxl-turbo"
    assert host.resolve_base_model(choices[1], "ignored") == str(models / "checkpoints" / "sd_xl_turbo_1.0_fp16.safetensors")
    assert host.resolve_base_model(choices[3], "ignored") == str(models / "diffusers" / "my-sdxl")
    widget = nodes.SISOLoRAGenerator.INPUT_TYPES()["required"]["base_model"]
    assert widget[0] == choices and widget[1]["default"] == host.HUB_OR_FOLDER
    assert nodes.SISOSubjectEdit.INPUT_TYPES()["required"]["base_model"][0] == choices


def test_a_whole_checkpoint_runs_and_a_partial_one_is_one_line(workdirs, image, tmp_path):
    whole = header_only_checkpoint(tmp_path / "checkpoints" / "turbo.safetensors", SDXL_WHOLE)
    job = jobs.run_job(request(workdirs, image, fake("fake_success"), params=dict(base_model_path=str(whole))))
    assert job.ok, job.status
    assert job.family == "sdxl"
    assert job.command[job.command.index("--pretrained_model_name_or_path") + 1] == str(whole)
    partial = header_only_checkpoint(tmp_path / "diffusion_models" / "flux1-schnell.safetensors",
                                     ["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight"])
    for path, words in ((partial, "holds only part of a FLUX.1 pipeline (no text_encoders.clip_l, text_encoders.t5xxl, vae"),
                        (tmp_path / "old.ckpt", "is a file but not a .safetensors checkpoint")):
        if not path.exists():
            path.write_bytes(b"x")
        recorder = Recorder()
        job = jobs.run_job(request(workdirs, image, fake("fake_success"), params=dict(base_model_path=str(path))), recorder.hooks())
        assert job.status.startswith(f"Failed: base_model_path {str(path)!r} ") and words in job.status, job.status
        assert "\n" not in job.status and recorder.started == []
