"""Fixtures for the ComfyUI pack's tests: an IMAGE-like array, isolated folders."""

from __future__ import annotations

import numpy as np
import pytest

import siso_comfy_helpers  # noqa: F401  (puts the repository on sys.path)


@pytest.fixture
def image():
    """A ComfyUI IMAGE: float32 [1, H, W, 3] in 0..1, not square, with distinct channels."""
    height, width = 40, 56
    array = np.zeros((1, height, width, 3), np.float32)
    array[0, :, :, 0] = np.linspace(0, 1, width)[None, :]
    array[0, :, :, 1] = np.linspace(0, 1, height)[:, None]
    array[0, :, :, 2] = 0.25
    return array


@pytest.fixture
def workdirs(tmp_path, monkeypatch):
    """A loras folder, a runs folder, an empty temp folder for the subject PNG, a pid file; the node sees them."""
    loras = tmp_path / "loras"
    runs = tmp_path / "runs"
    temp = tmp_path / "tmp"
    loras.mkdir()
    temp.mkdir()
    pid_file = tmp_path / "pids.txt"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    monkeypatch.setenv("SISO_LORAS_DIR", str(loras))
    monkeypatch.setenv("SISO_RUNS_DIR", str(runs))
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    monkeypatch.setenv("SISO_ENV_FILE", str(tmp_path / "siso_env.json"))  # never the pack's own record
    return {"loras": loras, "runs": runs, "temp": temp, "pids": pid_file, "root": tmp_path}



@pytest.fixture
def model_folders(tmp_path):
    """Base-model folders of each family as the node sees them: a model_index.json naming the pipeline."""
    import json

    folders = {}
    for family, pipeline in (("sdxl", "StableDiffusionXLPipeline"), ("flux", "FluxPipeline"), ("sana", "SanaPipeline"),
                             ("flux2_klein", "Flux2KleinPipeline"), ("other", "StableDiffusion3Pipeline")):
        folder = tmp_path / "models" / f"my-{family}"
        folder.mkdir(parents=True)
        (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
        folders[family] = str(folder)
    return folders
