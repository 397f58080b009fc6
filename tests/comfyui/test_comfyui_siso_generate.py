"""The node with the real siso-generate (bundled launcher) on the tiny offline models, no ComfyUI."""

from __future__ import annotations

import sys

import pytest

import torch
from PIL import Image
from safetensors import safe_open

from comfyui import nodes


@pytest.mark.slow  # a real siso child process on the tiny models
def test_node_runs_real_siso_generate(tiny_assets, subject_path, workdirs):
    with Image.open(subject_path) as picture:
        array = torch.tensor(list(picture.convert("RGB").getdata()), dtype=torch.float32).reshape(picture.height, picture.width, 3)
    image = (array / 255.0)[None]
    values = dict(
        prompt="a photo of a cat", weights_output_dir="", base_model_path=tiny_assets["sdxl"], siso_script_path="",
        ir_features_path=tiny_assets["ir"], num_train_epochs=2, learning_rate=5e-3, dino_features_weight=1.0,
        ir_features_weight=1.0, seed=42, resolution=64, rank=4, early_stopping_max_count=7,
        early_stopping_threshold_percentage=0.05, num_inference_steps=1, train_text_encoder=True,
        dino_model_name=tiny_assets["dino"], device="cpu", mixed_precision="auto", mode="default",
        python_executable=sys.executable, unique_subfolder=True, unload_models=True, extra_args="",
    )
    lora_path, status, preview, report = nodes.SISOLoRAGenerator().generate(image, True, unique_id="1", **values)["result"]
    assert status == "Success", report
    assert lora_path.endswith("siso_lora_kohya.safetensors") and lora_path.startswith(str(workdirs["loras"]))
    with safe_open(lora_path, framework="pt") as handle:
        keys = list(handle.keys())
        assert handle.metadata()["siso.steps_run"] == "2"
    assert any(k.startswith("lora_unet_") and k.endswith(".alpha") for k in keys)
    assert any(k.startswith("lora_te1_text_model_") for k in keys) and any(k.startswith("lora_te2_text_model_") for k in keys)
    assert tuple(preview.shape) == (1, 64, 64, 3)
    assert "best iteration" in report
    assert list(workdirs["temp"].iterdir()) == []
